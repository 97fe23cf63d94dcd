//! End-to-end: the built `shim` and `shimctl` binaries, run as a user would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shim_core::testing::{require_runc, BundleBuilder};

const SHIM: &str = env!("CARGO_BIN_EXE_shim");
const SHIMCTL: &str = env!("CARGO_BIN_EXE_shimctl");
const T: Duration = Duration::from_secs(30);

fn shimctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(SHIMCTL).arg("--socket").arg(socket).args(args).output().unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(out.status.success(), "shimctl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `cond` until it holds, failing after `T`.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < T, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bundle(dir: &Path, builder: BundleBuilder) -> PathBuf {
    let path = dir.join("bundle");
    builder.build(&path).unwrap();
    path
}

/// Starts `shim` on `socket` and waits for its ready line.
fn start_shim(socket: &Path) -> Child {
    start_shim_with(socket, &[])
}

/// Starts `shim` on `socket` with extra arguments and waits for its ready
/// line; the rest of its stderr is read and discarded.
fn start_shim_with(socket: &Path, args: &[&std::ffi::OsStr]) -> Child {
    let (child, mut lines) = start_shim_logging(socket, args);
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    child
}

/// Starts `shimctl events` and returns it with its lines, once its
/// subscription is live (an exec's EXEC_ADDED reached it).
fn subscribe(socket: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut events =
        Command::new(SHIMCTL).arg("--socket").arg(socket).arg("events").stdout(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let lines = std::io::BufReader::new(events.stdout.take().unwrap());
    std::thread::spawn(move || lines.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
    // An exec before the subscription is live publishes to nobody: try
    // again. (Waiting the whole T for that exec's first line made one late
    // subscription fail the test.)
    until("the event subscription", || {
        stdout_of(&shimctl(socket, &["exec", "--", "true"]));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.starts_with("EXEC_ADDED") {
                return true;
            }
        }
        false
    });
    (events, rx)
}

fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < T, "process {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_prints_output_and_exits_with_the_container_status() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), BundleBuilder::new().args(["sh", "-c", "echo out; cat; echo err >&2; exit 7"]));
    let mut child = Command::new(SHIMCTL)
        .args(["run", "--bundle"])
        .arg(&b)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let status = wait_child(&mut child);
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(7), "stderr: {err}");
    assert_eq!(out, "out\ntyped\n");
    assert!(err.contains("err"), "{err}");
}

fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
}

#[test]
fn run_with_tty_forwards_window_size_changes() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(
        dir.path(),
        BundleBuilder::new().terminal(true).args(["sh", "-c", "stty size; while read x; do stty size; done"]),
    );
    let pty = nix::pty::openpty(None, None).unwrap();
    set_winsize(&pty.master, 30, 100);
    let slave = pty.slave;
    let (i, o, e) = (slave.try_clone().unwrap(), slave.try_clone().unwrap(), slave.try_clone().unwrap());
    let mut cmd = Command::new(SHIMCTL);
    cmd.args(["run", "--tty", "--bundle"]).arg(&b).stdin(i).stdout(o).stderr(e);
    // SAFETY: setsid and TIOCSCTTY only affect the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let seen = Arc::new(Mutex::new(String::new()));
    let mut master_read = std::fs::File::from(pty.master.try_clone().unwrap());
    {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = master_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    until("the initial size", || seen.lock().unwrap().contains("30 100"));
    // Resizing our terminal sends SIGWINCH to shimctl, which forwards it.
    set_winsize(&pty.master, 40, 120);
    let mut master_write = std::fs::File::from(pty.master.try_clone().unwrap());
    until("the new size", || {
        let _ = master_write.write_all(b"x\r");
        seen.lock().unwrap().contains("40 120")
    });
    // Ctrl-D ends the loop: the container exits 0.
    master_write.write_all(&[4]).unwrap();
    let status = wait_child(&mut child);
    assert_eq!(status.code(), Some(0), "terminal output: {:?}", seen.lock().unwrap());
}

