//! Faults with real runc: callers that give up mid-call, failing runtimes,
//! processes killed from outside, output that never ends or has no reader.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shim_core::proto::v1::*;
use shim_core::testing::{collect_events, mkfifo, require_runc, shared_reaper, BundleBuilder};
use shim_core::{Code, RuncShim, Shim};

const T: Duration = Duration::from_secs(30);

struct Fx {
    dir: tempfile::TempDir,
    shim: Arc<RuncShim>,
    id: String,
}

impl Drop for Fx {
    fn drop(&mut self) {
        shim_core::testing::remove_container_if_failing(&self.id);
    }
}

impl Fx {
    fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = shim_core::testing::runc_config(dir.path().join("work")).io_grace(Duration::from_millis(500));
        let shim = Arc::new(RuncShim::new(config, shared_reaper()).unwrap());
        Self { dir, shim, id: format!("fault-{tag}-{}", std::process::id()) }
    }

    fn bundle(&self, b: BundleBuilder) -> String {
        let p = self.dir.path().join("bundle");
        b.build(&p).unwrap();
        p.display().to_string()
    }

    /// A runtime wrapper script around runc.
    fn wrapper(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn work_files(&self) -> Vec<String> {
        std::fs::read_dir(self.shim.runtime().work_dir())
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    fn create_req(&self, bundle: &str) -> CreateRequest {
        CreateRequest { id: self.id.clone(), bundle: bundle.into(), ..Default::default() }
    }

    async fn processes(&self) -> Vec<Process> {
        self.shim.state(StateRequest {}).await.unwrap().processes
    }
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < T, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_caller_gave_up_still_complete() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("cancel");
    // A slow runtime makes "mid-call" a wide window.
    let slow = fx.wrapper("slow-runc", "sleep 0.5\nexec runc \"$@\"");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let req = CreateRequest { runtime: slow, ..fx.create_req(&bundle) };
    let gave_up = tokio::time::timeout(Duration::from_millis(50), fx.shim.create(req)).await;
    assert!(gave_up.is_err(), "the create should still be running");
    until("the abandoned create to finish", || async { !fx.processes().await.is_empty() }).await;
    let init = fx.processes().await[0].pid;
    fx.shim.start(StartRequest {}).await.unwrap();
    let exec = ExecRequest { args: vec!["true".into()], ..Default::default() };
    let gave_up = tokio::time::timeout(Duration::from_millis(50), fx.shim.exec(exec)).await;
    assert!(gave_up.is_err(), "the exec should still be running");
    until("the abandoned exec to be registered", || async { fx.processes().await.len() == 2 }).await;
    let exec_pid = fx.processes().await[1].pid;
    assert_eq!(fx.shim.wait(WaitRequest { pid: exec_pid }).await.unwrap().exit_status, 0);
    assert_eq!(fx.shim.delete(DeleteRequest { pid: exec_pid }).await.unwrap().exit_status, 0);
    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
    assert_eq!(fx.work_files(), Vec::<String>::new());
}

/// Shell for a runtime wrapper: finds the `--log FILE` argument and defines
/// `log_error MSG`, which writes an error line in runc's JSON log format.
const LOG_ARG: &str = r#"log=/dev/null; prev=""
for a in "$@"; do [ "$prev" = "--log" ] && log="$a"; prev="$a"; done
log_error() { printf '{"level":"error","msg":"%s"}\n' "$1" >> "$log"; }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_runtime_reports_its_message_and_leaves_nothing() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("failing");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));

    // A runtime reports its errors in its --log file, as runc does: a
    // process without stderr gets /dev/null, so the runtime's stderr is not
    // ours to read.
    let failing = fx.wrapper("failing-runc", &format!("{LOG_ARG}\nlog_error \"wrapper refuses to run\"\nexit 1"));
    let err = fx.shim.create(CreateRequest { runtime: failing, ..fx.create_req(&bundle) }).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.to_string().contains("wrapper refuses to run"), "{err}");

    let not_executable = fx.wrapper("not-executable", "exec runc \"$@\"");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err =
        fx.shim.create(CreateRequest { runtime: not_executable.clone(), ..fx.create_req(&bundle) }).await.unwrap_err();
    assert!(err.to_string().contains(&not_executable) && err.to_string().contains("ermission denied"), "{err}");

    let missing = fx.dir.path().join("no-such-runtime").display().to_string();
    let err = fx.shim.create(CreateRequest { runtime: missing.clone(), ..fx.create_req(&bundle) }).await.unwrap_err();
    assert!(err.to_string().contains(&missing), "{err}");
    assert_eq!(fx.processes().await, vec![]);
    assert_eq!(fx.work_files(), Vec::<String>::new());

    // A runtime that fails only for exec.
    let no_exec = fx.wrapper(
        "no-exec-runc",
        &format!(
            "{LOG_ARG}\ncase \" $* \" in *\" exec \"*) log_error \"exec is disabled here\"; exit 1;; esac\nexec runc \"$@\""
        ),
    );
    let init = fx.shim.create(CreateRequest { runtime: no_exec, ..fx.create_req(&bundle) }).await.unwrap().pid;
    fx.shim.start(StartRequest {}).await.unwrap();
    let err = fx.shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.to_string().contains("exec is disabled here"), "{err}");
    assert_eq!(fx.processes().await.len(), 1);
    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
    assert_eq!(fx.work_files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_killed_from_outside_is_reported() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("outside");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let mut events = fx.shim.events(EventsRequest::default()).await.unwrap();
    let init = fx.shim.create(fx.create_req(&bundle)).await.unwrap().pid;
    fx.shim.start(StartRequest {}).await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32).await.unwrap();
    assert_eq!((seen.last().unwrap().pid, seen.last().unwrap().exit_status), (init, 137));
    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
}

