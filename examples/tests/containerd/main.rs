//! Shims driven by a real containerd 1.6 through `ctr`, as a user would.
//!
//! Each session is a function taking the [`Runtime`] under test, so that the
//! reference Go shim (`io.containerd.runc.v2`) and our own binary
//! (`Runtime::binary("/abs/path")`) run the very same `ctr` commands and are
//! held to the same outputs, exit statuses and event sequences: every
//! session runs once through each (`reference_*` and `rshim_*`).
//!
//! The tests need root, runc, busybox, containerd, ctr and the reference
//! shim: without them they skip with a message, or fail when
//! `SHIM_REQUIRE_RUNC=1` (see [`harness::require_containerd`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

mod cri;
mod harness;
mod node;
mod pods;

use std::path::Path;
use std::time::Duration;

use harness::{require_containerd, text, Containerd, CriSetup, Event, Runtime, WAIT};
use prost::Message;

/// Asserts that a container's events are `expected`, in order; returns
/// whether `/tasks/delete` was missing from the reference shim's, which is
/// then let go: containerd's Go shim sends it from a queue and exits at the
/// Shutdown that follows, and once (containerd 2.3.4, CI) it never arrived.
/// Ours queues it in Delete and sends its whole queue before it exits: it
/// must be there.
fn assert_topics(rt: &Runtime, seen: Vec<String>, expected: &[&str], events: &harness::EventRecorder) -> bool {
    let delete_lost = rt.is_reference() && !seen.iter().any(|t| t == "/tasks/delete");
    let mut expected = expected.to_vec();
    if delete_lost {
        eprintln!("the reference shim's /tasks/delete was lost (a race with its own exit)");
        expected.retain(|t| *t != "/tasks/delete");
    }
    assert_eq!(seen, expected, "all lines: {:#?}", events.lines());
    delete_lost
}

/// The `nth` (from 0) event of `topic` among `events`.
fn nth_event<'a>(events: &'a [Event], topic: &str, nth: usize) -> &'a Event {
    events
        .iter()
        .filter(|e| e.topic == topic)
        .nth(nth)
        .unwrap_or_else(|| panic!("no event {topic} #{nth} among {events:#?}"))
}

/// `ctr run --rm --rootfs DIR`: the container's stdout and stderr reach
/// ctr's, its exit status becomes ctr's, and the events are exactly
/// create, start, exit, delete between the container's create and delete.
fn run_rm_passes_output_and_status(rt: &Runtime) {
    let cd = Containerd::start();
    let events = cd.events();
    let rootfs = cd.rootfs("r1");
    let rootfs = rootfs.to_str().expect("the rootfs path is UTF-8");
    // `--rootfs` gives the process no PATH: commands are absolute.
    let out = cd.run(rt, &["--rm", "--rootfs", rootfs, "r1", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ctr run: stdout {:?} stderr {:?}\ncontainerd log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        cd.log_tail()
    );
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    events.until(|e| e.topic == "/containers/delete" && e.container() == Some("r1"), WAIT);
    let expected =
        ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete", "/containers/delete"];
    let delete_lost = assert_topics(rt, events.topics_for("r1"), &expected, &events);
    let of_r1 = events.for_container("r1");
    let exit = of_r1.iter().find(|e| e.topic == "/tasks/exit").expect("an exit event");
    assert_eq!(exit.payload["id"], "r1", "{exit:?}");
    assert_eq!(exit.payload["exit_status"], 3, "{exit:?}");
    if !delete_lost {
        let delete = of_r1.iter().find(|e| e.topic == "/tasks/delete").expect("a delete event");
        assert_eq!(delete.payload["exit_status"], 3, "{delete:?}");
        assert_eq!(delete.payload["pid"], exit.payload["pid"], "{delete:?} vs {exit:?}");
    }

    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// A hand-built OCI image, imported and unpacked into the overlayfs
/// snapshotter: the shim mounts the rootfs it gets in `Create` and the
/// container runs on it; nothing is left mounted afterwards.
fn image_run(rt: &Runtime) {
    let cd = Containerd::start();
    let image = cd.import_image("busybox-test");

    let out = cd.run(rt, &["--rm", image.as_str(), "i1", "echo", "hi"]);
    cd.check_ok(&out, "ctr run --rm IMAGE i1 echo hi");
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(text(&out.stderr), "");

    let out = cd.run(rt, &["--rm", image.as_str(), "i2", "cat", "/proc/mounts"]);
    cd.check_ok(&out, "ctr run --rm IMAGE i2 cat /proc/mounts");
    let mounts = text(&out.stdout);
    let root = mounts.lines().next().unwrap_or_default();
    assert!(root.starts_with("overlay / overlay "), "the container's root is not the overlay mount:\n{mounts}");

    // `--read-only`: a snapshot View, which for a one-layer image is a
    // read-only bind mount of the layer itself. Writing must fail, not land
    // in the image.
    let out = cd.run(rt, &["--rm", "--read-only", image.as_str(), "i3", "/bin/sh", "-c", "echo x > /written"]);
    assert_eq!(out.status.code(), Some(1), "a write to a read-only rootfs: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Read-only file system"), "{}", text(&out.stderr));
    let out = cd.run(rt, &["--rm", image.as_str(), "i4", "/bin/ls", "/written"]);
    assert_eq!(out.status.code(), Some(1), "the image was written to: {}", text(&out.stdout));

    // Only the image's committed layer is left in the snapshotter.
    let snapshots = text(&cd.ctr_ok(["snapshots", "ls"]).stdout);
    let rows: Vec<&str> = snapshots.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), 1, "snapshots left:\n{snapshots}");
    assert!(rows[0].contains("Committed"), "snapshots left:\n{snapshots}");

    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// A detached container through its whole life: `task ls`, `ps`, `exec`