#[test]
fn the_container_outlives_a_killed_client_and_reports_its_real_status() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let b = bundle(dir.path(), BundleBuilder::new().args(["sleep", "1000"]));
    // The client starts the shim, then dies by SIGKILL while the container runs.
    let mut client = Command::new(SHIMCTL)
        .arg("--socket")
        .arg(&socket)
        .args(["run", "--bundle"])
        .arg(&b)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut init = 0;
    until("the container to run", || {
        let text = String::from_utf8_lossy(&shimctl(&socket, &["state"]).stdout).to_string();
        match text.lines().nth(1).and_then(|l| l.strip_suffix(" RUNNING")) {
            Some(pid) => {
                init = pid.parse().unwrap();
                true
            }
            None => false,
        }
    });
    // Another client blocked in Wait, and one streaming events, die too.
    let pid = init.to_string();
    let mut waiter = Command::new(SHIMCTL).arg("--socket").arg(&socket).args(["wait", "--pid", &pid]).spawn().unwrap();
    let mut watcher =
        Command::new(SHIMCTL).arg("--socket").arg(&socket).arg("events").stdout(Stdio::null()).spawn().unwrap();
    for c in [&mut client, &mut waiter, &mut watcher] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    // The container still runs under its shim; a new client sees it.
    let state = stdout_of(&shimctl(&socket, &["state"]));
    assert!(state.contains(&format!("{init} RUNNING")), "{state}");
    // Live before the init is killed.
    let (mut events, rx) = subscribe(&socket);
    stdout_of(&shimctl(&socket, &["kill", "--pid", &pid, "--signal", "9"]));
    assert_eq!(stdout_of(&shimctl(&socket, &["wait", "--pid", &pid])), "137");
    let wanted = format!("pid={init} exit_status=137");
    let start = Instant::now();
    loop {
        let line = rx.recv_timeout(T).expect("the init's EXIT event");
        if line.starts_with("EXIT ") && line.contains(&format!("{wanted} ")) {
            break;
        }
        assert!(start.elapsed() < T, "no EXIT of the init");
    }
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &pid])), "137");
    // The shim exits after the delete, which ends the event stream.
    assert!(!wait_child(&mut events).success(), "the stream ends with an error once the shim is gone");
    until("the shim to remove its socket", || !socket.exists());
}

#[test]
fn sigterm_to_the_shim_leaves_nothing_behind() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let work = PathBuf::from(format!("{}.work", socket.display()));
    let b = bundle(dir.path(), BundleBuilder::new().args(["sleep", "1000"]));
    let mut shim = start_shim(&socket);
    let id = format!("e2e-term-{}", std::process::id());
    let init: u32 =
        stdout_of(&shimctl(&socket, &["create", "--id", &id, "--bundle", &b.to_string_lossy()])).parse().unwrap();
    stdout_of(&shimctl(&socket, &["start"]));
    let exec: u32 = stdout_of(&shimctl(&socket, &["exec", "--", "sleep", "1000"])).parse().unwrap();
    assert!(work.is_dir());
    // A client streaming events while the shim is told to stop.
    let (mut events, rx) = subscribe(&socket);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_child(&mut shim);
    assert_eq!(status.code(), Some(0));
    // The stream saw the container go, then ended.
    wait_child(&mut events);
    let seen: Vec<String> = rx.try_iter().collect();
    assert!(
        seen.iter().any(|l| l.starts_with("EXIT ") && l.contains(&format!("pid={init} exit_status=137 "))),
        "{seen:?}"
    );
    assert!(!socket.exists(), "socket left behind");
    assert!(!work.exists(), "work directory left behind");
    assert!(!Path::new(&format!("/proc/{init}")).exists(), "init {init} still exists");
    assert!(!Path::new(&format!("/proc/{exec}")).exists(), "exec {exec} still exists");
    let list = Command::new("runc").args(["list", "-q"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).lines().any(|l| l == id), "runc still lists {id}");
}

