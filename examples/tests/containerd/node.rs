//! The node benchmark: pods started as the kubelet starts them, through
//! containerd's CRI plugin, with the Go shim (handler `runc`) and ours
//! (handler `rshim`) interleaved in one containerd. A measurement, not a
//! check, so it is ignored by default (`docs/PERFORMANCE.md` has the
//! command and the tables it printed):
//!
//! - pod start latency (RunPodSandbox, then CreateContainer and
//!   StartContainer of two containers, until ContainerStatus says both are
//!   RUNNING), one pod at a time, and 10 pods at once;
//! - the shims' memory with N pods of each handler running: shim processes,
//!   their summed RSS and PSS, and the PSS's share of the node's used
//!   memory (MemTotal less MemAvailable, with both handlers' pods running);
//! - teardown (StopPodSandbox and RemovePodSandbox) per pod, and that
//!   nothing is left (the harness checks that after every size).
//!
//! `NODE_PODS` lists the sizes (default `10,50,110`); `RSHIM_BIN` names the
//! shim binary to measure (default: the debug build of this workspace; the
//! tables in PERFORMANCE.md are of `make daemon`'s); `NODE_BENCH_OUT` names
//! a file the tables are written to as well (`make bench` uses it).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::cri;
use super::harness::{require_containerd, Containerd};
use super::pods::{import_pod_images, rss_pss_kib, with_cri, Pod, HANDLERS};

/// The value at percentile `p` (0 to 100) of `sorted`, by nearest rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// p50, p90 and p99 of `samples`, as table cells.
fn spread(samples: &mut [Duration]) -> String {
    samples.sort();
    format!("{} | {} | {}", ms(percentile(samples, 50.0)), ms(percentile(samples, 90.0)), ms(percentile(samples, 99.0)))
}

/// Starts pod `name` with `handler` as the kubelet does and waits until
/// both its containers are RUNNING; the pod and how long that took.
async fn start_pod<'a>(cd: &'a Containerd, handler: &str, name: &str, image: &str) -> (Pod<'a>, Duration) {
    let began = Instant::now();
    let mut pod = match Pod::start_in(cd, handler, name, cri::CONTAINER, "/k8s.io", image.to_string()).await {
        Ok(pod) => pod,
        Err(e) => panic!("RunPodSandbox of {name}: {e}\ncontainerd log:\n{}", cd.log_tail()),
    };
    let a = pod.start_container("a", &["/bin/sleep", "100000"]).await;
    let b = pod.start_container("b", &["/bin/sleep", "100001"]).await;
    for id in [&a, &b] {
        assert_eq!(pod.status(id).await.state, cri::RUNNING, "container {id} of pod {name}");
    }
    (pod, began.elapsed())
}

/// The node's used memory (MemTotal less MemAvailable), in KiB.
fn node_used_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field("MemTotal:").saturating_sub(field("MemAvailable:"))
}

/// One size: `n` pods per handler, interleaved, then 10 at once.
async fn measure(cd: &Containerd, n: usize) -> String {
    let image = import_pod_images(cd);
    let mut starts: [Vec<Duration>; 2] = Default::default();
    let mut pods: Vec<(usize, Pod<'_>)> = Vec::new();
    for i in 0..n {
        // Alternate which handler goes first, so neither always follows
        // the other's work.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for h in order {
            let (handler, _) = HANDLERS[h];
            let (pod, took) = start_pod(cd, handler, &format!("n{i}-{handler}"), &image).await;
            starts[h].push(took);
            pods.push((h, pod));
        }
    }
    // Idle, as a node's shims are most of the time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = node_used_kib();
    let shims = cd.all_shim_pids();
    let mut memory = Vec::new();
    for (handler, binary) in HANDLERS {
        let of_binary: Vec<i32> = shims
            .iter()
            .copied()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with(binary)))
            .collect();
        let (rss, pss) = of_binary.iter().map(|p| rss_pss_kib(*p)).fold((0, 0), |(r, p), (r1, p1)| (r + r1, p + p1));
        let mib = |kib: u64| kib as f64 / 1024.0;
        // PSS, not RSS, for the share: the Go shims' RSS counts the pages
        // they share once per process (110 of them summed to more than the
        // node's used memory).
        memory.push(format!(
            "| {n} | {binary} ({handler}) | {} | {:.1} MiB | {:.1} MiB | {:.1} % |",
            of_binary.len(),
            mib(rss),
            mib(pss),
            100.0 * pss as f64 / used.max(1) as f64
        ));
    }
    let mut teardowns: [Vec<Duration>; 2] = Default::default();
    for (h, pod) in pods {
        let began = Instant::now();
        pod.remove().await;
        teardowns[h].push(began.elapsed());
    }
    // 10 pods at once per handler: the kubelet starts pods in parallel.
    let mut at_once: [Vec<Duration>; 2] = Default::default();
    for (h, (handler, _)) in HANDLERS.iter().enumerate() {
        let names: Vec<String> = (0..10).map(|i| format!("p{n}-{i}-{handler}")).collect();
        let started = futures::future::join_all(names.iter().map(|name| start_pod(cd, handler, name, &image))).await;
        let mut pods = Vec::new();
        for (pod, took) in started {
            at_once[h].push(took);
            pods.push(pod);
        }
        futures::future::join_all(pods.into_iter().map(Pod::remove)).await;
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nN = {n} pods of 2 containers per handler (node used memory {:.0} MiB)\n",
        used as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| pods | shim | start p50 | p90 | p99 | 10 at once p50 | p90 | p99 | teardown p50 | p90 | p99 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (h, (handler, binary)) in HANDLERS.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {n} | {binary} ({handler}) | {} | {} | {} |",
            spread(&mut starts[h]),
            spread(&mut at_once[h]),
            spread(&mut teardowns[h])
        );
    }
    let _ = writeln!(
        out,
        "\n| pods | shim | shim processes | RSS total | PSS total | PSS share of the node's used memory |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in memory {
        let _ = writeln!(out, "{row}");
    }
    out
}

#[test]
#[ignore]
fn node_benchmark() {
    if !require_containerd() {
        return;
    }
    let sizes = std::env::var("NODE_PODS").unwrap_or_else(|_| "10,50,110".into());
    let mut tables = String::new();
    for n in sizes.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
        let (tx, rx) = std::sync::mpsc::channel();
        with_cri(move |cd| {
            Box::pin(async move {
                let _ = tx.send(measure(cd, n).await);
            })
        });
        let table = rx.recv().unwrap_or_default();
        print!("{table}");
        tables.push_str(&table);
    }
    // `make bench` keeps them for docs/PERFORMANCE.md.
    if let Some(path) = std::env::var_os("NODE_BENCH_OUT") {
        std::fs::write(&path, tables).unwrap_or_else(|e| panic!("{}: {e}", std::path::Path::new(&path).display()));
    }
}