/// with its own exit status, `pause`/`resume`, `metrics`, `kill`,
/// `task delete` reporting 137, `container delete`; the events of the
/// container are exactly the expected topics in order.
fn detached_session_and_events(rt: &Runtime) {
    let cd = Containerd::start();
    let image = cd.import_image("busybox-test");
    let events = cd.events();
    let id = "d1";

    let out = cd.run(rt, &["-d", image.as_str(), id, "sleep", "1000"]);
    cd.check_ok(&out, "ctr run -d IMAGE d1 sleep 1000");
    assert_eq!(cd.task_status(id).as_deref(), Some("RUNNING"));
    let pid = cd.task_pid(id).expect("`ctr task ls` shows the task's pid");
    assert!(pid > 0);

    let ps = text(&cd.ctr_ok(["task", "ps", id]).stdout);
    let pid_text = pid.to_string();
    assert!(
        ps.lines().skip(1).any(|l| l.split_whitespace().next() == Some(pid_text.as_str())),
        "`ctr task ps` does not list the init {pid}:\n{ps}"
    );

    let out = cd.exec(&["--exec-id", "x1", id, "/bin/sh", "-c", "echo e; exit 5"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "ctr task exec: stdout {:?} stderr {:?}\ncontainerd log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        cd.log_tail()
    );
    assert_eq!(text(&out.stdout), "e\n");

    // Pause and resume are synchronous: the state has changed when ctr returns.
    cd.ctr_ok(["task", "pause", id]);
    assert_eq!(cd.task_status(id).as_deref(), Some("PAUSED"));
    cd.ctr_ok(["task", "resume", id]);
    assert_eq!(cd.task_status(id).as_deref(), Some("RUNNING"));

    let metrics = text(&cd.ctr_ok(["task", "metrics", id]).stdout);
    assert!(metrics.contains("METRIC") && metrics.contains(id), "ctr task metrics:\n{metrics}");

    cd.ctr_ok(["task", "kill", "-s", "SIGKILL", id]);
    cd.wait_task_status(id, "STOPPED", WAIT);
    // ctr reports the status on stderr and exits 0:
    // level=warning msg="task d1 exit with non-zero exit code 137"
    let deleted = cd.ctr_ok(["task", "delete", id]);
    assert!(
        text(&deleted.stderr).contains("exit code 137"),
        "ctr task delete: stdout {:?} stderr {:?}",
        text(&deleted.stdout),
        text(&deleted.stderr)
    );
    cd.ctr_ok(["container", "delete", id]);

    events.until(|e| e.topic == "/containers/delete" && e.container() == Some(id), WAIT);
    let expected = [
        "/snapshot/prepare",
        "/containers/create",
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
        "/snapshot/remove",
        "/containers/delete",
    ];
    let delete_lost = assert_topics(rt, events.topics_for(id), &expected, &events);
    let of_d1 = events.for_container(id);
    let create = nth_event(&of_d1, "/tasks/create", 0);
    assert_eq!(create.payload["pid"], pid, "{create:?}");
    assert_eq!(create.payload["rootfs"][0]["type"], "overlay", "{create:?}");
    assert_eq!(nth_event(&of_d1, "/tasks/start", 0).payload["pid"], pid);
    assert_eq!(nth_event(&of_d1, "/tasks/exec-added", 0).payload["exec_id"], "x1");
    let exec_started = nth_event(&of_d1, "/tasks/exec-started", 0);
    assert_eq!(exec_started.payload["exec_id"], "x1", "{exec_started:?}");
    let exec_exit = nth_event(&of_d1, "/tasks/exit", 0);
    assert_eq!(exec_exit.payload["id"], "x1", "{exec_exit:?}");
    assert_eq!(exec_exit.payload["exit_status"], 5, "{exec_exit:?}");
    assert_eq!(exec_exit.payload["pid"], exec_started.payload["pid"], "{exec_exit:?}");
    let init_exit = nth_event(&of_d1, "/tasks/exit", 1);
    assert_eq!(init_exit.payload["id"], id, "{init_exit:?}");
    assert_eq!(init_exit.payload["pid"], pid, "{init_exit:?}");
    assert_eq!(init_exit.payload["exit_status"], 137, "{init_exit:?}");
    if !delete_lost {
        let delete = nth_event(&of_d1, "/tasks/delete", 0);
        assert_eq!(delete.payload["pid"], pid, "{delete:?}");
        assert_eq!(delete.payload["exit_status"], 137, "{delete:?}");
    }

    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// `ctr run -t` under a pseudo-terminal (`script`): the process gets a
/// terminal of its own and its exit status passes through.
fn tty_run(rt: &Runtime) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("t1");
    let mut args = vec!["run".to_string()];
    args.extend(cd.run_flags(rt));
    args.extend(
        ["-t", "--rm", "--rootfs", path_str(&rootfs).as_str(), "t1", "/bin/sh", "-c", "tty; exit 4"].map(String::from),
    );
    let cmd = cd.ctr_command(&args);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-qec", line.as_str(), "/dev/null"]);
    let out = harness::run_bounded(script, WAIT, "script ctr run -t").unwrap_or_else(|e| panic!("{e}"));
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "ctr run -t: {shown:?} {:?}\n{}", text(&out.stderr), cd.log_tail());
    assert!(shown.contains("/dev/pts/"), "the process has no terminal: {shown:?}");
    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// SIGKILLs the `shims` of container `id`, then waits until containerd has
/// cleaned up after them: the task is no longer RUNNING and the container's
/// process `pid` is gone.
fn kill_shims_and_wait(cd: &Containerd, id: &str, shims: Vec<i32>, pid: u32) {
    for shim in shims {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + WAIT;
    while cd.task_status(id).is_some_and(|s| s == "RUNNING") || Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "after the shim's death: task {:?}, process {pid} alive: {}\n{}",
            cd.task_status(id),
            Path::new(&format!("/proc/{pid}")).exists(),
            cd.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The shim is SIGKILLed while its container runs: containerd notices, runs
/// the shim's `delete`, the container's processes are gone and nothing stays
/// listed or left behind.
fn shim_killed(rt: &Runtime) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("k1");
    let out = cd.run(rt, &["-d", "--rootfs", path_str(&rootfs).as_str(), "k1", "/bin/sleep", "1000"]);
    cd.check_ok(&out, "ctr run -d k1");
    let pid = cd.task_pid("k1").expect("`ctr task ls` shows the task's pid");
    let shims = cd.shim_pids("k1");
    assert!(!shims.is_empty(), "no shim process found for k1");
    // The shim is placed just above containerd for the OOM killer, as
    // containerd's shims place themselves.
    let adj = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap_or_default();
    let containerd: i32 = adj(cd.pid().expect("containerd runs")).trim().parse().expect("a score");
    for shim in &shims {
        let shim = u32::try_from(*shim).expect("a pid");
        assert_eq!(adj(shim).trim(), (containerd + 1).min(1000).to_string(), "oom_score_adj of shim {shim}");
    }
    kill_shims_and_wait(&cd, "k1", shims, pid);
    let _ = cd.ctr(["task", "delete", "k1"]);
    cd.ctr_ok(["container", "delete", "k1"]);
    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// runc options for one container: its runc state under the given `Root`
/// (`<Root>/<namespace>/<id>`) and every runc call through the given
/// `BinaryName`. Ours reads them from a runtime config file (`ctr run
/// --runtime-config-path`, the form CRI sends for any runtime but runc.v2);
/// the reference shim gets them as `--runc-root` and `--runc-binary`. Then
/// the shim is SIGKILLed: containerd's cleanup runs the shim binary's
/// `delete`, which must find the container with the same options, kill it
/// and remove its state.
fn runc_options(rt: &Runtime) {
    use std::os::unix::fs::PermissionsExt;
    let cd = Containerd::start();
    let calls = cd.dir().join("runc-calls");
    let wrapper = cd.dir().join("my-runc");
    let script = format!("#!/bin/sh\necho \"$@\" >> {}\nexec runc \"$@\"\n", calls.display());
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = cd.rootfs("o1");
    let mut args = vec!["-d".to_string()];
    if rt.is_reference() {
        // `run_flags` already gives the reference shim `--runc-root`.
        args.extend(["--runc-binary".to_string(), path_str(&wrapper)]);
    } else {
        let config = cd.dir().join("rshim.toml");
        let toml = format!(
            "# runc options, as in CRI's runtime options table\nRoot = {:?}\nBinaryName = {:?}\nSomeOtherKey = 1\n",
            path_str(&cd.runc_root()),
            path_str(&wrapper)
        );
        std::fs::write(&config, toml).unwrap();
        args.extend(["--runtime-config-path".to_string(), path_str(&config)]);
    }
    args.extend(["--rootfs", path_str(&rootfs).as_str(), "o1", "/bin/sleep", "1000"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cd.run(rt, &args);
    cd.check_ok(&out, "ctr run -d (runc options) o1");
    let pid = cd.task_pid("o1").expect("`ctr task ls` shows the task's pid");
    let state = cd.runc_root().join(&cd.namespace).join("o1").join("state.json");
    assert!(state.exists(), "no runc state at {}", state.display());
    let seen = std::fs::read_to_string(&calls).unwrap_or_default();
    for command in ["create", "start"] {
        assert!(
            seen.lines().any(|l| l.split_whitespace().any(|w| w == command)),
            "no `{command}` through the runc binary of the options:\n{seen}"
        );
    }

    kill_shims_and_wait(&cd, "o1", cd.shim_pids("o1"), pid);
    let _ = cd.ctr(["task", "delete", "o1"]);
    cd.ctr_ok(["container", "delete", "o1"]);
    assert!(!state.exists(), "runc state left at {}", state.display());
    let seen = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        seen.lines().any(|l| l.contains("delete") && l.contains("--force") && l.contains("o1")),
        "the cleanup did not run `delete --force` through the runc binary of the options:\n{seen}"
    );
    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// containerd restarts while a container runs: afterwards the task is still
/// RUNNING (containerd reconnected to the shim through the bundle's
/// `address`), exec works, and kill and delete work.
fn containerd_restart(rt: &Runtime) {
    let mut cd = Containerd::start();
    let rootfs = cd.rootfs("s1");
    let out = cd.run(rt, &["-d", "--rootfs", path_str(&rootfs).as_str(), "s1", "/bin/sleep", "1000"]);
    cd.check_ok(&out, "ctr run -d s1");
    cd.restart();
    assert_eq!(cd.task_status("s1").as_deref(), Some("RUNNING"), "{}", cd.log_tail());
    let out = cd.exec(&["--exec-id", "after", "s1", "/bin/sh", "-c", "echo again; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "exec after restart: {:?} {:?}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "again\n");
    cd.ctr_ok(["task", "kill", "-s", "SIGKILL", "s1"]);
    cd.wait_task_status("s1", "STOPPED", WAIT);
    let deleted = cd.ctr_ok(["task", "delete", "s1"]);
    assert!(text(&deleted.stderr).contains("exit code 137"), "{:?}", text(&deleted.stderr));
    cd.ctr_ok(["container", "delete", "s1"]);
    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// An exec runs with the process containerd sent, unchanged: the same
/// capability sets as the container's init (none ambient), its umask and
/// its OOM score adjustment, as containerd's runc shim passes them on.
fn exec_process_as_sent(rt: &Runtime) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("x1");
    let out = cd.run(rt, &["-d", "--rootfs", path_str(&rootfs).as_str(), "x1", "/bin/sleep", "1000"]);
    cd.check_ok(&out, "ctr run -d x1");
    let fields = |status: &str| -> Vec<String> {
        status
            .lines()
            .filter(|l| l.starts_with("Cap") || l.starts_with("Umask") || l.starts_with("NoNewPrivs"))
            .map(String::from)
            .collect()
    };
    let init = cd.exec(&["--exec-id", "i", "x1", "/bin/cat", "/proc/1/status"]);
    cd.check_ok(&init, "ctr task exec cat /proc/1/status");
    let exec = cd.exec(&["--exec-id", "s", "x1", "/bin/cat", "/proc/self/status"]);
    cd.check_ok(&exec, "ctr task exec cat /proc/self/status");
    let (init, exec) = (fields(&text(&init.stdout)), fields(&text(&exec.stdout)));
    assert!(exec.iter().any(|l| l.starts_with("CapEff")), "{exec:?}");
    assert_eq!(exec, init, "the exec's credentials differ from the container's");
    assert!(exec.contains(&"CapAmb:\t0000000000000000".to_string()), "{exec:?}");
    let adj = cd.exec(&["--exec-id", "o", "x1", "/bin/cat", "/proc/1/oom_score_adj", "/proc/self/oom_score_adj"]);
    cd.check_ok(&adj, "ctr task exec cat oom_score_adj");
    let adj = text(&adj.stdout);
    let both: Vec<&str> = adj.lines().collect();
    assert_eq!(both.first(), both.get(1), "oom_score_adj of the init and the exec: {adj:?}");
    cd.ctr_ok(["task", "kill", "-s", "SIGKILL", "x1"]);
    cd.wait_task_status("x1", "STOPPED", WAIT);
    cd.ctr_ok(["task", "delete", "x1"]);
    cd.ctr_ok(["container", "delete", "x1"]);
    cd.assert_no_leftovers();
}

#[test]
fn reference_exec_process_as_sent() {
    if !require_containerd() {
        return;
    }
    exec_process_as_sent(&Runtime::reference());
}

#[test]
fn rshim_exec_process_as_sent() {
    if !require_containerd() {
        return;
    }
    exec_process_as_sent(&rshim());
}

/// `ctr task ps` with an exec running: both processes listed, the exec's
/// row naming its exec id (decoded by ctr from `ProcessDetails`).
fn ps_lists_execs(rt: &Runtime) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("p1");
    let out = cd.run(rt, &["-d", "--rootfs", path_str(&rootfs).as_str(), "p1", "/bin/sleep", "1000"]);
    cd.check_ok(&out, "ctr run -d p1");
    let init = cd.task_pid("p1").expect("`ctr task ls` shows the task's pid");
    let out = cd.exec(&["--detach", "--exec-id", "bg", "p1", "/bin/sleep", "1000"]);
    cd.check_ok(&out, "ctr task exec --detach");
    let ps = text(&cd.ctr_ok(["task", "ps", "p1"]).stdout);
    let rows: Vec<&str> = ps.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), 2, "ctr task ps:\n{ps}");
    assert!(rows.iter().any(|r| r.starts_with(&format!("{init} ")) && r.ends_with('-')), "ctr task ps:\n{ps}");
    assert!(rows.iter().any(|r| r.contains("bg")), "the exec's row has no exec id:\n{ps}");
    cd.ctr_ok(["task", "kill", "-s", "SIGKILL", "p1"]);
    cd.wait_task_status("p1", "STOPPED", WAIT);
    cd.ctr_ok(["task", "delete", "p1"]);
    cd.ctr_ok(["container", "delete", "p1"]);
    cd.assert_no_leftovers();
    no_socket_left(&cd, rt);
}

/// Our shim leaves no socket behind, whatever happened (it removes its own
/// on exit, and its `delete` removes it after a crash). The Go shim leaves
/// its socket after a SIGKILL (`reference_shim_killed`); that is not
/// asserted of it.
fn no_socket_left(cd: &Containerd, rt: &Runtime) {
    if rt.is_reference() {
        return;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while !cd.new_sockets().is_empty() {
        assert!(std::time::Instant::now() < deadline, "sockets left in /run/containerd/s: {:?}", cd.new_sockets());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

#[test]
fn reference_run_rm_passes_output_and_status() {
    if !require_containerd() {
        return;
    }
    run_rm_passes_output_and_status(&Runtime::reference());
}

#[test]
fn reference_image_run() {
    if !require_containerd() {
        return;
    }
    image_run(&Runtime::reference());
}

#[test]
fn reference_detached_session_and_events() {
    if !require_containerd() {
        return;
    }
    detached_session_and_events(&Runtime::reference());
}

/// Our runtime, `containerd-shim-rshim-v1`, as cargo built it.
fn rshim() -> Runtime {
    Runtime::binary(env!("CARGO_BIN_EXE_containerd-shim-rshim-v1"))
}

#[test]
fn rshim_run_rm_passes_output_and_status() {
    if !require_containerd() {
        return;
    }
    run_rm_passes_output_and_status(&rshim());
}

#[test]
fn rshim_image_run() {
    if !require_containerd() {
        return;
    }
    image_run(&rshim());
}

#[test]
fn rshim_detached_session_and_events() {
    if !require_containerd() {
        return;
    }
    detached_session_and_events(&rshim());
}

#[test]
fn reference_tty_run() {
    if !require_containerd() {
        return;
    }
    tty_run(&Runtime::reference());
}

#[test]
fn rshim_tty_run() {
    if !require_containerd() {
        return;
    }
    tty_run(&rshim());
}

#[test]
fn reference_shim_killed() {
    if !require_containerd() {
        return;
    }
    shim_killed(&Runtime::reference());
}

#[test]
fn rshim_shim_killed() {
    if !require_containerd() {
        return;
    }
    shim_killed(&rshim());
}

#[test]
fn reference_containerd_restart() {
    if !require_containerd() {
        return;
    }
    containerd_restart(&Runtime::reference());
}

#[test]
fn rshim_containerd_restart() {
    if !require_containerd() {
        return;
    }
    containerd_restart(&rshim());
}

#[test]
fn reference_ps_lists_execs() {
    if !require_containerd() {
        return;
    }
    ps_lists_execs(&Runtime::reference());
}

#[test]
fn rshim_ps_lists_execs() {
    if !require_containerd() {
        return;
    }
    ps_lists_execs(&rshim());
}

#[test]
fn reference_runc_options() {
    if !require_containerd() {
        return;
    }
    runc_options(&Runtime::reference());
}

#[test]
fn rshim_runc_options() {
    if !require_containerd() {
        return;
    }
    runc_options(&rshim());
}

/// `ctr run --log-uri`: a `file://` URI gets the container's stdout and
/// stderr appended (its directory created); a `binary://` URI starts the
/// logging program with the output on fds 3 and 4, a ready pipe on fd 5,
/// the query as its arguments and the container's id and namespace in its
/// environment, and it has the whole output once the task is deleted.
fn log_uris(rt: &Runtime) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("l1");
    let rootfs = rootfs.to_str().expect("the rootfs path is UTF-8");
    let logs = cd.dir().join("logs");
    let file = logs.join("sub").join("l1.log");
    let uri = format!("file://{}", path_str(&file));
    let script = "echo out; echo err >&2";
    let out = cd.run(rt, &["-d", "--log-uri", &uri, "--rootfs", rootfs, "l1", "/bin/sh", "-c", script]);
    cd.check_ok(&out, "ctr run -d --log-uri file://");
    // Read before the task is deleted: the Go shim reports the exit before
    // its copies end, and a delete right after the exit (`--rm`) can cut
    // them short (seen on a slow CPU: "err" lost); ours has both by its exit.
    if rt.is_reference() {
        // And even without a delete, once (CI, host, containerd 1.6.20):
        // "err" never reached the file. Its loss is recorded, not failed.
        cd.wait_task_status("l1", "STOPPED", WAIT);
        if let Err(got) = text_within(&file, &["out\n", "err\n"], Duration::from_secs(5)) {
            eprintln!("the reference shim lost output of its file log: {got}");
        }
    } else {
        wait_for_text(&file, &["out\n", "err\n"]);
        cd.wait_task_status("l1", "STOPPED", WAIT);
    }
    cd.ctr_ok(["task", "delete", "l1"]);
    cd.ctr_ok(["container", "delete", "l1"]);

    // A logger as simple as can be: ready at once (fd 5 closed), each stream
    // to its own file. Its environment holds only what the shim gives it.
    let logger = logs.join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE $*\" > \"$2/env\"\n\
         /bin/cat <&3 > \"$2/out\" &\n/bin/cat <&4 > \"$2/err\" &\nwait\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?dir={}", path_str(&logger), path_str(&logs));
    let out = cd.run(rt, &["--rm", "--log-uri", &uri, "--rootfs", rootfs, "l2", "/bin/sh", "-c", script]);
    cd.check_ok(&out, "ctr run --log-uri binary://");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    assert_eq!((read("out"), read("err")), ("out\n".into(), "err\n".into()));
    assert_eq!(read("env"), format!("l2 {} dir {}\n", cd.namespace, path_str(&logs)));
    cd.assert_no_leftovers();
}

#[test]
fn reference_log_uris() {
    if !require_containerd() {
        return;
    }
    log_uris(&Runtime::reference());
}

#[test]
fn rshim_log_uris() {
    if !require_containerd() {
        return;
    }
    log_uris(&rshim());
}

/// What containerd says in its log about the shim of a `ctr run --rm`
/// session: its warnings and errors that name the shim, the runtime or
/// `shim` at all, and the task API version of its "connecting to shim"
/// lines.
fn shim_log_lines(rt: &Runtime) -> (Vec<String>, Vec<String>) {
    let cd = Containerd::start();
    let rootfs = cd.rootfs("g1");
    let out = cd.run(rt, &["--rm", "--rootfs", path_str(&rootfs).as_str(), "g1", "/bin/sh", "-c", "echo hi"]);
    cd.check_ok(&out, "ctr run --rm g1");
    cd.assert_no_leftovers();
    let log = cd.log();
    let complaints = log
        .lines()
        .filter(|l| l.contains("level=error") || l.contains("level=warning"))
        .filter(|l| l.contains("shim") || l.contains(rt.name()) || l.contains("runtime info"))
        .map(String::from)
        .collect();
    let versions = log
        .lines()
        .filter(|l| l.contains("msg=\"connecting to shim"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("version=")).map(String::from))
        .collect();
    (complaints, versions)
}

/// The `msg` of a containerd log line.
fn log_message(line: &str) -> String {
    line.split_once("msg=\"")
        .map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// containerd 2.3 and later drive a shim that answers their bootstrap with
/// task API v3 (containerd's "connecting to shim" line says `version=3`),
/// and run `<shim> -info` before each create: ours answers both, so the log
/// has no warning or error about our shim that it does not have about the
/// Go shim. Through 1.6 (Debian's), 1.6's plain address: version 2.
#[test]
fn the_log_has_nothing_about_our_shim_and_the_api_version_is_containerds_newest() {
    if !require_containerd() {
        return;
    }
    let major = harness::containerd_major_version();
    let expected = if major >= 2 { "3" } else { "2" };
    let mut messages = Vec::new();
    for rt in [Runtime::reference(), rshim()] {
        let (complaints, versions) = shim_log_lines(&rt);
        assert!(
            versions.iter().all(|v| v == expected),
            "{}: containerd {major} connected with {versions:?}",
            rt.name()
        );
        if major >= 2 {
            assert!(!versions.is_empty(), "{}: no \"connecting to shim\" line", rt.name());
        }
        messages.push((complaints.iter().map(|l| log_message(l)).collect::<Vec<_>>(), complaints));
    }
    let [(go, _), (ours, lines)] = &messages[..] else { unreachable!() };
    let only_ours: Vec<&String> = lines.iter().zip(ours).filter(|(_, m)| !go.contains(m)).map(|(l, _)| l).collect();
    assert_eq!(only_ours, Vec::<&String>::new(), "containerd {major} says of our shim only; of the Go shim: {go:?}");
}

/// `-info` prints a `RuntimeInfo` with runc's features, as containerd 2.2
/// and later read it (also where no containerd 2.x is installed).
#[test]
fn info_prints_the_runtime_info_with_runcs_features() {
    if !require_containerd() {
        return;
    }
    let shim = env!("CARGO_BIN_EXE_containerd-shim-rshim-v1");
    let mut cmd = std::process::Command::new(shim);
    cmd.arg("-info");
    let out = harness::run_bounded(cmd, WAIT, "shim -info").unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let info = shim_transport_ttrpc::proto::containerd::types::RuntimeInfo::decode(out.stdout.as_slice()).unwrap();
    assert_eq!(info.name, "io.containerd.rshim.v1");
    let features = info.features.expect("runc's features");
    assert_eq!(features.type_url, shim_transport_ttrpc::bootstrap::FEATURES_TYPE_URL);
    let json: serde_json::Value = serde_json::from_slice(&features.value).unwrap();
    assert!(json["ociVersionMin"].is_string(), "{json}");
}

/// The image CRI runs as every pod's sandbox (its "pause" container).
const SANDBOX_IMAGE: &str = "docker.io/library/pause-test:latest";

/// containerd's CRI plugin with two runtime handlers, as on a Kubernetes
/// node: `runc` (Debian's Go shim, `io.containerd.runc.v2`, with its runc
/// options) and `rshim` (ours, `io.containerd.rshim.v1`, found on
/// containerd's PATH, its runc options in a runtime config file as the
/// README shows). Both keep runc's state under the test's directory.
/// `RSHIM_BIN` names another build of our shim (a measurement takes the
/// operator build of `make daemon`); by default, the one cargo built.
fn cri_setup() -> CriSetup {
    cri_setup_with("")
}

/// [`cri_setup`] with `options` (TOML lines of containerd's runc option
/// names) added to both runtimes' options: the Go shim's table and our
/// runtime's config file.
fn cri_setup_with(options: &str) -> CriSetup {
    let options = options.to_string();
    let built = Path::new(env!("CARGO_BIN_EXE_containerd-shim-rshim-v1"));
    let shim = std::env::var_os("RSHIM_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| built.to_path_buf());
    CriSetup {
        shim_dir: shim.parent().expect("the shim binary is in a directory").to_path_buf(),
        plugin_toml: Box::new(move |dir: &Path| {
            let d = path_str(dir);
            std::fs::write(dir.join("rshim.toml"), format!("Root = \"{d}/runc\"\n{options}")).unwrap();
            let runc_options: String = options.lines().map(|l| format!("          {l}\n")).collect();
            format!(
                r#"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{SANDBOX_IMAGE}"
    # This host does not let a process lower its oom_score_adj below its
    # parent's (the sandbox asks for -998): keep it at containerd's.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = "{d}/runc"
{runc_options}      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rshim]
        runtime_type = "io.containerd.rshim.v1"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rshim.options]
          ConfigPath = "{d}/rshim.toml"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"
"#
            )
        }),
    }
}

/// Waits until `path` holds every one of `needles`.
fn wait_for_text(path: &Path, needles: &[&str]) -> String {
    text_within(path, needles, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// What `path` holds once it holds every one of `needles`, or, after
/// `timeout`, what it holds instead.
fn text_within(path: &Path, needles: &[&str], timeout: Duration) -> Result<String, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| got.contains(n)) {
            return Ok(got);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("{} holds {got:?}, not all of {needles:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pod through containerd's CRI plugin, as the kubelet drives it, with
/// the runtime `handler`: RunPodSandbox (host network), CreateContainer and
/// StartContainer of a busybox container whose stdout and stderr reach its
/// CRI log, ExecSync with output and exit status, ContainerStatus RUNNING,
/// StopContainer (SIGTERM: EXITED, 143), RemoveContainer, StopPodSandbox,
/// RemovePodSandbox; nothing left behind.
fn cri_pod(handler: &str, shim_binary: &str) {
    let cd = Containerd::start_cri(cri_setup());
    assert_eq!(cd.import_image_running("pause-test", &["/bin/sleep", "1000000"]), SANDBOX_IMAGE);
    let image = cd.import_image("busybox-test");
    let logs = cd.dir().join("logs").join("p1");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = cri::Cri::connect(cd.address()).await;
        let fail = |what: &str, e: tonic::Status| -> ! { panic!("{what}: {e}\ncontainerd log:\n{}", cd.log_tail()) };
        let v: cri::VersionResponse = client
            .call("Version", cri::VersionRequest { version: "v1".into() })
            .await
            .unwrap_or_else(|e| fail("Version", e));
        assert_eq!(v.runtime_name, "containerd");

        let sandbox_config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "p1".into(),
                uid: "uid-p1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: path_str(&logs),
            labels: Default::default(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/k8s.io".into(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NODE,
                        pid: cri::CONTAINER,
                        ipc: cri::POD,
                    }),
                }),
            }),
        };
        let run = cri::RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: handler.into() };
        let sandbox: cri::RunPodSandboxResponse =
            client.call("RunPodSandbox", run).await.unwrap_or_else(|e| fail("RunPodSandbox", e));
        let sid = sandbox.pod_sandbox_id;
        // The sandbox is served by the handler's shim binary.
        let shims = cd.shim_pids(&sid);
        assert!(!shims.is_empty(), "no shim serves sandbox {sid}");
        for pid in shims {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            assert!(exe.ends_with(shim_binary), "sandbox {sid} is served by {}", exe.display());
        }

        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: "c1".into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: image.clone() }),
            command: vec!["/bin/sh".into(), "-c".into(), "echo hello; echo oops >&2; exec sleep 1000".into()],
            args: Vec::new(),
            log_path: "c1.log".into(),
            linux: None,
        };
        let create = cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(container),
            sandbox_config: Some(sandbox_config),
        };
        let created: cri::ContainerId =
            client.call("CreateContainer", create).await.unwrap_or_else(|e| fail("CreateContainer", e));
        let cid = created.container_id;
        let id = || cri::ContainerId { container_id: cid.clone() };
        let _: cri::Empty = client.call("StartContainer", id()).await.unwrap_or_else(|e| fail("StartContainer", e));
        // CRI's log format: `<time> <stream> F <line>`.
        wait_for_text(&logs.join("c1.log"), &[" stdout F hello", " stderr F oops"]);
        let state = cd.runc_root().join("k8s.io").join(&cid).join("state.json");
        assert!(state.exists(), "no runc state at {} (the handler's Root option)", state.display());

        let exec = cri::ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec!["/bin/sh".into(), "-c".into(), "echo x; echo y >&2; exit 3".into()],
            timeout: 10,
        };
        let out: cri::ExecSyncResponse = client.call("ExecSync", exec).await.unwrap_or_else(|e| fail("ExecSync", e));
        assert_eq!((text(&out.stdout), text(&out.stderr), out.exit_code), ("x\n".into(), "y\n".into(), 3));

        let status: cri::ContainerStatusResponse =
            client.call("ContainerStatus", id()).await.unwrap_or_else(|e| fail("ContainerStatus", e));
        assert_eq!(status.status.as_ref().map(|s| s.state), Some(cri::RUNNING), "{status:?}");

        let stop = cri::StopContainerRequest { container_id: cid.clone(), timeout: 1 };
        let _: cri::Empty = client.call("StopContainer", stop).await.unwrap_or_else(|e| fail("StopContainer", e));
        let status: cri::ContainerStatusResponse =
            client.call("ContainerStatus", id()).await.unwrap_or_else(|e| fail("ContainerStatus", e));
        let s = status.status.unwrap_or_default();
        // SIGTERM first: `sleep` dies of it.
        assert_eq!((s.state, s.exit_code), (cri::EXITED, 143), "{s:?}");
        assert!(s.finished_at >= s.started_at && s.started_at > 0, "{s:?}");

        let _: cri::Empty = client.call("RemoveContainer", id()).await.unwrap_or_else(|e| fail("RemoveContainer", e));
        let pod = || cri::PodSandboxId { pod_sandbox_id: sid.clone() };
        let _: cri::Empty = client.call("StopPodSandbox", pod()).await.unwrap_or_else(|e| fail("StopPodSandbox", e));
        let _: cri::Empty =
            client.call("RemovePodSandbox", pod()).await.unwrap_or_else(|e| fail("RemovePodSandbox", e));
    });
    cd.assert_no_leftovers();
}

