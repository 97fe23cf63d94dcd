//! The runc-backed shim against real runc: what only a real runtime shows
//! (OOM, runc's messages, many concurrent execs, files as stdio, zombies and
//! the work directory). The behaviour every shim shares is in the
//! conformance suite (`tests/conformance.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shim_core::proto::v1::*;
use shim_core::testing::{
    collect_events, is_zombie_child, mkfifo, read_fifo, require_runc, shared_reaper, BundleBuilder,
};
use shim_core::{Code, EventStream, RuncShim, Shim, StreamExt};

/// The bound of one step: 30 s, times `SHIM_TEST_TIME_SCALE` where the CPU
/// is emulated (the guest legs set it: many concurrent runc calls there take
/// longer than 30 s while nothing is stuck).
fn t() -> Duration {
    let scale = std::env::var("SHIM_TEST_TIME_SCALE").ok().and_then(|s| s.parse::<u32>().ok()).unwrap_or(1);
    Duration::from_secs(30) * scale.max(1)
}

struct Fixture {
    dir: tempfile::TempDir,
    shim: Arc<RuncShim>,
    id: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        shim_core::testing::remove_container_if_failing(&self.id);
    }
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
        let config = shim_core::testing::runc_config(dir.path().join("work")).io_grace(Duration::from_millis(500));
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
        std::fs::read_dir(self.shim.runtime().work_dir())
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
    let t = t();
    tokio::time::timeout(t, f).await.unwrap_or_else(|_| panic!("timed out after {t:?}"))
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
    let seen = collect_events(&mut events, t(), |e| e.r#type == EventType::Exit as i32)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
    let _ = collect_events(&mut events, t(), |e| {
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
    // A duplicate EXIT could still be on its way: end the stream with the
    // init's EXIT, which comes after every exec's, and look at what came.
    ok(within(fx.shim.kill(KillRequest { pid: init, signal: 9, all: false })).await);
    let rest = collect_events(&mut events, t(), |e| e.r#type == EventType::Exit as i32 && e.pid == init)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late: Vec<_> = rest.iter().filter(|e| e.pid != init).collect();
    assert!(late.is_empty(), "events of execs after all 50 exits were seen: {late:?}");
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
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
    start_until_killed_by_oom(&fx, &mut events, pid).await;
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runc_errors_reach_the_client_and_leave_nothing() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("runcerr");
    // The init's binary does not exist in the rootfs: runc's own message
    // (from its JSON log) comes back in the error.
    let bundle = fx.bundle(BundleBuilder::new().args(["/no/such/binary"]));
    let req = CreateRequest { id: fx.id.clone(), bundle, ..Default::default() };
    let err = fx.shim.create(req).await.err();
    assert_eq!(err.as_ref().map(|e| e.code()), Some(Code::Internal), "{err:?}");
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("no/such/binary"));
    assert_eq!(fx.work_dir_entries(), Vec::<String>::new());
    assert_eq!(ok(fx.shim.state(StateRequest {}).await), StateResponse::default());
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

/// Runs an exec to completion with its stdout on a FIFO, returning the output.
async fn exec_output(fx: &Fixture, req: ExecRequest, name: &str) -> String {
    let out = fx.fifo(name);
    let reader = read_fifo(&out);
    let req = ExecRequest { stdout: s(&out).into(), ..req };
    let pid = ok(within(fx.shim.exec(req)).await).pid;
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid })).await).exit_status, 0);
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
    let bytes = within(reader).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status.lines().find_map(|l| l.strip_prefix(field)).map(str::trim).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_keeps_the_containers_no_new_privileges_and_capabilities() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("nnp");
    // The builder's bundle sets noNewPrivileges and eight capabilities.
    let init = running(&fx).await;
    // What a client generated from the seed proto sends: no privilege fields.
    let seed_style = ExecRequest { args: vec!["cat".into(), "/proc/self/status".into()], ..Default::default() };
    let status = exec_output(&fx, seed_style.clone(), "nnp-out").await;
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{status}");
    let init_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap_or_default();
    assert_eq!(status_field(&status, "CapBnd:"), status_field(&init_status, "CapBnd:"));
    assert_eq!(status_field(&status, "CapEff:"), status_field(&init_status, "CapEff:"));
    // Asking for CAP_SYS_ADMIN, which the bundle does not grant, is cut off.
    let asking = ExecRequest { capabilities: vec!["CAP_SYS_ADMIN".into(), "CAP_KILL".into()], ..seed_style };
    let status = exec_output(&fx, asking, "caps-out").await;
    // CAP_KILL is bit 5; CAP_SYS_ADMIN (bit 21) must not be there.
    assert_eq!(status_field(&status, "CapBnd:"), "0000000000000020", "{status}");
    assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_signals_reach_the_process() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("rtsig");
    let init = running(&fx).await;
    let pid =
        ok(within(fx.shim.exec(ExecRequest { args: vec!["sleep".into(), "1000".into()], ..Default::default() })).await)
            .pid;
    // SIGRTMIN+3 as glibc numbers it: how systemd in a container is stopped.
    ok(within(fx.shim.kill(KillRequest { pid, signal: 37, all: false })).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid })).await).exit_status, 128 + 37);
    assert_eq!(code(fx.shim.kill(KillRequest { pid: init, signal: 65, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(fx.shim.kill(KillRequest { pid: init, signal: 0, all: false }).await), Code::InvalidArgument);
    // SIGRTMAX to every process of the container, through `runc kill --all`.
    ok(within(fx.shim.kill(KillRequest { pid: init, signal: 64, all: true })).await);
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
    ok(within(fx.shim.delete(DeleteRequest { pid: init })).await);
}

/// Runs one container with `execs` concurrent execs through `shim`, each
/// printing its number; returns what each printed, in order.
async fn busy_container(shim: Arc<RuncShim>, dir: PathBuf, id: String, execs: usize) -> Vec<String> {
    let bundle = dir.join(format!("bundle-{id}"));
    BundleBuilder::new().args(["sleep", "1000"]).build(&bundle).unwrap_or_else(|e| panic!("bundle: {e}"));
    let req = CreateRequest { id, bundle: s(&bundle).into(), ..Default::default() };
    let init = ok(within(shim.create(req)).await).pid;
    ok(within(shim.start(StartRequest {})).await);
    let mut tasks = Vec::new();
    for n in 0..execs {
        let (shim, out) = (Arc::clone(&shim), dir.join(format!("{init}-{n}.out")));
        tasks.push(tokio::spawn(async move {
            let req = ExecRequest {
                args: vec!["echo".into(), n.to_string()],
                stdout: s(&out).into(),
                terminal: n % 2 == 0,
                ..Default::default()
            };
            let pid = ok(within(shim.exec(req)).await).pid;
            assert_eq!(ok(within(shim.wait(WaitRequest { pid })).await).exit_status, 0);
            assert_eq!(ok(within(shim.delete(DeleteRequest { pid })).await).exit_status, 0);
            std::fs::read_to_string(&out).unwrap_or_default().trim().to_string()
        }));
    }
    let mut printed = Vec::new();
    for t in tasks {
        printed.push(within(t).await.unwrap_or_else(|e| panic!("exec task: {e}")));
    }
    ok(within(shim.delete(DeleteRequest { pid: init })).await);
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_without_a_private_subdir_keeps_to_its_own_files() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // A directory that is not only the shim's, as containerd's bundle is not.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(work.join("config.json"), "{}").unwrap_or_else(|e| panic!("write: {e}"));
    let config = shim_core::testing::runc_config(&work).private_subdir(false);
    let shim = Arc::new(ok(RuncShim::new(config, shared_reaper())));
    assert_eq!(shim.runtime().work_dir(), work.as_path());
    let printed = busy_container(Arc::clone(&shim), dir.path().to_path_buf(), unique_id("nosubdir"), 6).await;
    assert_eq!(printed, (0..6).map(|n| n.to_string()).collect::<Vec<_>>());
    let names = || -> Vec<String> {
        let entries = std::fs::read_dir(&work).unwrap_or_else(|e| panic!("read_dir: {e}"));
        let mut v: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let own: Vec<String> = names().into_iter().filter(|n| n != "config.json").collect();
    assert!(own.iter().all(|n| n.starts_with(".rshim-")), "call files without the shim's prefix: {own:?}");
    drop(shim);
    assert_eq!(names(), vec!["config.json".to_string()], "the shim's files must go with it, and only they");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shims_share_one_work_dir() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let work = dir.path().join("work");
    let make = || Arc::new(ok(RuncShim::new(shim_core::testing::runc_config(&work), shared_reaper())));
    let (a, b) = (make(), make());
    assert_ne!(a.runtime().work_dir(), b.runtime().work_dir());
    let (pa, pb) = (dir.path().to_path_buf(), dir.path().to_path_buf());
    let (ra, rb) = tokio::join!(
        busy_container(Arc::clone(&a), pa, unique_id("shareda"), 10),
        busy_container(Arc::clone(&b), pb, unique_id("sharedb"), 10)
    );
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!((ra, rb), (expected.clone(), expected));
    // Each shim removes its own directory when dropped.
    drop((a, b));
    assert_eq!(std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(99), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_works_under_a_deep_work_dir() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    // Far past the 108 bytes of a unix socket address.
    let work = dir.path().join("w".repeat(60)).join("x".repeat(60));
    let shim = Arc::new(ok(RuncShim::new(shim_core::testing::runc_config(&work), shared_reaper())));
    let printed = busy_container(Arc::clone(&shim), dir.path().to_path_buf(), unique_id("deep"), 2).await;
    assert_eq!(printed, vec!["0".to_string(), "1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_stderr_gets_dev_null() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("devnull");
    let init = running(&fx).await;
    let req = ExecRequest { args: vec!["ls".into(), "-l".into(), "/proc/self/fd/2".into()], ..Default::default() };
    let listed = exec_output(&fx, req, "stderr-out").await;
    assert!(listed.trim().ends_with("-> /dev/null"), "{listed}");
    ok(within(fx.shim.delete(DeleteRequest { pid: init })).await);
}

/// A container without a pid namespace of its own (hostPID; a pod's shared
/// one): its init's exit kills the rest of it, as containerd's runc shim
/// does, so an exec does not live on; the exec's EXIT comes before the
/// init's, as in a container of its own namespace. `Kill` with `all` after
/// the init exited is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pid_namespace_the_init_exit_kills_the_rest() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = shim_core::testing::runc_config(dir.path().join("work"));
    let shim = Arc::new(ok(RuncShim::new(config, shared_reaper())));
    let mut events = ok(shim.events(EventsRequest::default()).await);
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().pid_namespace(false).args(["sleep", "1000"]).build(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let req = CreateRequest { id: unique_id("hostpid"), bundle: s(&bundle).into(), ..Default::default() };
    let init = ok(within(shim.create(req)).await).pid;
    ok(within(shim.start(StartRequest {})).await);
    let exec =
        ok(within(shim.exec(ExecRequest { args: vec!["sleep".into(), "1000".into()], ..Default::default() })).await)
            .pid;
    ok(within(shim.kill(KillRequest { pid: init, signal: 9, all: false })).await);
    assert_eq!(ok(within(shim.wait(WaitRequest { pid: init })).await).exit_status, 137);
    // Killed with the init, and reported first.
    assert_eq!(ok(within(shim.wait(WaitRequest { pid: exec })).await).exit_status, 137);
    let mut exits = Vec::new();
    while exits.len() < 2 {
        let event = ok(within(events.next()).await.unwrap_or_else(|| panic!("events ended")));
        if event.event_type() == Ok(EventType::Exit) {
            exits.push(event.pid);
        }
    }
    assert_eq!(exits, [exec, init]);
    ok(within(shim.kill(KillRequest { pid: init, signal: 9, all: true })).await);
    assert_eq!(code(shim.kill(KillRequest { pid: init, signal: 9, all: false }).await), Code::FailedPrecondition);
    assert_eq!(ok(within(shim.delete(DeleteRequest { pid: exec })).await).exit_status, 137);
    assert_eq!(ok(within(shim.delete(DeleteRequest { pid: init })).await).exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_is_refused_with_criu_checks_reason_where_criu_cannot_work() {
    if !require_runc() {
        return;
    }
    let fx = Fixture::new("criu");
    let init = running(&fx).await;
    let mut check = std::process::Command::new("criu");
    check.arg("check");
    let criu_works = shared_reaper().output(&mut check).await.is_ok_and(|o| o.status.success());
    let image = fx.dir.path().join("image");
    let req = CheckpointRequest { image_path: s(&image).into(), exit: false };
    let result = within(fx.shim.checkpoint(req)).await;
    if criu_works {
        // Where CRIU works: the image is written and the container runs on.
        ok(result);
        assert!(image.join("inventory.img").exists());
        let st = ok(fx.shim.state(StateRequest {}).await);
        assert_eq!(st.processes, vec![Process::new(init, State::Running)]);
    } else {
        // Here (`criu check` fails on this kernel): refused, with its reason.
        let err = result.err().unwrap_or_else(|| panic!("a checkpoint succeeded where criu check fails"));
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.to_string().contains("criu"), "{err}");
        // Nothing changed: the container still runs.
        let st = ok(fx.shim.state(StateRequest {}).await);
        assert_eq!(st.processes, vec![Process::new(init, State::Running)]);
    }
    assert_eq!(code(fx.shim.checkpoint(CheckpointRequest::default()).await), Code::InvalidArgument);
    ok(within(fx.shim.delete(DeleteRequest { pid: init })).await);
    // Create from a checkpoint: `runc restore --detach`; refused the same
    // way here.
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]));
    let req = CreateRequest { id: unique_id("restore"), bundle, checkpoint: s(&image).into(), ..Default::default() };
    let result = within(fx.shim.create(req)).await;
    if criu_works {
        // Restored processes run at once; Start records it and publishes.
        let pid = ok(result).pid;
        ok(within(fx.shim.start(StartRequest {})).await);
        let st = ok(fx.shim.state(StateRequest {}).await);
        assert_eq!(st.processes, vec![Process::new(pid, State::Running)]);
        ok(within(fx.shim.kill(KillRequest { pid, signal: 9, all: false })).await);
        assert_eq!(ok(within(fx.shim.delete(DeleteRequest { pid })).await).exit_status, 137);
    } else {
        let err = result.err().unwrap_or_else(|| panic!("a restore succeeded where criu check fails"));
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.to_string().contains("criu"), "{err}");
    }
    assert_eq!(ok(fx.shim.state(StateRequest {}).await), StateResponse::default());
}

/// The cgroup v2 paths on a real v2 host (the guest legs of `make test`; on
/// a v1 host it says so and returns): Stats reads the container's own
/// unified directory (`memory.stat` with `inactive_file`, `memory.events`,
/// `pids.current` counting its processes and `pids.max`, the raw
/// `memory.max`, `cpu.stat` counting the throttling of a busy loop under a
/// `cpu.max` quota), Pause
/// freezes it through `cgroup.freeze`, ListPids lists `cgroup.procs`.
/// With `SHIM_SYSTEMD_CGROUP=1` (the systemd leg) the container is in the
/// scope systemd made for it. `SHIM_REQUIRE_CGROUP2=1` (set by the legs)
/// turns a v1 host into a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cgroup_v2_stats_pause_and_pids_use_the_unified_files() {
    if !require_runc() {
        return;
    }
    if !cgroup2_or_skip() {
        return;
    }
    let fx = Fixture::new("v2");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "1000"]).memory_limit(64 << 20));
    // A CPU quota of a tenth of a CPU (cpu.max "10000 100000") and a pids
    // limit (pids.max 64).
    edit_config(&bundle, |c| {
        c["linux"]["resources"]["cpu"] = serde_json::json!({ "quota": 10000, "period": 100000 });
        c["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 64 });
    });
    let init = fx.create(&bundle, false, "", "", "").await;
    ok(within(fx.shim.start(StartRequest {})).await);
    let dir = cgroup_v2_dir(init);
    if std::env::var("SHIM_SYSTEMD_CGROUP").as_deref() == Ok("1") {
        // runc's systemd driver, without a cgroupsPath: a scope of its own
        // under system.slice, made by systemd.
        assert_eq!(dir, Path::new("/sys/fs/cgroup/system.slice").join(format!("runc-{}.scope", fx.id)));
    }
    let stats = ok(within(fx.shim.stats(StatsRequest {})).await);
    assert_eq!(stats.cgroup_version, 2, "{stats:?}");
    let mem = stats.memory.clone().unwrap_or_default();
    assert_eq!(mem.limit_raw, 64 << 20, "{mem:?}");
    assert!(mem.stat.contains_key("inactive_file"), "{mem:?}");
    assert!(mem.events.contains_key("oom_kill"), "{mem:?}");
    assert!(stats.pids.as_ref().is_some_and(|p| p.current >= 1 && p.limit == 64), "{stats:?}");
    // A busy loop under the quota: cpu.stat counts throttled periods.
    let busy = ok(within(fx.shim.exec(ExecRequest {
        args: vec!["sh".into(), "-c".into(), "while :; do :; done".into()],
        ..Default::default()
    }))
    .await)
    .pid;
    let throttled = within(async {
        loop {
            let cpu = ok(fx.shim.stats(StatsRequest {}).await).cpu.unwrap_or_default();
            if cpu.throttled_periods > 0 {
                return cpu;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(throttled.periods >= throttled.throttled_periods && throttled.throttled_time_ns > 0, "{throttled:?}");
    assert!(throttled.usage_total_ns > 0 && throttled.usage_user_ns > 0, "{throttled:?}");
    ok(within(fx.shim.kill(KillRequest { pid: busy, signal: 9, all: false })).await);
    assert_eq!(ok(within(fx.shim.wait(WaitRequest { pid: busy })).await).exit_status, 137);
    ok(within(fx.shim.delete(DeleteRequest { pid: busy })).await);
    ok(within(fx.shim.pause(PauseRequest {})).await);
    let frozen = std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap_or_default();
    assert_eq!(frozen.trim(), "1", "{}", dir.display());
    ok(within(fx.shim.resume(ResumeRequest {})).await);
    assert_eq!(std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap_or_default().trim(), "0");
    let listed = ok(within(fx.shim.list_pids(ListPidsRequest {})).await);
    assert_eq!(listed.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [init]);
    ok(within(fx.shim.delete(DeleteRequest { pid: init })).await);
}

/// Starts the container created with init `pid` and checks that an OOM
/// kills it: CREATED, STARTED, OOM, then its EXIT with 137, on `events`.
async fn start_until_killed_by_oom(fx: &Fixture, events: &mut EventStream, pid: u32) {
    ok(within(fx.shim.start(StartRequest {})).await);
    let seen =
        collect_events(events, t(), |e| e.r#type == EventType::Exit as i32).await.unwrap_or_else(|e| panic!("{e}"));
    let oom_then_exit = vec![
        (EventType::Created, pid, 0),
        (EventType::Started, pid, 0),
        (EventType::Oom, 0, 0),
        (EventType::Exit, pid, 137),
    ];
    assert_eq!(kinds(&seen), oom_then_exit);
}

/// The cgroup v2 directory of process `pid`.
fn cgroup_v2_dir(pid: u32) -> PathBuf {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_else(|| panic!("{cgroup}"));
    Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'))
}

/// Changes the `config.json` of `bundle` with `edit`.
fn edit_config(bundle: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = Path::new(bundle).join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap_or_else(|e| panic!("{e}"));
}

/// Whether this host's cgroups are v2; on v1 it says so and the caller
/// returns, unless `SHIM_REQUIRE_CGROUP2=1` (the guest legs) makes that a
/// failure.
fn cgroup2_or_skip() -> bool {
    let v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 ")));
    if !v2 {
        assert_ne!(std::env::var("SHIM_REQUIRE_CGROUP2").as_deref(), Ok("1"), "this host is not cgroup v2");
        eprintln!("skipping: this host is cgroup v1 (the guest legs of make test run it)");
    }
    v2
}

/// `memory.oom.group` (what kubelet sets through the spec's `unified` map
/// on v2): one OOM kills every process of the container, the init too,
/// though the memory hog was another process. The shim reports one OOM,
/// then the init's exit, as for a kill of the init itself. Without the
/// group only the hog would die and the init would wait on (the test would
/// time out), so this checks that runc applied the key and that the
/// several kills of one OOM come as one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cgroup_v2_an_oom_group_kill_is_one_oom_and_the_exit() {
    if !require_runc() || !cgroup2_or_skip() {
        return;
    }
    let fx = Fixture::new("oomgroup");
    let script = "sleep 1000 & tail /dev/zero & wait $!; sleep 1000";
    let bundle = fx.bundle(BundleBuilder::new().memory_limit(16 << 20).args(["sh", "-c", script]));
    edit_config(&bundle, |c| c["linux"]["resources"]["unified"] = serde_json::json!({ "memory.oom.group": "1" }));
    let mut events = fx.events().await;
    let pid = within(fx.create(&bundle, false, "", "", "")).await;
    let dir = cgroup_v2_dir(pid);
    assert_eq!(std::fs::read_to_string(dir.join("memory.oom.group")).unwrap_or_default().trim(), "1");
    start_until_killed_by_oom(&fx, &mut events, pid).await;
    let events_file = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
    eprintln!("memory.events after the group kill:\n{events_file}");
    ok(within(fx.shim.delete(DeleteRequest { pid })).await);
}
