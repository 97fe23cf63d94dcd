//! Connection semantics of the in-memory transport: drop, cancel, backpressure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shim_core::proto::v1::*;
use shim_core::{Code, FakeShim, Shim};
use shim_transport_mem::{serve, MemOptions};

const T: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing after `T`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fake shim with a running container whose init never exits by itself.
async fn running(dir: &std::path::Path) -> (Arc<FakeShim>, u32) {
    std::fs::write(dir.join("config.json"), r#"{"process":{"args":["sleep"]}}"#).unwrap();
    let shim = Arc::new(FakeShim::new());
    let req = CreateRequest { id: "c".into(), bundle: dir.display().to_string(), ..Default::default() };
    let pid = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    (shim, pid)
}

#[tokio::test]
async fn dropping_the_server_ends_calls_and_streams_with_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, pid) = running(dir.path()).await;
    // A State held at a closed gate is a call certainly in progress.
    let gated = Arc::new(Gated { inner: shim.clone(), gate: Arc::new(tokio::sync::Semaphore::new(0)) });
    let (server, client) = serve(gated, MemOptions::default());
    let mut events = client.events(EventsRequest::default()).await.unwrap();
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.state(StateRequest {}).await })
    };
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(WaitRequest { pid }).await })
    };
    until("the state call to reach the shim", || server.in_flight() == 1).await;
    drop(server);
    let r = tokio::time::timeout(T, waiting).await.unwrap().unwrap();
    assert_eq!(r.map_err(|e| e.code()).err(), Some(Code::Unavailable));
    let r = tokio::time::timeout(T, pending).await.unwrap().unwrap();
    assert_eq!(r.map_err(|e| e.code()).err(), Some(Code::Unavailable));
    let item = tokio::time::timeout(T, events.next()).await.unwrap();
    assert_eq!(item.map(|r| r.map_err(|e| e.code()).err()), Some(Some(Code::Unavailable)));
    assert!(tokio::time::timeout(T, events.next()).await.unwrap().is_none(), "stream ends after the error");
    assert_eq!(client.state(StateRequest {}).await.map_err(|e| e.code()).err(), Some(Code::Unavailable));
    until("the subscription to be released", || shim.event_bus().subscriber_count() == 0).await;
}

#[tokio::test]
async fn dropping_a_stream_or_the_client_releases_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, _) = running(dir.path()).await;
    let (_server, client) = serve(shim.clone(), MemOptions::default());
    let stream = client.events(EventsRequest::default()).await.unwrap();
    let _kept = client.events(EventsRequest::default()).await.unwrap();
    assert_eq!(shim.event_bus().subscriber_count(), 2);
    drop(stream);
    until("one subscription to be released", || shim.event_bus().subscriber_count() == 1).await;
    drop(client);
    until("every subscription to be released", || shim.event_bus().subscriber_count() == 0).await;
}

#[tokio::test]
async fn a_cancelled_call_leaves_no_task_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, pid) = running(dir.path()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (server, client) = serve(Arc::new(Gated { inner: shim, gate: Arc::clone(&gate) }), MemOptions::default());
    for _ in 0..20 {
        // Both would block for ever: give up on them.
        let r = tokio::time::timeout(Duration::from_millis(10), client.state(StateRequest {})).await;
        assert!(r.is_err());
        let r = tokio::time::timeout(Duration::from_millis(10), client.wait(WaitRequest { pid })).await;
        assert!(r.is_err());
    }
    until("cancelled calls to finish on the server", || server.in_flight() == 0).await;
    gate.add_permits(1);
    assert_eq!(client.state(StateRequest {}).await.unwrap().processes.len(), 1);
}