#[test]
fn reference_cri_pod() {
    if !require_containerd() {
        return;
    }
    cri_pod("runc", "containerd-shim-runc-v2");
}

#[test]
fn rshim_cri_pod() {
    if !require_containerd() {
        return;
    }
    cri_pod("rshim", "containerd-shim-rshim-v1");
}

/// The fenced blocks of `lang` in the Markdown `text`, in order.
fn fenced_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim() == format!("```{lang}") => current = Some(String::new()),
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The configurations docs/kubernetes.md gives are ones containerd loads:
/// each `version = N` block through `containerd config dump` of the
/// containerd under test (1.6 takes version 2; 2.x every version), with our
/// runtime in the dump; the runtime config file parses with the keys it
/// names.
#[test]
fn the_kubernetes_guides_configs_load() {
    if !require_containerd() {
        return;
    }
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kubernetes.md");
    let markdown = std::fs::read_to_string(&guide).unwrap_or_else(|e| panic!("{}: {e}", guide.display()));
    let blocks = fenced_blocks(&markdown, "toml");
    let major = harness::containerd_major_version();
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = 0;
    for (n, block) in blocks.iter().enumerate() {
        let Some(version) = block.lines().find_map(|l| l.strip_prefix("version = ")) else {
            // The runtime config file (ConfigPath): the keys it shows apply.
            let options = shim_transport_ttrpc::options::RuncOptions::from_toml(block, "the guide's rshim.toml")
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(options.systemd_cgroup, "{block}");
            continue;
        };
        if major < 2 && version.trim() != "2" {
            continue;
        }
        let file = dir.path().join(format!("config-{n}.toml"));
        std::fs::write(&file, block).unwrap();
        let mut cmd = std::process::Command::new("containerd");
        cmd.arg("--config").arg(&file).args(["config", "dump"]);
        let out = harness::run_bounded(cmd, harness::CTR_TIMEOUT, "containerd config dump").unwrap();
        let dump = text(&out.stdout);
        assert!(out.status.success(), "block {n}:\n{block}\n{}", text(&out.stderr));
        assert!(
            dump.contains("runtimes.rshim]")
                && dump.replace('\'', "\"").contains("runtime_type = \"io.containerd.rshim.v1\""),
            "containerd {major} did not take block {n}:\n{block}"
        );
        loaded += 1;
    }
    assert!(loaded >= 1, "no containerd config block in {} for containerd {major}", guide.display());
}

