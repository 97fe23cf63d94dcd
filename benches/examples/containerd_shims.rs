//! Our containerd runtime against Debian's `containerd-shim-runc-v2` and
//! raw runc, driven as containerd drives a shim, interleaved in one run.
//!
//! `RSHIM_BIN=target/x86_64-unknown-linux-musl/release/containerd-shim-rshim-v1 cargo run --release -p shim-benches --example containerd_shims [-- ROUNDS]`
//! (as root, after `make daemon`, which builds the binary statically against musl; ROUNDS
//! defaults to 150: with 40 the lifecycle ratio moved between 1.10 and 1.27
//! from one run to the next on the test VM). Prints markdown tables.
//!
//! A shim lifecycle is what containerd does for `ctr run --rm` of busybox
//! `true`: run the binary's `start` in the bundle and read the address it
//! prints, connect, `Connect`, `Create`, `Start`, `Wait`, `Delete`,
//! `Shutdown`, and reap the server (this process is a child subreaper, so
//! the daemonized server becomes its child, as it would be containerd's
//! when containerd is the subreaper). The raw side does the runc work both
//! shims do, with their flags: `runc --root R --log F --log-format json
//! create --bundle B --pid-file P ID`, `runc start ID`, wait for the init,
//! `runc delete ID`. Events go to a stand-in for containerd's event service
//! in this process, which takes them as containerd does.
//!
//! `SHIM_RUNC=crun` runs crun instead of runc on every side: the raw side
//! calls it, and both shims get it as containerd passes it, the runc
//! options' `BinaryName` in `Create`. (crun refuses this machine's hybrid
//! cgroups; `make bench` runs this in a cgroup v2 guest.)
//!
//! The second container of a pod: a sandbox container runs in a shim, and
//! each round a container whose spec names that sandbox
//! (`io.kubernetes.cri.sandbox-id`) goes through `start`, which answers the
//! live shim's address, and then the same calls in that shim, ending with
//! the `Shutdown` containerd sends after every task's `Delete` (which a
//! shim that still holds a container ignores).
//!
//! `RSHIM_BIN_B=OTHER` adds a second build of the binary as a fourth side
//! of the lifecycle and exec rounds (an extra row in those tables): a
//! change is compared with what it changes within the same rounds, since
//! it is often smaller than the drift of runc's times between runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a benchmark may panic

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shim_core::proto::v1::StateRequest;
use shim_core::testing::{require_runc, BundleBuilder};
use shim_core::Shim;
use shim_transport_grpc::{ClientOptions, GrpcShim};
use shim_transport_ttrpc::proto::containerd::task::v2 as api;
use shim_transport_ttrpc::proto::ttrpc::Status;
use shim_transport_ttrpc::task::{EventSink, TaskService, SERVICE};
use shim_transport_ttrpc::{Client, Request, Server, Service};

const NS: &str = "rshim-bench";
const GO_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
const CONTAINERD_ADDRESS: &str = "/run/rshim-bench/containerd.sock";

/// Takes every call, as containerd's event service takes `Forward`.
struct Sink;

#[async_trait]
impl Service for Sink {
    async fn handle(&self, _req: Request) -> Result<Vec<u8>, Status> {
        Ok(Vec::new())
    }
}

struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _topic: &'static str, _event: prost_types::Any) {}
}

/// The OCI runtime every side runs: `$SHIM_RUNC`, else runc.
fn runtime() -> &'static str {
    static RUNTIME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(shim_core::testing::runc_binary)
}

/// `containerd.runc.v1.Options`, the field this bench sets.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    #[prost(string, tag = "6")]
    binary_name: String,
}

/// The options containerd sends in `Create` for a runtime with
/// `BinaryName` set; none for runc, as containerd sends none without it.
fn create_options() -> Option<prost_types::Any> {
    (runtime() != "runc").then(|| prost_types::Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: prost::Message::encode_to_vec(&RuncOptions { binary_name: runtime().into() }),
    })
}

