//! The task v2 service over the fake shim, called through ttrpc as
//! containerd calls it: containerd's semantics (Wait before Start blocks,
//! exec ids, its error codes, `exited_at` unset until exit, stdio echoed)
//! and the events in containerd's order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use prost_types::Any;
use shim_core::testing::BundleBuilder;
use shim_core::FakeShim;
use shim_transport_ttrpc::proto::containerd::task::v2 as api;
use shim_transport_ttrpc::proto::containerd::v1::types::Status as TaskStatus;
use shim_transport_ttrpc::task::{EventSink, TaskService, SERVICE};
use shim_transport_ttrpc::{Client, Code, Server};
use tokio::net::UnixListener;

const LIMIT: Duration = Duration::from_secs(10);

/// The events of a container with one exec, in containerd's order: the
/// exec's exit, then the init's.
const A_CONTAINERS_LIFE: [&str; 7] = [
    "/tasks/create",
    "/tasks/start",
    "/tasks/exec-added",
    "/tasks/exec-started",
    "/tasks/exit",
    "/tasks/exit",
    "/tasks/delete",
];

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Any)>>);

impl EventSink for Recorder {
    fn publish(&self, topic: &'static str, event: Any) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((topic.to_string(), event));
    }
}

impl Recorder {
    fn topics(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, _)| t.clone()).collect()
    }
}

struct Setup {
    dir: tempfile::TempDir,
    client: Arc<Client>,
    events: Arc<Recorder>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("task.sock");
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
    let events = Arc::new(Recorder::default());
    let task =
        TaskService::new(Arc::new(FakeShim::new()), Arc::clone(&events) as _).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { Server::new(task).serve(listener, std::future::pending()).await });
    let client = Arc::new(within(Client::connect(&path)).await.unwrap_or_else(|e| panic!("{e}")));
    Setup { dir, client, events }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.unwrap_or_else(|_| panic!("no answer within {LIMIT:?}"))
}

async fn call<Req: Message, Resp: Message + Default>(c: &Client, method: &str, req: Req) -> Result<Resp, i32> {
    within(c.call(SERVICE, method, &req, None, &[])).await.map_err(|e| e.code().unwrap_or(-1))
}

fn exec_spec(args: &[&str]) -> Option<Any> {
    let json = serde_json::json!({ "args": args, "cwd": "/", "user": { "uid": 0, "gid": 0 } });
    Some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: json.to_string().into_bytes(),
    })
}