#[test]
fn errors_print_the_code_and_exit_non_zero() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let mut shim = start_shim(&socket);
    let out = shimctl(&socket, &["delete", "--pid", "4242"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "shimctl: NOT_FOUND: process 4242 not found");
    let out = shimctl(&socket, &["start"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED_PRECONDITION"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(wait_child(&mut shim).code(), Some(0));
}

#[test]
fn demo_runs_and_greets() {
    if !require_runc() {
        return;
    }
    let out = Command::new(SHIMCTL).arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("hello from the shim demo, I am demo-container"), "{text}");
    assert!(text.contains("EXEC_ADDED"), "{text}");
}

#[test]
fn a_shim_killed_with_sigkill_is_replaced_cleanly_on_the_same_socket() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let mut first = start_shim(&socket);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(socket.exists(), "a killed shim leaves its socket behind");
    let mut second = start_shim(&socket);
    let b = bundle(dir.path(), BundleBuilder::new().args(["sh", "-c", "exit 4"]));
    let id = format!("e2e-restart-{}", std::process::id());
    let init = stdout_of(&shimctl(&socket, &["create", "--id", &id, "--bundle", &b.to_string_lossy()]));
    stdout_of(&shimctl(&socket, &["start"]));
    assert_eq!(stdout_of(&shimctl(&socket, &["wait", "--pid", &init])), "4");
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &init])), "4");
    assert_eq!(wait_child(&mut second).code(), Some(0));
    assert!(!socket.exists());
}

/// A runtime wrapper script in `dir` for `--runtime-binary`: `body` runs
/// with `$MARKS` set to a directory for the marks it leaves. Returns the
/// script and that directory.
fn runtime_wrapper(dir: &Path, body: &str) -> (PathBuf, PathBuf) {
    let marks = dir.join("marks");
    std::fs::create_dir(&marks).unwrap();
    let wrapper = dir.join("slow-runc");
    std::fs::write(&wrapper, format!("#!/bin/sh\nMARKS='{}'\n{body}", marks.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (wrapper, marks)
}

/// `shimctl create` as a child, to be killed mid-call.
fn spawn_create(socket: &Path, id: &str, bundle: &Path) -> Child {
    Command::new(SHIMCTL)
        .arg("--socket")
        .arg(socket)
        .args(["create", "--id", id, "--bundle"])
        .arg(bundle)
        .spawn()
        .unwrap()
}

#[test]
fn a_client_killed_mid_create_and_mid_exec_leaves_a_consistent_container() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    // A runtime that marks each call it starts, then is slow: a client can be
    // killed while the shim is inside `runc create` or `runc exec`.
    let (wrapper, marks) = runtime_wrapper(
        dir.path(),
        "for a in \"$@\"; do case $a in create|exec) touch \"$MARKS/$a\";; esac; done\nsleep 0.5\nexec runc \"$@\"\n",
    );
    let mut shim = start_shim_with(&socket, &["--runtime-binary".as_ref(), wrapper.as_os_str()]);
    let b = bundle(dir.path(), BundleBuilder::new().args(["sleep", "100000"]));
    let id = format!("e2e-midcall-{}", std::process::id());

    let mut create = spawn_create(&socket, &id, &b);
    until("runc create to start", || marks.join("create").exists());
    create.kill().unwrap();
    create.wait().unwrap();
    // The create completes anyway; a new client finds the container and goes on.
    let mut init = String::new();
    until("the container to appear", || {
        let text = String::from_utf8_lossy(&shimctl(&socket, &["state"]).stdout).to_string();
        init = text.lines().nth(1).and_then(|l| l.strip_suffix(" RUNNING")).unwrap_or("").to_string();
        !init.is_empty()
    });
    stdout_of(&shimctl(&socket, &["start"]));

    let mut exec = Command::new(SHIMCTL).arg("--socket").arg(&socket).args(["exec", "--", "true"]).spawn().unwrap();
    until("runc exec to start", || marks.join("exec").exists());
    exec.kill().unwrap();
    exec.wait().unwrap();
    let mut exec_pid = String::new();
    until("the exec to be registered", || {
        let text = String::from_utf8_lossy(&shimctl(&socket, &["state"]).stdout).to_string();
        exec_pid = text.lines().nth(2).and_then(|l| l.split_whitespace().next()).unwrap_or("").to_string();
        !exec_pid.is_empty()
    });
    assert_eq!(stdout_of(&shimctl(&socket, &["wait", "--pid", &exec_pid])), "0");
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &exec_pid])), "0");
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &init])), "137");
    assert_eq!(wait_child(&mut shim).code(), Some(0));
    assert!(!socket.exists());
}

