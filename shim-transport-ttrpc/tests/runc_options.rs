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

/// One call of the task service, bounded.
async fn try_call<Req: Message>(
    task: &TaskService,
    method: &str,
    req: Req,
) -> Result<Vec<u8>, shim_transport_ttrpc::proto::ttrpc::Status> {
    let req =
        Request { service: SERVICE.into(), method: method.into(), payload: req.encode_to_vec(), ..Default::default() };
    tokio::time::timeout(std::time::Duration::from_secs(30), task.handle(req))
        .await
        .unwrap_or_else(|_| panic!("{method} timed out"))
}

async fn call<Req: Message, Resp: Message + Default>(task: &TaskService, method: &str, req: Req) -> Resp {
    let out = try_call(task, method, req).await.unwrap_or_else(|e| panic!("{method}: {} {}", e.code, e.message));
    Resp::decode(out.as_slice()).unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Create of container `id` in `bundle` with `options`.
async fn create(task: &TaskService, id: &str, bundle: &std::path::Path, options: Option<Any>) {
    let req = api::CreateTaskRequest {
        id: id.to_string(),
        bundle: bundle.display().to_string(),
        options,
        ..Default::default()
    };
    let _: api::CreateTaskResponse = call(task, "Create", req).await;
}

/// Start, Wait (for exit status 0) and Delete of container `id`.
async fn start_wait_delete(task: &TaskService, id: &str) {
    let _: api::StartResponse = call(task, "Start", api::StartRequest { id: id.into(), ..Default::default() }).await;
    let waited: api::WaitResponse = call(task, "Wait", api::WaitRequest { id: id.into(), ..Default::default() }).await;
    assert_eq!(waited.exit_status, 0);
    let _: api::DeleteResponse = call(task, "Delete", api::DeleteRequest { id: id.into(), ..Default::default() }).await;
}

/// A directory, a bundle of `true` in it, and a task service over a runc
/// shim (in containerd `namespace`, if given).
async fn fixture(namespace: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf, Arc<TaskService>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["true"]).build(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let shim = Arc::new(
        RuncShim::new(runc_config(dir.path().join("work")), shared_reaper()).unwrap_or_else(|e| panic!("{e}")),
    );
    let task = match namespace {
        Some(ns) => TaskService::in_namespace(shim, Arc::new(NoEvents), ns).await,
        None => TaskService::new(shim, Arc::new(NoEvents)).await,
    };
    (dir, bundle, task.unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_name_selects_the_runtime_binary() {
    if !require_runc() {
        return;
    }
    let (dir, bundle, task) = fixture(None).await;
    let (wrapper, calls) = recording_runc(dir.path());
    let id = format!("opts-{}", std::process::id());
    let options = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: RuncOptions { binary_name: wrapper.display().to_string() }.encode_to_vec(),
    };
    create(&task, &id, &bundle, Some(options)).await;
    start_wait_delete(&task, &id).await;
    let seen = std::fs::read_to_string(&calls).unwrap_or_default();
    for command in ["create", "start", "delete"] {
        assert!(
            seen.lines().any(|l| l.split_whitespace().any(|w| w == command)),
            "no `{command}` through the wrapper:\n{seen}"
        );
    }
}

/// A runc wrapper in `dir` that appends its arguments to `dir/calls` and
/// runs runc without `--systemd-cgroup` (this host's cgroups are not
/// systemd's; what is checked is that the flag reaches the runtime).
fn recording_runc(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let calls = dir.join("calls");
    let wrapper = dir.join("recording-runc");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {}\nfor a; do shift; [ \"$a\" = --systemd-cgroup ] || set -- \"$@\" \"$a\"; done\nexec runc \"$@\"\n",
        calls.display()
    );
    std::fs::write(&wrapper, script).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("{e}"));
    (wrapper, calls)
}

/// CRI's form (`runtimeoptions.v1.Options` with the runtime's options table
/// as TOML in `config_body`, as newer containerd releases send it): `Root` puts runc's state in
/// `<Root>/<namespace>`, `SystemdCgroup` reaches every runc call, and the
/// options are kept in the bundle for a `delete` after the shim is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_body_root_and_systemd_cgroup_reach_runc() {
    use shim_transport_ttrpc::options::{RuncOptions as Kept, OPTIONS_FILE};
    use shim_transport_ttrpc::proto::runtimeoptions::v1::Options as ConfigOptions;
    if !require_runc() {
        return;
    }
    let (dir, bundle, task) = fixture(Some("k8s.io")).await;
    let (wrapper, calls) = recording_runc(dir.path());
    let root = dir.path().join("state");
    let id = format!("body-{}", std::process::id());
    let body = format!(
        "BinaryName = {:?}\nRoot = {:?}\nSystemdCgroup = true\nConfigPath = \"\"\n",
        wrapper.display().to_string(),
        root.display().to_string()
    );
    let options = Any {
        type_url: "runtimeoptions.v1.Options".into(),
        value: ConfigOptions { config_body: body.into_bytes(), ..Default::default() }.encode_to_vec(),
    };
    create(&task, &id, &bundle, Some(options)).await;
    let state = root.join("k8s.io").join(&id).join("state.json");
    assert!(state.exists(), "no runc state at {}", state.display());
    let kept = Kept::load(&bundle).unwrap_or_else(|e| panic!("{e}"));
    assert!(bundle.join(OPTIONS_FILE).exists());
    assert_eq!(kept.root, root.display().to_string());
    assert!(kept.systemd_cgroup);
    start_wait_delete(&task, &id).await;
    assert!(!state.exists(), "runc state left at {}", state.display());
    let seen = std::fs::read_to_string(&calls).unwrap_or_default();
    let expected_root = format!("--root {}", root.join("k8s.io").display());
    for command in ["create", "start", "delete"] {
        assert!(
            seen.lines().any(|l| l.split_whitespace().any(|w| w == command)
                && l.contains("--systemd-cgroup")
                && l.contains(&expected_root)),
            "no `{command}` with {expected_root} --systemd-cgroup:\n{seen}"
        );
    }
}

/// A runtime config that cannot be used fails the Create with
/// INVALID_ARGUMENT naming the file, creates nothing, and the shim takes the
/// next Create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_runtime_config_is_a_clear_error() {
    use shim_transport_ttrpc::proto::runtimeoptions::v1::Options as ConfigOptions;
    if !require_runc() {
        return;
    }
    let (dir, bundle, task) = fixture(None).await;
    let id = format!("badcfg-{}", std::process::id());
    let bad = dir.path().join("rshim.toml");
    std::fs::write(&bad, "SystemdCgroup = \"yes\"\n").unwrap_or_else(|e| panic!("{e}"));
    for path in [bad.clone(), dir.path().join("missing.toml")] {
        let options = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: ConfigOptions { config_path: path.display().to_string(), ..Default::default() }.encode_to_vec(),
        };
        let create = api::CreateTaskRequest {
            id: id.clone(),
            bundle: bundle.display().to_string(),
            options: Some(options),
            ..Default::default()
        };
        let err =
            try_call(&task, "Create", create).await.expect_err("a Create with an unusable runtime config succeeded");
        assert_eq!(err.code, shim_transport_ttrpc::Code::InvalidArgument as i32, "{}", err.message);
        assert!(err.message.contains(&path.display().to_string()), "{}", err.message);
    }
    create(&task, &id, &bundle, None).await;
    start_wait_delete(&task, &id).await;
}
