//! Socket safety, misbehaving clients, event streams and shutdown of the
//! gRPC server, over real unix sockets (against the fake shim: the transport
//! is what is tested here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shim_core::proto::v1::*;
use shim_core::{Code, FakeShim, Shim};
use shim_transport_grpc::{serve_unix, ClientOptions, GrpcShim, ServeError, ServerOptions};

const T: Duration = Duration::from_secs(10);

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("run").join("shim.sock")
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fake shim with a running container; returns the shim and the init pid.
async fn running(dir: &Path) -> (Arc<FakeShim>, u32) {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"process":{"args":["sleep"]}}"#).unwrap();
    let shim = Arc::new(FakeShim::new());
    let req = CreateRequest { id: "c".into(), bundle: bundle.display().to_string(), ..Default::default() };
    let pid = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    (shim, pid)
}

#[tokio::test]
async fn socket_is_private_and_stale_sockets_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    // A live server is not displaced.
    let again = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default());
    assert!(matches!(again, Err(ServeError::InUse(_))), "{again:?}");
    server.shutdown().await.unwrap();
    assert!(!socket.exists(), "shutdown removes the socket");

    // A stale socket (its server died without cleaning up) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let client = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    assert_eq!(client.state(StateRequest {}).await.unwrap(), StateResponse::default());
    server.shutdown().await.unwrap();

    // A regular file in the socket's place is refused.
    let file = socket.parent().unwrap().join("file");
    std::fs::write(&file, "x").unwrap();
    let r = serve_unix(Arc::new(FakeShim::new()), &file, ServerOptions::default());
    assert!(matches!(r, Err(ServeError::NotASocket(_))), "{r:?}");
}

