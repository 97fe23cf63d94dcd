//! Events to containerd: `containerd.services.events.ttrpc.v1.Events/Forward`
//! on `TTRPC_ADDRESS`, one envelope per event, in order.
//!
//! Publishing never blocks the shim: events go into a bounded queue that one
//! task drains. A failed Forward is retried, with backoff and a new
//! connection, until containerd takes it (containerd restarting just delays
//! the queue). When the queue is full the oldest event is dropped and
//! counted, so a containerd gone for good cannot grow the shim without
//! bound: with the default capacity that is 4096 events behind. An event
//! containerd refuses with an error status (other than UNAVAILABLE) five times is dropped and
//! counted too, so one bad event cannot hold back the rest. Delivery is at
//! least once: a Forward that timed out after containerd took it is sent
//! again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prost_types::{Any, Timestamp};
use tokio::sync::Notify;

use crate::client::Client;
use crate::proto::containerd::services::events::ttrpc::v1::{Envelope, ForwardRequest};
use crate::task::EventSink;

/// The ttrpc service containerd receives shim events on.
pub const EVENTS_SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// The metadata key containerd reads the namespace from.
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";
/// Events held while containerd does not take them.
pub const DEFAULT_CAPACITY: usize = 4096;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at an event containerd refuses (any status but UNAVAILABLE) before it
/// is dropped (containerd's own shims try 5 times). Transport failures
/// (containerd away) are retried without limit.
const STATUS_ATTEMPTS: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Forwards events to containerd; see the module docs.
pub struct Forwarder {
    address: PathBuf,
    namespace: String,
    capacity: usize,
    queue: Mutex<VecDeque<Envelope>>,
    wake: Notify,
    /// Woken whenever the queue became empty.
    empty: Notify,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("address", &self.address).field("namespace", &self.namespace).finish()
    }
}

impl Forwarder {
    /// Starts forwarding to the ttrpc socket `address` (a path, or a
    /// `unix://` URL as containerd may write it) for `namespace`.
    pub fn start(address: &str, namespace: &str, capacity: usize) -> Arc<Self> {
        let path = address.strip_prefix("unix://").unwrap_or(address);
        let f = Arc::new(Self {
            address: PathBuf::from(path),
            namespace: namespace.to_string(),
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            empty: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(Arc::clone(&f).run());
        f
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events not yet taken by containerd.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Waits until every queued event was forwarded, or `timeout`; `true`
    /// when the queue is empty.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.empty.notified();
            if self.lock().is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().is_empty();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Envelope>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self: Arc<Self>) {
        let mut client: Option<Client> = None;
        let mut backoff = Duration::from_millis(20);
        let mut refusals = 0u32;
        loop {
            let notified = self.wake.notified();
            let Some(next) = self.lock().front().cloned() else {
                self.empty.notify_waiters();
                notified.await;
                // The call whose work published this event usually has its
                // reply ready on this thread too: let the reply go out
                // first. containerd's own shims do not order the two either
                // (their events go through a channel), and the event follows
                // within microseconds; events keep their order among
                // themselves. Sent first, the event woke the client (here, on
                // the same CPU) ahead of the reply: 50-80 us more per call.
                tokio::task::yield_now().await;
                continue;
            };
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = Client::connect(&self.address).await.map_err(|e| tracing::debug!(error = %e, "events")).ok();
            }
            let sent = match client.as_ref() {
                None => false,
                Some(c) => {
                    let req = ForwardRequest { envelope: Some(next.clone()) };
                    let md = [(NAMESPACE_KEY, self.namespace.as_str())];
                    match c.call::<_, ()>(EVENTS_SERVICE, "Forward", &req, Some(CALL_TIMEOUT), &md).await {
                        Ok(()) => true,
                        // UNAVAILABLE is containerd saying "not now": retried
                        // like a transport failure.
                        Err(e) if e.code().is_some_and(|c| c != crate::Code::Unavailable as i32) => {
                            refusals += 1;
                            if refusals >= STATUS_ATTEMPTS {
                                let topic = req.envelope.as_ref().map(|e| e.topic.clone()).unwrap_or_default();
                                tracing::error!(error = %e, topic, "containerd refused an event {STATUS_ATTEMPTS} times; dropped");
                                self.dropped.fetch_add(1, Ordering::Relaxed);
                                true
                            } else {
                                tracing::warn!(error = %e, "containerd refused an event; retrying");
                                false
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "forwarding an event to containerd failed; retrying");
                            client = None;
                            false
                        }
                    }
                }
            };
            if sent {
                refusals = 0;
                // Unless an overflow already dropped it while it was sent.
                let mut q = self.lock();
                if q.front() == Some(&next) {
                    q.pop_front();
                }
                drop(q);
                backoff = Duration::from_millis(20);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl EventSink for Forwarder {
    fn publish(&self, topic: &'static str, event: Any) {
        let envelope = Envelope {
            timestamp: Some(Timestamp::from(SystemTime::now())),
            namespace: self.namespace.clone(),
            topic: topic.to_string(),
            event: Some(event),
        };
        {
            let mut q = self.lock();
            if q.len() >= self.capacity {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    capacity = self.capacity,
                    "containerd takes no events: the oldest queued one was dropped"
                );
            }
            q.push_back(envelope);
        }
        self.wake.notify_one();
    }
}
