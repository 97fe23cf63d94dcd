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
    let (server, client) = serve(shim.clone(), MemOptions::default());
    let mut events = client.events(EventsRequest::default()).await.unwrap();
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(WaitRequest { pid }).await })
    };
    until("the wait to reach the shim", || server.in_flight() == 1).await;
    drop(server);
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
    let (server, client) = serve(shim, MemOptions::default());
    for _ in 0..20 {
        // Wait would block forever: give up on it.
        let r = tokio::time::timeout(Duration::from_millis(10), client.wait(WaitRequest { pid })).await;
        assert!(r.is_err());
    }
    until("cancelled calls to finish on the server", || server.in_flight() == 0).await;
    assert_eq!(client.state(StateRequest {}).await.unwrap().processes.len(), 1);
}

#[tokio::test]
async fn a_flood_of_calls_is_held_back_not_queued_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (shim, pid) = running(dir.path()).await;
    let options = MemOptions { queue: 2, max_in_flight: 3, ..Default::default() };
    let (server, client) = serve(shim.clone(), options);
    let mut calls = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        calls.push(tokio::spawn(async move { client.wait(WaitRequest { pid }).await }));
    }
    until("the server to be saturated", || server.in_flight() == 3).await;
    // Nothing beyond the limits is accepted: a new call cannot even be queued.
    let extra = tokio::time::timeout(Duration::from_millis(50), client.state(StateRequest {})).await;
    assert!(extra.is_err(), "a call went through a saturated server");
    assert_eq!(server.in_flight(), 3);
    // Once the process exits, every waiter gets its status.
    shim.kill(KillRequest { pid, signal: 9, all: false }).await.unwrap();
    for call in calls {
        let r = tokio::time::timeout(T, call).await.unwrap().unwrap();
        assert_eq!(r.unwrap().exit_status, 137);
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