/// Calls `State` from a thread whose effective uid is `uid` (its filesystem
/// uid stays root so it can reach the socket): SO_PEERCRED reports `uid`.
fn state_as_uid(socket: PathBuf, uid: u32) -> Result<StateResponse, shim_core::ShimError> {
    std::thread::spawn(move || {
        // Raw syscalls change this thread only (glibc's wrappers would change
        // every thread of the test process).
        // SAFETY: plain syscalls with integer arguments.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setresuid, -1i64, i64::from(uid), -1i64), 0);
            libc::syscall(libc::SYS_setfsuid, 0i64);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let client = GrpcShim::connect(&socket, ClientOptions::default()).await?;
            client.state(StateRequest {}).await
        })
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_uid_is_refused() {
    if !nix::unistd::Uid::effective().is_root() {
        if std::env::var("SHIM_REQUIRE_RUNC").as_deref() == Ok("1") {
            panic!("this test needs root");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let refused = tokio::task::spawn_blocking({
        let socket = socket.clone();
        move || state_as_uid(socket, 65534)
    })
    .await
    .unwrap();
    let err = refused.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("65534"), "{err}");
    // Root is allowed.
    let ok = tokio::task::spawn_blocking(move || state_as_uid(socket, 0)).await.unwrap();
    assert!(ok.is_ok(), "{ok:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_do_not_disturb_others() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let (shim, pid) = running(dir.path()).await;
    let options = ServerOptions { shutdown_grace: Duration::from_millis(500), ..Default::default() };
    let server = serve_unix(shim, &socket, options).unwrap();
    let good = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();

    // Garbage instead of the HTTP/2 preface.
    let mut garbage = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    garbage.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1000)).unwrap();
    // The preface, then half of a frame header.
    let mut half = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00").unwrap();
    // Connects and says nothing.
    let _silent = std::os::unix::net::UnixStream::connect(&socket).unwrap();

    for _ in 0..20 {
        let st = tokio::time::timeout(T, good.state(StateRequest {})).await.unwrap().unwrap();
        assert_eq!(st.processes, vec![Process::new(pid, State::Running)]);
    }
    // A request over the size limit gets a clear error; the shim keeps serving.
    let huge = ExecRequest { args: vec!["x".repeat(5 << 20)], ..Default::default() };
    let big_client =
        GrpcShim::connect(&socket, ClientOptions { max_message: 64 << 20, ..Default::default() }).await.unwrap();
    let err = tokio::time::timeout(T, big_client.exec(huge.clone())).await.unwrap().unwrap_err();
    println!("server-side limit: {} {err}", err.code());
    assert!(err.to_string().contains("message length too large"), "{err}");
    // Our own client refuses to send it in the first place.
    let err = tokio::time::timeout(T, good.exec(huge)).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("over the 4194304-byte message limit"), "{err}");
    assert!(good.state(StateRequest {}).await.is_ok());
    drop((garbage, half));
    // The silent client cannot hold shutdown beyond its grace period.
    tokio::time::timeout(T, server.shutdown()).await.unwrap().unwrap();
    assert!(!socket.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_across_clients_reconnects_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let (shim, init) = running(dir.path()).await;
    let server = serve_unix(shim.clone(), &socket, ServerOptions::default()).unwrap();
    let mut clients = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let c = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
        streams.push(c.events(EventsRequest::default()).await.unwrap());
        clients.push(c);
    }
    until("four subscriptions", || shim.event_bus().subscriber_count() == 4).await;

    // A client that disconnects frees its subscription at once.
    drop(streams.pop());
    drop(clients.pop());
    until("the dropped subscription to be freed", || shim.event_bus().subscriber_count() == 3).await;

    // A client that reconnects subscribes again and gets events.
    let c = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    streams.push(c.events(EventsRequest::default()).await.unwrap());
    clients.push(c);
    until("the new subscription", || shim.event_bus().subscriber_count() == 4).await;

    let exec = ExecRequest { args: vec!["exit:5".into()], ..Default::default() };
    let pid = clients[0].exec(exec).await.unwrap().pid;
    for s in &mut streams {
        let a = tokio::time::timeout(T, s.next()).await.unwrap().unwrap().unwrap();
        let b = tokio::time::timeout(T, s.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((a.event_type(), a.pid), (Ok(EventType::ExecAdded), pid));
        assert_eq!((b.event_type(), b.pid, b.exit_status), (Ok(EventType::Exit), pid, 5));
    }

    // Shutdown ends every stream cleanly and removes the socket.
    server.shutdown().await.unwrap();
    for s in &mut streams {
        let end = tokio::time::timeout(T, s.next()).await.unwrap();
        assert!(matches!(end, Some(Err(ref e)) if e.code() == Code::Unavailable) || end.is_none(), "{end:?}");
    }
    assert!(!socket.exists());
    until("subscriptions to be freed", || shim.event_bus().subscriber_count() == 0).await;
    let _ = init;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let path = socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    let status = health.check(HealthCheckRequest { service: "containerd.shim.v1.Shim".into() }).await.unwrap();
    assert_eq!(status.into_inner().status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"containerd.shim.v1.Shim".to_string()), "{names:?}");
    // The service is built on the first call; later calls reuse it.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("containerd.shim.v1.Shim".into())),
    };
    let mut responses = reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    assert_eq!(files.file_descriptor_proto.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_pending_waits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let (shim, init) = running(dir.path()).await;
    let mut server = serve_unix(shim, &socket, ServerOptions::default()).unwrap();
    let client = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    let waiting = tokio::spawn(async move { client.wait(WaitRequest { pid: init }).await });
    // Let the Wait reach the server, then stop it: the Wait ends, and the
    // shutdown does not sit out its grace period for it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_millis(1), server.wait()).await;
    server.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "shutdown took {:?}", started.elapsed());
    let r = tokio::time::timeout(T, waiting).await.unwrap().unwrap();
    assert_eq!(r.map_err(|e| e.code()).err(), Some(Code::Unavailable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_can_be_served_over_tcp_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, init) = running(dir.path()).await;
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (server, local) =
        shim_transport_grpc::serve_tcp_insecure_loopback(shim, addr, ServerOptions::default()).await.unwrap();
    assert!(server.socket().is_none());
    let client = GrpcShim::connect_tcp_insecure(&format!("http://{local}"), ClientOptions::default()).await.unwrap();
    assert_eq!(client.state(StateRequest {}).await.unwrap().processes, vec![Process::new(init, State::Running)]);
    assert_eq!(client.delete(DeleteRequest { pid: 12345 }).await.unwrap_err().code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_the_server_never_answers_ends_at_the_call_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // A peer that accepts and reads but never answers: a hung shim.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        if let Ok((mut conn, _)) = listener.accept() {
            let mut sink = [0u8; 4096];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    let options = ClientOptions { call_timeout: Duration::from_millis(300), ..Default::default() };
    let client = tokio::time::timeout(T, GrpcShim::connect(&socket, options)).await.unwrap().unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(T, client.state(StateRequest {})).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("state: no answer from the shim within 300ms"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_tcp_peer_that_stops_answering_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (shim, _) = running(dir.path()).await;
    let every = Duration::from_millis(200);
    let options = ServerOptions { tcp_keepalive: Some(every), ..Default::default() };
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (server, local) = shim_transport_grpc::serve_tcp_insecure_loopback(shim, addr, options).await.unwrap();
    // An HTTP/2 client that opens the connection and then goes silent, as
    // one behind a dead link would: it never answers the server's PINGs.
    let mut peer = tokio::net::TcpStream::connect(local).await.unwrap();
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    peer.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(T, async {
        let mut buf = [0u8; 1024];
        loop {
            match peer.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a silent TCP peer for {T:?}");
    assert!(started.elapsed() >= every, "closed before any PING could go unanswered");
    // Among what the server sent: a PING (frame type 6).
    let mut at = 0;
    let mut pinged = false;
    while at + 9 <= seen.len() {
        let len = (usize::from(seen[at]) << 16) | (usize::from(seen[at + 1]) << 8) | usize::from(seen[at + 2]);
        pinged |= seen[at + 3] == 0x6;
        at += 9 + len;
    }
    assert!(pinged, "no PING among {} bytes", seen.len());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tcp_shim_that_stops_answering_fails_the_open_calls() {
    // A peer that accepts and reads but never answers, not even PINGs: a
    // shim behind a dead link.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::Read;
        if let Ok((mut conn, _)) = listener.accept() {
            let mut sink = [0u8; 4096];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    let every = Duration::from_millis(200);
    let options = ClientOptions { tcp_keepalive: Some(every), ..Default::default() };
    let client = tokio::time::timeout(T, GrpcShim::connect_tcp_insecure(&format!("http://{local}"), options)).await;
    let client = client.unwrap().unwrap();
    // Wait has no call timeout: only the keepalive can end it.
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(T, client.wait(WaitRequest { pid: 1 })).await;
    let err = err.expect("the keepalive did not end the call").unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(started.elapsed() >= every);
}

/// Makes `dir` (and its parents) with `mode`.
fn dir_with_mode(path: &Path, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_directories_follow_strict_modes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |socket: PathBuf| serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default());

    // An ordinary root-owned (our uid's) 0755 directory, under the sticky
    // world-writable /tmp: accepted; the socket is 0600.
    let ordinary = dir_with_mode(&dir.path().join("run-shim"), 0o755);
    let server = serve(ordinary.join("x.sock")).unwrap();
    let mode = std::fs::metadata(ordinary.join("x.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = GrpcShim::connect(&ordinary.join("x.sock"), ClientOptions::default()).await.unwrap();
    assert_eq!(client.state(StateRequest {}).await.unwrap(), StateResponse::default());
    server.shutdown().await.unwrap();
    // Nothing of the staging is left beside it.
    assert_eq!(std::fs::read_dir(&ordinary).unwrap().count(), 0);

    // Group-writable socket directory: refused, naming it and the fix.
    let group = dir_with_mode(&dir.path().join("group"), 0o775);
    let err = serve(group.join("x.sock")).unwrap_err();
    assert!(matches!(&err, ServeError::OpenDirectory { dir, mode: 0o775 } if dir.ends_with("group")), "{err:?}");
    assert!(err.to_string().contains("chmod go-w"), "{err}");

    // A world-writable directory above it, without the sticky bit: refused.
    let parent = dir_with_mode(&dir.path().join("open"), 0o777);
    let child = dir_with_mode(&parent.join("mine"), 0o700);
    let err = serve(child.join("x.sock")).unwrap_err();
    assert!(matches!(&err, ServeError::OpenDirectory { dir, mode: 0o777 } if dir.ends_with("open")), "{err:?}");
    // The same with the sticky bit (like /tmp): accepted.
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
    serve(child.join("x.sock")).unwrap().shutdown().await.unwrap();

    // Owned by another user: refused.
    let foreign = dir_with_mode(&dir.path().join("foreign"), 0o700);
    if nix::unistd::Uid::effective().is_root() {
        nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = serve(foreign.join("x.sock")).unwrap_err();
        assert!(matches!(&err, ServeError::ForeignDirectory { owner: 65534, .. }), "{err:?}");
        assert!(err.to_string().contains("chown"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_that_went_away_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(dir.path());
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let client = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    client.state(StateRequest {}).await.unwrap();
    server.shutdown().await.unwrap();
    let err = client.state(StateRequest {}).await.unwrap_err();
    assert_eq!(err.code(), shim_core::Code::Unavailable, "{err}");
    assert!(err.to_string().contains(&socket.display().to_string()), "{err}");
}
