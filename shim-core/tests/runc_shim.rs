//! The runc-backed shim against real runc and real containers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shim_core::proto::v1::*;
use shim_core::testing::{
    collect_events, is_zombie_child, mkfifo, open_fifo_writer, read_fifo, require_runc, shared_reaper, BundleBuilder,
};
use shim_core::{Code, EventStream, RuncConfig, RuncShim, Shim};

const T: Duration = Duration::from_secs(30);

struct Fixture {
    dir: tempfile::TempDir,
    shim: Arc<RuncShim>,
    id: String,
}

fn unique_id(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = RuncConfig::new(dir.path().join("work")).io_grace(Duration::from_millis(500));
        let shim = Arc::new(RuncShim::new(config, shared_reaper()).unwrap_or_else(|e| panic!("shim: {e}")));
        Self { dir, shim, id: unique_id(tag) }
    }

    fn bundle(&self, builder: BundleBuilder) -> String {
        let path = self.dir.path().join("bundle");
        builder.build(&path).unwrap_or_else(|e| panic!("bundle: {e}"));
        path.to_string_lossy().into_owned()
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        mkfifo(&p).unwrap_or_else(|e| panic!("mkfifo: {e}"));
        p
    }

    fn work_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("work"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    async fn events(&self) -> EventStream {
        self.shim.events(EventsRequest::default()).await.unwrap_or_else(|e| panic!("events: {e}"))
    }

    async fn create(&self, bundle: &str, terminal: bool, stdin: &str, stdout: &str, stderr: &str) -> u32 {
        let req = CreateRequest {
            id: self.id.clone(),
            bundle: bundle.into(),
            terminal,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..Default::default()
        };
        ok(self.shim.create(req).await).pid
    }
}

fn ok<T>(r: shim_core::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error ({}): {e}", e.code()))
}

fn code<T: std::fmt::Debug>(r: shim_core::Result<T>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn kinds(events: &[Event]) -> Vec<(EventType, u32, u32)> {
    events.iter().map(|e| (e.event_type().unwrap_or(EventType::Exit), e.pid, e.exit_status)).collect()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.unwrap_or_else(|_| panic!("timed out after {T:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_fifo_stdio() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("life");
    let bundle = fx.bundle(BundleBuilder::new().args(["sh", "-c", "echo out; echo err >&2; exit 3"]));
    let (stdin, stdout, stderr) = (fx.fifo("in"), fx.fifo("out"), fx.fifo("err"));
    let mut events = fx.events().await;
    let out = read_fifo(&stdout);
    let err = read_fifo(&stderr);
    let pid = within(fx.create(&bundle, false, s(&stdin), s(&stdout), s(&stderr))).await;

    let st = ok(fx.shim.state(StateRequest {}).await);
    assert_eq!(st.id, fx.id);
    assert_eq!(st.processes, vec![Process::new(pid, State::Running)]);

    ok(within(fx.shim.start(StartRequest {})).await);
    let seen =
        collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&seen),
        vec![(EventType::Created, pid, 0), (EventType::Started, pid, 0), (EventType::Exit, pid, 3)]
    );
    assert!(seen.iter().all(|e| e.id == fx.id));
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid })).await).exit_status, 3);
    let st = ok(fx.shim.state(StateRequest {}).await);
    assert_eq!(st.processes, vec![Process::new(pid, State::Stopped)]);

    assert_eq!(code(fx.shim.start(StartRequest {}).await), Code::FailedPrecondition);
    assert_eq!(
        code(fx.shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await),
        Code::FailedPrecondition
    );

    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid })).await).exit_status, 3);
    assert_eq!(within(out).await.ok().and_then(|r| r.ok()), Some(b"out\n".to_vec()));
    assert_eq!(within(err).await.ok().and_then(|r| r.ok()), Some(b"err\n".to_vec()));
    assert!(!is_zombie_child(pid));
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
    assert_eq!(ok(fx.shim.state(StateRequest {}).await), StateResponse::default());
    assert_eq!(code(fx.shim.delete(DeleteRequest { pid }).await), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_resize_shows_in_stty() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("tty");
    // Wait for a line on stdin, then print the terminal size.
    let bundle = fx.bundle(BundleBuilder::new().terminal(true).args(["sh", "-c", "read line; stty size"]));
    let (stdin, stdout) = (fx.fifo("in"), fx.fifo("out"));
    let out = read_fifo(&stdout);
    let pid = within(fx.create(&bundle, true, s(&stdin), s(&stdout), "")).await;
    ok(within(fx.shim.start(StartRequest {})).await);
    ok(fx.shim.pty(PtyRequest { pid, width: 100, height: 30 }).await);
    let mut w = open_fifo_writer(&stdin).unwrap_or_else(|e| panic!("open stdin: {e}"));
    w.write_all(b"go\n").unwrap_or_else(|e| panic!("write stdin: {e}"));
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid })).await).exit_status, 0);
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
    let text = String::from_utf8_lossy(&within(out).await.ok().and_then(|r| r.ok()).unwrap_or_default()).into_owned();
    // stty prints "rows columns"; the echo of "go" comes first.
    assert!(text.contains("30 100"), "terminal output was {text:?}");
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
}

