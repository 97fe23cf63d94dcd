//! Every RPC with fields at their edges, over the wire: each gets its error
//! code and the shim keeps serving. Runs against the fake shim, which shares
//! all request validation with the runc shim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::sync::Arc;

use shim_core::proto::v1::*;
use shim_core::{Code, FakeRuntime, FakeShim, Shim};
use shim_transport_grpc::{serve_unix, ClientOptions, GrpcShim, ServerOptions};

fn huge() -> String {
    "x".repeat(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"process":{"args":["sleep"]}}"#).unwrap();
    let bundle = bundle.display().to_string();
    // Another shim's container: its pids mean nothing to ours.
    let other = Arc::new(FakeShim::with_runtime(FakeRuntime::with_first_pid(50_000), Default::default(), None));
    let other_pid = other
        .create(CreateRequest { id: "other".into(), bundle: bundle.clone(), ..Default::default() })
        .await
        .unwrap()
        .pid;

    let socket = dir.path().join("run").join("shim.sock");
    let server = serve_unix(Arc::new(FakeShim::new()), &socket, ServerOptions::default()).unwrap();
    let shim = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    let create = |id: &str, bundle: &str| CreateRequest { id: id.into(), bundle: bundle.into(), ..Default::default() };
    let inv = Code::InvalidArgument;
    let cases: Vec<(&str, CreateRequest, Code)> = vec![
        ("empty id", create("", &bundle), inv),
        ("1 MiB id", create(&huge(), &bundle), inv),
        ("traversal id", create("../../etc", &bundle), inv),
        ("slash id", create("a/b", &bundle), inv),
        ("nul id", create("a\0b", &bundle), inv),
        ("unicode id", create("ćontainer", &bundle), inv),
        ("empty bundle", create("ok", ""), inv),
        ("relative bundle", create("ok", "bundle"), inv),
        ("traversal bundle", create("ok", "/../../nonexistent"), inv),
        ("1 MiB bundle", create("ok", &format!("/{}", huge())), inv),
        ("relative stdout", CreateRequest { stdout: "../out".into(), ..create("ok", &bundle) }, inv),
        ("1 MiB stdin", CreateRequest { stdin: format!("/{}", huge()), ..create("ok", &bundle) }, inv),
        ("nul stderr", CreateRequest { stderr: "/tmp/a\0b".into(), ..create("ok", &bundle) }, inv),
        ("nul runtime", CreateRequest { runtime: "ru\0nc".into(), ..create("ok", &bundle) }, inv),
        ("relative runtime_root", CreateRequest { runtime_root: "state".into(), ..create("ok", &bundle) }, inv),
    ];
    for (name, req, want) in cases {
        let got = shim.create(req).await.map_err(|e| e.code()).err();
        assert_eq!(got, Some(want), "create with {name}");
    }

    let init = shim.create(create("ok", &bundle)).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    let exec = |f: &dyn Fn(&mut ExecRequest)| {
        let mut r = ExecRequest { args: vec!["sleep".into()], ..Default::default() };
        f(&mut r);
        r
    };
    let exec_cases: Vec<(&str, ExecRequest)> = vec![
        ("no args", exec(&|r| r.args.clear())),
        ("empty argv0", exec(&|r| r.args = vec![String::new()])),
        ("1 MiB arg", exec(&|r| r.args = vec![huge()])),
        ("100k args", exec(&|r| r.args = vec!["a".into(); 100_000])),
        ("nul in arg", exec(&|r| r.args = vec!["a\0b".into()])),
        ("env without =", exec(&|r| r.env = vec!["JUSTKEY".into()])),
        ("1 MiB env", exec(&|r| r.env = vec![format!("A={}", huge())])),
        ("relative cwd", exec(&|r| r.cwd = "tmp".into())),
        ("1 MiB cwd", exec(&|r| r.cwd = format!("/{}", huge()))),
        ("unknown capability", exec(&|r| r.capabilities = vec!["CAP_EVERYTHING".into()])),
        ("lower-case capability", exec(&|r| r.capabilities = vec!["cap_kill".into()])),
        ("unknown rlimit", exec(&|r| r.rlimits = vec![Rlimit { r#type: "RLIMIT_FUN".into(), hard: 1, soft: 1 }])),
        (
            "soft above hard",
            exec(&|r| r.rlimits = vec![Rlimit { r#type: "RLIMIT_NOFILE".into(), hard: 1, soft: u64::MAX }]),
        ),
        ("relative stdin", exec(&|r| r.stdin = "in".into())),
        ("1 MiB apparmor profile", exec(&|r| r.apparmor_profile = huge())),
    ];
    for (name, req) in exec_cases {
        let got = shim.exec(req).await.map_err(|e| e.code()).err();
        assert_eq!(got, Some(inv), "exec with {name}");
    }

    let nf = Code::NotFound;
    for pid in [u32::MAX, other_pid, 1] {
        assert_eq!(
            shim.pty(PtyRequest { pid, width: 1, height: 1 }).await.map_err(|e| e.code()).err(),
            Some(nf),
            "pty {pid}"
        );
        assert_eq!(
            shim.kill(KillRequest { pid, signal: 9, all: false }).await.map_err(|e| e.code()).err(),
            Some(nf),
            "kill {pid}"
        );
        assert_eq!(shim.wait(WaitRequest { pid }).await.map_err(|e| e.code()).err(), Some(nf), "wait {pid}");
        assert_eq!(
            shim.close_stdin(CloseStdinRequest { pid }).await.map_err(|e| e.code()).err(),
            Some(nf),
            "close_stdin {pid}"
        );
        assert_eq!(shim.delete(DeleteRequest { pid }).await.map_err(|e| e.code()).err(), Some(nf), "delete {pid}");
    }
    assert_eq!(shim.pty(PtyRequest { pid: 0, width: 1, height: 1 }).await.map_err(|e| e.code()).err(), Some(inv));
    assert_eq!(
        shim.pty(PtyRequest { pid: init, width: u32::MAX, height: 1 }).await.map_err(|e| e.code()).err(),
        Some(inv)
    );
    assert_eq!(
        shim.pty(PtyRequest { pid: init, width: 1, height: 70_000 }).await.map_err(|e| e.code()).err(),
        Some(inv)
    );
    for signal in [0, 65, 1000, u32::MAX] {
        let got = shim.kill(KillRequest { pid: init, signal, all: false }).await.map_err(|e| e.code()).err();
        assert_eq!(got, Some(inv), "signal {signal}");
    }
    for call in [
        shim.kill(KillRequest { pid: 0, signal: 9, all: true }).await.err(),
        shim.wait(WaitRequest { pid: 0 }).await.err(),
        shim.delete(DeleteRequest { pid: 0 }).await.err(),
        shim.close_stdin(CloseStdinRequest { pid: 0 }).await.err(),
    ] {
        assert_eq!(call.map(|e| e.code()), Some(inv));
    }
    let future = shim.events(EventsRequest { since: Some(u64::MAX) }).await;
    assert_eq!(future.err().map(|e| e.code()), Some(inv));

    // Still serving, and the container is as it was.
    let st = shim.state(StateRequest {}).await.unwrap();
    assert_eq!(st.processes, vec![Process::new(init, State::Running)]);
    assert_eq!(shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
    server.shutdown().await.unwrap();
}