#[tokio::test]
async fn a_session_as_ctr_drives_it() {
    let s = setup().await;
    let c = &s.client;
    let bundle = s.dir.path().join("bundle");
    BundleBuilder::new().args(["sleep"]).build_config_only(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let create = api::CreateTaskRequest {
        id: "c1".into(),
        bundle: bundle.display().to_string(),
        stdout: "/dev/null".into(),
        ..Default::default()
    };
    let pid =
        call::<_, api::CreateTaskResponse>(c, "Create", create.clone()).await.unwrap_or_else(|e| panic!("{e}")).pid;
    assert!(pid > 0);
    assert_eq!(call::<_, api::CreateTaskResponse>(c, "Create", create).await.err(), Some(Code::AlreadyExists as i32));

    // Created: no exit time, stdio echoed.
    let st: api::StateResponse = call(c, "State", api::StateRequest { id: "c1".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (st.status, st.pid, st.stdout.as_str(), st.exited_at),
        (TaskStatus::Created as i32, pid, "/dev/null", None)
    );
    let unknown: Result<api::StateResponse, _> =
        call(c, "State", api::StateRequest { id: "nope".into(), ..Default::default() }).await;
    assert_eq!(unknown.err(), Some(Code::NotFound as i32));

    // Wait before Start: blocks until the init exits.
    let init_wait = {
        let c = Arc::clone(c);
        tokio::spawn(async move {
            call::<_, api::WaitResponse>(&c, "Wait", api::WaitRequest { id: "c1".into(), ..Default::default() }).await
        })
    };
    let started: api::StartResponse = call(c, "Start", api::StartRequest { id: "c1".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.pid, pid);

    // An exec: registered by Exec, run by Start; its Wait may come first.
    let exec = api::ExecProcessRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        spec: exec_spec(&["out:hi", "exit:5"]),
        ..Default::default()
    };
    call::<_, ()>(c, "Exec", exec.clone()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call::<_, ()>(c, "Exec", exec).await.err(), Some(Code::AlreadyExists as i32));
    let bad = api::ExecProcessRequest { id: "c1".into(), exec_id: "e2".into(), spec: None, ..Default::default() };
    assert_eq!(call::<_, ()>(c, "Exec", bad).await.err(), Some(Code::InvalidArgument as i32));
    let exec_wait = {
        let c = Arc::clone(c);
        let req = api::WaitRequest { id: "c1".into(), exec_id: "e1".into() };
        tokio::spawn(async move { call::<_, api::WaitResponse>(&c, "Wait", req).await })
    };
    let st: api::StateResponse = call(c, "State", api::StateRequest { id: "c1".into(), exec_id: "e1".into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((st.status, st.exec_id.as_str()), (TaskStatus::Created as i32, "e1"));
    assert!(!exec_wait.is_finished());
    let epid = call::<_, api::StartResponse>(c, "Start", api::StartRequest { id: "c1".into(), exec_id: "e1".into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pid;
    let waited = within(exec_wait).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(waited.exit_status, 5);
    assert!(waited.exited_at.is_some());
    // Kill of a process that exited: NotFound, which CRI relies on.
    let kill = api::KillRequest { id: "c1".into(), exec_id: "e1".into(), signal: 9, all: false };
    assert_eq!(call::<_, ()>(c, "Kill", kill).await.err(), Some(Code::NotFound as i32));
    let del: api::DeleteResponse = call(c, "Delete", api::DeleteRequest { id: "c1".into(), exec_id: "e1".into() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((del.pid, del.exit_status), (epid, 5));
    assert!(!init_wait.is_finished());

    // A running process is not deleted, as containerd's runc shim refuses
    // it: the caller kills it first.
    let refused: Result<api::DeleteResponse, _> =
        call(c, "Delete", api::DeleteRequest { id: "c1".into(), ..Default::default() }).await;
    assert_eq!(refused.err(), Some(Code::FailedPrecondition as i32));

    // Kill the init; its Wait (from before Start) returns 137.
    call::<_, ()>(c, "Kill", api::KillRequest { id: "c1".into(), signal: 9, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waited = within(init_wait).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(waited.exit_status, 137);
    let st: api::StateResponse = call(c, "State", api::StateRequest { id: "c1".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((st.status, st.exit_status, st.exited_at), (TaskStatus::Stopped as i32, 137, waited.exited_at));
    let del: api::DeleteResponse = call(c, "Delete", api::DeleteRequest { id: "c1".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((del.pid, del.exit_status), (pid, 137));

    assert_eq!(s.events.topics(), A_CONTAINERS_LIFE);
    // Bare type URLs: containerd drops events whose URL has a prefix.
    let recorded = s.events.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(recorded.iter().all(|(_, a)| a.type_url.starts_with("containerd.events.")), "{recorded:?}");
    let connect: api::ConnectResponse =
        call(c, "Connect", api::ConnectRequest::default()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(connect.shim_pid, std::process::id());
    let unknown: Result<(), i32> =
        within(c.call("containerd.task.v2.Task", "Nope", &(), None, &[])).await.map_err(|e| e.code().unwrap_or(-1));
    assert_eq!(unknown.err(), Some(Code::Unimplemented as i32));
}

/// A service over one fake shim per container, as the containerd binary
/// serves a pod: each container gets its own pids.
async fn pod_setup() -> (Setup, Arc<TaskService>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("task.sock");
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| panic!("{e}"));
    let events = Arc::new(Recorder::default());
    let next = std::sync::atomic::AtomicU32::new(1000);
    let shims = move |_id: &str, _bundle: &std::path::Path| -> shim_core::Result<Arc<dyn shim_core::Shim>> {
        let first = next.fetch_add(1000, std::sync::atomic::Ordering::Relaxed);
        let runtime = shim_core::FakeRuntime::with_first_pid(first);
        Ok(Arc::new(FakeShim::with_runtime(runtime, Default::default(), None)))
    };
    let task = TaskService::with_factory(shims, Arc::clone(&events) as _, Some("k8s.io"));
    let served = Arc::clone(&task);
    let stop = Arc::clone(&task);
    tokio::spawn(
        async move { Server::new(served).serve(listener, async move { stop.shutdown_requested().await }).await },
    );
    let client = Arc::new(within(Client::connect(&path)).await.unwrap_or_else(|e| panic!("{e}")));
    (Setup { dir, client, events }, task)
}

/// Two containers of a pod in one service: each has its own pid, exec ids,
/// State, Connect and events naming it; Shutdown while one is left does
/// nothing, and shuts the service down once both are deleted.
#[tokio::test]
async fn the_containers_of_a_pod_share_one_service() {
    let (s, task) = pod_setup().await;
    let c = &s.client;
    let mut pids = Vec::new();
    for id in ["sandbox", "app"] {
        let bundle = s.dir.path().join(id);
        BundleBuilder::new().args(["sleep"]).build_config_only(&bundle).unwrap_or_else(|e| panic!("{e}"));
        let create =
            api::CreateTaskRequest { id: id.into(), bundle: bundle.display().to_string(), ..Default::default() };
        let pid = call::<_, api::CreateTaskResponse>(c, "Create", create).await.unwrap_or_else(|e| panic!("{e}")).pid;
        call::<_, api::StartResponse>(c, "Start", api::StartRequest { id: id.into(), ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let connect: api::ConnectResponse =
            call(c, "Connect", api::ConnectRequest { id: id.into() }).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((connect.shim_pid, connect.task_pid), (std::process::id(), pid));
        pids.push(pid);
    }
    assert_ne!(pids[0], pids[1]);
    assert_eq!(task.containers(), 2);

    // The same exec id in both containers: each container has its own.
    for id in ["sandbox", "app"] {
        let exec = api::ExecProcessRequest {
            id: id.into(),
            exec_id: "e".into(),
            spec: exec_spec(&["exit:4"]),
            ..Default::default()
        };
        call::<_, ()>(c, "Exec", exec).await.unwrap_or_else(|e| panic!("{e}"));
        call::<_, api::StartResponse>(c, "Start", api::StartRequest { id: id.into(), exec_id: "e".into() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let waited: api::WaitResponse = call(c, "Wait", api::WaitRequest { id: id.into(), exec_id: "e".into() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(waited.exit_status, 4);
        call::<_, api::DeleteResponse>(c, "Delete", api::DeleteRequest { id: id.into(), exec_id: "e".into() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // The app goes; the sandbox keeps running, and Shutdown leaves it be.
    call::<_, ()>(c, "Kill", api::KillRequest { id: "app".into(), signal: 9, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let del: api::DeleteResponse = call(c, "Delete", api::DeleteRequest { id: "app".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((del.pid, del.exit_status), (pids[1], 137));
    call::<_, ()>(c, "Shutdown", api::ShutdownRequest { id: "app".into(), now: false })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let st: api::StateResponse = call(c, "State", api::StateRequest { id: "sandbox".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((st.status, st.pid), (TaskStatus::Running as i32, pids[0]));
    let gone: Result<api::StateResponse, _> =
        call(c, "State", api::StateRequest { id: "app".into(), ..Default::default() }).await;
    assert_eq!(gone.err(), Some(Code::NotFound as i32));
    assert_eq!(task.containers(), 1);

    call::<_, ()>(c, "Kill", api::KillRequest { id: "sandbox".into(), signal: 9, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    call::<_, api::DeleteResponse>(c, "Delete", api::DeleteRequest { id: "sandbox".into(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    call::<_, ()>(c, "Shutdown", api::ShutdownRequest { id: "sandbox".into(), now: false })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within(task.shutdown_requested()).await;

    // Every event names its own container, in containerd's order for each.
    let recorded = s.events.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for id in ["sandbox", "app"] {
        let topics: Vec<&str> =
            recorded.iter().filter(|(_, a)| container_of(a) == id).map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, A_CONTAINERS_LIFE, "{id}");
    }
}

/// The `container_id` of a recorded event: field 1 of every task event.
fn container_of(event: &Any) -> String {
    #[derive(Clone, PartialEq, Message)]
    struct First {
        #[prost(string, tag = "1")]
        container_id: String,
    }
    First::decode(event.value.as_slice()).map(|f| f.container_id).unwrap_or_default()
}