/// A shim whose `State` waits until the test opens the gate: slow calls on
/// demand.
struct Gated {
    inner: Arc<dyn Shim>,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl Shim for Gated {
    async fn create(&self, r: CreateRequest) -> shim_core::Result<CreateResponse> {
        self.inner.create(r).await
    }
    async fn start(&self, r: StartRequest) -> shim_core::Result<()> {
        self.inner.start(r).await
    }
    async fn delete(&self, r: DeleteRequest) -> shim_core::Result<DeleteResponse> {
        self.inner.delete(r).await
    }
    async fn exec(&self, r: ExecRequest) -> shim_core::Result<ExecResponse> {
        self.inner.exec(r).await
    }
    async fn pty(&self, r: PtyRequest) -> shim_core::Result<()> {
        self.inner.pty(r).await
    }
    async fn events(&self, r: EventsRequest) -> shim_core::Result<shim_core::EventStream> {
        self.inner.events(r).await
    }
    async fn state(&self, r: StateRequest) -> shim_core::Result<StateResponse> {
        let _pass = self.gate.acquire().await;
        self.inner.state(r).await
    }
    async fn kill(&self, r: KillRequest) -> shim_core::Result<()> {
        self.inner.kill(r).await
    }
    async fn wait(&self, r: WaitRequest) -> shim_core::Result<WaitResponse> {
        self.inner.wait(r).await
    }
    async fn close_stdin(&self, r: CloseStdinRequest) -> shim_core::Result<()> {
        self.inner.close_stdin(r).await
    }
    async fn pause(&self, r: shim_core::proto::v1::PauseRequest) -> shim_core::Result<()> {
        self.inner.pause(r).await
    }
    async fn resume(&self, r: shim_core::proto::v1::ResumeRequest) -> shim_core::Result<()> {
        self.inner.resume(r).await
    }
    async fn list_pids(
        &self,
        r: shim_core::proto::v1::ListPidsRequest,
    ) -> shim_core::Result<shim_core::proto::v1::ListPidsResponse> {
        self.inner.list_pids(r).await
    }
    async fn update(&self, r: shim_core::proto::v1::UpdateRequest) -> shim_core::Result<()> {
        self.inner.update(r).await
    }
    async fn checkpoint(&self, r: shim_core::proto::v1::CheckpointRequest) -> shim_core::Result<()> {
        self.inner.checkpoint(r).await
    }
    async fn stats(
        &self,
        r: shim_core::proto::v1::StatsRequest,
    ) -> shim_core::Result<shim_core::proto::v1::StatsResponse> {
        self.inner.stats(r).await
    }
}

#[tokio::test]
async fn a_flood_of_calls_is_held_back_not_queued_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, _) = running(dir.path()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let shim = Arc::new(Gated { inner: fake, gate: Arc::clone(&gate) });
    let options = MemOptions { queue: 2, max_in_flight: 3, ..Default::default() };
    let (server, client) = serve(shim, options);
    let mut calls = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        calls.push(tokio::spawn(async move { client.state(StateRequest {}).await }));
    }
    until("the server to be saturated", || server.in_flight() == 3).await;
    // Nothing beyond the limits is accepted: a new call cannot even be queued.
    let extra =
        tokio::time::timeout(Duration::from_millis(50), client.kill(KillRequest { pid: 1, signal: 9, all: false }))
            .await;
    assert!(extra.is_err(), "a call went through a saturated server");
    assert_eq!(server.in_flight(), 3);
    // Opening the gate lets every held call through.
    gate.add_permits(1000);
    for call in calls {
        let r = tokio::time::timeout(T, call).await.unwrap().unwrap();
        assert_eq!(r.unwrap().processes.len(), 1);
    }
    until("the server to drain", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn waiters_never_block_the_call_that_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, pid) = running(dir.path()).await;
    let options = MemOptions { queue: 2, max_in_flight: 3, ..Default::default() };
    let (server, client) = serve(shim, options);
    let mut waits = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        waits.push(tokio::spawn(async move { client.wait(WaitRequest { pid }).await }));
    }
    tokio::time::timeout(T, client.kill(KillRequest { pid, signal: 9, all: false })).await.unwrap().unwrap();
    for w in waits {
        assert_eq!(tokio::time::timeout(T, w).await.unwrap().unwrap().unwrap().exit_status, 137);
    }
    until("the server to drain", || server.in_flight() == 0).await;
}

#[tokio::test]
async fn errors_keep_code_and_message_through_encoding() {
    let shim: Arc<dyn Shim> = Arc::new(FakeShim::new());
    let (_server, client) = serve(shim.clone(), MemOptions { encode: true, ..Default::default() });
    let direct = shim.delete(DeleteRequest { pid: 42 }).await.unwrap_err();
    let remote = client.delete(DeleteRequest { pid: 42 }).await.unwrap_err();
    assert_eq!(remote.code(), Code::NotFound);
    assert_eq!(remote.to_string(), direct.to_string());
}
