//! A container manager hosting many containers in one process: the guide
//! in code (run it with `cargo run -p shim-examples --example many_containers
//! -- 20`, as root).
//!
//! - **One shim per container.** A [`RuncShim`] holds one container; a
//!   manager keeps one per container it runs, in a map by id.
//! - **One reaper.** [`Reaper::start`] returns the process's one reaper,
//!   whoever calls it; every shim gets a clone.
//! - **One work directory.** All shims may share it: each makes its own
//!   private subdirectory there and removes it when dropped.
//! - **One event stream.** The shims publish on one shared [`EventBus`],
//!   so a single subscriber sees every container's events, each naming its
//!   container id, in one order.
//! - **Shutdown.** Deleting a container's init kills what still runs in it
//!   and removes it from runc; drop the shim afterwards. A shim dropped
//!   without that, or a manager that exits, leaves its containers running:
//!   that is a feature (a manager can be upgraded or crash without taking
//!   its containers down), but nothing will reap them or report their exits
//!   any more, so a manager that means to stop them must delete them first.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shim_core::proto::v1::{CreateRequest, DeleteRequest, EventType, StartRequest, WaitRequest};
use shim_core::testing::BundleBuilder;
use shim_core::{EventBus, Reaper, RuncConfig, RuncShim, Shim, StreamExt};

/// What [`run`] saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// Each container's exit status, by id.
    pub statuses: BTreeMap<String, u32>,
    /// Each container's stdout, by id.
    pub outputs: BTreeMap<String, String>,
    /// The EXIT events seen on the shared bus, by id.
    pub exit_events: BTreeMap<String, u32>,
    /// How long the whole run took.
    pub elapsed: Duration,
    /// Entries left in the shared work directory at the end (should be none).
    pub leftovers: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs `n` containers concurrently, each through its own shim, under `dir`
/// (bundles, outputs, and the shared work directory `dir/work`). Container
/// `i` prints `hello from container i` and exits with `i % 7`.
pub async fn run(n: usize, dir: &Path, runtime: &str) -> Result<Summary, Error> {
    let started = Instant::now();
    let reaper = Reaper::start()?;
    let work = dir.join("work");
    // One bus for every shim: its ring must hold a burst of all their events.
    let bus = EventBus::new(8 * n.max(1) + 64);
    let mut events = bus.subscribe();
    let bundle = dir.join("bundle");
    BundleBuilder::new().args(["sh", "-c", "echo \"hello from container $N\"; exit $((N % 7))"]).build(&bundle)?;
    let mut tasks = Vec::new();
    for i in 0..n {
        let config = RuncConfig::new(&work).runtime(runtime);
        let shim = Arc::new(RuncShim::with_event_bus(config, reaper.clone(), Some(bus.clone()))?);
        let dir = dir.to_path_buf();
        let bundle = bundle.clone();
        tasks.push(tokio::spawn(async move { one_container(shim, i, &dir, &bundle).await }));
    }
    let mut summary = Summary::default();
    for task in tasks {
        let (id, status, output) = task.await??;
        summary.statuses.insert(id.clone(), status);
        summary.outputs.insert(id, output);
    }
    // Every container's EXIT came through the one subscription.
    while summary.exit_events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
        match next {
            Ok(Some(Ok(ev))) if ev.r#type == EventType::Exit as i32 => {
                summary.exit_events.insert(ev.id, ev.exit_status);
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => return Err("the shared event stream ended before every EXIT".into()),
        }
    }
    summary.leftovers = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One container's life: its own bundle config (the process's `N`), create,
/// start, wait, delete; then its shim is dropped (removing its directory).
async fn one_container(
    shim: Arc<RuncShim>,
    i: usize,
    dir: &Path,
    shared: &Path,
) -> Result<(String, u32, String), Error> {
    let id = format!("many-{}-{i}", std::process::id());
    // Each container gets a bundle of its own: a config with its number in
    // the environment, the shared rootfs by absolute path.
    let bundle = dir.join(format!("bundle-{i}"));
    std::fs::create_dir_all(&bundle)?;
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(shared.join("config.json"))?)?;
    if let Some(root) = config.pointer_mut("/root/path") {
        *root = serde_json::json!(shared.join("rootfs"));
    }
    if let Some(env) = config.pointer_mut("/process/env").and_then(|e| e.as_array_mut()) {
        env.push(serde_json::json!(format!("N={i}")));
    }
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config)?)?;
    let stdout = dir.join(format!("out-{i}"));
    let req = CreateRequest {
        id: id.clone(),
        bundle: bundle.display().to_string(),
        stdout: stdout.display().to_string(),
        ..Default::default()
    };
    let pid = shim.create(req).await?.pid;
    shim.start(StartRequest {}).await?;
    let status = shim.wait(WaitRequest { pid }).await?.exit_status;
    shim.delete(DeleteRequest { pid }).await?;
    drop(shim);
    let output = std::fs::read_to_string(&stdout)?;
    Ok((id, status, output))
}