#[test]
fn sigterm_after_a_client_vanished_mid_create_still_removes_the_container() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    // A runtime whose create is slow to return after runc made the container.
    let (wrapper, marks) = runtime_wrapper(
        dir.path(),
        "runc \"$@\"; rc=$?\nfor a in \"$@\"; do case $a in create) touch \"$MARKS/$a\"; sleep 0.5;; esac; done\nexit $rc\n",
    );
    let mut shim = start_shim_with(&socket, &["--runtime-binary".as_ref(), wrapper.as_os_str()]);
    let b = bundle(dir.path(), BundleBuilder::new().args(["sleep", "100000"]));
    let id = format!("e2e-term-midcreate-{}", std::process::id());
    let mut create = spawn_create(&socket, &id, &b);
    until("runc create to finish", || marks.join("create").exists());
    create.kill().unwrap();
    create.wait().unwrap();
    // The create is still running in the shim when it is told to stop: the
    // teardown must wait for it and remove what it made.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(wait_child(&mut shim).code(), Some(0));
    let list = Command::new("runc").args(["list", "-q"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).lines().any(|l| l == id), "runc still lists {id}");
}

/// Starts `shim` with stderr on a pipe and returns it with the pipe's read
/// end, once the ready line was read from it.
fn start_shim_logging<A: AsRef<std::ffi::OsStr>>(
    socket: &Path,
    args: &[A],
) -> (Child, std::io::BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(SHIM)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "shim exited before it was ready");
        if line.starts_with("ready ") {
            assert_eq!(line.trim(), format!("ready {}", socket.display()));
            break;
        }
    }
    (child, lines)
}

#[test]
fn a_shim_whose_log_reader_is_gone_keeps_serving() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let b = bundle(dir.path(), BundleBuilder::new().args(["sh", "-c", "exit 4"]));
    // Debug logs a line for each runc call: plenty of writes to a dead pipe.
    let (mut shim, reader) = start_shim_logging(&socket, &["--log-level", "debug"]);
    drop(reader);
    let pid = stdout_of(&shimctl(&socket, &["create", "--id", "e2e-epipe", "--bundle", b.to_str().unwrap()]));
    stdout_of(&shimctl(&socket, &["start"]));
    assert_eq!(stdout_of(&shimctl(&socket, &["wait", "--pid", &pid])), "4");
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &pid])), "4");
    // It then exits as usual (0), not by a panic in its logger.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = shim.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < T, "shim did not exit after its init was deleted");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    for (format, check) in [("text", false), ("json", true)] {
        let socket = dir.path().join(format).join("shim.sock");
        let (mut shim, mut reader) = start_shim_logging(&socket, &["--log-format", format]);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert!(shim.wait().unwrap().success());
        let lines: Vec<&str> = rest.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{format}: no log line on SIGTERM");
        assert!(!rest.contains('\u{1b}'), "{format}: ANSI escapes in logs off a terminal: {rest:?}");
        for line in lines {
            let parsed = serde_json::from_str::<serde_json::Value>(line).is_ok();
            assert_eq!(parsed, check, "{format}: {line}");
        }
    }
}

#[test]
fn versions_name_the_release_and_every_help_shows_an_example() {
    for bin in [SHIM, SHIMCTL] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(env!("CARGO_PKG_VERSION")), "{bin}: {text}");
        let help = Command::new(bin).arg("--help").output().unwrap();
        assert!(String::from_utf8_lossy(&help.stdout).contains("Example"), "{bin} --help");
    }
    for sub in ["create", "start", "exec", "state", "events", "kill", "wait", "pty", "delete", "run", "demo", "bundle"]
    {
        let help = Command::new(SHIMCTL).args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Example:\n  shimctl"), "shimctl {sub} --help has no example:\n{text}");
    }
}

