//! Exit handling that fails in the middle: a panic in it, or settings at the
//! edge of their range, must never leave a Wait or Delete hanging.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use shim_core::io::ProcessStdio;
use shim_core::proto::v1::*;
use shim_core::testing::collect_events;
use shim_core::{ContainerShim, CreateSpec, FakeRuntime, FakeShim, Launched, Runtime, Shim, ShimConfig, Signal};

const T: Duration = Duration::from_secs(20);

/// The fake runtime, except that an exec's exit future panics once the
/// process has exited: a bug in a runtime, or in the shim's exit handling.
struct PanickingExits(FakeRuntime);

#[async_trait]
impl Runtime for PanickingExits {
    async fn create(&self, spec: &CreateSpec, stdio: ProcessStdio) -> shim_core::Result<Launched> {
        self.0.create(spec, stdio).await
    }
    async fn start(&self, id: &str) -> shim_core::Result<()> {
        self.0.start(id).await
    }
    async fn exec(&self, id: &str, process: &serde_json::Value, stdio: ProcessStdio) -> shim_core::Result<Launched> {
        let mut launched = self.0.exec(id, process, stdio).await?;
        let exit = std::mem::replace(&mut launched.exit, futures::future::ready(None).boxed());
        launched.exit = async move {
            let _ = exit.await;
            panic!("exit handling fails");
        }
        .boxed();
        Ok(launched)
    }
    async fn kill_all(&self, id: &str, signal: Signal) -> shim_core::Result<()> {
        self.0.kill_all(id, signal).await
    }
    fn signal(&self, pid: u32, signal: Signal) -> shim_core::Result<bool> {
        self.0.signal(pid, signal)
    }
    async fn delete(&self, id: &str) -> shim_core::Result<()> {
        self.0.delete(id).await
    }
    async fn cleanup(&self, spec: &CreateSpec) {
        self.0.cleanup(spec).await
    }
}

fn bundle(dir: &std::path::Path, args: &[&str]) -> String {
    let config = serde_json::json!({ "process": { "args": args, "cwd": "/" } });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.display().to_string()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.unwrap_or_else(|_| panic!("timed out after {T:?}: a waiter hangs"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_exit_handling_still_completes_wait_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let shim = ContainerShim::with_runtime(PanickingExits(FakeRuntime::new()), ShimConfig::default(), None);
    let req = CreateRequest { id: "c".into(), bundle: bundle(dir.path(), &["sleep"]), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let pid = shim.exec(ExecRequest { args: vec!["exit:3".into()], ..Default::default() }).await.unwrap().pid;
    assert_eq!(within(shim.wait(WaitRequest { pid })).await.unwrap().exit_status, 255);
    let seen = collect_events(&mut events, T, |e| e.r#type == EventType::Exit as i32).await.unwrap();
    assert_eq!(seen.last().map(|e| (e.pid, e.exit_status)), Some((pid, 255)));
    assert_eq!(within(shim.delete(DeleteRequest { pid })).await.unwrap().exit_status, 255);
    assert_eq!(within(shim.delete(DeleteRequest { pid: init })).await.unwrap().exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_durations_mean_no_limit_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = ShimConfig { io_grace: Duration::MAX, exec_exit_grace: Duration::MAX, ..Default::default() };
    let shim = FakeShim::with_config(config, None);
    let req = CreateRequest { id: "c".into(), bundle: bundle(dir.path(), &["sleep"]), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    let pid = shim.exec(ExecRequest { args: vec!["exit:3".into()], ..Default::default() }).await.unwrap().pid;
    assert_eq!(within(shim.wait(WaitRequest { pid })).await.unwrap().exit_status, 3);
    assert_eq!(within(shim.delete(DeleteRequest { pid: init })).await.unwrap().exit_status, 137);
}
