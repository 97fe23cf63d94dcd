//! Pods through containerd's CRI plugin, as the kubelet drives them, with
//! what a node depends on beyond the CRI validation suite: the containers
//! of a pod in one shim, a pod's shared PID namespace emptied when a
//! container exits, and the working set kubelet computes from the stats.
//! Every test runs through the Go shim (handler `runc`) and through ours
//! (handler `rshim`) with the same assertions.

use std::time::{Duration, Instant};

use super::cri::{self, Cri};
use super::harness::{require_containerd, Containerd, CriSetup, WAIT};
use super::{cri_setup, cri_setup_with, path_str, SANDBOX_IMAGE};

/// The two runtime handlers, and the binary each starts.
pub const HANDLERS: [(&str, &str); 2] = [("runc", "containerd-shim-runc-v2"), ("rshim", "containerd-shim-rshim-v1")];

/// One pod sandbox of a CRI session, and the calls a test makes on it.
pub struct Pod<'a> {
    pub cd: &'a Containerd,
    pub client: Cri,
    pub id: String,
    config: cri::PodSandboxConfig,
    image: String,
    pid_mode: i32,
}

impl<'a> Pod<'a> {
    /// RunPodSandbox of pod `name` with the runtime `handler`, on the host
    /// network, its processes in a PID namespace per container
    /// (`cri::CONTAINER`) or one for the pod (`cri::POD`,
    /// `shareProcessNamespace`). Imports the sandbox and busybox images.
    pub async fn run(cd: &'a Containerd, handler: &str, name: &str, pid_mode: i32) -> Pod<'a> {
        match Self::try_run(cd, handler, name, pid_mode).await {
            Ok(pod) => pod,
            Err(e) => panic!("RunPodSandbox: {e}\ncontainerd log:\n{}", cd.log_tail()),
        }
    }

    /// [`run`](Self::run), with RunPodSandbox's error returned.
    pub async fn try_run(
        cd: &'a Containerd,
        handler: &str,
        name: &str,
        pid_mode: i32,
    ) -> Result<Pod<'a>, tonic::Status> {
        Self::try_run_in(cd, handler, name, pid_mode, "/k8s.io").await
    }

