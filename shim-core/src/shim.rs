//! The transport-agnostic [`Shim`] trait.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use shim_proto::v1::CheckpointRequest;
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event, EventsRequest, ExecRequest,
    ExecResponse, KillRequest, ListPidsRequest, ListPidsResponse, PauseRequest, PtyRequest, ResumeRequest,
    StartRequest, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateRequest, WaitRequest, WaitResponse,
};

use crate::error::Result;

/// A stream of events; it ends with an error item if the subscriber fell
/// too far behind or the shim went away.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// One shim: the operations of the `containerd.shim.v1.Shim` service.
///
/// Every transport serves an `Arc<dyn Shim>` and every transport client is
/// itself a `Shim`, so a manager's code is the same in process and over
/// gRPC. Errors carry a [`Code`](crate::Code) that maps to a gRPC status.
#[async_trait]
pub trait Shim: Send + Sync {
    /// Creates the container (its init process is created but not started).
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse>;
    /// Starts the container's init process.
    async fn start(&self, req: StartRequest) -> Result<()>;
    /// Deletes a process (the init: the whole container) and returns its exit status.
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse>;
    /// Starts an additional process in the container.
    async fn exec(&self, req: ExecRequest) -> Result<ExecResponse>;
    /// Resizes a process's terminal.
    async fn pty(&self, req: PtyRequest) -> Result<()>;
    /// Subscribes to the shim's events from now on.
    async fn events(&self, req: EventsRequest) -> Result<EventStream>;
    /// Describes the container and its processes.
    async fn state(&self, req: StateRequest) -> Result<StateResponse>;
    /// Sends a signal to a process, or to all processes of the container.
    async fn kill(&self, req: KillRequest) -> Result<()>;
    /// Waits until a process has exited and returns its exit status.
    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse>;
    /// Closes a process's stdin so it reads end-of-file.
    async fn close_stdin(&self, req: CloseStdinRequest) -> Result<()>;
    /// Freezes the started container; see the proto for the events.
    async fn pause(&self, req: PauseRequest) -> Result<()>;
    /// Thaws the paused container.
    async fn resume(&self, req: ResumeRequest) -> Result<()>;
    /// Lists every process in the container.
    async fn list_pids(&self, req: ListPidsRequest) -> Result<ListPidsResponse>;
    /// Applies new resource limits (OCI `LinuxResources` JSON).
    async fn update(&self, req: UpdateRequest) -> Result<()>;
    /// The container's resource usage.
    async fn stats(&self, req: StatsRequest) -> Result<StatsResponse>;
    /// Checkpoints the running container with CRIU.
    async fn checkpoint(&self, req: CheckpointRequest) -> Result<()>;
}
