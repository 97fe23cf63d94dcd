//! The ttrpc server and client over a real unix socket: concurrent calls and
//! out-of-order responses, the protocol's refusals (even stream id, oversized
//! frame, undecodable request, unknown method), deadlines and metadata.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use shim_transport_ttrpc::frame::{read_frame, write_frame, Frame, Header, MAX_PAYLOAD, TYPE_REQUEST};
use shim_transport_ttrpc::proto::ttrpc::{Request as WireRequest, Response, Status};
use shim_transport_ttrpc::status::status;
use shim_transport_ttrpc::{Client, Code, Request, Server, Service};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

const LIMIT: Duration = Duration::from_secs(10);

/// `Echo` answers its payload; `Slow` waits for `release`; `Hang` never
/// answers; `Meta` answers the value of metadata key `k`.
struct Test {
    release: Notify,
    /// Set by `Finish` once it ran to its end.
    finished: Notify,
}

#[async_trait]
impl Service for Test {
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status> {
        match req.method.as_str() {
            "Echo" => Ok(req.payload),
            "Slow" => {
                self.release.notified().await;
                Ok(Blob { data: b"slow".to_vec() }.encode_to_vec())
            }
            "Hang" => std::future::pending().await,
            "Finish" => {
                self.release.notified().await;
                self.finished.notify_one();
                Ok(Vec::new())
            }
            "Meta" => Ok(Blob { data: req.metadata("k").unwrap_or_default().as_bytes().to_vec() }.encode_to_vec()),
            m => Err(status(Code::Unimplemented, format!("no method {m}"))),
        }
    }
}

async fn server() -> (tempfile::TempDir, std::path::PathBuf, Arc<Test>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("t.sock");
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
    let svc = Arc::new(Test { release: Notify::new(), finished: Notify::new() });
    let server = Server::new(Arc::clone(&svc));
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
    (dir, path, svc)
}

/// The test's message: one bytes field.
#[derive(Clone, PartialEq, Message)]
struct Blob {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("no answer within {LIMIT:?}"))
}

