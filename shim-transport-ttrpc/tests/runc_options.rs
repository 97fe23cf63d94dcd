//! containerd's runc options in `CreateTaskRequest.options` reach runc:
//! `BinaryName` selects the runtime binary for the container (here a
//! wrapper that records its calls), with real runc underneath.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use prost::Message;
use prost_types::Any;
use shim_core::testing::{require_runc, runc_config, shared_reaper, BundleBuilder};
use shim_core::RuncShim;
use shim_transport_ttrpc::proto::containerd::task::v2 as api;
use shim_transport_ttrpc::task::{EventSink, TaskService, SERVICE};
use shim_transport_ttrpc::{Request, Service};

struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _topic: &'static str, _event: Any) {}
}

/// The part of `containerd.runc.v1.Options` this test sets.
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    #[prost(string, tag = "6")]
    binary_name: String,
}

async fn call<Req: Message, Resp: Message + Default>(task: &TaskService, method: &str, req: Req) -> Resp {
    let req =
        Request { service: SERVICE.into(), method: method.into(), payload: req.encode_to_vec(), ..Default::default() };
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), task.handle(req))
        .await
        .unwrap_or_else(|_| panic!("{method} timed out"))
        .unwrap_or_else(|e| panic!("{method}: {} {}", e.code, e.message));
    Resp::decode(out.as_slice()).unwrap_or_else(|e| panic!("{method}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_name_selects_the_runtime_binary() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let calls = dir.path().join("calls");
    let wrapper = dir.path().join("my-runc");
    let script = format!("#!/bin/sh\necho \"$@\" >> {}\nexec runc \"$@\"\n", calls.display());
    std::fs::write(&wrapper, script).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["true"]).build(&bundle).unwrap_or_else(|e| panic!("{e}"));

    let shim = Arc::new(
        RuncShim::new(runc_config(dir.path().join("work")), shared_reaper()).unwrap_or_else(|e| panic!("{e}")),
    );
    let task = TaskService::new(shim, Arc::new(NoEvents)).await.unwrap_or_else(|e| panic!("{e}"));
    let id = format!("opts-{}", std::process::id());
    let options = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: RuncOptions { binary_name: wrapper.display().to_string() }.encode_to_vec(),
    };
    let create = api::CreateTaskRequest {
        id: id.clone(),
        bundle: bundle.display().to_string(),
        options: Some(options),
        ..Default::default()
    };
    let _: api::CreateTaskResponse = call(&task, "Create", create).await;
    let _: api::StartResponse = call(&task, "Start", api::StartRequest { id: id.clone(), ..Default::default() }).await;
    let waited: api::WaitResponse =
        call(&task, "Wait", api::WaitRequest { id: id.clone(), ..Default::default() }).await;
    assert_eq!(waited.exit_status, 0);
    let _: api::DeleteResponse =
        call(&task, "Delete", api::DeleteRequest { id: id.clone(), ..Default::default() }).await;
    let seen = std::fs::read_to_string(&calls).unwrap_or_default();
    for command in ["create", "start", "delete"] {
        assert!(
            seen.lines().any(|l| l.split_whitespace().any(|w| w == command)),
            "no `{command}` through the wrapper:\n{seen}"
        );
    }
}