    /// [`try_run`](Self::try_run) with the pod's cgroup parent as the
    /// kubelet gives it: a path for the cgroupfs driver, a `.slice` for
    /// systemd's (containers then get `<slice>:cri-containerd:<id>`).
    pub async fn try_run_in(
        cd: &'a Containerd,
        handler: &str,
        name: &str,
        pid_mode: i32,
        cgroup_parent: &str,
    ) -> Result<Pod<'a>, tonic::Status> {
        let image = import_pod_images(cd);
        Self::start_in(cd, handler, name, pid_mode, cgroup_parent, image).await
    }

    /// [`try_run_in`](Self::try_run_in) with the images imported already
    /// ([`import_pod_images`] gave `image`): only the CRI calls.
    pub async fn start_in(
        cd: &'a Containerd,
        handler: &str,
        name: &str,
        pid_mode: i32,
        cgroup_parent: &str,
        image: String,
    ) -> Result<Pod<'a>, tonic::Status> {
        let mut client = Cri::connect(cd.address()).await;
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: path_str(&cd.dir().join("logs").join(name)),
            labels: Default::default(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.into(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption { network: cri::NODE, pid: pid_mode, ipc: cri::POD }),
                }),
            }),
        };
        let run = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        let sandbox: cri::RunPodSandboxResponse = client.call("RunPodSandbox", run).await?;
        Ok(Pod { cd, client, id: sandbox.pod_sandbox_id, config, image, pid_mode })
    }

    /// Panics with the call, its error and containerd's log.
    fn fail(&self, what: &str, e: tonic::Status) -> ! {
        panic!("{what}: {e}\ncontainerd log:\n{}", self.cd.log_tail())
    }

    /// CreateContainer and StartContainer of container `name` running
    /// `command` in the busybox image, in the pod's kind of PID namespace as
    /// the kubelet asks for it; returns its id.
    pub async fn start_container(&mut self, name: &str, command: &[&str]) -> String {
        self.start_container_with(name, command, None).await
    }

    /// [`start_container`](Self::start_container) with the resources the
    /// kubelet would set.
    pub async fn start_container_with(
        &mut self,
        name: &str,
        command: &[&str],
        resources: Option<cri::LinuxContainerResources>,
    ) -> String {
        let namespaces = cri::NamespaceOption { network: cri::NODE, pid: self.pid_mode, ipc: cri::POD };
        let linux = cri::LinuxContainerConfig {
            resources,
            security_context: Some(cri::LinuxContainerSecurityContext { namespace_options: Some(namespaces) }),
        };
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: self.image.clone() }),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            log_path: format!("{name}.log"),
            linux: Some(linux),
        };
        let create = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        let created: cri::ContainerId = match self.client.call("CreateContainer", create).await {
            Ok(r) => r,
            Err(e) => self.fail("CreateContainer", e),
        };
        let id = cri::ContainerId { container_id: created.container_id.clone() };
        if let Err(e) = self.client.call::<_, cri::Empty>("StartContainer", id).await {
            self.fail("StartContainer", e);
        }
        created.container_id
    }

    /// ContainerStatus of container `id`.
    pub async fn status(&mut self, id: &str) -> cri::ContainerStatus {
        let req = cri::ContainerId { container_id: id.into() };
        match self.client.call::<_, cri::ContainerStatusResponse>("ContainerStatus", req).await {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) => self.fail("ContainerStatus", e),
        }
    }

    /// ExecSync of `cmd` in container `id`: stdout and exit code.
    pub async fn exec(&mut self, id: &str, cmd: &[&str]) -> (String, i32) {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        };
        match self.client.call::<_, cri::ExecSyncResponse>("ExecSync", req).await {
            Ok(r) => (String::from_utf8_lossy(&r.stdout).into_owned(), r.exit_code),
            Err(e) => self.fail("ExecSync", e),
        }
    }

    /// ContainerStats of container `id`: its memory usage as CRI computes
    /// it from the shim's metrics.
    pub async fn memory(&mut self, id: &str) -> cri::MemoryUsage {
        let req = cri::ContainerStatsRequest { container_id: id.into() };
        match self.client.call::<_, cri::ContainerStatsResponse>("ContainerStats", req).await {
            Ok(r) => r.stats.and_then(|s| s.memory).unwrap_or_default(),
            Err(e) => self.fail("ContainerStats", e),
        }
    }

    /// StopContainer (SIGTERM, then SIGKILL after `timeout` s) and
    /// RemoveContainer of container `id`; its last status.
    pub async fn stop_and_remove(&mut self, id: &str, timeout: i64) -> cri::ContainerStatus {
        let stop = cri::StopContainerRequest { container_id: id.into(), timeout };
        if let Err(e) = self.client.call::<_, cri::Empty>("StopContainer", stop).await {
            self.fail("StopContainer", e);
        }
        let status = self.status(id).await;
        let req = cri::ContainerId { container_id: id.into() };
        if let Err(e) = self.client.call::<_, cri::Empty>("RemoveContainer", req).await {
            self.fail("RemoveContainer", e);
        }
        status
    }

    /// StopPodSandbox and RemovePodSandbox.
    pub async fn remove(mut self) {
        for call in ["StopPodSandbox", "RemovePodSandbox"] {
            let req = cri::PodSandboxId { pod_sandbox_id: self.id.clone() };
            if let Err(e) = self.client.call::<_, cri::Empty>(call, req).await {
                self.fail(call, e);
            }
        }
    }
}

/// Imports the sandbox image and the busybox image the pods' containers
/// run; returns the latter's name.
pub fn import_pod_images(cd: &Containerd) -> String {
    assert_eq!(cd.import_image_running("pause-test", &["/bin/sleep", "1000000"]), SANDBOX_IMAGE);
    cd.import_image("busybox-test")
}

/// Runs `test` against a private containerd with the CRI plugin, on a
/// current-thread runtime, then checks that nothing is left behind.
pub fn with_cri<F>(test: F)
where
    F: for<'c> FnOnce(&'c Containerd) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'c>>,
{
    with_cri_setup(cri_setup(), test)
}

/// [`with_cri`] with the CRI configuration `setup`.
fn with_cri_setup<F>(setup: CriSetup, test: F)
where
    F: for<'c> FnOnce(&'c Containerd) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'c>>,
{
    let cd = Containerd::start_cri(setup);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    rt.block_on(test(&cd));
    cd.assert_no_leftovers();
}