/// The guide's `install` line as written, from the repository's root, and
/// its `-info` line with what it installed, in a mount namespace of their
/// own with a tmpfs on `/usr/local/bin`, so the machine's is not touched.
/// The binary is the one the guide's build line makes, which `make test`
/// runs as written before the tests.
fn installed_as_the_guide_says(build: &str, install: &str, info: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let makefile = std::fs::read_to_string(repo.join("Makefile")).unwrap();
    assert!(
        makefile.contains(&build.replacen("cargo ", "$(CARGO) ", 1)),
        "`make test` must run the guide's build line `{build}` before the tests"
    );
    let built = repo.join("target/release/containerd-shim-rshim-v1");
    if !built.is_file() {
        let why = format!("{} is missing: `make test` runs the guide's `{build}` first", built.display());
        if std::env::var("SHIM_REQUIRE_RUNC").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("skipping the guide's install line: {why}");
        return;
    }
    let script = format!(
        "mount -t tmpfs rshim-guide /usr/local/bin && {install} && test -x /usr/local/bin/containerd-shim-rshim-v1 \
         && PATH=/usr/local/bin:$PATH && {info}"
    );
    let mut sh = std::process::Command::new("unshare");
    sh.args(["--mount", "--propagation", "private", "sh", "-c", &script]).current_dir(&repo);
    let out = harness::run_bounded(sh, harness::CTR_TIMEOUT, "the guide's install line").unwrap();
    let bytes: u64 = text(&out.stdout).trim().parse().unwrap_or_default();
    assert!(out.status.success() && bytes > 0, "`{script}`: {:?} {:?}", text(&out.stdout), text(&out.stderr));
}

