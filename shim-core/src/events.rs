//! The event bus: every subscriber gets every event, and a subscriber that
//! lost its connection can resume where it left off.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use shim_proto::v1::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::StreamExt;

use crate::error::ShimError;
use crate::shim::EventStream;

/// How many events a subscriber may fall behind, and how many recent events
/// are kept for resuming, by default. One container makes a handful of
/// events per process, so this covers bursts of a hundred execs; the slots
/// are allocated up front, so it is also resident memory of every shim.
pub const DEFAULT_EVENT_BUFFER: usize = 256;

struct History {
    /// The sequence number the next event gets.
    next_seq: u64,
    /// The most recent events, oldest first.
    ring: VecDeque<Event>,
    capacity: usize,
}

/// A broadcast bus of shim events with sequence numbers.
///
/// - Every event gets `seq`, counting from 1 without gaps.
/// - Each subscriber has its own view of a bounded ring: a slow subscriber
///   never slows the publisher or the others. One that falls more than the
///   capacity behind gets an [`ShimError::Unavailable`] item and its stream
///   ends, so it knows it missed events.
/// - The last `capacity` events are kept: [`EventBus::subscribe_since`]
///   replays those after a given `seq`, then continues live, without a gap or
///   a duplicate. When the ring no longer reaches back that far it says so
///   ([`ShimError::FailedPrecondition`]); the client then resyncs with `State`.
/// - Publishing with no subscriber keeps the event in the ring; nothing blocks.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Arc<Mutex<History>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("subscribers", &self.subscriber_count()).finish_non_exhaustive()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_BUFFER)
    }
}

impl EventBus {
    /// A bus on which a subscriber may lag by up to `capacity` events, and
    /// which keeps the last `capacity` events for resuming.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (tx, _) = broadcast::channel(capacity);
        // The ring grows as events come, up to `capacity`.
        let history = History { next_seq: 1, ring: VecDeque::new(), capacity };
        Self { tx, history: Arc::new(Mutex::new(history)) }
    }

    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers `event` and sends it to every current subscriber.
    pub fn publish(&self, mut event: Event) {
        // Numbering, keeping and sending happen under one lock, so the order
        // of sequence numbers is the order every subscriber sees.
        let mut history = self.history();
        event.seq = history.next_seq;
        history.next_seq += 1;
        if history.ring.len() == history.capacity {
            history.ring.pop_front();
        }
        history.ring.push_back(event.clone());
        tracing::debug!(id = %event.id, r#type = event.r#type, pid = event.pid, exit_status = event.exit_status, seq = event.seq, "event");
        // An error only means there is no subscriber right now.
        let _ = self.tx.send(event);
    }

    /// Number of live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The sequence number of the last event published (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.history().next_seq - 1
    }

    /// A stream of every event published from now on.
    pub fn subscribe(&self) -> EventStream {
        let rx = self.tx.subscribe();
        live(rx, Vec::new())
    }

    /// A stream of the events after `since` (those still kept), then every
    /// event published from now on. `None` is [`EventBus::subscribe`].
    pub fn subscribe_since(&self, since: Option<u64>) -> Result<EventStream, ShimError> {
        let Some(since) = since else { return Ok(self.subscribe()) };
        let history = self.history();
        let last = history.next_seq - 1;
        if since > last {
            return Err(ShimError::invalid(
                "since",
                format!("event {since} was never published here (the last is {last}): resync with state"),
            ));
        }
        let oldest = history.ring.front().map(|e| e.seq).unwrap_or(history.next_seq);
        if since + 1 < oldest {
            return Err(ShimError::FailedPrecondition(format!(
                "events after {since} are no longer kept (the oldest kept is {oldest}): resync with state"
            )));
        }
        let replay: Vec<Event> = history.ring.iter().filter(|e| e.seq > since).cloned().collect();
        // Subscribing under the lock: nothing is published between the
        // replay and the live part.
        let rx = self.tx.subscribe();
        drop(history);
        Ok(live(rx, replay))
    }
}

fn live(rx: broadcast::Receiver<Event>, replay: Vec<Event>) -> EventStream {
    let stream = BroadcastStream::new(rx).map(|item| {
        item.map_err(|BroadcastStreamRecvError::Lagged(n)| {
            ShimError::Unavailable(format!(
                "event subscriber fell behind and missed {n} events; subscribe again with since to resume"
            ))
        })
    });
    // End the stream after the first error so the subscriber cannot mistake
    // a gap for a complete history.
    let mut failed = false;
    let stream = tokio_stream::iter(replay.into_iter().map(Ok)).chain(stream).take_while(move |item| {
        if failed {
            return false;
        }
        failed = item.is_err();
        true
    });
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim_proto::v1::EventType;

    fn ev(pid: u32) -> Event {
        Event::new("c", EventType::Exit, pid, 0)
    }

    async fn seqs(stream: &mut EventStream, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(stream.next().await.and_then(|r| r.ok()).map(|e| e.seq).unwrap_or(0));
        }
        out
    }

    #[tokio::test]
    async fn resume_replays_what_was_missed_then_goes_live() {
        let bus = EventBus::new(4);
        bus.publish(ev(1));
        bus.publish(ev(2));
        bus.publish(ev(3));
        let mut resumed = bus.subscribe_since(Some(1)).unwrap_or_else(|e| panic!("{e}"));
        bus.publish(ev(4));
        assert_eq!(seqs(&mut resumed, 3).await, vec![2, 3, 4]);
        // Nothing missed: only live events.
        let mut current = bus.subscribe_since(Some(4)).unwrap_or_else(|e| panic!("{e}"));
        bus.publish(ev(5));
        assert_eq!(seqs(&mut current, 1).await, vec![5]);
        assert_eq!(bus.last_seq(), 5);
    }

    #[tokio::test]
    async fn resume_from_too_far_back_or_the_future_is_an_error() {
        let bus = EventBus::new(2);
        for pid in 1..=5 {
            bus.publish(ev(pid));
        }
        // Kept: 4 and 5. Resuming after 3 works, after 2 does not.
        assert!(bus.subscribe_since(Some(3)).is_ok());
        let err = bus.subscribe_since(Some(2)).err().map(|e| (e.code(), e.to_string()));
        assert_eq!(
            err,
            Some((
                crate::Code::FailedPrecondition,
                "events after 2 are no longer kept (the oldest kept is 4): resync with state".to_string()
            ))
        );
        assert_eq!(bus.subscribe_since(Some(9)).err().map(|e| e.code()), Some(crate::Code::InvalidArgument));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_an_error_and_its_stream_ends() {
        let bus = EventBus::new(2);
        let mut slow = bus.subscribe();
        for pid in 1..=5 {
            bus.publish(ev(pid));
        }
        let first = slow.next().await;
        assert_eq!(first.map(|r| r.map_err(|e| e.code()).err()), Some(Some(crate::Code::Unavailable)));
        assert!(slow.next().await.is_none());
    }
}
