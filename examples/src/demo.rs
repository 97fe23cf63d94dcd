//! `shimctl demo`: a guided tour that runs a real container through a `shim`
//! daemon over gRPC.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shim_core::proto::v1::{
    CreateRequest, DeleteRequest, EventsRequest, ExecRequest, StartRequest, StateRequest, WaitRequest,
};
use shim_core::testing::{mkfifo, BundleBuilder};
use shim_core::Shim;

use crate::ctl;

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Prints one progress line with the time a step took.
fn step(what: &str, started: Instant) {
    println!("  [{:>7.1} ms] {what}", started.elapsed().as_secs_f64() * 1000.0);
}

fn read_fifo(path: &Path) -> tokio::task::JoinHandle<std::io::Result<String>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::fs::File::open(&path)?.read_to_string(&mut s)?;
        Ok(s)
    })
}

/// Runs the demo: a container that greets and prints its hostname, an exec
/// in it, the events as they arrive, the exit status, and cleanup.
pub async fn run() -> DemoResult<()> {
    let total = Instant::now();
    let dir = tempfile::Builder::new().prefix("shim-demo-").tempdir()?;
    println!("shim demo: a busybox container through the runc shim");

    let t = Instant::now();
    let bundle = dir.path().join("bundle");
    BundleBuilder::new()
        .args(["sh", "-c", "echo \"hello from the shim demo, I am $(hostname)\"; sleep 2"])
        .hostname("demo-container")
        .build(&bundle)?;
    step(&format!("built a busybox bundle in {}", bundle.display()), t);

    let t = Instant::now();
    let socket = dir.path().join("run").join("shim.sock");
    let mut daemon = ctl::spawn_shim(&socket)?;
    step(&format!("started a shim daemon on {}", socket.display()), t);

    let t = Instant::now();
    let shim: Arc<dyn Shim> = Arc::new(ctl::connect(&socket).await?);
    step("connected over gRPC", t);

    let mut events = shim.events(EventsRequest::default()).await?;
    let printer = tokio::spawn(async move {
        while let Some(Ok(ev)) = events.next().await {
            let ty = ev.event_type().map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
            println!("  event: {ty:<10} pid={} exit_status={}", ev.pid, ev.exit_status);
        }
    });

    let stdout = dir.path().join("stdout");
    mkfifo(&stdout)?;
    let output = read_fifo(&stdout);
    let t = Instant::now();
    let id = format!("demo-{}", std::process::id());
    let pid = shim
        .create(CreateRequest {
            id: id.clone(),
            bundle: bundle.to_string_lossy().into_owned(),
            stdout: stdout.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .await?
        .pid;
    step(&format!("created container {id}, init pid {pid}"), t);

    let t = Instant::now();
    shim.start(StartRequest {}).await?;
    step("started the container", t);

    let exec_out = dir.path().join("exec-out");
    mkfifo(&exec_out)?;
    let exec_output = read_fifo(&exec_out);
    let t = Instant::now();
    let exec = shim
        .exec(ExecRequest {
            args: vec!["sh".into(), "-c".into(), "echo exec sees: $(ps | wc -l) lines of ps".into()],
            stdout: exec_out.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .await?
        .pid;
    let status = shim.wait(WaitRequest { pid: exec }).await?.exit_status;
    step(&format!("exec pid {exec} exited with status {status}"), t);
    print!("  exec output: {}", exec_output.await??);
    shim.delete(DeleteRequest { pid: exec }).await?;

    let state = shim.state(StateRequest {}).await?;
    println!("  state: id={} processes={:?}", state.id, state.processes.iter().map(|p| p.pid).collect::<Vec<_>>());

    let t = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), shim.wait(WaitRequest { pid })).await??.exit_status;
    step(&format!("init exited with status {status}"), t);
    print!("  container output: {}", output.await??);

    let t = Instant::now();
    let deleted = shim.delete(DeleteRequest { pid }).await?;
    step(&format!("deleted the container (exit status {})", deleted.exit_status), t);
    drop(shim);
    printer.abort();
    // Its container deleted, the daemon removes its socket and exits.
    let t = Instant::now();
    let exited =
        tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || daemon.wait())).await???;
    step(&format!("the shim daemon exited ({exited}); socket removed: {}", !socket.exists()), t);
    println!("done in {:.1} ms", total.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
