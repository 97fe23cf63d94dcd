//! One conformance suite for every [`Shim`]: the runc shim called directly,
//! through each transport, and the fake shim.
//!
//! Each scenario is a function over a [`Harness`], which says how to get a
//! fresh shim and how to express a [`Program`] for it (busybox commands for a
//! real runtime, fake steps for the [`FakeShim`](crate::fake::FakeShim)). The
//! [`conformance_tests!`](crate::conformance_tests) macro turns every scenario
//! into a `#[tokio::test]`, so a transport crate runs the same assertions with
//! one line:
//!
//! ```text
//! shim_core::conformance_tests!(my_crate_tests::MemOverRunc::new());
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shim_proto::v1::*;

use crate::testing::{collect_events, mkfifo, open_fifo_writer, read_fifo, BundleBuilder};
use crate::{Code, EventStream, Shim};

/// How long any single step of a scenario may take before it fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A program a scenario runs, in terms both kinds of runtime can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Writes `stdout` and `stderr`, then exits with `code`.
    Exit {
        /// Text for stdout.
        stdout: &'static str,
        /// Text for stderr.
        stderr: &'static str,
        /// Exit status.
        code: u32,
    },
    /// Runs until killed (ignoring SIGTERM as a namespace's pid 1).
    Sleep,
    /// Copies stdin to stdout until end-of-file.
    Cat,
    /// Reads a line, then prints the terminal size as `ROWS COLS`.
    TtySizeAfterLine,
    /// Writes this many zero bytes to stdout and exits 0.
    Zeros(usize),
    /// A binary that does not exist: the runtime fails to start it.
    Missing,
    /// Takes about this many bytes of the container's memory and exits 0
    /// (busybox: a file in the container's tmpfs /tmp; fake: `bytes:N`).
    Allocate(usize),
    /// Takes this many bytes of its own (anonymous) memory for a moment and
    /// exits 0, releasing them (busybox: `tail` buffering one line of that
    /// length; fake: `hog:N`): past the container's limit, it is the
    /// process the OOM killer picks. Its shell first raises its own
    /// `oom_score_adj` to 1000 (no privilege needed; this host forbids
    /// lowering the init's): the kernel can kill a second process of the
    /// cgroup while the first victim's memory is still being freed (seen
    /// here: the init `sleep` killed 4 ms after `tail`), and that second
    /// victim must be of the hog too, not the init.
    Hog(usize),
}

/// Which kind of runtime runs the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Programs {
    /// Busybox commands in a real container.
    Busybox,
    /// Steps of the fake runtime.
    Fake,
}

impl Programs {
    /// The argv of `program`.
    pub fn args(self, program: &Program) -> Vec<String> {
        match (self, program) {
            (Programs::Busybox, Program::Exit { stdout, stderr, code }) => vec![
                "sh".into(),
                "-c".into(),
                format!("printf '%s' '{stdout}'; printf '%s' '{stderr}' >&2; exit {code}"),
            ],
            (Programs::Busybox, Program::Sleep) => vec!["sleep".into(), "100000".into()],
            (Programs::Busybox, Program::Cat) => vec!["cat".into()],
            (Programs::Busybox, Program::TtySizeAfterLine) => {
                vec!["sh".into(), "-c".into(), "read line; stty size".into()]
            }
            (Programs::Busybox, Program::Zeros(n)) => {
                vec!["sh".into(), "-c".into(), format!("head -c {n} /dev/zero")]
            }
            (Programs::Fake, Program::Exit { stdout, stderr, code }) => {
                vec![format!("out:{stdout}"), format!("err:{stderr}"), format!("exit:{code}")]
            }
            (Programs::Fake, Program::Sleep) => vec!["sleep".into()],
            (Programs::Busybox, Program::Allocate(n)) => {
                vec!["sh".into(), "-c".into(), format!("head -c {n} /dev/zero > /tmp/fill")]
            }
            (Programs::Fake, Program::Allocate(n)) => vec![format!("bytes:{n}")],
            (Programs::Busybox, Program::Hog(n)) => {
                vec![
                    "sh".into(),
                    "-c".into(),
                    format!("echo 1000 > /proc/self/oom_score_adj; head -c {n} /dev/zero | tail"),
                ]
            }
            (Programs::Fake, Program::Hog(n)) => vec![format!("hog:{n}")],
            // An unknown step fails in the fake as a missing binary does in runc.
            (_, Program::Missing) => vec!["/no/such/binary".into()],
            (Programs::Fake, Program::Cat) => vec!["cat".into()],
            (Programs::Fake, Program::TtySizeAfterLine) => vec!["line".into(), "winsize".into()],
            (Programs::Fake, Program::Zeros(n)) => vec![format!("bytes:{n}")],
        }
    }