#[tokio::test]
async fn calls_run_concurrently_and_answer_out_of_order() {
    let (_dir, path, svc) = server().await;
    let client = Arc::new(within(Client::connect(&path)).await.unwrap_or_else(|e| panic!("{e}")));
    let slow = {
        let c = Arc::clone(&client);
        tokio::spawn(async move { c.call::<_, Blob>("t", "Slow", &Blob::default(), None, &[]).await })
    };
    // The fast call answers while the slow one is still held.
    let req = Blob { data: b"hi".to_vec() };
    let fast: Blob = within(client.call("t", "Echo", &req, None, &[])).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fast.data, b"hi");
    assert!(!slow.is_finished());
    // `Slow` may not be waiting yet: keep releasing until it answers.
    let answered = within(async {
        loop {
            svc.release.notify_waiters();
            if slow.is_finished() {
                break slow.await;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let got = answered.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.data, b"slow");
}

#[tokio::test]
async fn unknown_methods_deadlines_and_metadata() {
    let (_dir, path, _svc) = server().await;
    let client = within(Client::connect(&path)).await.unwrap_or_else(|e| panic!("{e}"));
    let err = within(client.call::<_, Blob>("t", "Nope", &Blob::default(), None, &[])).await.err();
    assert_eq!(err.and_then(|e| e.code()), Some(Code::Unimplemented as i32));
    // The server ends a call at the caller's deadline, with its code; the
    // client's own bound is longer here, so the server's answer is seen.
    let raw =
        WireRequest { service: "t".into(), method: "Hang".into(), timeout_nano: 50_000_000, ..Default::default() };
    let answer = raw_call(&path, 1, &raw.encode_to_vec()).await;
    assert_eq!(answer.status.map(|s| s.code), Some(Code::DeadlineExceeded as i32));
    let md: Blob = within(client.call("t", "Meta", &Blob::default(), None, &[("k", "v1")]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(md.data, b"v1");
    // The client's own deadline ends a call the server never answers.
    let err = within(client.call::<_, Blob>("t", "Hang", &Blob::default(), Some(Duration::from_millis(50)), &[])).await;
    assert!(err.is_err());
}

#[tokio::test]
async fn a_deadline_ends_the_wait_for_an_answer_not_the_call() {
    let (_dir, path, svc) = server().await;
    let raw =
        WireRequest { service: "t".into(), method: "Finish".into(), timeout_nano: 20_000_000, ..Default::default() };
    let answer = raw_call(&path, 1, &raw.encode_to_vec()).await;
    assert_eq!(answer.status.map(|s| s.code), Some(Code::DeadlineExceeded as i32));
    // The call is still running: released now, it runs to its end.
    let finished = svc.finished.notified();
    svc.release.notify_one();
    within(finished).await;
}

/// Sends one raw request frame on a new connection and reads one response.
async fn raw_call(path: &std::path::Path, id: u32, payload: &[u8]) -> Response {
    let mut s = within(UnixStream::connect(path)).await.unwrap_or_else(|e| panic!("{e}"));
    within(write_frame(&mut s, id, TYPE_REQUEST, payload)).await.unwrap_or_else(|e| panic!("{e}"));
    read_response(&mut s).await.1
}

async fn read_response(s: &mut UnixStream) -> (u32, Response) {
    match within(read_frame(s)).await {
        Ok(Some(Frame::Whole(h, p))) => (h.stream_id, Response::decode(p.as_slice()).unwrap_or_else(|e| panic!("{e}"))),
        other => panic!("expected a response frame, got {other:?}"),
    }
}

#[tokio::test]
async fn protocol_violations_get_their_codes_and_the_connection_stays_usable() {
    let (_dir, path, _svc) = server().await;
    let echo =
        WireRequest { service: "t".into(), method: "Echo".into(), payload: b"ok".to_vec(), ..Default::default() };
    let mut s = within(UnixStream::connect(&path)).await.unwrap_or_else(|e| panic!("{e}"));

    // An even stream id: a server-initiated id, refused.
    within(write_frame(&mut s, 2, TYPE_REQUEST, &echo.encode_to_vec())).await.unwrap_or_else(|e| panic!("{e}"));
    let (id, r) = read_response(&mut s).await;
    assert_eq!((id, r.status.map(|s| s.code)), (2, Some(Code::InvalidArgument as i32)));

    // A frame over the limit: skipped, answered RESOURCE_EXHAUSTED.
    let big = MAX_PAYLOAD + 1;
    let head = Header { length: big as u32, stream_id: 3, kind: TYPE_REQUEST, flags: 0 };
    within(s.write_all(&head.encode())).await.unwrap_or_else(|e| panic!("{e}"));
    let zeros = vec![0u8; big];
    let writer = async { s.write_all(&zeros).await };
    within(writer).await.unwrap_or_else(|e| panic!("{e}"));
    let (id, r) = read_response(&mut s).await;
    assert_eq!((id, r.status.map(|s| s.code)), (3, Some(Code::ResourceExhausted as i32)));

    // Garbage where a Request should be.
    within(write_frame(&mut s, 5, TYPE_REQUEST, &[0xff, 0xff, 0xff])).await.unwrap_or_else(|e| panic!("{e}"));
    let (id, r) = read_response(&mut s).await;
    assert_eq!((id, r.status.map(|s| s.code)), (5, Some(Code::InvalidArgument as i32)));

    // And the same connection still serves.
    within(write_frame(&mut s, 7, TYPE_REQUEST, &echo.encode_to_vec())).await.unwrap_or_else(|e| panic!("{e}"));
    let (id, r) = read_response(&mut s).await;
    assert_eq!((id, r.status.map(|s| s.code).unwrap_or(0), r.payload), (7, 0, b"ok".to_vec()));
}

#[tokio::test]
async fn a_client_sees_its_calls_fail_when_the_server_goes_away() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("gone.sock");
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
    let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
    let client = within(Client::connect(&path)).await.unwrap_or_else(|e| panic!("{e}"));
    let server_side = within(accept).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    let req = Blob::default();
    let call = client.call::<_, Blob>("t", "Echo", &req, None, &[]);
    drop(server_side);
    let err = within(call).await.err().unwrap_or_else(|| panic!("a call to a closed server succeeded"));
    assert_eq!(err.code(), None, "{err}");
    let refused = Client::connect(dir.path().join("none.sock")).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("none.sock"), "{refused}");
}

/// A server that takes only its own user: a peer of the same uid and gid is
/// served; one whose gid differs (here: a server expecting another gid) is
/// disconnected before any call.
#[tokio::test]
async fn only_peers_of_the_same_uid_and_gid_are_served() {
    let (uid, gid) = (nix::unistd::Uid::effective().as_raw(), nix::unistd::Gid::effective().as_raw());
    for (expected_gid, served) in [(gid, true), (gid.wrapping_add(1), false)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("t.sock");
        let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        let svc = Arc::new(Test { release: Notify::new(), finished: Notify::new() });
        let server = Server::new(svc).same_user(uid, expected_gid);
        tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
        let client = tokio::time::timeout(LIMIT, Client::connect(&path)).await.unwrap_or_else(|_| panic!("connect"));
        let client = client.unwrap_or_else(|e| panic!("{e}"));
        let blob = Blob { data: b"hi".to_vec() };
        let answer = tokio::time::timeout(LIMIT, client.call("svc", "Echo", &blob, None, &[])).await;
        let answer: Result<Blob, _> = answer.unwrap_or_else(|_| panic!("no answer nor disconnect within {LIMIT:?}"));
        assert_eq!(answer.is_ok(), served, "expected gid {expected_gid}, ours {gid}");
    }
}
