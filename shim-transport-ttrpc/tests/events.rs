//! The event forwarder against a stand-in for containerd's event service:
//! events published while containerd is absent or failing arrive later, in
//! order, with the namespace; a full queue drops the oldest and counts them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use prost_types::Any;
use shim_transport_ttrpc::events::{Forwarder, EVENTS_SERVICE, NAMESPACE_KEY};
use shim_transport_ttrpc::proto::containerd::services::events::ttrpc::v1::ForwardRequest;
use shim_transport_ttrpc::proto::ttrpc::Status;
use shim_transport_ttrpc::status::status;
use shim_transport_ttrpc::task::EventSink;
use shim_transport_ttrpc::{Code, Request, Server, Service};
use tokio::net::UnixListener;

const LIMIT: Duration = Duration::from_secs(20);

/// Records what it is forwarded; answers UNAVAILABLE while `refuse` is set.
#[derive(Default)]
struct Containerd {
    got: Mutex<Vec<(String, String, String)>>,
    refuse: AtomicBool,
    /// Answers INVALID_ARGUMENT while set.
    reject: AtomicBool,
}

#[async_trait]
impl Service for Containerd {
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status> {
        if req.service != EVENTS_SERVICE || req.method != "Forward" {
            return Err(status(Code::Unimplemented, "not the events service"));
        }
        if self.refuse.load(Ordering::SeqCst) {
            return Err(status(Code::Unavailable, "restarting"));
        }
        if self.reject.load(Ordering::SeqCst) {
            return Err(status(Code::InvalidArgument, "bad event"));
        }
        let f =
            ForwardRequest::decode(req.payload.as_slice()).map_err(|e| status(Code::InvalidArgument, e.to_string()))?;
        let env = f.envelope.unwrap_or_default();
        let md = req.metadata(NAMESPACE_KEY).unwrap_or_default().to_string();
        self.got.lock().unwrap_or_else(|e| e.into_inner()).push((env.topic, env.namespace, md));
        Ok(Vec::new())
    }
}

impl Containerd {
    fn topics(&self) -> Vec<String> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, _, _)| t.clone()).collect()
    }
}

fn event(n: u8) -> Any {
    Any { type_url: "containerd.events.TaskStart".into(), value: vec![n] }
}

fn serve(path: &std::path::Path) -> Arc<Containerd> {
    let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("{e}"));
    let svc = Arc::new(Containerd::default());
    let server = Server::new(Arc::clone(&svc));
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    svc
}

#[tokio::test]
async fn events_wait_for_containerd_and_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.sock.ttrpc");
    let fwd = Forwarder::start(&format!("unix://{}", path.display()), "ns1", 16);
    // containerd is not there yet: publishing neither blocks nor loses.
    for (topic, n) in [("/tasks/create", 1), ("/tasks/start", 2), ("/tasks/exit", 3)] {
        fwd.publish(topic, event(n));
    }
    assert!(!fwd.drain(Duration::from_millis(100)).await);
    assert_eq!(fwd.pending(), 3);

    let containerd = serve(&path);
    assert!(fwd.drain(LIMIT).await, "{} events never delivered", fwd.pending());
    assert_eq!(containerd.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit"]);
    let got = containerd.got.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(got.iter().all(|(_, ns, md)| ns == "ns1" && md == "ns1"), "{got:?}");

    // containerd fails for a while (restarting): retried until it takes them.
    containerd.refuse.store(true, Ordering::SeqCst);
    fwd.publish("/tasks/exit", event(4));
    fwd.publish("/tasks/delete", event(5));
    assert!(!fwd.drain(Duration::from_millis(200)).await);
    containerd.refuse.store(false, Ordering::SeqCst);
    assert!(fwd.drain(LIMIT).await, "{} events never delivered", fwd.pending());
    assert_eq!(containerd.topics(), ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/exit", "/tasks/delete"]);
    assert_eq!(fwd.dropped(), 0);

    // An event containerd rejects outright (not "unavailable") is tried five
    // times and dropped, so it cannot hold back the ones after it.
    containerd.reject.store(true, Ordering::SeqCst);
    fwd.publish("/tasks/bad", event(6));
    fwd.publish("/tasks/oom", event(7));
    let deadline = tokio::time::Instant::now() + LIMIT;
    while fwd.dropped() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the rejected event was never dropped");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    containerd.reject.store(false, Ordering::SeqCst);
    assert!(fwd.drain(LIMIT).await);
    assert_eq!(containerd.topics().last().map(String::as_str), Some("/tasks/oom"));
    assert_eq!(fwd.dropped(), 1);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("c.sock.ttrpc");
    let fwd = Forwarder::start(path.to_str().unwrap_or_default(), "ns1", 2);
    for n in 1..=5 {
        fwd.publish(if n % 2 == 0 { "/tasks/start" } else { "/tasks/exit" }, event(n));
    }
    assert_eq!((fwd.pending(), fwd.dropped()), (2, 3));
    let containerd = serve(&path);
    assert!(fwd.drain(LIMIT).await);
    // The newest two, in order.
    assert_eq!(containerd.topics(), ["/tasks/start", "/tasks/exit"]);
}