    /// Writes a bundle running `program` into `dir`.
    pub fn bundle(self, dir: &Path, program: &Program, terminal: bool) -> String {
        let builder = BundleBuilder::new().args(self.args(program)).terminal(terminal);
        let built = match self {
            Programs::Busybox => builder.build(dir),
            Programs::Fake => builder.build_config_only(dir),
        };
        if let Err(e) = built {
            panic!("cannot write bundle in {}: {e}", dir.display());
        }
        dir.to_string_lossy().into_owned()
    }
}

/// What a scenario needs from the shim under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Whether the shim can run here; `false` skips the scenario (a harness
    /// for runc uses [`require_runc`](crate::testing::require_runc), which
    /// fails instead under `SHIM_REQUIRE_RUNC=1`).
    fn available(&self) -> bool {
        true
    }

    /// How programs are expressed for this shim.
    fn programs(&self) -> Programs;

    /// A fresh shim holding no container. `dir` is a private directory for
    /// this scenario (for a work directory, a socket) that outlives the shim.
    async fn shim(&self, dir: &Path) -> Arc<dyn Shim>;

    /// Makes the runtime of the last shim made give `pid` to its next
    /// process, as a kernel whose pids wrapped around does. `false` when
    /// the runtime cannot (a real kernel): the scenario that needs it passes
    /// without asserting anything. See [`FakeRuntime::reuse_pid`](crate::FakeRuntime::reuse_pid).
    fn reuse_pid(&self, pid: u32) -> bool {
        let _ = pid;
        false
    }
}

/// How long a test shim waits for output that makes no progress after an
/// exit: short, so the scenarios that exercise it run quickly.
pub const TEST_IO_GRACE: Duration = Duration::from_millis(500);

/// A runc shim for a scenario, its work directory in `dir`.
pub fn runc_shim(dir: &Path) -> Arc<crate::RuncShim> {
    let config = crate::testing::runc_config(dir.join("work")).io_grace(TEST_IO_GRACE);
    match crate::RuncShim::new(config, crate::testing::shared_reaper()) {
        Ok(shim) => Arc::new(shim),
        Err(e) => panic!("cannot make a runc shim: {e}"),
    }
}

/// A fake shim for a scenario.
pub fn fake_shim() -> Arc<crate::FakeShim> {
    let config = crate::ShimConfig { io_grace: TEST_IO_GRACE, ..Default::default() };
    Arc::new(crate::FakeShim::with_config(config, None))
}

/// Fake shims for a harness, remembering the last one made so that
/// [`Harness::reuse_pid`] can reach its runtime.
#[derive(Default)]
pub struct FakeShims {
    last: std::sync::Mutex<Option<Arc<crate::FakeShim>>>,
}

impl FakeShims {
    /// A new fake shim (see [`fake_shim`]), remembered as the last one.
    pub fn make(&self) -> Arc<crate::FakeShim> {
        let shim = fake_shim();
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&shim));
        shim
    }

    /// [`FakeRuntime::reuse_pid`](crate::FakeRuntime::reuse_pid) on the last
    /// shim made; `false` if none was.
    pub fn reuse_pid(&self, pid: u32) -> bool {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        last.map(|shim| shim.runtime().reuse_pid(pid)).is_some()
    }
}

/// The state of one scenario: its directory, its shim and its names.
pub struct Scenario {
    dir: tempfile::TempDir,
    /// The shim under test.
    pub shim: Arc<dyn Shim>,
    /// How programs are expressed.
    pub programs: Programs,
    /// The container id this scenario uses.
    pub id: String,
}

impl Drop for Scenario {
    /// A scenario that failed leaves its container to runc: removed here, so
    /// that a failing run does not leave containers (and their cgroups)
    /// running on the machine. Runc's default root, as the harnesses use.
    fn drop(&mut self) {
        if self.programs == Programs::Busybox {
            super::remove_container_if_failing(&self.id);
        }
    }
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("conf-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Unwraps a shim result, failing with its code and message.
pub fn ok<T>(r: crate::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error ({}): {e}", e.code()))
}

/// The error code of a result that must be an error.
pub fn code<T: std::fmt::Debug>(r: crate::Result<T>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

/// Awaits `f`, failing after [`STEP_TIMEOUT`].
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP_TIMEOUT, f).await.unwrap_or_else(|_| panic!("step timed out after {STEP_TIMEOUT:?}"))
}

fn kinds(events: &[Event]) -> Vec<(EventType, u32, u32)> {
    events.iter().map(|e| (e.event_type().unwrap_or(EventType::Exit), e.pid, e.exit_status)).collect()
}

fn is_exit_of(pid: u32) -> impl FnMut(&Event) -> bool {
    move |e| e.r#type == EventType::Exit as i32 && e.pid == pid
}

impl Scenario {
    /// Sets up a scenario, or `None` when the harness is not available here.
    pub async fn new(h: &dyn Harness, tag: &str) -> Option<Self> {
        if !h.available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let shim = h.shim(dir.path()).await;
        Some(Self { dir, shim, programs: h.programs(), id: unique(tag) })
    }

    /// A path in the scenario's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes a FIFO in the scenario's directory.
    pub fn fifo(&self, name: &str) -> String {
        let p = self.path(name);
        mkfifo(&p).unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    }