/// A `Create` of `id` in `bundle`, as containerd sends it.
fn create_request(id: &str, bundle: &Path) -> api::CreateTaskRequest {
    api::CreateTaskRequest {
        id: id.into(),
        bundle: bundle.display().to_string(),
        options: create_options(),
        ..Default::default()
    }
}

fn runc_root() -> PathBuf {
    Path::new("/run/containerd/runc").join(NS)
}

/// `start` of a shim binary in `bundle`: the server's socket path.
fn start_shim(binary: &Path, bundle: &Path, id: &str, ttrpc: &Path) -> PathBuf {
    let out = Command::new(binary)
        .args(["-namespace", NS, "-address", CONTAINERD_ADDRESS, "-publish-binary", "/bin/true", "-id", id, "start"])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", ttrpc)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{} start: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    let address = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(address.trim().trim_start_matches("unix://"))
}

fn reap(pid: u32) {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
}

/// [`reap`] without blocking this thread, which also serves the events the
/// server may still send: its pidfd is polled by the runtime, so the exit
/// wakes this thread directly, as `waitpid` does on the raw side (a
/// blocking-pool thread would add two thread wake-ups to the shims' time).
async fn reap_async(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    assert!(fd >= 0, "pidfd_open {pid}: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as libc::c_int) };
    // SAFETY: the OwnedFd stays open, and the same, while registered.
    let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.unwrap();
    let _ = fd.readable().await.unwrap();
    reap(pid);
}

async fn call<Req: prost::Message, Resp: prost::Message + Default>(c: &Client, m: &str, req: Req) -> Resp {
    c.call(SERVICE, m, &req, Some(Duration::from_secs(30)), &[("containerd-namespace-ttrpc", NS)])
        .await
        .unwrap_or_else(|e| panic!("{m}: {e}"))
}

/// The steps of a lifecycle, timed: for a shim `start` until connected,
/// Connect, Create, Start, Wait, Delete, Shutdown and reap; for raw runc
/// only create, start, wait and delete (2 to 5).
type Steps = [Duration; 7];

/// Times the steps of one lifecycle, each from the end of the one before.
struct Laps {
    start: Instant,
    lap: Instant,
    steps: Steps,
}

impl Laps {
    fn new() -> Self {
        let now = Instant::now();
        Self { start: now, lap: now, steps: Steps::default() }
    }

    /// Step `i` ends now.
    fn step(&mut self, i: usize) {
        self.steps[i] = self.lap.elapsed();
        self.lap = Instant::now();
    }

    /// (total, the steps).
    fn done(self) -> (Duration, Steps) {
        (self.start.elapsed(), self.steps)
    }
}

/// One lifecycle through a shim binary; (total, its steps).
async fn shim_lifecycle(binary: PathBuf, bundle: PathBuf, id: String, ttrpc: PathBuf) -> (Duration, Steps) {
    let mut laps = Laps::new();
    // On this thread, as the raw side runs runc: nothing else here has work
    // before the shim is up, and a blocking-pool thread would add two thread
    // wake-ups to the shim's time.
    let socket = start_shim(&binary, &bundle, &id, &ttrpc);
    let client = Client::connect(&socket).await.unwrap();
    laps.step(0);
    let server =
        call::<_, api::ConnectResponse>(&client, "Connect", api::ConnectRequest { id: id.clone() }).await.shim_pid;
    laps.step(1);
    run_task(&client, &id, &bundle, &mut laps).await;
    shut_down(client, id, server).await;
    laps.step(6);
    let timed = laps.done();
    fresh_bundle(&bundle);
    timed
}

/// Create, Start, Wait (for exit status 0) and Delete of task `id` in
/// `bundle`, as containerd sends them: laps 2 to 5.
async fn run_task(client: &Client, id: &str, bundle: &Path, laps: &mut Laps) {
    call::<_, api::CreateTaskResponse>(client, "Create", create_request(id, bundle)).await;
    laps.step(2);
    call::<_, api::StartResponse>(client, "Start", api::StartRequest { id: id.into(), ..Default::default() }).await;
    laps.step(3);
    let waited: api::WaitResponse =
        call(client, "Wait", api::WaitRequest { id: id.into(), ..Default::default() }).await;
    assert_eq!(waited.exit_status, 0);
    laps.step(4);
    call::<_, api::DeleteResponse>(client, "Delete", api::DeleteRequest { id: id.into(), ..Default::default() }).await;
    laps.step(5);
}

/// Leaves only what containerd puts in a new bundle (`config.json`, the
/// rootfs, the `log` FIFO): containerd removes a task's bundle after its
/// shim, so a shim never finds the files of the one before (writing its
/// `address` over an old one cost 75-250 us on this ext4).
fn fresh_bundle(bundle: &Path) {
    for entry in std::fs::read_dir(bundle).unwrap().flatten() {
        let name = entry.file_name();
        if ["config.json", "rootfs", "log"].iter().any(|keep| name == *keep) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Shutdown, as containerd ends a shim, and the reap of its server.
async fn shut_down(client: Client, id: String, server: u32) {
    // The server may close the connection before it answers Shutdown.
    let shutdown = api::ShutdownRequest { id, now: false };
    let _ = client.call::<_, ()>(SERVICE, "Shutdown", &shutdown, Some(Duration::from_secs(30)), &[]).await;
    drop(client);
    reap_async(server).await;
}

/// Names `sandbox` as the pod of the container in `bundle`, as CRI does in
/// every container's spec (the sandbox's own names itself).
fn in_pod(bundle: &Path, sandbox: &str) {
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["annotations"] = serde_json::json!({ "io.kubernetes.cri.sandbox-id": sandbox });
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
}

/// One lifecycle of a container of a pod whose shim is up: `start` answers
/// the live shim's address; the same calls as [`shim_lifecycle`] on a new
/// connection, as containerd makes one per task; the `Shutdown` after
/// `Delete`, which the shim ignores while it holds the sandbox. Steps as
/// there (the last is the ignored Shutdown).
async fn pod_container(binary: &Path, bundle: &Path, id: String, ttrpc: &Path, pod: u32) -> (Duration, Steps) {
    let mut laps = Laps::new();
    let socket = start_shim(binary, bundle, &id, ttrpc);
    let client = Client::connect(&socket).await.unwrap();
    laps.step(0);
    let server =
        call::<_, api::ConnectResponse>(&client, "Connect", api::ConnectRequest { id: id.clone() }).await.shim_pid;
    // Otherwise this would time a shim of its own, not the pod's.
    assert_eq!(server, pod, "{} started a shim for {id} instead of using its pod's", binary.display());
    laps.step(1);
    run_task(&client, &id, bundle, &mut laps).await;
    let shutdown = api::ShutdownRequest { id, now: false };
    call::<_, ()>(&client, "Shutdown", shutdown).await;
    laps.step(6);
    drop(client);
    let timed = laps.done();
    fresh_bundle(bundle);
    timed
}

fn runc(args: &[&str]) {
    let root = runc_root();
    let status = Command::new(runtime())
        .arg("--root")
        .arg(&root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{} {args:?}", runtime());
}

/// The runc work of one lifecycle, with the shims' flags; (total, steps).
fn raw_lifecycle(bundle: &Path, id: &str, dir: &Path) -> (Duration, Steps) {
    let pid_file = dir.join(format!("{id}.pid"));
    let log = dir.join(format!("{id}.log"));
    let (b, p, l) = (bundle.to_str().unwrap(), pid_file.to_str().unwrap(), log.to_str().unwrap());
    let mut laps = Laps::new();
    runc(&["--log", l, "--log-format", "json", "create", "--bundle", b, "--pid-file", p, id]);
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    laps.step(2);
    runc(&["--log", l, "--log-format", "json", "start", id]);
    laps.step(3);
    reap(pid);
    laps.step(4);
    runc(&["--log", l, "--log-format", "json", "delete", id]);
    laps.step(5);
    let timed = laps.done();
    let _ = std::fs::remove_file(pid_file);
    let _ = std::fs::remove_file(log);
    timed
}

/// A running container (`sleep`) in a shim started as containerd starts it.
struct Running {
    client: Client,
    server: u32,
    id: String,
    /// The bundle's process object, which an exec's spec starts from (as
    /// `ctr task exec` does).
    process: serde_json::Value,
}

impl Running {
    async fn up(binary: &Path, bundle: &Path, id: &str, ttrpc: &Path) -> Self {
        let socket = start_shim(binary, bundle, id, ttrpc);
        let client = Client::connect(&socket).await.unwrap();
        let server =
            call::<_, api::ConnectResponse>(&client, "Connect", api::ConnectRequest { id: id.into() }).await.shim_pid;
        call::<_, api::CreateTaskResponse>(&client, "Create", create_request(id, bundle)).await;
        call::<_, api::StartResponse>(&client, "Start", api::StartRequest { id: id.into(), ..Default::default() })
            .await;
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        Self { client, server, id: id.into(), process: config["process"].clone() }
    }

    /// Exec, Start, Wait and Delete of `true`, as `ctr task exec` drives them.
    async fn exec(&self, n: usize) -> Duration {
        let mut process = self.process.clone();
        process["args"] = serde_json::json!(["true"]);
        let spec = prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
        };
        let (id, exec_id) = (self.id.clone(), format!("x{n}"));
        let t = Instant::now();
        let req = api::ExecProcessRequest {
            id: id.clone(),
            exec_id: exec_id.clone(),
            spec: Some(spec),
            ..Default::default()
        };
        call::<_, ()>(&self.client, "Exec", req).await;
        call::<_, api::StartResponse>(
            &self.client,
            "Start",
            api::StartRequest { id: id.clone(), exec_id: exec_id.clone() },
        )
        .await;
        let waited: api::WaitResponse =
            call(&self.client, "Wait", api::WaitRequest { id: id.clone(), exec_id: exec_id.clone() }).await;
        assert_eq!(waited.exit_status, 0);
        call::<_, api::DeleteResponse>(&self.client, "Delete", api::DeleteRequest { id, exec_id }).await;
        t.elapsed()
    }

    /// RSS and PSS (KiB) of the shim's server.
    fn memory(&self) -> (u64, u64) {
        shim_benches::resident_kib(self.server)
    }

    async fn down(self) {
        let id = self.id.clone();
        call::<_, ()>(&self.client, "Kill", api::KillRequest { id: id.clone(), signal: 9, ..Default::default() }).await;
        call::<_, api::WaitResponse>(&self.client, "Wait", api::WaitRequest { id: id.clone(), ..Default::default() })
            .await;
        call::<_, api::DeleteResponse>(
            &self.client,
            "Delete",
            api::DeleteRequest { id: id.clone(), ..Default::default() },
        )
        .await;
        shut_down(self.client, id, self.server).await;
    }
}

/// An exec of `true` with runc alone, as both shims run it: the process
/// file written, `runc exec --detach --pid-file P --process F ID`, the wait.
fn raw_exec(id: &str, process: &serde_json::Value, dir: &Path, n: usize) -> Duration {
    let (pid_file, file, log) =
        (dir.join(format!("x{n}.pid")), dir.join(format!("x{n}.json")), dir.join(format!("x{n}.log")));
    let mut process = process.clone();
    process["args"] = serde_json::json!(["true"]);
    let t = Instant::now();
    std::fs::write(&file, serde_json::to_vec(&process).unwrap()).unwrap();
    let (p, f, l) = (pid_file.to_str().unwrap(), file.to_str().unwrap(), log.to_str().unwrap());
    runc(&["--log", l, "--log-format", "json", "exec", "--detach", "--pid-file", p, "--process", f, id]);
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    reap(pid);
    let took = t.elapsed();
    for f in [pid_file, file, log] {
        let _ = std::fs::remove_file(f);
    }
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Median round trip of a State call over gRPC and over ttrpc, each to a
/// fake shim with a running container served from a thread of its own.
async fn round_trips(dir: &Path, calls: usize) -> (Duration, Duration) {
    let (grpc_socket, _pid) = shim_benches::fake_server_thread(dir.join("grpc"), || {});
    let grpc = GrpcShim::connect(&grpc_socket, ClientOptions::default()).await.unwrap();
    let ttrpc_socket = dir.join("ttrpc.sock");
    let bundle = dir.join("fake-bundle");
    BundleBuilder::new().args(["sleep"]).build_config_only(&bundle).unwrap();
    {
        let socket = ttrpc_socket.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            shim_benches::runtime().block_on(async move {
                let listener = tokio::net::UnixListener::bind(&socket).unwrap();
                let task = TaskService::new(Arc::new(shim_core::FakeShim::new()), Arc::new(NoEvents)).await.unwrap();
                let _ = tx.send(());
                Server::new(task).serve(listener, std::future::pending()).await.unwrap();
            });
        });
        rx.recv().unwrap();
    }
    let client = Client::connect(&ttrpc_socket).await.unwrap();
    let create = api::CreateTaskRequest { id: "rt".into(), bundle: bundle.display().to_string(), ..Default::default() };
    call::<_, api::CreateTaskResponse>(&client, "Create", create).await;
    call::<_, api::StartResponse>(&client, "Start", api::StartRequest { id: "rt".into(), ..Default::default() }).await;
    let mut g = Vec::with_capacity(calls);
    let mut t = Vec::with_capacity(calls);
    let state = api::StateRequest { id: "rt".into(), ..Default::default() };
    for _ in 0..calls {
        let s = Instant::now();
        grpc.state(StateRequest {}).await.unwrap();
        g.push(s.elapsed());
        let s = Instant::now();
        let _: api::StateResponse = client.call(SERVICE, "State", &state, None, &[]).await.unwrap();
        t.push(s.elapsed());
    }
    (median(g), median(t))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !require_runc() {
        return;
    }
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(150);
    let rshim =
        PathBuf::from(std::env::var("RSHIM_BIN").expect("RSHIM_BIN: the containerd-shim-rshim-v1 binary to measure"));
    let rshim = std::fs::canonicalize(&rshim).unwrap_or_else(|e| panic!("{}: {e}", rshim.display()));
    // A second build to compare with the first, side by side in the same
    // rounds (a change's effect is smaller than the drift between runs).
    let other = std::env::var_os("RSHIM_BIN_B")
        .map(|b| std::fs::canonicalize(&b).unwrap_or_else(|e| panic!("RSHIM_BIN_B {}: {e}", Path::new(&b).display())));
    let sides = if other.is_some() { 4 } else { 3 };
    assert!(Path::new(GO_SHIM).exists(), "{GO_SHIM} is missing: make deps installs containerd");
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::Builder::new().prefix("rsb").tempdir_in("/tmp").unwrap();
    let ttrpc = dir.path().join("events.ttrpc");
    {
        let listener = tokio::net::UnixListener::bind(&ttrpc).unwrap();
        tokio::spawn(async move { Server::new(Arc::new(Sink)).serve(listener, std::future::pending()).await });
    }
    let bundle = |name: &str, args: &[&str]| {
        let b = dir.path().join(name);
        BundleBuilder::new().args(args.iter().copied()).build(&b).unwrap();
        // The `log` FIFO containerd makes in a bundle and copies from (the
        // Go shim exits without it); read and discarded here. Opened
        // read-write so it never reports end-of-file between shims.
        let log = b.join("log");
        shim_core::testing::mkfifo(&log).unwrap();
        let mut reader = std::fs::OpenOptions::new().read(true).write(true).open(&log).unwrap();
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        b
    };
    let (b_ours, b_go, b_raw) = (bundle("ours", &["true"]), bundle("go", &["true"]), bundle("raw", &["true"]));
    let b_other = bundle("other", &["true"]);
    let tag = std::process::id();

    // Warm-up: one of each, so page cache and lazy set-up are not billed.
    shim_lifecycle(rshim.clone(), b_ours.clone(), format!("w-o-{tag}"), ttrpc.clone()).await;
    shim_lifecycle(PathBuf::from(GO_SHIM), b_go.clone(), format!("w-g-{tag}"), ttrpc.clone()).await;
    raw_lifecycle(&b_raw, &format!("w-r-{tag}"), dir.path());

    let (mut ours, mut go, mut raw, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_steps, mut go_steps, mut raw_steps) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in (0..sides).map(|k| (k + round) % sides) {
            match side {
                3 => {
                    let bin = other.clone().unwrap_or_default();
                    let (t, _) = shim_lifecycle(bin, b_other.clone(), format!("b{round}-{tag}"), ttrpc.clone()).await;
                    b.push(t);
                }
                0 => {
                    let (t, r) =
                        shim_lifecycle(rshim.clone(), b_ours.clone(), format!("o{round}-{tag}"), ttrpc.clone()).await;
                    ours.push(t);
                    ours_steps.push(r);
                }
                1 => {
                    let (t, r) =
                        shim_lifecycle(PathBuf::from(GO_SHIM), b_go.clone(), format!("g{round}-{tag}"), ttrpc.clone())
                            .await;
                    go.push(t);
                    go_steps.push(r);
                }
                _ => {
                    let (t, r) = raw_lifecycle(&b_raw, &format!("r{round}-{tag}"), dir.path());
                    raw.push(t);
                    raw_steps.push(r);
                }
            }
        }
    }
    let (o, g, r) = (median(ours), median(go), median(raw));
    let ob = (!b.is_empty()).then(|| median(b));
    let sleep_ours = bundle("ours-sleep", &["sleep", "100000"]);
    let sleep_go = bundle("go-sleep", &["sleep", "100000"]);
    let sleep_raw = bundle("raw-sleep", &["sleep", "100000"]);
    let ours_c = Running::up(&rshim, &sleep_ours, &format!("m-o-{tag}"), &ttrpc).await;
    let go_c = Running::up(Path::new(GO_SHIM), &sleep_go, &format!("m-g-{tag}"), &ttrpc).await;
    let mem_ours = ours_c.memory();
    let mem_go = go_c.memory();
    // And once idle: our shim gives its code pages back after the first
    // 2 s period with under 5 ms of its CPU, 2 to 4 s after Start (the Go
    // shim has no such step; measured the same).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_ours = ours_c.memory();
    let idle_go = go_c.memory();
    let raw_id = format!("m-r-{tag}");
    let raw_pid_file = dir.path().join("raw-sleep.pid");
    let raw_bundle = sleep_raw.to_str().unwrap();
    runc(&["create", "--bundle", raw_bundle, "--pid-file", raw_pid_file.to_str().unwrap(), &raw_id]);
    runc(&["start", &raw_id]);
    let other_c = match &other {
        Some(bin) => {
            Some(Running::up(bin, &bundle("other-sleep", &["sleep", "100000"]), &format!("m-b-{tag}"), &ttrpc).await)
        }
        None => None,
    };
    let (mut e_ours, mut e_go, mut e_raw, mut e_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in (0..sides).map(|k| (k + round) % sides) {
            match side {
                3 => {
                    if let Some(c) = &other_c {
                        e_b.push(c.exec(round).await);
                    }
                }
                0 => e_ours.push(ours_c.exec(round).await),
                1 => e_go.push(go_c.exec(round).await),
                _ => e_raw.push(raw_exec(&raw_id, &ours_c.process, dir.path(), round)),
            }
        }
    }
    let mem_ours_after = ours_c.memory();
    ours_c.down().await;
    go_c.down().await;
    if let Some(c) = other_c {
        c.down().await;
    }
    runc(&["delete", "--force", &raw_id]);

    // The second container of a pod, in the shim its sandbox started.
    let (sandbox_ours, sandbox_go) = (format!("p-o-{tag}"), format!("p-g-{tag}"));
    let pod_bundle = |name: &str, args: &[&str], sandbox: &str| {
        let b = bundle(name, args);
        in_pod(&b, sandbox);
        b
    };
    let pod_ours = Running::up(
        &rshim,
        &pod_bundle("pod-ours-sandbox", &["sleep", "100000"], &sandbox_ours),
        &sandbox_ours,
        &ttrpc,
    )
    .await;
    let pod_go = Running::up(
        Path::new(GO_SHIM),
        &pod_bundle("pod-go-sandbox", &["sleep", "100000"], &sandbox_go),
        &sandbox_go,
        &ttrpc,
    )
    .await;
    let (c_ours, c_go) =
        (pod_bundle("pod-ours", &["true"], &sandbox_ours), pod_bundle("pod-go", &["true"], &sandbox_go));
    let (mut p_ours, mut p_go, mut p_raw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut p_ours_steps, mut p_go_steps) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for side in (0..3).map(|k| (k + round) % 3) {
            match side {
                0 => {
                    let (t, s) =
                        pod_container(&rshim, &c_ours, format!("c-o{round}-{tag}"), &ttrpc, pod_ours.server).await;
                    p_ours.push(t);
                    p_ours_steps.push(s);
                }
                1 => {
                    let (t, s) =
                        pod_container(Path::new(GO_SHIM), &c_go, format!("c-g{round}-{tag}"), &ttrpc, pod_go.server)
                            .await;
                    p_go.push(t);
                    p_go_steps.push(s);
                }
                _ => p_raw.push(raw_lifecycle(&b_raw, &format!("c-r{round}-{tag}"), dir.path()).0),
            }
        }
    }
    // Still one process each (each Connect above named the sandbox's shim).
    let pod_mem_ours = pod_ours.memory();
    let pod_mem_go = pod_go.memory();
    pod_ours.down().await;
    pod_go.down().await;

    let (grpc_rt, ttrpc_rt) = round_trips(dir.path(), 5000).await;

    let rt = runtime();
    println!("| lifecycle as containerd drives it (busybox `true`), median of {rounds} interleaved rounds | time | ratio to raw {rt} | goal |");
    println!("|---|---|---|---|");
    println!("| raw {rt} (create --pid-file, start, wait, delete; same root and log flags) | {} | 1.00 | |", ms(r));
    println!(
        "| containerd-shim-rshim-v1 (start, Connect, Create, Start, Wait, Delete, Shutdown, reap) | {} | {:.2} | {} |",
        ms(o),
        o.as_secs_f64() / r.as_secs_f64(),
        if rt == "runc" { "≤ 1.05" } else { "≤ 1.15" }
    );
    println!(
        "| Debian's containerd-shim-runc-v2, the same calls | {} | {:.2} | |",
        ms(g),
        g.as_secs_f64() / r.as_secs_f64()
    );
    if let Some(t) = ob {
        println!("| RSHIM_BIN_B, the same calls | {} | {:.2} | |", ms(t), t.as_secs_f64() / r.as_secs_f64());
    }
    println!();
    println!("| step, median | raw {rt} | rshim | Go shim |\n|---|---|---|---|");
    let names: [&str; 7] = [
        "`start` until the socket accepts",
        "Connect",
        &format!("Create (`{rt} create`)"),
        &format!("Start (`{rt} start`)"),
        "Wait (the exit)",
        &format!("Delete (`{rt} delete`)"),
        "Shutdown and reap",
    ];
    let step = |v: &[Steps], i: usize| median(v.iter().map(|s| s[i]).collect());
    for (i, name) in names.iter().enumerate() {
        let raw_cell = if matches!(i, 2..=5) { ms(step(&raw_steps, i)) } else { String::new() };
        println!("| {name} | {raw_cell} | {} | {} |", ms(step(&ours_steps, i)), ms(step(&go_steps, i)));
    }
    println!();
    let (eo, eg, er) = (median(e_ours), median(e_go), median(e_raw));
    println!("| exec of `true` in a running container, median of {rounds} interleaved rounds | time | ratio to raw {rt} | goal |");
    println!("|---|---|---|---|");
    println!("| raw {rt} (process file, exec --detach --pid-file --process, wait) | {} | 1.00 | |", ms(er));
    println!(
        "| containerd-shim-rshim-v1 (Exec, Start, Wait, Delete) | {} | {:.2} | ≤ 1.03 |",
        ms(eo),
        eo.as_secs_f64() / er.as_secs_f64()
    );
    println!("| containerd-shim-runc-v2, the same calls | {} | {:.2} | |", ms(eg), eg.as_secs_f64() / er.as_secs_f64());
    if !e_b.is_empty() {
        let eb = median(e_b);
        println!("| RSHIM_BIN_B, the same calls | {} | {:.2} | |", ms(eb), eb.as_secs_f64() / er.as_secs_f64());
    }
    println!();
    let (po, pg, pr) = (median(p_ours), median(p_go), median(p_raw));
    println!("| the second container of a pod (busybox `true`) in the shim its sandbox started, median of {rounds} interleaved rounds | time | ratio to raw {rt} |");
    println!("|---|---|---|");
    println!("| raw {rt} (create --pid-file, start, wait, delete) | {} | 1.00 |", ms(pr));
    println!(
        "| containerd-shim-rshim-v1 (`start` answers the live address, Connect, Create, Start, Wait, Delete, Shutdown ignored) | {} | {:.2} |",
        ms(po),
        po.as_secs_f64() / pr.as_secs_f64()
    );
    println!("| containerd-shim-runc-v2, the same calls | {} | {:.2} |", ms(pg), pg.as_secs_f64() / pr.as_secs_f64());
    println!();
    println!("| step of the pod's second container, median | rshim | Go shim |\n|---|---|---|");
    let pod_names = [
        "`start` until the live socket accepts",
        "Connect",
        "Create",
        "Start",
        "Wait",
        "Delete",
        "Shutdown (ignored: the sandbox is still there)",
    ];
    for (i, name) in pod_names.iter().enumerate() {
        println!("| {name} | {} | {} |", ms(step(&p_ours_steps, i)), ms(step(&p_go_steps, i)));
    }
    println!();
    println!("| shim server with a running container | RSS | PSS | goal |\n|---|---|---|---|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rows = [
        ("containerd-shim-rshim-v1, just after Start", mem_ours, "≤ 1.0 MiB RSS"),
        ("containerd-shim-rshim-v1, 5 s later (idle)", idle_ours, "≤ 1.0 MiB RSS"),
        ("containerd-shim-rshim-v1, after the execs", mem_ours_after, ""),
        ("containerd-shim-runc-v2, just after Start", mem_go, ""),
        ("containerd-shim-runc-v2, 5 s later (idle)", idle_go, ""),
        ("containerd-shim-rshim-v1, a pod's sandbox after its second containers", pod_mem_ours, ""),
        ("containerd-shim-runc-v2, the same", pod_mem_go, ""),
    ];
    for (what, (rss, pss), goal) in rows {
        println!("| {what} | {:.2} MiB | {:.2} MiB | {goal} |", mib(rss), mib(pss));
    }
    println!();
    println!(
        "| State round trip, fake shim served from its own thread, median of 5000 interleaved | time |\n|---|---|"
    );
    println!("| gRPC (tonic, unix socket) | {} |", us(grpc_rt));
    println!("| ttrpc (task API over the same core) | {} |", us(ttrpc_rt));
    // Runs printed one after another stay separate tables.
    println!();
}