/// Starts a container whose init sleeps, returning its pid.
async fn running(fx: &Fixture) -> u32 {
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]));
    let pid = within(fx.create(&bundle, false, "", "", "")).await;
    ok(within(fx.shim.start(StartRequest {})).await);
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_execs_each_exit_once() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("execs");
    let init = running(&fx).await;
    let mut events = fx.events().await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let shim = Arc::clone(&fx.shim);
        tasks.push(tokio::spawn(async move {
            shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await
        }));
    }
    let mut pids = Vec::new();
    for t in tasks {
        let r = within(t).await.unwrap_or_else(|e| panic!("join: {e}"));
        pids.push(ok(r).pid);
    }
    let mut exits = std::collections::HashMap::new();
    let mut added = std::collections::HashSet::new();
    let _ = collect_events(&mut events, T, |e| {
        if e.r#type == EventType::ExecAdded as i32 {
            added.insert(e.pid);
        }
        if e.r#type == EventType::Exit as i32 {
            assert!(added.contains(&e.pid), "EXIT of {} before its EXEC_ADDED", e.pid);
            *exits.entry(e.pid).or_insert(0) += 1;
        }
        exits.len() == 50
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for pid in &pids {
        assert_eq!(exits.get(pid), Some(&1), "exit of exec {pid}");
        assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: *pid })).await).exit_status, 0);
    }
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_exiting_at_once_and_big_output() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("bigout");
    let init = running(&fx).await;
    let mut events = fx.events().await;
    let quick = ok(within(
        fx.shim.exec(ExecRequest { args: vec!["sh".into(), "-c".into(), "exit 7".into()], ..Default::default() }),
    )
    .await)
    .pid;
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: quick })).await).exit_status, 7);

    // 8 MiB written right before exit: every byte arrives before the EXIT.
    let out = fx.fifo("out");
    let reader = read_fifo(&out);
    let big = ok(within(fx.shim.exec(ExecRequest {
        args: vec!["dd".into(), "if=/dev/zero".into(), "bs=1048576".into(), "count=8".into()],
        stdout: s(&out).into(),
        ..Default::default()
    }))
    .await)
    .pid;
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32 && e.pid == big)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(seen.iter().any(|e| e.pid == quick && e.exit_status == 7));
    let data = within(reader).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    assert_eq!(data.len(), 8 << 20);
    assert!(data.iter().all(|b| *b == 0));
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: big })).await).exit_status, 0);
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: quick })).await).exit_status, 7);
    ok(within(fx.shim.delete(DeleteRequest { pid: init })).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_get_every_event_in_order() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("subs");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]));
    let mut a = fx.events().await;
    let mut b = fx.events().await;
    let init = within(fx.create(&bundle, false, "", "", "")).await;
    ok(within(fx.shim.start(StartRequest {})).await);
    let exec =
        ok(within(fx.shim.exec(ExecRequest { args: vec!["sleep".into(), "1000".into()], ..Default::default() })).await)
            .pid;
    // Killing the init ends the pid namespace: the exec dies with it.
    ok(fx.shim.kill(KillRequest { pid: init, signal: 9, all: false }).await);
    let is_init_exit = |e: &Event| e.r#type == EventType::Exit as i32 && e.pid == init;
    let ea = collect_events(&mut a, T, is_init_exit).await.unwrap_or_else(|e| panic!("{e}"));
    let eb = collect_events(&mut b, T, is_init_exit).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ea, eb);
    assert_eq!(
        kinds(&ea),
        vec![
            (EventType::Created, init, 0),
            (EventType::Started, init, 0),
            (EventType::ExecAdded, exec, 0),
            (EventType::Exit, exec, 137),
            (EventType::Exit, init, 137),
        ]
    );
    ok(within(fx.shim.delete(DeleteRequest { pid: exec })).await);
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_is_reported_before_the_exit() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("oom");
    // tail keeps the whole "line" in memory, and /dev/zero has no newline.
    let bundle = fx.bundle(BundleBuilder::new().memory_limit(16 << 20).args(["tail", "/dev/zero"]));
    let mut events = fx.events().await;
    let pid = within(fx.create(&bundle, false, "", "", "")).await;
    ok(within(fx.shim.start(StartRequest {})).await);
    let seen =
        collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&seen),
        vec![
            (EventType::Created, pid, 0),
            (EventType::Started, pid, 0),
            (EventType::Oom, 0, 0),
            (EventType::Exit, pid, 137)
        ]
    );
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_wait_and_close_stdin() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("kill");
    let init = running(&fx).await;
    // Kill an exec with SIGTERM; Wait before and after it exited.
    let exec =
        ok(within(fx.shim.exec(ExecRequest { args: vec!["sleep".into(), "1000".into()], ..Default::default() })).await)
            .pid;
    let waiter = {
        let shim = Arc::clone(&fx.shim);
        tokio::spawn(async move { shim.wait(WaitRequest { pid: exec }).await })
    };
    ok(fx.shim.kill(KillRequest { pid: exec, signal: 15, all: false }).await);
    let status = within(waiter).await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    assert_eq!(status.map(|w| w.exit_status), Ok(128 + 15));
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: exec })).await).exit_status, 143);
    assert_eq!(code(fx.shim.kill(KillRequest { pid: exec, signal: 15, all: false }).await), Code::FailedPrecondition);
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: exec })).await).exit_status, 143);

    // CloseStdin: cat echoes what was written, then exits on EOF.
    let (stdin, stdout) = (fx.fifo("in"), fx.fifo("out"));
    let out = read_fifo(&stdout);
    let cat = ok(within(fx.shim.exec(ExecRequest {
        args: vec!["cat".into()],
        stdin: s(&stdin).into(),
        stdout: s(&stdout).into(),
        ..Default::default()
    }))
    .await)
    .pid;
    let mut w = open_fifo_writer(&stdin).unwrap_or_else(|e| panic!("open stdin: {e}"));
    w.write_all(b"hello\n").unwrap_or_else(|e| panic!("write: {e}"));
    drop(w);
    ok(fx.shim.close_stdin(CloseStdinRequest { pid: cat }).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: cat })).await).exit_status, 0);
    assert_eq!(within(out).await.ok().and_then(|r| r.ok()), Some(b"hello\n".to_vec()));
    ok(within(fx.shim.delete(DeleteRequest { pid: cat })).await);

    // all=true reaches every process of the container.
    let other =
        ok(within(fx.shim.exec(ExecRequest { args: vec!["sleep".into(), "1000".into()], ..Default::default() })).await)
            .pid;
    assert_eq!(code(fx.shim.kill(KillRequest { pid: other, signal: 15, all: true }).await), Code::InvalidArgument);
    ok(within(fx.shim.kill(KillRequest { pid: init, signal: 15, all: true })).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: other })).await).exit_status, 143);
    // The init is pid 1 of its namespace: the kernel does not deliver a
    // signal it has no handler for, so SIGTERM left it running.
    let st = ok(fx.shim.state(StateRequest {}).await);
    assert_eq!(st.processes.first(), Some(&Process::new(init, State::Running)));
    ok(within(fx.shim.kill(KillRequest { pid: init, signal: 9, all: true })).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: init })).await).exit_status, 137);
    ok(within(fx.shim.delete(DeleteRequest { pid: other })).await);
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
    assert!(!is_zombie_child(init) && !is_zombie_child(other));
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_code() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("bad");
    let bundle = fx.bundle(BundleBuilder::new().terminal(false).args(["sleep", "1000"]));
    let create = |id: &str, bundle: &str| CreateRequest { id: id.into(), bundle: bundle.into(), ..Default::default() };
    let shim = &fx.shim;

    // Before Create.
    assert_eq!(code(shim.start(StartRequest {}).await), Code::FailedPrecondition);
    assert_eq!(
        code(shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await),
        Code::FailedPrecondition
    );
    assert_eq!(code(shim.delete(DeleteRequest { pid: 12345 }).await), Code::NotFound);
    assert_eq!(code(shim.wait(WaitRequest { pid: 12345 }).await), Code::NotFound);

    // Create validation.
    for id in ["", "../x", "a/b", "-x", &"a".repeat(129)] {
        assert_eq!(code(shim.create(create(id, &bundle)).await), Code::InvalidArgument, "id {id:?}");
    }
    assert_eq!(code(shim.create(create("ok", "relative/bundle")).await), Code::InvalidArgument);
    assert_eq!(code(shim.create(create("ok", "/nonexistent-bundle")).await), Code::InvalidArgument);
    assert_eq!(code(shim.create(create("ok", s(fx.dir.path()))).await), Code::InvalidArgument, "no config.json");
    let rel = CreateRequest { stdout: "out.log".into(), ..create("ok", &bundle) };
    assert_eq!(code(shim.create(rel).await), Code::InvalidArgument);
    let dir_as_stdio = CreateRequest { stdout: s(fx.dir.path()).into(), ..create("ok", &bundle) };
    assert_eq!(code(shim.create(dir_as_stdio).await), Code::InvalidArgument);
    // A runtime that fails: its message is in the error, nothing is left.
    let failing = CreateRequest { runtime: "/nonexistent/runc".into(), ..create(&fx.id, &bundle) };
    let err = shim.create(failing).await.err().map(|e| (e.code(), e.to_string()));
    assert!(matches!(&err, Some((Code::Internal, m)) if m.contains("/nonexistent/runc")), "{err:?}");
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());

    // Bad args of the init: runc's own message comes back.
    let bad_bundle = fx.bundle(BundleBuilder::new().args(["/no/such/binary"]));
    let err = shim.create(create(&fx.id, &bad_bundle)).await.err();
    assert_eq!(err.as_ref().map(|e| e.code()), Some(Code::Internal), "{err:?}");
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("no/such/binary"));
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());

    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]));
    let init = ok(within(shim.create(create(&fx.id, &bundle))).await).pid;
    assert_eq!(code(shim.create(create(&fx.id, &bundle)).await), Code::AlreadyExists);
    assert_eq!(code(shim.create(create("other", &bundle)).await), Code::AlreadyExists);
    ok(within(shim.start(StartRequest {})).await);
    assert_eq!(code(shim.start(StartRequest {}).await), Code::FailedPrecondition);

    // Exec validation.
    let base = || ExecRequest { args: vec!["true".into()], ..Default::default() };
    assert_eq!(code(shim.exec(ExecRequest { args: vec![], ..base() }).await), Code::InvalidArgument);
    assert_eq!(code(shim.exec(ExecRequest { cwd: "tmp".into(), ..base() }).await), Code::InvalidArgument);
    assert_eq!(
        code(shim.exec(ExecRequest { capabilities: vec!["CAP_NOPE".into()], ..base() }).await),
        Code::InvalidArgument
    );
    let bad_rlimit = Rlimit { r#type: "RLIMIT_NOPE".into(), hard: 1, soft: 1 };
    assert_eq!(code(shim.exec(ExecRequest { rlimits: vec![bad_rlimit], ..base() }).await), Code::InvalidArgument);
    assert_eq!(code(shim.exec(ExecRequest { stdin: "rel".into(), ..base() }).await), Code::InvalidArgument);

    // Pty.
    assert_eq!(code(shim.pty(PtyRequest { pid: 0, width: 1, height: 1 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.pty(PtyRequest { pid: 999_999, width: 1, height: 1 }).await), Code::NotFound);
    assert_eq!(code(shim.pty(PtyRequest { pid: init, width: 80, height: 24 }).await), Code::FailedPrecondition);

    // Kill, Wait, CloseStdin, Delete of unknown pids and bad signals.
    assert_eq!(code(shim.kill(KillRequest { pid: init, signal: 0, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.kill(KillRequest { pid: init, signal: 1000, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.kill(KillRequest { pid: 999_999, signal: 9, all: false }).await), Code::NotFound);
    assert_eq!(code(shim.kill(KillRequest { pid: 0, signal: 9, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.close_stdin(CloseStdinRequest { pid: 999_999 }).await), Code::NotFound);
    assert_eq!(code(shim.wait(WaitRequest { pid: 0 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.delete(DeleteRequest { pid: 0 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.delete(DeleteRequest { pid: 999_999 }).await), Code::NotFound);

    // The shim still serves after all that.
    assert_eq!(ok(shim.state(StateRequest {}).await).processes, vec![Process::new(init, State::Running)]);
    assert_eq!(ok(within(shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_before_start_and_stdio_to_files() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("files");
    let bundle = fx.bundle(BundleBuilder::new().args(["sh", "-c", "echo to-file; echo to-err >&2"]));
    let out = fx.dir.path().join("out.log");
    std::fs::write(&out, "previous\n").unwrap_or_else(|e| panic!("{e}"));
    let err = fx.dir.path().join("err.log");
    let pid = within(fx.create(&bundle, false, "", s(&out), s(&err))).await;
    ok(within(fx.shim.start(StartRequest {})).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid })).await).exit_status, 0);
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
    assert_eq!(std::fs::read_to_string(&out).ok().as_deref(), Some("previous\nto-file\n"));
    assert_eq!(std::fs::read_to_string(&err).ok().as_deref(), Some("to-err\n"));

    // A container deleted before it was started: its init is killed and reaped.
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]));
    let pid = within(fx.create(&bundle, false, "", "", "")).await;
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid })).await).exit_status, 137);
    assert!(!is_zombie_child(pid));
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
}