    /// Writes a bundle running `program`.
    pub fn bundle(&self, program: &Program, terminal: bool) -> String {
        self.programs.bundle(&self.path("bundle"), program, terminal)
    }

    /// The argv of `program`.
    pub fn args(&self, program: &Program) -> Vec<String> {
        self.programs.args(program)
    }

    /// Subscribes to events.
    pub async fn events(&self) -> EventStream {
        ok(within(self.shim.events(EventsRequest::default())).await)
    }

    /// Creates the container running `program` with the given stdio.
    pub async fn create(&self, program: &Program, terminal: bool, stdin: &str, stdout: &str, stderr: &str) -> u32 {
        let req = CreateRequest {
            id: self.id.clone(),
            bundle: self.bundle(program, terminal),
            terminal,
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..Default::default()
        };
        ok(within(self.shim.create(req)).await).pid
    }

    /// Creates and starts a container whose init runs until killed.
    pub async fn running(&self) -> u32 {
        let pid = self.create(&Program::Sleep, false, "", "", "").await;
        ok(within(self.shim.start(StartRequest {})).await);
        pid
    }

    /// Execs `program` with the given stdout.
    pub async fn exec(&self, program: &Program, stdin: &str, stdout: &str) -> u32 {
        let req =
            ExecRequest { args: self.args(program), stdin: stdin.into(), stdout: stdout.into(), ..Default::default() };
        ok(within(self.shim.exec(req)).await).pid
    }

    /// Waits for a process's exit status.
    pub async fn wait(&self, pid: u32) -> u32 {
        ok(within(self.shim.wait(WaitRequest { pid })).await).exit_status
    }

    /// Deletes a process, returning its exit status.
    pub async fn delete(&self, pid: u32) -> u32 {
        ok(within(self.shim.delete(DeleteRequest { pid })).await).exit_status
    }
}

async fn read(handle: tokio::task::JoinHandle<std::io::Result<Vec<u8>>>) -> Vec<u8> {
    match within(handle).await {
        Ok(Ok(data)) => data,
        Ok(Err(e)) => panic!("reading a fifo failed: {e}"),
        Err(e) => panic!("fifo reader panicked: {e}"),
    }
}

/// Create → Start → EXIT → Delete of a process writing to stdout and stderr.
pub async fn lifecycle(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "life").await else { return };
    let program = Program::Exit { stdout: "out\n", stderr: "err\n", code: 3 };
    let (stdin, stdout, stderr) = (sc.fifo("in"), sc.fifo("out"), sc.fifo("err"));
    let mut events = sc.events().await;
    let out = read_fifo(Path::new(&stdout));
    let err = read_fifo(Path::new(&stderr));
    let pid = sc.create(&program, false, &stdin, &stdout, &stderr).await;
    assert_eq!(
        ok(sc.shim.state(StateRequest {}).await),
        StateResponse { id: sc.id.clone(), processes: vec![Process::new(pid, State::Running)] }
    );
    ok(within(sc.shim.start(StartRequest {})).await);
    let seen = collect_events(&mut events, STEP_TIMEOUT, is_exit_of(pid)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&seen),
        vec![(EventType::Created, pid, 0), (EventType::Started, pid, 0), (EventType::Exit, pid, 3)]
    );
    assert!(seen.iter().all(|e| e.id == sc.id), "events name the container: {seen:?}");
    assert_eq!(sc.wait(pid).await, 3);
    assert_eq!(ok(sc.shim.state(StateRequest {}).await).processes, vec![Process::new(pid, State::Stopped)]);
    assert_eq!(code(sc.shim.start(StartRequest {}).await), Code::FailedPrecondition);
    let exec = ExecRequest { args: sc.args(&Program::Sleep), ..Default::default() };
    assert_eq!(code(sc.shim.exec(exec).await), Code::FailedPrecondition);
    assert_eq!(sc.delete(pid).await, 3);
    assert_eq!(read(out).await, b"out\n");
    assert_eq!(read(err).await, b"err\n");
    assert_eq!(ok(sc.shim.state(StateRequest {}).await), StateResponse::default());
    assert_eq!(code(sc.shim.delete(DeleteRequest { pid }).await), Code::NotFound);
}

