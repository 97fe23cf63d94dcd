//! `containerd-shim-rshim-v1` as containerd starts and deletes it, without a
//! containerd: `start` reads CRI's runtime options from stdin, prints only
//! the address, writes it to the bundle atomically, and leaves a server in
//! its own session on a 0600 socket; that server answers Connect and exits
//! on Shutdown; `delete` is idempotent and prints a `DeleteResponse`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use shim_transport_ttrpc::proto::containerd::task::v2 as api;
use shim_transport_ttrpc::proto::runtimeoptions::v1::Options;
use shim_transport_ttrpc::task::SERVICE;
use shim_transport_ttrpc::Client;

const BIN: &str = env!("CARGO_BIN_EXE_containerd-shim-rshim-v1");
const LIMIT: Duration = Duration::from_secs(10);

/// Runs the binary in `dir` with `stdin` and TTRPC_ADDRESS `ttrpc` (and
/// PATH `path`, if given); fails the test if it does not end within LIMIT.
fn run(args: &[&str], dir: &Path, stdin: &[u8], ttrpc: &Path, path: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env("TTRPC_ADDRESS", ttrpc);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shim binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("the shim reads its stdin");
    drop(input);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    rx.recv_timeout(LIMIT).expect("the shim binary ends in time").expect("the shim's output")
}

/// Connects to the server on `socket`; the client and the server's pid.
async fn connect(socket: &str, id: &str) -> (Client, u32) {
    let client = tokio::time::timeout(LIMIT, Client::connect(socket)).await.expect("connect in time").unwrap();
    let connect: api::ConnectResponse = tokio::time::timeout(
        LIMIT,
        client.call(SERVICE, "Connect", &api::ConnectRequest { id: id.into() }, Some(LIMIT), &[]),
    )
    .await
    .expect("answer in time")
    .unwrap();
    (client, connect.shim_pid)
}