/// The commands of docs/kubernetes.md that need no registry run as written:
/// `-info` answers (with the built shim first in `PATH`, as an installed one
/// would be), and the guide's `ctr run --runtime io.containerd.rshim.v1`
/// line runs busybox through our runtime found by its name in containerd's
/// `PATH` (the image imported under the name the guide pulls).
#[test]
fn the_kubernetes_guides_commands_run() {
    if !require_containerd() {
        return;
    }
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kubernetes.md");
    let markdown = std::fs::read_to_string(&guide).unwrap_or_else(|e| panic!("{}: {e}", guide.display()));
    let lines: Vec<String> =
        fenced_blocks(&markdown, "sh").iter().flat_map(|b| b.lines().map(String::from).collect::<Vec<_>>()).collect();
    let line = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no `{prefix}` line in the guide"))
    };
    let info = line("containerd-shim-rshim-v1 -info");
    installed_as_the_guide_says(&line("cargo build --release "), &line("install "), &info);
    let setup = cri_setup();
    let path = format!("{}:{}", path_str(&setup.shim_dir), std::env::var("PATH").unwrap_or_default());
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &info]).env("PATH", &path);
    let out = harness::run_bounded(sh, harness::CTR_TIMEOUT, "the guide's -info line").unwrap();
    let bytes: u64 = text(&out.stdout).trim().parse().unwrap_or_default();
    assert!(out.status.success() && bytes > 0, "`{info}`: {:?} {:?}", text(&out.stdout), text(&out.stderr));

    let run = line("ctr run --rm --runtime io.containerd.rshim.v1 ");
    let cd = Containerd::start_cri(setup);
    assert_eq!(cd.import_image("busybox"), "docker.io/library/busybox:latest");
    let out = cd.ctr_ok(run.split_whitespace().skip(1));
    assert_eq!(text(&out.stdout), "hello\n", "`{run}`");
    cd.assert_no_leftovers();
}