/// An exec's output, status, events and deletion; State lists init first.
pub async fn exec_and_state(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "exec").await else { return };
    let init = sc.running().await;
    let mut events = sc.events().await;
    let stdout = sc.fifo("out");
    let out = read_fifo(Path::new(&stdout));
    let sleeper = sc.exec(&Program::Sleep, "", "").await;
    let pid = sc.exec(&Program::Exit { stdout: "hi\n", stderr: "", code: 7 }, "", &stdout).await;
    let seen = collect_events(&mut events, STEP_TIMEOUT, is_exit_of(pid)).await.unwrap_or_else(|e| panic!("{e}"));
    let added = seen.iter().position(|e| e.r#type == EventType::ExecAdded as i32 && e.pid == pid);
    assert!(added.is_some_and(|i| i + 1 < seen.len()), "EXEC_ADDED before EXIT: {seen:?}");
    assert_eq!(sc.wait(pid).await, 7);
    assert_eq!(read(out).await, b"hi\n");
    let mut execs = [sleeper, pid];
    execs.sort_unstable();
    let state = ok(sc.shim.state(StateRequest {}).await);
    assert_eq!(state.processes.first(), Some(&Process::new(init, State::Running)), "init first: {state:?}");
    let expected: Vec<Process> =
        execs.iter().map(|p| Process::new(*p, if *p == pid { State::Stopped } else { State::Running })).collect();
    assert_eq!(state.processes.get(1..), Some(expected.as_slice()));
    assert_eq!(sc.delete(pid).await, 7);
    assert_eq!(sc.delete(sleeper).await, 137);
    assert_eq!(ok(sc.shim.state(StateRequest {}).await).processes, vec![Process::new(init, State::Running)]);
    assert_eq!(sc.delete(init).await, 137);
}

/// Pty resizes reach the process's terminal (width = columns, height = rows).
pub async fn pty_resize(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "pty").await else { return };
    let (stdin, stdout) = (sc.fifo("in"), sc.fifo("out"));
    let out = read_fifo(Path::new(&stdout));
    let pid = sc.create(&Program::TtySizeAfterLine, true, &stdin, &stdout, "").await;
    ok(within(sc.shim.start(StartRequest {})).await);
    ok(within(sc.shim.pty(PtyRequest { pid, width: 100, height: 30 })).await);
    let mut w = open_fifo_writer(Path::new(&stdin)).unwrap_or_else(|e| panic!("open stdin: {e}"));
    w.write_all(b"go\n").unwrap_or_else(|e| panic!("write stdin: {e}"));
    assert_eq!(sc.wait(pid).await, 0);
    assert_eq!(sc.delete(pid).await, 0);
    let text = String::from_utf8_lossy(&read(out).await).into_owned();
    assert!(text.contains("30 100"), "terminal output was {text:?}");
}

/// Two subscribers see the same events, in the documented order.
pub async fn events_order(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "order").await else { return };
    let mut a = sc.events().await;
    let mut b = sc.events().await;
    let init = sc.running().await;
    let exec = sc.exec(&Program::Sleep, "", "").await;
    ok(within(sc.shim.kill(KillRequest { pid: init, signal: 9, all: false })).await);
    let ea = collect_events(&mut a, STEP_TIMEOUT, is_exit_of(init)).await.unwrap_or_else(|e| panic!("{e}"));
    let eb = collect_events(&mut b, STEP_TIMEOUT, is_exit_of(init)).await.unwrap_or_else(|e| panic!("{e}"));
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
    assert_eq!(sc.delete(exec).await, 137);
    assert_eq!(sc.delete(init).await, 137);
}

/// Kill of one process, of all, after exit; Wait before and after exit.
pub async fn kill_and_wait(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "kill").await else { return };
    let init = sc.running().await;
    let exec = sc.exec(&Program::Sleep, "", "").await;
    let waiter = {
        let shim = Arc::clone(&sc.shim);
        tokio::spawn(async move { shim.wait(WaitRequest { pid: exec }).await })
    };
    ok(within(sc.shim.kill(KillRequest { pid: exec, signal: 15, all: false })).await);
    let waited = within(waiter).await.unwrap_or_else(|e| panic!("join: {e}"));
    assert_eq!(ok(waited).exit_status, 143);
    assert_eq!(sc.wait(exec).await, 143);
    assert_eq!(code(sc.shim.kill(KillRequest { pid: exec, signal: 15, all: false }).await), Code::FailedPrecondition);
    assert_eq!(sc.delete(exec).await, 143);

    let other = sc.exec(&Program::Sleep, "", "").await;
    assert_eq!(code(sc.shim.kill(KillRequest { pid: other, signal: 15, all: true }).await), Code::InvalidArgument);
    ok(within(sc.shim.kill(KillRequest { pid: init, signal: 15, all: true })).await);
    assert_eq!(sc.wait(other).await, 143);
    // The init is pid 1 of its namespace: SIGTERM without a handler is ignored.
    let state = ok(sc.shim.state(StateRequest {}).await);
    assert_eq!(state.processes.first(), Some(&Process::new(init, State::Running)));
    ok(within(sc.shim.kill(KillRequest { pid: init, signal: 9, all: true })).await);
    assert_eq!(sc.wait(init).await, 137);
    assert_eq!(sc.delete(other).await, 143);
    assert_eq!(sc.delete(init).await, 137);
}

