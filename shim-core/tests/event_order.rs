//! Event order when the kernel is faster than the runtime's command: a
//! container can reach its memory limit while `runc start` is still on its
//! way out (seen with real runc: OOM published before STARTED).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use shim_core::io::ProcessStdio;
use shim_core::oom::{OomTrigger, OomWatcher};
use shim_core::proto::v1::*;
use shim_core::testing::collect_events;
use shim_core::{ContainerShim, CreateSpec, FakeRuntime, Launched, Runtime, Shim, ShimConfig, Signal};

const T: Duration = Duration::from_secs(20);

/// The fake runtime, except that the container is OOM-killed during its
/// `start`, and the start only returns after the OOM watch had every chance
/// to report it.
struct OomDuringStart {
    inner: FakeRuntime,
    trigger: Mutex<Option<OomTrigger>>,
}

#[async_trait]
impl Runtime for OomDuringStart {
    async fn create(&self, spec: &CreateSpec, stdio: ProcessStdio) -> shim_core::Result<Launched> {
        let mut launched = self.inner.create(spec, stdio).await?;
        let (watcher, trigger) = OomWatcher::manual();
        launched.oom = Some(watcher);
        *self.trigger.lock().unwrap() = Some(trigger);
        Ok(launched)
    }
    async fn start(&self, id: &str) -> shim_core::Result<()> {
        self.inner.start(id).await?;
        if let Some(trigger) = self.trigger.lock().unwrap().as_ref() {
            trigger.fire();
        }
        // On a current-thread runtime every other ready task (the OOM
        // watch among them) runs before this start returns.
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
        Ok(())
    }
    async fn exec(&self, id: &str, process: &serde_json::Value, stdio: ProcessStdio) -> shim_core::Result<Launched> {
        self.inner.exec(id, process, stdio).await
    }
    async fn kill_all(&self, id: &str, signal: Signal) -> shim_core::Result<()> {
        self.inner.kill_all(id, signal).await
    }
    fn signal(&self, pid: u32, signal: Signal) -> shim_core::Result<bool> {
        self.inner.signal(pid, signal)
    }
    async fn delete(&self, id: &str) -> shim_core::Result<()> {
        self.inner.delete(id).await
    }
    async fn cleanup(&self, spec: &CreateSpec) {
        self.inner.cleanup(spec).await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_oom_during_start_is_published_after_started() {
    let (shim, dir) = oom_by_hand();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let req = CreateRequest { id: "c".into(), bundle: dir.path().display().to_string(), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Oom as i32).await.unwrap();
    let kinds: Vec<_> = seen.iter().map(|e| EventType::try_from(e.r#type).unwrap()).collect();
    assert_eq!(kinds, vec![EventType::Created, EventType::Started, EventType::Oom]);
    shim.kill(KillRequest { pid: init, signal: 9, all: false }).await.unwrap();
    let exit = tokio::time::timeout(T, shim.wait(WaitRequest { pid: init })).await.unwrap().unwrap();
    assert_eq!(exit.exit_status, 137);
}

/// The fake runtime with its OOM trigger (fired by its `start`, and by a
/// test by hand), and a bundle directory for it.
fn oom_by_hand() -> (ContainerShim<OomDuringStart>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "process": { "args": ["sleep"], "cwd": "/" } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let runtime = OomDuringStart { inner: FakeRuntime::new(), trigger: Mutex::new(None) };
    (ContainerShim::with_runtime(runtime, ShimConfig::default(), None), dir)
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_oom_notifications_does_not_flood_the_events() {
    let (shim, dir) = oom_by_hand();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let req = CreateRequest { id: "c".into(), bundle: dir.path().display().to_string(), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    // As cgroup v1 does while an OOM victim dies: a notification for each
    // failed charge, here far more than the event ring (256) holds, each
    // with a chance for the watch to run.
    let trigger = shim.runtime().trigger.lock().unwrap().clone().unwrap();
    for _ in 0..2000 {
        trigger.fire();
        tokio::task::yield_now().await;
    }
    shim.kill(KillRequest { pid: init, signal: 9, all: false }).await.unwrap();
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32).await.unwrap();
    let ooms = seen.iter().filter(|e| e.r#type == EventType::Oom as i32).count();
    assert!((1..=3).contains(&ooms), "{ooms} OOM events for one flood");
    assert_eq!(seen.last().map(|e| (e.pid, e.exit_status)), Some((init, 137)));
}