/// Waits until `pid` is gone or a zombie (its parent's to reap).
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()).unwrap_or(None);
        if matches!(state, None | Some('Z')) {
            return;
        }
        assert!(Instant::now() < deadline, "shim server {pid} still runs after Shutdown: {stat}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn start_serve_shutdown_and_delete_as_containerd_runs_them() {
    if !shim_core::testing::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    let nowhere = bundle.join("no-containerd.ttrpc");
    // What CRI sends on stdin: runtime options in an Any.
    let options = Options {
        type_url: "io.containerd.runc.v2.options".into(),
        config_path: "/etc/x.toml".into(),
        ..Default::default()
    };
    let any = prost_types::Any { type_url: "runtimeoptions.v1.Options".into(), value: options.encode_to_vec() };
    let id = format!("bin-{}", std::process::id());
    let flags =
        ["-namespace", "rshim-test", "-address", "/run/nowhere/containerd.sock", "-publish-binary", "/bin/true", "-id"];
    let mut args: Vec<&str> = flags.to_vec();
    args.extend([id.as_str(), "start"]);
    let out = run(&args, bundle, &any.encode_to_vec(), &nowhere, None);
    assert!(out.status.success(), "start failed: {:?}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "start must print nothing but the address");
    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
    assert_eq!(printed, address);
    let socket = address.strip_prefix("unix://").expect("a unix:// address");
    assert!(socket.len() <= 106, "{socket} is too long for containerd");
    let mode = std::fs::metadata(socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket {socket} mode {mode:o}");
    let leftover: Vec<_> = std::fs::read_dir(bundle)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".address"))
        .collect();
    assert!(leftover.is_empty(), "temporary address files left: {leftover:?}");

    // `start` again while that shim serves: the same address, no new shim.
    let again = run(&args, bundle, b"", &nowhere, None);
    assert!(again.status.success(), "{:?}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), address);

    let (client, server) = connect(socket, &id).await;
    assert!(server > 0 && server != std::process::id());
    // Its own session: the session id is its pid.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(server as i32))).unwrap();
    assert_eq!(sid.as_raw(), server as i32);
    // No container yet: State of the id is NOT_FOUND.
    let state = api::StateRequest { id: id.clone(), ..Default::default() };
    let err =
        tokio::time::timeout(LIMIT, client.call::<_, api::StateResponse>(SERVICE, "State", &state, Some(LIMIT), &[]))
            .await
            .expect("answer in time")
            .err();
    assert_eq!(err.and_then(|e| e.code()), Some(5));
    let shutdown = api::ShutdownRequest { id: id.clone(), now: false };
    tokio::time::timeout(LIMIT, client.call::<_, ()>(SERVICE, "Shutdown", &shutdown, Some(LIMIT), &[]))
        .await
        .expect("answer in time")
        .unwrap();
    wait_gone(server);
    assert!(!std::path::Path::new(socket).exists(), "the socket outlived its server");

    // SIGTERM ends a server too (containerd sends it when it gives up on
    // Shutdown), removing its socket.
    let out = run(&args, bundle, b"", &nowhere, None);
    assert!(out.status.success(), "second start failed: {:?}", String::from_utf8_lossy(&out.stderr));
    let (_client, server) = connect(socket, &id).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_gone(server);
    assert!(!std::path::Path::new(socket).exists(), "the socket outlived its server");

    // What a server that died in a runc call leaves in the bundle.
    let left = [bundle.join(".rshim-1-0-0-init-0.pid"), bundle.join("..rshim-1-0-0-init-2.pid")];
    for f in &left {
        std::fs::write(f, "1").unwrap();
    }
    std::fs::write(bundle.join("config.json"), "{}").unwrap();
    // delete: after the shim is gone, again (containerd may retry), and
    // with no runc to be found: the cleanup and the answer still happen.
    for path in [None, None, Some("/nonexistent")] {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend([id.as_str(), "-bundle", bundle.to_str().unwrap(), "delete"]);
        let out = run(&args, bundle, b"", &nowhere, path);
        assert!(out.status.success(), "delete failed: {:?}", String::from_utf8_lossy(&out.stderr));
        let resp = api::DeleteResponse::decode(out.stdout.as_slice()).expect("a DeleteResponse on stdout");
        assert_eq!(resp.exit_status, 137);
        assert!(resp.exited_at.is_some());
        assert!(left.iter().all(|f| !f.exists()), "delete left a call file of the dead server");
    }
    assert!(bundle.join("config.json").exists(), "delete removed a file of containerd's");
}

/// Pids of live (not zombie) processes of this binary serving `id`: the
/// server is `start` forked, so it keeps `start`'s command line.
fn servers_of(id: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let serves = args.first().is_some_and(|a| *a == BIN.as_bytes())
            && args.windows(2).any(|w| w[0] == b"-id" && w[1] == id.as_bytes());
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if serves && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Several `start`s of one container at the same moment (containerd does
/// not do it, a retrying client might): exactly one server runs, and every
/// `start` answers its address.
#[tokio::test]
async fn concurrent_starts_of_one_container_share_one_server() {
    if !shim_core::testing::require_root() {
        return;
    }
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().to_path_buf();
        let nowhere = bundle.join("no-containerd.ttrpc");
        let id = format!("race-{}-{round}", std::process::id());
        let args: Vec<String> =
            ["-namespace", "rshim-test", "-address", "/run/nowhere/containerd.sock", "-id", id.as_str(), "start"]
                .map(String::from)
                .to_vec();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let (args, bundle, nowhere, barrier) = (args.clone(), bundle.clone(), nowhere.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    barrier.wait();
                    run(&args, &bundle, b"", &nowhere, None)
                })
            })
            .collect();
        let outs: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
        let address = std::fs::read_to_string(bundle.join("address")).unwrap();
        for out in &outs {
            assert!(out.status.success(), "start failed: {:?}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), address, "a start answered another address");
        }
        let temporary = std::fs::read_dir(&bundle)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".address"))
            .count();
        assert_eq!(temporary, 0, "round {round}: temporary address files left in the bundle");
        let servers = servers_of(&id);
        // Stop them all before asserting, so a failure leaves none behind.
        for pid in &servers {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
        for pid in &servers {
            wait_gone(*pid);
        }
        assert_eq!(servers.len(), 1, "round {round}: servers {servers:?} for one container");
        let socket = address.strip_prefix("unix://").expect("a unix:// address");
        assert!(!Path::new(socket).exists(), "the socket outlived its server");
    }
}