/// CloseStdin gives the process end-of-file after what was written.
pub async fn close_stdin(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "stdin").await else { return };
    let init = sc.running().await;
    let (stdin, stdout) = (sc.fifo("in"), sc.fifo("out"));
    let out = read_fifo(Path::new(&stdout));
    let cat = sc.exec(&Program::Cat, &stdin, &stdout).await;
    let mut w = open_fifo_writer(Path::new(&stdin)).unwrap_or_else(|e| panic!("open stdin: {e}"));
    w.write_all(b"hello\n").unwrap_or_else(|e| panic!("write: {e}"));
    drop(w);
    ok(within(sc.shim.close_stdin(CloseStdinRequest { pid: cat })).await);
    assert_eq!(sc.wait(cat).await, 0);
    assert_eq!(read(out).await, b"hello\n");
    assert_eq!(sc.delete(cat).await, 0);
    assert_eq!(sc.delete(init).await, 137);
}

/// Every byte of a large output arrives before the EXIT.
pub async fn big_output(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "big").await else { return };
    let init = sc.running().await;
    let stdout = sc.fifo("out");
    let out = read_fifo(Path::new(&stdout));
    let pid = sc.exec(&Program::Zeros(8 << 20), "", &stdout).await;
    assert_eq!(sc.wait(pid).await, 0);
    let data = read(out).await;
    assert_eq!(data.len(), 8 << 20);
    assert!(data.iter().all(|b| *b == 0));
    assert_eq!(sc.delete(pid).await, 0);
    assert_eq!(sc.delete(init).await, 137);
}