#[test]
fn shimctl_pauses_lists_updates_and_resumes_through_the_daemon() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("shim.sock");
    let b = bundle(dir.path(), BundleBuilder::new().args(["sleep", "1000"]));
    let mut shim = start_shim(&socket);
    let init = stdout_of(&shimctl(&socket, &["create", "--id", "e2e-pause", "--bundle", b.to_str().unwrap()]));
    stdout_of(&shimctl(&socket, &["start"]));
    let exec = stdout_of(&shimctl(&socket, &["exec", "--", "sleep", "1000"]));
    let ps = stdout_of(&shimctl(&socket, &["ps"]));
    for pid in [&init, &exec] {
        assert!(ps.lines().any(|l| l == format!("{pid} shim")), "{ps}");
    }
    stdout_of(&shimctl(&socket, &["update", "--memory-limit", "268435456", "--pids-limit", "100"]));
    let stats = stdout_of(&shimctl(&socket, &["stats", "--json"]));
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["memory"]["limit"], 268435456, "{stats}");
    assert_eq!(stats["pids"]["limit"], 100, "{stats}");
    assert!(stats["pids"]["current"].as_u64().unwrap_or(0) >= 2, "{stats}");
    assert!(stdout_of(&shimctl(&socket, &["stats"])).contains("memory usage"));
    let bad = shimctl(&socket, &["update"]);
    assert!(!bad.status.success());
    stdout_of(&shimctl(&socket, &["pause"]));
    assert_eq!(stdout_of(&shimctl(&socket, &["state"])), format!("id e2e-pause\n{init} PAUSED\n{exec} PAUSED"));
    let refused = shimctl(&socket, &["exec", "--", "true"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FAILED_PRECONDITION"), "{refused:?}");
    stdout_of(&shimctl(&socket, &["resume"]));
    assert_eq!(stdout_of(&shimctl(&socket, &["state"])), format!("id e2e-pause\n{init} RUNNING\n{exec} RUNNING"));
    assert_eq!(stdout_of(&shimctl(&socket, &["delete", "--pid", &init])), "137");
    let start = Instant::now();
    while shim.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < T, "shim did not exit after its init was deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_containers_in_one_process_through_the_many_containers_example() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = shim_core::testing::runc_binary();
    let summary =
        tokio::time::timeout(T * 4, shim_examples::many::run(20, dir.path(), &runtime)).await.unwrap().unwrap();
    assert_eq!(summary.statuses.len(), 20);
    for (id, status) in &summary.statuses {
        let i: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(*status, i % 7, "{id}");
        assert_eq!(summary.outputs.get(id).map(String::as_str), Some(format!("hello from container {i}\n").as_str()));
        assert_eq!(summary.exit_events.get(id), Some(status), "{id}");
    }
    assert_eq!(summary.leftovers, 0, "work directories left behind");
}

/// One command of a recorded session and the lines it printed.
struct SessionStep {
    command: String,
    expected: Vec<String>,
}

/// The `$ `-prefixed commands of a ```text block and the lines after each.
fn session_steps(block: &str) -> Vec<SessionStep> {
    let mut steps: Vec<SessionStep> = Vec::new();
    for line in block.lines() {
        match (line.strip_prefix("$ "), steps.last_mut()) {
            (Some(command), _) => steps.push(SessionStep { command: command.to_string(), expected: Vec::new() }),
            (None, Some(step)) => step.expected.push(line.to_string()),
            (None, None) => panic!("the session starts with output, not a command: {line:?}"),
        }
    }
    steps
}

/// Whether `actual` is `expected` with its pids (numbers of four digits or
/// more, as the session recorded them) standing for those of this run:
/// each recorded pid is bound to the first number in its place, and must
/// stand for that one wherever it comes again.
fn matches_with_pids(expected: &str, actual: &str, pids: &mut Vec<(String, String)>) -> bool {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.split(' ').collect(), actual.split(' ').collect());
    if e.len() != a.len() {
        return false;
    }
    e.iter().zip(&a).all(|(e, a)| {
        let is_pid = e.len() >= 4 && e.bytes().all(|b| b.is_ascii_digit());
        if !is_pid {
            return e == a;
        }
        match pids.iter().find(|(recorded, _)| recorded == e) {
            Some((_, bound)) => bound == a,
            None if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                pids.push((e.to_string(), a.to_string()));
                true
            }
            None => false,
        }
    })
}