fn read_some_then_close(path: PathBuf, n: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(path).unwrap();
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf).unwrap();
        buf
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_never_ends_or_has_no_reader_does_not_wedge_the_shim() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("io");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let init = fx.shim.create(fx.create_req(&bundle)).await.unwrap().pid;
    fx.shim.start(StartRequest {}).await.unwrap();
    let fifo = |name: &str| {
        let p = fx.dir.path().join(name);
        mkfifo(&p).unwrap();
        p
    };

    // A background child keeps stdout open after the process exits: the EXIT
    // still comes, after the grace period.
    let out = fifo("clingy");
    let reader = shim_core::testing::read_fifo(&out);
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), "sleep 100000 & echo done".into()],
        stdout: out.display().to_string(),
        ..Default::default()
    };
    let clingy = fx.shim.exec(req).await.unwrap().pid;
    let status = tokio::time::timeout(T, fx.shim.wait(WaitRequest { pid: clingy })).await.unwrap().unwrap();
    assert_eq!(status.exit_status, 0);
    assert_eq!(fx.shim.state(StateRequest {}).await.unwrap().processes.len(), 2, "the shim still answers");
    fx.shim.delete(DeleteRequest { pid: clingy }).await.unwrap();

    // A reader that never opens the FIFO: no RPC hangs, the exit is reported.
    let never = fifo("never-read");
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), "echo nobody reads this; exit 2".into()],
        stdout: never.display().to_string(),
        ..Default::default()
    };
    let pid = tokio::time::timeout(T, fx.shim.exec(req)).await.unwrap().unwrap().pid;
    assert_eq!(tokio::time::timeout(T, fx.shim.wait(WaitRequest { pid })).await.unwrap().unwrap().exit_status, 2);
    fx.shim.delete(DeleteRequest { pid }).await.unwrap();

    // A reader that goes away mid-stream: the process is not blocked forever
    // (the rest of its output is discarded) and exits by itself.
    let gone = fifo("reader-goes-away");
    let partial = read_some_then_close(gone.clone(), 10);
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done".into()],
        stdout: gone.display().to_string(),
        ..Default::default()
    };
    let pid = fx.shim.exec(req).await.unwrap().pid;
    assert_eq!(tokio::time::timeout(T, fx.shim.wait(WaitRequest { pid })).await.unwrap().unwrap().exit_status, 0);
    assert_eq!(partial.join().unwrap(), b"line 0\nlin");
    fx.shim.delete(DeleteRequest { pid }).await.unwrap();

    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    assert_eq!(fx.work_files(), Vec::<String>::new());
    let _ = std::io::stdout().flush();
    let _: &Path = fx.dir.path();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_with_an_id_runc_already_has_leaves_that_container_alone() {
    if !require_runc() {
        return;
    }
    let first = Fx::new("taken");
    let bundle = first.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let init = first.shim.create(first.create_req(&bundle)).await.unwrap().pid;
    first.shim.start(StartRequest {}).await.unwrap();
    // A second shim (same runc root) asked for the same id.
    let second = Fx::new("taken");
    let err = second.shim.create(second.create_req(&bundle)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert_eq!(first.processes().await, vec![Process::new(init, State::Running)]);
    // (No `Command::output` here: this process's reaper owns every child's exit.)
    assert!(std::path::Path::new(&format!("/proc/{init}")).exists(), "the first container must survive");
    assert!(!shim_core::testing::is_zombie_child(init));
    assert_eq!(first.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_runtime_call_is_killed_after_the_timeout() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = shim_core::testing::runc_config(dir.path().join("work"))
        .io_grace(Duration::from_millis(500))
        .command_timeout(Some(Duration::from_secs(1)));
    let shim = RuncShim::new(config, shared_reaper()).unwrap();
    let fx = Fx { dir, shim: Arc::new(shim), id: format!("fault-hung-{}", std::process::id()) };
    // `start` hangs, as with a hook that never returns, after saying why.
    let hangs = fx.wrapper(
        "hangs-on-start",
        "case \" $* \" in *\" start \"*) echo \"hook waits for the network\" >&2; exec sleep 100000;; esac\nexec runc \"$@\"",
    );
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let init = fx.shim.create(CreateRequest { runtime: hangs, ..fx.create_req(&bundle) }).await.unwrap().pid;
    let started = Instant::now();
    let err = tokio::time::timeout(T, fx.shim.start(StartRequest {})).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.to_string().contains("did not finish within 1s; killed: hook waits for the network"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The shim still serves, and the container can be removed.
    assert_eq!(fx.processes().await, vec![Process::new(init, State::Running)]);
    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
    assert_eq!(fx.work_files(), Vec::<String>::new());
}

/// A runtime that writes its error to stderr only (not in its `--log`
/// file): the message of a failed control call is that text, cut at 4 KiB,
/// and the file it was captured in is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_call_reports_what_the_runtime_wrote_on_stderr() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("stderr");
    let refuses = fx.wrapper(
        "refuses-to-start",
        "case \" $* \" in *\" start \"*) echo \"start refused by the wrapper\" >&2; head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1;; esac\nexec runc \"$@\"",
    );
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let create = fx.shim.create(CreateRequest { runtime: refuses, ..fx.create_req(&bundle) });
    let init = tokio::time::timeout(T, create).await.unwrap().unwrap().pid;
    let err = tokio::time::timeout(T, fx.shim.start(StartRequest {})).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    let text = err.to_string();
    assert!(text.contains("start refused by the wrapper\nxxx"), "{text}");
    assert!(text.len() < 4400, "{} bytes", text.len());
    assert!(fx.work_files().iter().all(|f| !f.ends_with(".err")), "{:?}", fx.work_files());
    assert_eq!(fx.processes().await, vec![Process::new(init, State::Running)]);
    let deleted = tokio::time::timeout(T, fx.shim.delete(DeleteRequest { pid: init })).await.unwrap();
    assert_eq!(deleted.unwrap().exit_status, 137);
    assert_eq!(fx.work_files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_taken_between_the_check_and_runc_create_is_left_to_its_owner() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("race");
    let ours = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let theirs = fx.dir.path().join("theirs");
    BundleBuilder::new().args(["sleep", "100000"]).build(&theirs).unwrap();
    // Another shim wins the race: its `runc create` of the same id runs
    // after our existence check and before ours.
    let racing = fx.wrapper(
        "racing-runc",
        &format!(
            "case \" $* \" in *\" create \"*) runc create --bundle {} {} >/dev/null 2>&1;; esac\nexec runc \"$@\"",
            theirs.display(),
            fx.id
        ),
    );
    let err = fx.shim.create(CreateRequest { runtime: racing, ..fx.create_req(&ours) }).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert!(err.to_string().contains("not in this shim"), "{err}");
    // Their container is still there: our cleanup did not force-delete it.
    let reaper = shared_reaper();
    let state = reaper.output(std::process::Command::new("runc").args(["state", &fx.id])).await.unwrap();
    assert!(
        state.status.success(),
        "the other shim's container was removed: {}",
        String::from_utf8_lossy(&state.stderr)
    );
    let removed = reaper.output(std::process::Command::new("runc").args(["delete", "--force", &fx.id])).await.unwrap();
    assert!(removed.status.success());
    assert_eq!(fx.work_files(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_in_flight_while_the_init_dies_never_follows_its_exit() {
    if !require_runc() {
        return;
    }
    let fx = Fx::new("inflight");
    let bundle = fx.bundle(BundleBuilder::new().args(["sleep", "100000"]));
    let (mark, go) = (fx.dir.path().join("exec-started"), fx.dir.path().join("exec-may-go"));
    // `runc exec` is held until the test lets it go: the init dies while the
    // exec is between the shim's check of the init and its registration.
    let holding = fx.wrapper(
        "holding-runc",
        &format!(
            "case \" $* \" in *\" exec \"*) touch {m}; while [ ! -e {g} ]; do sleep 0.01; done;; esac\nexec runc \"$@\"",
            m = mark.display(),
            g = go.display()
        ),
    );
    let mut events = fx.shim.events(EventsRequest::default()).await.unwrap();
    let init = fx.shim.create(CreateRequest { runtime: holding, ..fx.create_req(&bundle) }).await.unwrap().pid;
    fx.shim.start(StartRequest {}).await.unwrap();
    let shim = Arc::clone(&fx.shim);
    let exec = tokio::spawn(async move {
        shim.exec(ExecRequest { args: vec!["sleep".into(), "100000".into()], ..Default::default() }).await
    });
    let started = Instant::now();
    while !mark.exists() {
        assert!(started.elapsed() < T, "the exec never reached the runtime");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::fs::write(&go, "").unwrap();
    let result = tokio::time::timeout(T, exec).await.unwrap().unwrap();
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32 && e.pid == init).await.unwrap();
    // Whatever became of the exec, nothing of it comes after the init's EXIT.
    if let Ok(resp) = &result {
        let exec_events: Vec<_> = seen.iter().filter(|e| e.pid == resp.pid).map(|e| e.r#type).collect();
        assert_eq!(exec_events, vec![EventType::ExecAdded as i32, EventType::Exit as i32], "{seen:?}");
    }
    assert_eq!(seen.last().map(|e| (e.pid, e.exit_status)), Some((init, 137)));
    let after = tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut events)).await;
    assert!(after.is_err(), "an event after the init's EXIT: {after:?}");
    if let Ok(resp) = result {
        fx.shim.delete(DeleteRequest { pid: resp.pid }).await.unwrap();
    }
    assert_eq!(fx.shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_killed_while_writing_its_pid_file_leaves_nothing_in_a_work_dir_without_subdir() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("config.json"), "{}").unwrap();
    let names = || {
        let mut v: Vec<String> =
            std::fs::read_dir(&work).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    // What runc does before it renames a pid file into place (it writes "."
    // and the name first), then a SIGKILL.
    let runtime = dir.path().join("dies-writing-pid");
    std::fs::write(
        &runtime,
        "#!/bin/sh\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --pid-file ]; then echo 1 > \"$(dirname \"$a\")/.$(basename \"$a\")\" && touch \"$0.wrote\"; fi\n  prev=\"$a\"\ndone\nkill -9 $$\n",
    )
    .unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["true"]).build(&bundle).unwrap();
    let config = shim_core::testing::runc_config(&work).private_subdir(false);
    let shim = RuncShim::new(config, shared_reaper()).unwrap();
    let id = format!("fault-pidfile-{}", std::process::id());
    let req = CreateRequest {
        id: id.clone(),
        bundle: bundle.display().to_string(),
        runtime: runtime.display().to_string(),
        ..Default::default()
    };
    let err = tokio::time::timeout(T, shim.create(req)).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(Path::new(&format!("{}.wrote", runtime.display())).exists(), "the runtime wrote no temporary pid file");
    drop(shim);
    assert_eq!(names(), vec!["config.json".to_string()], "the shim's files must go with it, and only they");
}