/// Every bad input gets its error code, and the shim keeps serving.
pub async fn bad_input(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "bad").await else { return };
    let shim = &sc.shim;
    let bundle = sc.bundle(&Program::Sleep, false);
    let create = |id: &str, bundle: &str| CreateRequest { id: id.into(), bundle: bundle.into(), ..Default::default() };

    assert_eq!(code(shim.start(StartRequest {}).await), Code::FailedPrecondition);
    let exec_req = ExecRequest { args: sc.args(&Program::Sleep), ..Default::default() };
    assert_eq!(code(shim.exec(exec_req.clone()).await), Code::FailedPrecondition);
    assert_eq!(code(shim.delete(DeleteRequest { pid: 12345 }).await), Code::NotFound);
    assert_eq!(code(shim.wait(WaitRequest { pid: 12345 }).await), Code::NotFound);
    for id in ["", "../x", "a/b", "-x", ".hidden", &"a".repeat(129)] {
        assert_eq!(code(shim.create(create(id, &bundle)).await), Code::InvalidArgument, "id {id:?}");
    }
    assert_eq!(code(shim.create(create("ok", "relative/bundle")).await), Code::InvalidArgument);
    assert_eq!(code(shim.create(create("ok", "/nonexistent-bundle")).await), Code::InvalidArgument);
    let no_config = sc.path("empty");
    std::fs::create_dir_all(&no_config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code(shim.create(create("ok", &no_config.to_string_lossy())).await), Code::InvalidArgument);
    let rel = CreateRequest { stdout: "out.log".into(), ..create("ok", &bundle) };
    assert_eq!(code(shim.create(rel).await), Code::InvalidArgument);
    let dir_as_stdio = CreateRequest { stdout: no_config.to_string_lossy().into_owned(), ..create("ok", &bundle) };
    assert_eq!(code(shim.create(dir_as_stdio).await), Code::InvalidArgument);

    let init = ok(within(shim.create(create(&sc.id, &bundle))).await).pid;
    assert_eq!(code(shim.create(create(&sc.id, &bundle)).await), Code::AlreadyExists);
    assert_eq!(code(shim.create(create("other", &bundle)).await), Code::AlreadyExists);
    ok(within(shim.start(StartRequest {})).await);
    assert_eq!(code(shim.start(StartRequest {}).await), Code::FailedPrecondition);

    let base = || exec_req.clone();
    assert_eq!(code(shim.exec(ExecRequest { args: vec![], ..base() }).await), Code::InvalidArgument);
    assert_eq!(code(shim.exec(ExecRequest { cwd: "tmp".into(), ..base() }).await), Code::InvalidArgument);
    assert_eq!(
        code(shim.exec(ExecRequest { capabilities: vec!["CAP_NOPE".into()], ..base() }).await),
        Code::InvalidArgument
    );
    let bad_rlimit = Rlimit { r#type: "RLIMIT_NOPE".into(), hard: 1, soft: 1 };
    assert_eq!(code(shim.exec(ExecRequest { rlimits: vec![bad_rlimit], ..base() }).await), Code::InvalidArgument);
    assert_eq!(code(shim.exec(ExecRequest { stdin: "rel".into(), ..base() }).await), Code::InvalidArgument);

    assert_eq!(code(shim.pty(PtyRequest { pid: 0, width: 1, height: 1 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.pty(PtyRequest { pid: 999_999, width: 1, height: 1 }).await), Code::NotFound);
    assert_eq!(code(shim.pty(PtyRequest { pid: init, width: 80, height: 24 }).await), Code::FailedPrecondition);
    assert_eq!(code(shim.kill(KillRequest { pid: init, signal: 0, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.kill(KillRequest { pid: init, signal: 1000, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.kill(KillRequest { pid: 999_999, signal: 9, all: false }).await), Code::NotFound);
    assert_eq!(code(shim.kill(KillRequest { pid: 0, signal: 9, all: false }).await), Code::InvalidArgument);
    assert_eq!(code(shim.close_stdin(CloseStdinRequest { pid: 999_999 }).await), Code::NotFound);
    assert_eq!(code(shim.wait(WaitRequest { pid: 0 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.delete(DeleteRequest { pid: 0 }).await), Code::InvalidArgument);
    assert_eq!(code(shim.delete(DeleteRequest { pid: 999_999 }).await), Code::NotFound);

    assert_eq!(ok(shim.state(StateRequest {}).await).processes, vec![Process::new(init, State::Running)]);
    assert_eq!(sc.delete(init).await, 137);
}

/// A subscriber that went away resumes from the last event it saw, with
/// nothing missed and nothing twice; sequence numbers count up without gaps.
pub async fn resume_events(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "resume").await else { return };
    let mut first = sc.events().await;
    let init = sc.running().await;
    let seen = collect_events(&mut first, STEP_TIMEOUT, |e| e.r#type == EventType::Started as i32)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let last = seen.last().map(|e| e.seq).unwrap_or_default();
    assert!(last > 0, "events carry sequence numbers: {seen:?}");
    assert!(seen.iter().zip(seen.iter().skip(1)).all(|(a, b)| b.seq == a.seq + 1), "no gaps: {seen:?}");
    drop(first);
    // Missed while disconnected: an exec and its exit.
    let pid = sc.exec(&Program::Exit { stdout: "", stderr: "", code: 4 }, "", "").await;
    assert_eq!(sc.wait(pid).await, 4);
    let mut resumed = ok(within(sc.shim.events(EventsRequest { since: Some(last) })).await);
    let missed = collect_events(&mut resumed, STEP_TIMEOUT, is_exit_of(pid)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&missed), vec![(EventType::ExecAdded, pid, 0), (EventType::Exit, pid, 4)]);
    assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![last + 1, last + 2]);
    // From the future: an error, not a silent wait.
    let future = sc.shim.events(EventsRequest { since: Some(last + 1000) }).await;
    assert_eq!(future.err().map(|e| e.code()), Some(Code::InvalidArgument));
    assert_eq!(sc.delete(pid).await, 4);
    assert_eq!(sc.delete(init).await, 137);
}

/// Pause and Resume: PAUSED state and events in order, exec refused while
/// paused, ListPids marks the shim's own processes, Update validates its
/// JSON, and a paused container can still be deleted (killed and thawed).
pub async fn pause_resume_pids_update(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "pause").await else { return };
    // Before Start: nothing to pause.
    let init = sc.create(&Program::Sleep, false, "", "", "").await;
    assert_eq!(code(sc.shim.pause(PauseRequest {}).await), Code::FailedPrecondition);
    ok(within(sc.shim.start(StartRequest {})).await);
    let mut events = sc.events().await;
    let exec = sc.exec(&Program::Sleep, "", "").await;

    let listed = ok(within(sc.shim.list_pids(ListPidsRequest {})).await).processes;
    for pid in [init, exec] {
        assert!(listed.contains(&ProcessInfo { pid, shim_pid: pid }), "{pid} in {listed:?}");
    }

    assert_eq!(code(sc.shim.resume(ResumeRequest {}).await), Code::FailedPrecondition);
    ok(within(sc.shim.pause(PauseRequest {})).await);
    let st = ok(sc.shim.state(StateRequest {}).await);
    assert_eq!(st.processes, vec![Process::new(init, State::Paused), Process::new(exec, State::Paused)]);
    assert_eq!(code(sc.shim.pause(PauseRequest {}).await), Code::FailedPrecondition);
    let req = ExecRequest { args: sc.args(&Program::Sleep), ..Default::default() };
    assert_eq!(code(sc.shim.exec(req).await), Code::FailedPrecondition);
    ok(within(sc.shim.resume(ResumeRequest {})).await);
    let st = ok(sc.shim.state(StateRequest {}).await);
    assert_eq!(st.processes, vec![Process::new(init, State::Running), Process::new(exec, State::Running)]);

    let update = |json: &str| UpdateRequest { resources: json.as_bytes().to_vec() };
    ok(within(sc.shim.update(update(r#"{"pids":{"limit":100}}"#))).await);
    assert_eq!(code(sc.shim.update(update(r#"{"memroy":{}}"#)).await), Code::InvalidArgument);
    assert_eq!(code(sc.shim.update(update("[1]")).await), Code::InvalidArgument);

    // Paused again, then deleted: the init is killed and thawed; nothing of
    // the container follows its EXIT.
    ok(within(sc.shim.pause(PauseRequest {})).await);
    assert_eq!(code(sc.shim.delete(DeleteRequest { pid: exec }).await), Code::FailedPrecondition);
    assert_eq!(sc.delete(init).await, 137);
    let seen = collect_events(&mut events, STEP_TIMEOUT, is_exit_of(init)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kinds(&seen),
        vec![
            (EventType::ExecAdded, exec, 0),
            (EventType::ContainerPaused, init, 0),
            (EventType::ContainerResumed, init, 0),
            (EventType::ContainerPaused, init, 0),
            (EventType::Exit, exec, 137),
            (EventType::Exit, init, 137),
        ]
    );
    assert_eq!(ok(sc.shim.state(StateRequest {}).await), StateResponse::default());
}

/// Stats come from the container's cgroup and follow its usage.
pub async fn stats_follow_usage(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "stats").await else { return };
    assert_eq!(code(sc.shim.stats(StatsRequest {}).await), Code::FailedPrecondition);
    let init = sc.running().await;
    let before = ok(within(sc.shim.stats(StatsRequest {})).await);
    assert!(matches!(before.cgroup_version, 1 | 2), "{before:?}");
    assert!(before.pids.as_ref().is_some_and(|p| p.current >= 1), "{before:?}");
    const FILL: usize = 16 << 20;
    let filler = sc.exec(&Program::Allocate(FILL), "", "").await;
    assert_eq!(sc.wait(filler).await, 0);
    let after = ok(within(sc.shim.stats(StatsRequest {})).await);
    let usage = |s: &StatsResponse| s.memory.as_ref().map(|m| m.usage).unwrap_or(0);
    assert!(usage(&after) >= usage(&before) + FILL as u64 / 2, "usage {} then {}", usage(&before), usage(&after));
    assert_eq!(sc.delete(filler).await, 0);
    ok(within(sc.shim.kill(KillRequest { pid: init, signal: 9, all: false })).await);
    assert_eq!(sc.wait(init).await, 137);
    // Exited, not yet deleted: the cgroup still answers, as kubelet and CRI
    // read it then; unless it went with its last process (a systemd scope:
    // seen in the systemd leg), which is said so.
    match within(sc.shim.stats(StatsRequest {})).await {
        Ok(exited) => assert_eq!(exited.cgroup_version, after.cgroup_version, "{exited:?}"),
        Err(e) => assert!(
            e.code() == Code::FailedPrecondition && e.to_string().contains("no longer exists"),
            "stats of an exited container: {e}"
        ),
    }
    assert_eq!(sc.delete(init).await, 137);
    assert_eq!(code(sc.shim.stats(StatsRequest {}).await), Code::FailedPrecondition);
}

/// Update lowers the memory limit: below the container's usage, cgroup v1
/// (and the fake) refuse it with FailedPrecondition and leave the container
/// running, while on cgroup v2 the kernel OOM-kills; above the usage it
/// applies, and a process that then takes more than the limit allows is
/// OOM-killed: exit 137 and an OOM event, the init still running.
pub async fn update_memory_oom(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "oom").await else { return };
    let init = sc.running().await;
    const MIB: u64 = 1 << 20;
    let filler = sc.exec(&Program::Allocate(16 * MIB as usize), "", "").await;
    assert_eq!(sc.wait(filler).await, 0);
    let stats = ok(within(sc.shim.stats(StatsRequest {})).await);
    let usage = stats.memory.as_ref().map(|m| m.usage).unwrap_or(0);
    assert!(usage >= 8 * MIB, "usage {usage} after the filler");
    let mut events = sc.events().await;
    let limit = |bytes: u64| UpdateRequest { resources: format!(r#"{{"memory":{{"limit":{bytes}}}}}"#).into_bytes() };
    let below = sc.shim.update(limit(usage / 2)).await;
    if stats.cgroup_version == 1 {
        let err = below.err().unwrap_or_else(|| panic!("a limit of {} below usage {usage} was applied", usage / 2));
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let st = ok(sc.shim.state(StateRequest {}).await);
        assert_eq!(st.processes.first(), Some(&Process::new(init, State::Running)));
        // Raise it again past usage, with room for the shell and the hog's
        // first pages, but not for the whole hog.
        ok(within(sc.shim.update(limit(usage + 24 * MIB))).await);
        let limited = ok(within(sc.shim.stats(StatsRequest {})).await);
        assert_eq!(limited.memory.map(|m| m.limit), Some(usage + 24 * MIB));
        let hog = sc.exec(&Program::Hog(64 * MIB as usize), "", "").await;
        assert_eq!(sc.wait(hog).await, 137);
        // The OOM notice and the exit come from different sources (the
        // cgroup, the reaper): either may be published first.
        collect_events(&mut events, STEP_TIMEOUT, |e| e.r#type == EventType::Oom as i32)
            .await
            .unwrap_or_else(|e| panic!("no OOM event: {e}"));
        assert_eq!(sc.delete(hog).await, 137);
        let st = ok(sc.shim.state(StateRequest {}).await);
        assert_eq!(st.processes.first(), Some(&Process::new(init, State::Running)));
    } else {
        // cgroup v2: the kernel takes the limit and OOM-kills what it cannot
        // reclaim, here the init. Under systemd the container's scope goes
        // with its last process, and runc, still applying the update to the
        // scope, can then fail ("no such device"): an error accepted only
        // from an update that killed the container.
        if let Err(e) = below {
            assert_eq!(sc.wait(init).await, 137, "the update failed, the container lives: {e}");
        }
        let seen = collect_events(&mut events, STEP_TIMEOUT, |e| e.r#type == EventType::Oom as i32)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!seen.is_empty());
    }
    assert_eq!(sc.delete(filler).await, 0);
    assert_eq!(sc.delete(init).await, 137);
}

/// Every output FIFO a request names gets its end-of-file: from an init and
/// an exec that write nothing, and from an exec that never started (before
/// its error returns), so a client that reads to EOF never hangs.
pub async fn silent_output_ends(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "silent").await else { return };
    let silent = Program::Exit { stdout: "", stderr: "", code: 0 };
    let (out, err) = (sc.fifo("out"), sc.fifo("err"));
    let readers = (read_fifo(Path::new(&out)), read_fifo(Path::new(&err)));
    let pid = sc.create(&silent, false, "", &out, &err).await;
    ok(within(sc.shim.start(StartRequest {})).await);
    assert_eq!(sc.wait(pid).await, 0);
    assert_eq!((read(readers.0).await, read(readers.1).await), (Vec::new(), Vec::new()));
    assert_eq!(sc.delete(pid).await, 0);

    let init = sc.running().await;
    let (out, err) = (sc.fifo("exec-out"), sc.fifo("exec-err"));
    let readers = (read_fifo(Path::new(&out)), read_fifo(Path::new(&err)));
    let req = ExecRequest { args: sc.args(&silent), stdout: out, stderr: err, ..Default::default() };
    let pid = ok(within(sc.shim.exec(req)).await).pid;
    assert_eq!(sc.wait(pid).await, 0);
    assert_eq!((read(readers.0).await, read(readers.1).await), (Vec::new(), Vec::new()));
    assert_eq!(sc.delete(pid).await, 0);

    let (out, err) = (sc.fifo("failed-out"), sc.fifo("failed-err"));
    let open = |p: &str| crate::testing::FifoReader::open_now(Path::new(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let readers = (open(&out), open(&err));
    let req = ExecRequest { args: sc.args(&Program::Missing), stdout: out, stderr: err, ..Default::default() };
    assert!(within(sc.shim.exec(req)).await.is_err());
    let got = (readers.0.read_to_eof(STEP_TIMEOUT).await, readers.1.read_to_eof(STEP_TIMEOUT).await);
    assert_eq!(got, (Some(Vec::new()), Some(Vec::new())), "a reader of a failed exec's output saw no EOF");
    assert_eq!(sc.delete(init).await, 137);
}

/// An exited exec not yet deleted keeps its pid: an exec that the kernel gave
/// the same pid (after pids wrapped) is refused, so Wait and Delete of the
/// old pid never reach the new process.
pub async fn pid_reuse(h: &dyn Harness) {
    let Some(sc) = Scenario::new(h, "pidreuse").await else { return };
    let init = sc.running().await;
    let old = sc.exec(&Program::Exit { stdout: "", stderr: "", code: 3 }, "", "").await;
    assert_eq!(sc.wait(old).await, 3);
    if !h.reuse_pid(old) {
        ok(within(sc.shim.delete(DeleteRequest { pid: init })).await);
        return;
    }
    let mut events = sc.events().await;
    let req = ExecRequest { args: sc.args(&Program::Sleep), ..Default::default() };
    assert_eq!(code(within(sc.shim.exec(req.clone())).await), Code::FailedPrecondition);
    // The old process is untouched: same status, still deletable once.
    assert_eq!(sc.wait(old).await, 3);
    let st = ok(sc.shim.state(StateRequest {}).await);
    assert_eq!(st.processes, vec![Process::new(init, State::Running), Process::new(old, State::Stopped)]);
    assert_eq!(sc.delete(old).await, 3);
    // Once deleted, the pid is free for a new exec.
    assert!(h.reuse_pid(old));
    let new = ok(within(sc.shim.exec(req)).await).pid;
    assert_eq!(new, old);
    ok(within(sc.shim.kill(KillRequest { pid: new, signal: 9, all: false })).await);
    assert_eq!(sc.delete(new).await, 137);
    // The refused exec published nothing.
    let seen = collect_events(&mut events, STEP_TIMEOUT, is_exit_of(new)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kinds(&seen), vec![(EventType::ExecAdded, new, 0), (EventType::Exit, new, 137)]);
    assert_eq!(sc.delete(init).await, 137);
}

/// Generates one `#[tokio::test]` per conformance scenario for a harness.
///
/// `$harness` is an expression building a value that implements
/// [`Harness`]; it is evaluated once per test.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            lifecycle, exec_and_state, pty_resize, events_order, kill_and_wait, close_stdin, big_output, bad_input, update_memory_oom,
            resume_events, pid_reuse, silent_output_ends, pause_resume_pids_update, stats_follow_usage);
    };
    (@each $harness:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::testing::conformance::$name(&harness).await;
            }
        )*
    };
}