/// Pids of processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// A pod with two containers beside its sandbox is served by one shim
/// process; removing one container leaves the shim serving the other;
/// removing the pod ends the shim.
fn pod_in_one_shim(handler: &'static str, binary: &'static str) {
    with_cri(move |cd| {
        Box::pin(async move {
            let mut pod = Pod::run(cd, handler, "grouped", cri::CONTAINER).await;
            let a = pod.start_container("a", &["/bin/sleep", "1001"]).await;
            let b = pod.start_container("b", &["/bin/sleep", "1002"]).await;
            let shims = cd.all_shim_pids();
            assert_eq!(shims.len(), 1, "shims of a pod with two containers: {shims:?}");
            let exe = std::fs::read_link(format!("/proc/{}/exe", shims[0])).unwrap_or_default();
            assert!(exe.ends_with(binary), "the pod is served by {}", exe.display());
            for (id, n) in [(&a, "1001"), (&b, "1002")] {
                assert_eq!(
                    pod.exec(id, &["/bin/sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]).await,
                    (format!("/bin/sleep {n} "), 0)
                );
            }

            let gone = pod.stop_and_remove(&a, 1).await;
            // PID 1 of its own namespace, `sleep` ignores SIGTERM: the
            // SIGKILL after the timeout ends it.
            assert_eq!((gone.state, gone.exit_code), (cri::EXITED, 137), "{gone:?}");
            assert_eq!(cd.all_shim_pids(), shims, "the shim serves the pod's other containers");
            assert_eq!(pod.status(&b).await.state, cri::RUNNING);
            assert_eq!(pod.exec(&b, &["/bin/echo", "still"]).await, ("still\n".into(), 0));

            pod.stop_and_remove(&b, 1).await;
            pod.remove().await;
            wait_until("the pod's shim exits with it", || cd.all_shim_pids().is_empty()).await;
        })
    });
}

#[test]
fn reference_pod_in_one_shim() {
    if !require_containerd() {
        return;
    }
    pod_in_one_shim(HANDLERS[0].0, HANDLERS[0].1);
}

#[test]
fn rshim_pod_in_one_shim() {
    if !require_containerd() {
        return;
    }
    pod_in_one_shim(HANDLERS[1].0, HANDLERS[1].1);
}

/// Waits until `what` holds, polling, within [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod with `shareProcessNamespace`: a container whose init exits loses
/// the processes it left (here a background loop that keeps writing to
/// the container's stdout) before its exit is reported, so the exit is not
/// held up by their output and nothing of the container runs on.
fn shared_pid_namespace_loses_leftovers(handler: &'static str) {
    with_cri(move |cd| {
        Box::pin(async move {
            let mut pod = Pod::run(cd, handler, "shared", cri::POD).await;
            let script = "(while true; do echo tick; sleep 0.1; done) & exec sleep 1999";
            let leftover = ["/bin/sh", "-c", script];
            let c = pod.start_container("c", &leftover).await;
            // The loop is forked, then the shell becomes `sleep 1999`.
            wait_until("the loop and the init run", || {
                !processes_running(&leftover).is_empty() && !processes_running(&["sleep", "1999"]).is_empty()
            })
            .await;
            // The init exits by itself (not PID 1 of its namespace, the
            // sandbox's process is, so SIGTERM kills it): no CRI call kills
            // the rest, the shim has to.
            let init = processes_running(&["sleep", "1999"]);
            assert_eq!(init.len(), 1, "{init:?}");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(init[0]), nix::sys::signal::Signal::SIGTERM)
                .expect("SIGTERM to the container's init");
            let mut status = pod.status(&c).await;
            let deadline = Instant::now() + WAIT;
            while status.state != cri::EXITED {
                assert!(Instant::now() < deadline, "no exit reported within {WAIT:?}: {status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                status = pod.status(&c).await;
            }
            assert_eq!(status.exit_code, 143, "{status:?}");
            assert_eq!(processes_running(&leftover), Vec::<i32>::new(), "left running after the container exited");
            pod.stop_and_remove(&c, 1).await;
            pod.remove().await;
        })
    });
}

#[test]
fn reference_shared_pid_namespace_loses_leftovers() {
    if !require_containerd() {
        return;
    }
    shared_pid_namespace_loses_leftovers(HANDLERS[0].0);
}

#[test]
fn rshim_shared_pid_namespace_loses_leftovers() {
    if !require_containerd() {
        return;
    }
    shared_pid_namespace_loses_leftovers(HANDLERS[1].0);
}

/// The value of a CRI counter, 0 when absent.
fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

/// What CRI's ContainerStats reports through each shim, for a container
/// that wrote a 30 MiB file (page cache charged to it, on this host mostly
/// inactive)
/// with a 200 MiB limit and one without a limit, as kubelet's eviction and
/// `kubectl top` read it: a working set that leaves the inactive file pages
/// out (1.1 to 1.3 MiB through either shim on this host, against 30 MiB of
/// usage), and available bytes of limit less working set (0, not an
/// underflow, without a limit). Both pods run in one containerd, one per
/// handler, and the working sets must agree.
#[test]
fn container_stats_working_set_as_the_go_shim() {
    if !require_containerd() {
        return;
    }
    const MIB: u64 = 1 << 20;
    with_cri(|cd| {
        Box::pin(async move {
            let script = "dd if=/dev/zero of=/data bs=1048576 count=30 2>/dev/null && echo written && exec sleep 1000";
            let mut seen = Vec::new();
            for (handler, _) in HANDLERS {
                let mut pod = Pod::run(cd, handler, &format!("stats-{handler}"), cri::CONTAINER).await;
                let limit =
                    cri::LinuxContainerResources { memory_limit_in_bytes: 200 * MIB as i64, ..Default::default() };
                let limited = pod.start_container_with("limited", &["/bin/sh", "-c", script], Some(limit)).await;
                let free = pod.start_container("free", &["/bin/sh", "-c", script]).await;
                for id in [&limited, &free] {
                    let mut written = false;
                    let deadline = Instant::now() + WAIT;
                    while !written {
                        assert!(Instant::now() < deadline, "{handler}: the file was not written within {WAIT:?}");
                        written = pod.exec(id, &["/bin/ls", "/data"]).await.1 == 0
                            && pod.exec(id, &["/bin/sh", "-c", "test $(wc -c < /data) -eq 31457280"]).await.1 == 0;
                        if !written {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                let m = pod.memory(&limited).await;
                let (ws, usage, available) =
                    (value(&m.working_set_bytes), value(&m.usage_bytes), value(&m.available_bytes));
                assert!(usage >= 30 * MIB, "{handler}: usage {usage} after writing 30 MiB: {m:?}");
                // How much of the file is inactive is the kernel's call (on
                // the test hosts' 6.18 nearly all of it, on the v2 guest's
                // 6.1 none): what the shims must agree on is below.
                assert_eq!(available, 200 * MIB - ws, "{handler}: {m:?}");
                let unlimited = pod.memory(&free).await;
                assert_eq!(
                    value(&unlimited.available_bytes),
                    0,
                    "{handler}: unlimited is not an underflow: {unlimited:?}"
                );
                seen.push((handler, ws));
                pod.stop_and_remove(&limited, 1).await;
                pod.stop_and_remove(&free, 1).await;
                pod.remove().await;
            }
            eprintln!("working set bytes of the limited container by handler: {seen:?}");
            let [(_, go), (_, ours)] = seen[..] else { panic!("{seen:?}") };
            assert!(go.abs_diff(ours) <= 8 * MIB, "working sets: Go shim {go}, ours {ours}");
        })
    });
}

/// An exec (CRI's ExecSync, what liveness probes run) gets the process
/// containerd built for it, unchanged: here the container's OOM score
/// adjustment, which the kubelet sets per container and runc applies only
/// when the process carries it.
fn exec_gets_the_containers_process(handler: &'static str) {
    with_cri(move |cd| {
        Box::pin(async move {
            let mut pod = Pod::run(cd, handler, "adj", cri::CONTAINER).await;
            let resources = cri::LinuxContainerResources { oom_score_adj: 987, ..Default::default() };
            let c = pod.start_container_with("c", &["/bin/sleep", "1000"], Some(resources)).await;
            let (init, _) = pod.exec(&c, &["/bin/cat", "/proc/1/oom_score_adj"]).await;
            let (exec, _) = pod.exec(&c, &["/bin/cat", "/proc/self/oom_score_adj"]).await;
            assert_eq!((init.trim(), exec.trim()), ("987", "987"), "{handler}");
            pod.stop_and_remove(&c, 1).await;
            pod.remove().await;
        })
    });
}

#[test]
fn reference_exec_gets_the_containers_process() {
    if !require_containerd() {
        return;
    }
    exec_gets_the_containers_process(HANDLERS[0].0);
}

#[test]
fn rshim_exec_gets_the_containers_process() {
    if !require_containerd() {
        return;
    }
    exec_gets_the_containers_process(HANDLERS[1].0);
}

/// Resident and proportional set sizes of process `pid` in KiB, from
/// `smaps_rollup`.
pub fn rss_pss_kib(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// A measurement, not a check (run by hand; docs/PERFORMANCE.md has the
/// command): the shim processes of 10 pods of a sandbox and 3 containers
/// each, per handler, with both handlers' pods running at once in one
/// containerd, and their summed memory. Prints a Markdown table.
#[test]
#[ignore]
fn shim_memory_of_pods() {
    if !require_containerd() {
        return;
    }
    const PODS: usize = 10;
    with_cri(|cd| {
        Box::pin(async move {
            let mut pods = Vec::new();
            for i in 0..PODS {
                for (handler, _) in HANDLERS {
                    let mut pod = Pod::run(cd, handler, &format!("m{i}-{handler}"), cri::CONTAINER).await;
                    for c in 0..3 {
                        pod.start_container(&format!("c{c}"), &["/bin/sleep", "100000"]).await;
                    }
                    pods.push(pod);
                }
            }
            // Idle, as a node's shims are most of the time (ours gives its
            // start-up pages back after 2 s idle).
            tokio::time::sleep(Duration::from_secs(5)).await;
            println!("| shim | pods | containers (with sandboxes) | shim processes | RSS total (MiB) | PSS total (MiB) | RSS per pod (MiB) |");
            println!("|---|---|---|---|---|---|---|");
            let shims = cd.all_shim_pids();
            for (handler, binary) in HANDLERS {
                let ours: Vec<i32> = shims
                    .iter()
                    .copied()
                    .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with(binary)))
                    .collect();
                let (rss, pss) = ours.iter().map(|p| rss_pss_kib(*p)).fold((0, 0), |(r, p), (r1, p1)| (r + r1, p + p1));
                let mib = |kib: u64| kib as f64 / 1024.0;
                println!(
                    "| {binary} (handler {handler}) | {PODS} | {} | {} | {:.1} | {:.1} | {:.2} |",
                    PODS * 4,
                    ours.len(),
                    mib(rss),
                    mib(pss),
                    mib(rss) / PODS as f64
                );
            }
            for pod in pods {
                pod.remove().await;
            }
        })
    });
}

/// Whether the host's cgroups are v2 (the guest legs); on v1 (this project's
/// hosts) the test is skipped, as it would make a cgroup of the host's.
/// `SHIM_REQUIRE_CGROUP2=1` (set by the legs) fails instead.
fn cgroup2_or_skip(test: &str) -> bool {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return true;
    }
    assert_ne!(std::env::var("SHIM_REQUIRE_CGROUP2").as_deref(), Ok("1"), "this host is not cgroup v2");
    eprintln!("{test}: skipped, the host's cgroups are v1 and it would make one of the host's");
    false
}

/// The runc option `ShimCgroup` puts a pod's shim in that cgroup when it
/// starts, and nothing else of the pod; a cgroup that does not exist fails
/// RunPodSandbox with an error naming it.
fn shim_cgroup_holds_the_shim(handler: &'static str) {
    let name = format!("rshim-test-shims-{}", std::process::id());
    let dir = std::path::Path::new("/sys/fs/cgroup").join(&name);
    if let Err(e) = std::fs::create_dir(&dir) {
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "mkdir {}: {e}", dir.display());
    }
    let setup = cri_setup_with(&format!("ShimCgroup = \"/{name}\"\n"));
    let (name2, dir2) = (name.clone(), dir.clone());
    with_cri_setup(setup, move |cd| {
        let (name, dir) = (name2, dir2);
        Box::pin(async move {
            let mut pod = Pod::run(cd, handler, "placed", cri::CONTAINER).await;
            let a = pod.start_container("a", &["/bin/sleep", "1003"]).await;
            let shims = cd.all_shim_pids();
            assert_eq!(shims.len(), 1, "shims of the pod: {shims:?}");
            let own = std::fs::read_to_string(format!("/proc/{}/cgroup", shims[0])).unwrap_or_default();
            assert_eq!(own.trim(), format!("0::/{name}"), "the shim's cgroup");
            let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            assert_eq!(members.trim(), shims[0].to_string(), "the shim alone is in {name}");
            pod.stop_and_remove(&a, 1).await;
            pod.remove().await;
            wait_until("the pod's shim exits with it", || cd.all_shim_pids().is_empty()).await;
        })
    });
    // A cgroup that is not there: the pod does not start, and says why.
    let missing = format!("{name}-missing");
    with_cri_setup(cri_setup_with(&format!("ShimCgroup = \"/{missing}\"\n")), move |cd| {
        Box::pin(async move {
            match Pod::try_run(cd, handler, "unplaced", cri::CONTAINER).await {
                Ok(pod) => panic!("a pod whose shim cgroup is missing started: {}", pod.id),
                Err(e) => assert!(e.message().contains(&missing), "the error names the cgroup: {e}"),
            }
            assert!(cd.all_shim_pids().is_empty(), "no shim is left: {:?}", cd.all_shim_pids());
        })
    });
    // Empty once its shim has gone; with_cri_setup waited for that.
    std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
}

#[test]
fn reference_shim_cgroup_holds_the_shim() {
    if !require_containerd() || !cgroup2_or_skip("reference_shim_cgroup_holds_the_shim") {
        return;
    }
    shim_cgroup_holds_the_shim(HANDLERS[0].0);
}

#[test]
fn rshim_shim_cgroup_holds_the_shim() {
    if !require_containerd() || !cgroup2_or_skip("rshim_shim_cgroup_holds_the_shim") {
        return;
    }
    shim_cgroup_holds_the_shim(HANDLERS[1].0);
}

/// Whether systemd manages this host's cgroups (v2, systemd as PID 1: the
/// systemd leg); otherwise the test is skipped, unless
/// `SHIM_SYSTEMD_CGROUP=1` (set by that leg) makes it a failure.
fn systemd_or_skip(test: &str) -> bool {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 && std::path::Path::new("/run/systemd/system").is_dir() {
        return true;
    }
    assert_ne!(std::env::var("SHIM_SYSTEMD_CGROUP").as_deref(), Ok("1"), "systemd does not manage this host's cgroups");
    eprintln!("{test}: skipped, systemd does not manage this host's cgroups (the systemd leg runs it)");
    false
}

/// The cgroup (v2) of process `pid`, from the root.
fn cgroup_of(pid: impl std::fmt::Display) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default().to_string()
}

/// A pod under the systemd cgroup driver, as on most nodes: `SystemdCgroup
/// = true` in the runtime's options and a `.slice` cgroup parent. Each
/// container is a `cri-containerd-<id>.scope` in that slice, its stats come
/// from there, and the shim stays where containerd started it (its own
/// cgroup), as the Go shim does.
fn systemd_cgroup_pod(handler: &'static str) {
    with_cri_setup(cri_setup_with("SystemdCgroup = true\n"), move |cd| {
        Box::pin(async move {
            let mut pod = match Pod::try_run_in(cd, handler, "sliced", cri::CONTAINER, "kubepods-rshimtest.slice").await
            {
                Ok(pod) => pod,
                Err(e) => panic!("RunPodSandbox: {e}\ncontainerd log:\n{}", cd.log_tail()),
            };
            let id = pod.start_container("a", &["/bin/sleep", "1004"]).await;
            let init = processes_running(&["/bin/sleep", "1004"]);
            assert_eq!(init.len(), 1, "the container's init: {init:?}");
            let scope = cgroup_of(init[0]);
            assert!(
                scope.ends_with(&format!("/kubepods-rshimtest.slice/cri-containerd-{id}.scope")),
                "the container's cgroup: {scope}"
            );
            let shims = cd.all_shim_pids();
            assert_eq!(shims.len(), 1, "shims of the pod: {shims:?}");
            let containerd = cd.pid().map(cgroup_of).unwrap_or_default();
            assert_eq!(cgroup_of(shims[0]), containerd, "the shim's cgroup is containerd's");
            assert_eq!(pod.exec(&id, &["/bin/echo", "in"]).await, ("in\n".into(), 0));
            let memory = pod.memory(&id).await;
            let working_set = memory.working_set_bytes.as_ref().map(|v| v.value).unwrap_or_default();
            assert!(working_set > 0, "{memory:?}");
            let gone = pod.stop_and_remove(&id, 1).await;
            assert_eq!((gone.state, gone.exit_code), (cri::EXITED, 137), "{gone:?}");
            pod.remove().await;
            wait_until("the pod's shim exits with it", || cd.all_shim_pids().is_empty()).await;
            wait_until("the container's scope is gone", || {
                !std::path::Path::new("/sys/fs/cgroup").join(scope.trim_start_matches('/')).exists()
            })
            .await;
        })
    });
}

#[test]
fn reference_systemd_cgroup_pod() {
    if !require_containerd() || !systemd_or_skip("reference_systemd_cgroup_pod") {
        return;
    }
    systemd_cgroup_pod(HANDLERS[0].0);
}

#[test]
fn rshim_systemd_cgroup_pod() {
    if !require_containerd() || !systemd_or_skip("rshim_systemd_cgroup_pod") {
        return;
    }
    systemd_cgroup_pod(HANDLERS[1].0);
}

/// crun as the OCI runtime (`BinaryName = "crun"` in both runtimes'
/// options, as a node that prefers crun sets it): a pod of two containers
/// runs, execs, answers stats and goes away, through the Go shim and ours.
/// Runs in the cgroup2 guest leg (see [`crun_or_skip`]).
fn crun_pod(handler: &'static str) {
    with_cri_setup(cri_setup_with("BinaryName = \"crun\"\n"), move |cd| {
        Box::pin(async move {
            let mut pod = Pod::run(cd, handler, "crunpod", cri::CONTAINER).await;
            let a = pod.start_container("a", &["/bin/sleep", "1005"]).await;
            let b = pod.start_container("b", &["/bin/sh", "-c", "echo from-b; exec sleep 1006"]).await;
            assert_eq!(pod.exec(&a, &["/bin/echo", "crun"]).await, ("crun\n".into(), 0));
            // crun made it: crun knows it in the runtime root (`Root` + the
            // CRI namespace), which runc's state would not satisfy.
            let root = cd.dir().join("runc").join("k8s.io");
            let state = std::process::Command::new("crun").arg("--root").arg(&root).args(["state", &a]).output();
            let state = state.unwrap_or_else(|e| panic!("crun state: {e}"));
            let text = String::from_utf8_lossy(&state.stdout);
            assert!(state.status.success() && text.contains("\"running\""), "crun state {a}: {text}");
            let memory = pod.memory(&b).await;
            assert!(memory.working_set_bytes.as_ref().is_some_and(|v| v.value > 0), "{memory:?}");
            for id in [&a, &b] {
                let gone = pod.stop_and_remove(id, 1).await;
                assert_eq!((gone.state, gone.exit_code), (cri::EXITED, 137), "{gone:?}");
            }
            pod.remove().await;
            wait_until("the pod's shim exits with it", || cd.all_shim_pids().is_empty()).await;
        })
    });
}

/// Whether crun can run here: installed (`SHIM_REQUIRE_RUNC=1`, set by
/// `make test`, fails without it) and on cgroup v2. crun 1.8 refuses a
/// hybrid host such as this project's (v1 controllers beside a unified
/// mount: "cgroups in hybrid mode not supported"), so on v1 the test is
/// skipped and the cgroup2 guest leg runs it.
fn crun_or_skip(test: &str) -> bool {
    if super::harness::find_in_path("crun").is_none() {
        assert_ne!(std::env::var("SHIM_REQUIRE_RUNC").as_deref(), Ok("1"), "crun is not installed (make deps does)");
        eprintln!("{test}: skipped, crun is not installed");
        return false;
    }
    cgroup2_or_skip(test)
}

#[test]
fn reference_crun_pod() {
    if !require_containerd() || !crun_or_skip("reference_crun_pod") {
        return;
    }
    crun_pod(HANDLERS[0].0);
}

#[test]
fn rshim_crun_pod() {
    if !require_containerd() || !crun_or_skip("rshim_crun_pod") {
        return;
    }
    crun_pod(HANDLERS[1].0);
}