/// What a failed run of the daemon guide's session leaves is removed: the
/// container (through its daemon, which then exits, or runc if that fails)
/// and the session's files, so the next run starts clean.
struct SessionGuard {
    export: String,
    /// (recorded, this run's) pids; the first is the container's init.
    pids: Vec<(String, String)>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some((_, init)) = self.pids.first() {
                let ctl = "shimctl --socket /run/shim/web.sock";
                let script = format!(
                    "{}; {ctl} kill --pid {init} --signal 9; {ctl} wait --pid {init}; {ctl} delete --pid {init}",
                    self.export
                );
                let _ = Command::new("timeout").args(["30", "sh", "-c", &script]).current_dir(repo()).status();
            }
            let _ = Command::new("runc").args(["delete", "--force", "web"]).status();
        }
        let _ = std::fs::remove_dir_all("/tmp/tr");
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_daemon_guides_session_runs_as_written() {
    if !require_runc() {
        return;
    }
    let repo = repo();
    let guide = std::fs::read_to_string(repo.join("docs/daemon.md")).unwrap();
    // The guide's install block: the build (which `make test` runs before
    // the tests) and the PATH line, run here before each command.
    let install = guide.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    let export = install.lines().find(|l| l.starts_with("export PATH=")).expect("the guide's PATH line");
    let build = install.lines().find(|l| l.starts_with("cargo build ")).expect("the guide's build line");
    let makefile = std::fs::read_to_string(repo.join("Makefile")).unwrap();
    assert!(
        makefile.contains(&build.replacen("cargo ", "$(CARGO) ", 1)),
        "`make test` must run the guide's build line `{build}` before the tests"
    );
    let built = repo.join("target/release/shimctl");
    if !built.is_file() || !repo.join("target/release/shim").is_file() {
        let why = format!("{} is missing: `make test` runs the guide's build line first", built.display());
        assert!(std::env::var("SHIM_REQUIRE_RUNC").as_deref() != Ok("1"), "{why}");
        eprintln!("skipping the daemon guide's session: {why}");
        return;
    }
    let block = guide.split("```text\n").find(|b| b.starts_with("$ shimctl bundle")).expect("the guide's session");
    let steps = session_steps(block.split("```").next().unwrap());
    assert!(steps.len() > 10, "the session has {} commands", steps.len());
    // The session's own paths: only this test uses them, but a daemon a
    // person started there from the guide is not ours to replace.
    let socket = Path::new("/run/shim/web.sock");
    assert!(
        std::os::unix::net::UnixStream::connect(socket).is_err(),
        "a shim is serving {}: stop it before this test",
        socket.display()
    );
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_dir_all("/tmp/tr");
    let mut guard = SessionGuard { export: export.to_string(), pids: Vec::new() };
    let pids = &mut guard.pids;
    for step in &steps {
        let mut command = step.command.clone();
        for (recorded, bound) in pids.iter() {
            command = command.replace(recorded.as_str(), bound);
        }
        if step.expected.first().is_some_and(|l| l.contains("UNAVAILABLE")) {
            // "The shim exited after the init's Delete": its reply comes
            // before it removes its socket.
            until("the daemon to remove its socket", || !socket.exists());
        }
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{export} && {{ {command}; }} 2>&1")])
            .current_dir(&repo)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = sh.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Read on a thread, so a command that hangs fails the test at T.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            let _ = tx.send(out);
        });
        let out = rx.recv_timeout(T).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("`{command}` did not finish within {T:?}")
        });
        wait_child(&mut child);
        let actual: Vec<&str> = out.lines().collect();
        let same = actual.len() == step.expected.len()
            && step.expected.iter().zip(&actual).all(|(e, a)| matches_with_pids(e, a, pids));
        assert!(same, "`{command}` printed {actual:#?}, the guide says {:#?}", step.expected);
    }
}

#[test]
fn session_pids_stand_for_this_runs() {
    let mut pids = Vec::new();
    assert!(matches_with_pids("26296", "812", &mut pids));
    assert!(matches_with_pids("26296 RUNNING", "812 RUNNING", &mut pids));
    assert!(!matches_with_pids("26296 RUNNING", "813 RUNNING", &mut pids));
    assert!(!matches_with_pids("137", "138", &mut pids));
    assert!(!matches_with_pids("26317", "x", &mut pids));
    assert!(matches_with_pids("exit status 3", "exit status 3", &mut pids));
    let steps = session_steps("$ a\nout\n$ b\n");
    assert_eq!((steps.len(), steps[0].expected.len(), steps[1].expected.len()), (2, 1, 0));
}
