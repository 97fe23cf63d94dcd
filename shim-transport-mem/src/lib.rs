//! The [`Shim`] served over in-process channels.
//!
//! [`serve`] runs a server task over any `Arc<dyn Shim>` and returns a
//! [`MemServer`] handle and a cloneable [`MemClient`] that is itself a
//! `Shim`, so a manager's code does not change when it moves between this
//! transport and gRPC.
//!
//! It behaves like a real connection:
//! - dropping the [`MemServer`] ends every pending call and every event stream
//!   with `Unavailable`;
//! - dropping an event stream, or every clone of the client, releases the
//!   subscription on the shim;
//! - a call whose caller gave up (its future was dropped) is cancelled on the
//!   server too, so no task is left behind;
//! - requests queue in a bounded channel and at most
//!   [`MemOptions::max_in_flight`] run at once: a flood of requests waits
//!   (backpressure) instead of growing memory. A `Wait`, which lasts as long
//!   as its process, counts only until it has started, so waiters can never
//!   block the call that would end them.
//!
//! Messages pass as the `shim-proto` values themselves. With
//! [`MemOptions::encode`], every request, response and event is encoded and
//! decoded with prost, and errors travel as code and message only, to catch
//! what would break on the wire.
//!
//! # Unit-testing a manager with the fake shim
//!
//! ```
//! use std::sync::Arc;
//! use shim_core::fake::FakeShim;
//! use shim_core::proto::v1::{CreateRequest, DeleteRequest, StartRequest, WaitRequest};
//! use shim_core::Shim;
//! use shim_transport_mem::{serve, MemOptions};
//!
//! /// The code under test: a tiny manager that runs a container to completion.
//! async fn run_to_completion(shim: &dyn Shim, id: &str, bundle: &str) -> shim_core::Result<u32> {
//!     let req = CreateRequest { id: id.into(), bundle: bundle.into(), ..Default::default() };
//!     let pid = shim.create(req).await?.pid;
//!     shim.start(StartRequest {}).await?;
//!     let status = shim.wait(WaitRequest { pid }).await?.exit_status;
//!     shim.delete(DeleteRequest { pid }).await?;
//!     Ok(status)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A bundle for the fake runtime: its argv is a script of steps.
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("config.json"), r#"{"process":{"args":["out:working\n","exit:42"]}}"#)?;
//!
//! let (server, client) = serve(Arc::new(FakeShim::new()), MemOptions { encode: true, ..Default::default() });
//! let status = run_to_completion(&client, "job-1", &dir.path().display().to_string()).await?;
//! assert_eq!(status, 42);
//!
//! // The manager sees errors with the codes a real shim sends.
//! let err = run_to_completion(&client, "bad/id", "/nowhere").await.unwrap_err();
//! assert_eq!(err.code(), shim_core::Code::InvalidArgument);
//!
//! drop(server); // the connection goes away: calls now fail with Unavailable
//! assert_eq!(client.state(Default::default()).await.unwrap_err().code(), shim_core::Code::Unavailable);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;
use shim_core::{EventStream, Shim, ShimError};
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event, EventsRequest, ExecRequest,
    ExecResponse, KillRequest, PtyRequest, StartRequest, StateRequest, StateResponse, WaitRequest, WaitResponse,
};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Settings of the in-memory transport.
#[derive(Debug, Clone)]
pub struct MemOptions {
    /// Encode and decode every message with prost, as a wire would.
    pub encode: bool,
    /// Requests that may wait in the queue before callers are held back.
    pub queue: usize,
    /// Calls that may run on the shim at once (event streams not counted).
    pub max_in_flight: usize,
    /// Events buffered per subscription between the server and the client.
    pub event_buffer: usize,
}

impl Default for MemOptions {
    fn default() -> Self {
        Self { encode: false, queue: 64, max_in_flight: 64, event_buffer: 256 }
    }
}

type Job = Box<dyn FnOnce(Arc<dyn Shim>, OwnedSemaphorePermit) -> BoxFuture<'static, ()> + Send>;

/// The server side; dropping it closes the connection.
pub struct MemServer {
    task: tokio::task::JoinHandle<()>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
}

impl MemServer {
    /// Calls running on the shim right now (event streams not counted).
    pub fn in_flight(&self) -> usize {
        self.max_in_flight.saturating_sub(self.permits.available_permits())
    }

    /// Closes the connection (as dropping the handle does).
    pub fn shutdown(self) {}
}

impl Drop for MemServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for MemServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemServer").field("in_flight", &self.in_flight()).finish()
    }
}

struct ClientInner {
    /// Set by [`connect`]: the client owns its server.
    _server: Option<MemServer>,
    jobs: mpsc::Sender<Job>,
    encode: bool,
    event_buffer: usize,
    /// Dropped with the last client clone, which ends its event streams.
    _alive: watch::Sender<()>,
    alive: watch::Receiver<()>,
}

/// A client of a [`MemServer`]; a [`Shim`] itself. Clones share the connection.
#[derive(Clone)]
pub struct MemClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for MemClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemClient").field("encode", &self.inner.encode).finish_non_exhaustive()
    }
}

/// Serves `shim` on a new in-memory connection.
///
/// Must be called within a tokio runtime; the server runs as a task of it.
pub fn serve(shim: Arc<dyn Shim>, options: MemOptions) -> (MemServer, MemClient) {
    let (server, jobs) = start_server(shim, &options);
    (server, client(jobs, &options, None))
}

/// Serves `shim` on a new in-memory connection owned by the returned client:
/// the server lives until the last clone of the client is dropped.
pub fn connect(shim: Arc<dyn Shim>, options: MemOptions) -> MemClient {
    let (server, jobs) = start_server(shim, &options);
    client(jobs, &options, Some(server))
}

fn start_server(shim: Arc<dyn Shim>, options: &MemOptions) -> (MemServer, mpsc::Sender<Job>) {
    let (tx, rx) = mpsc::channel::<Job>(options.queue.max(1));
    let max = options.max_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let task = tokio::spawn(run(shim, rx, Arc::clone(&permits)));
    (MemServer { task, permits, max_in_flight: max }, tx)
}

fn client(jobs: mpsc::Sender<Job>, options: &MemOptions, server: Option<MemServer>) -> MemClient {
    let (alive_tx, alive_rx) = watch::channel(());
    MemClient {
        inner: Arc::new(ClientInner {
            _server: server,
            jobs,
            encode: options.encode,
            event_buffer: options.event_buffer.max(1),
            _alive: alive_tx,
            alive: alive_rx,
        }),
    }
}

async fn run(shim: Arc<dyn Shim>, mut jobs: mpsc::Receiver<Job>, permits: Arc<Semaphore>) {
    // Aborting this task drops the set, which aborts every call and stream.
    let mut tasks = JoinSet::new();
    loop {
        let job = tokio::select! {
            job = jobs.recv() => job,
            // Reap finished tasks while idle so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(job) = job else { break };
        // While every permit is taken the queue is not read, so it fills and
        // callers wait: that is the backpressure.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
        tasks.spawn(job(Arc::clone(&shim), permit));
        while tasks.try_join_next().is_some() {}
    }
    // Every client is gone: finish what is running.
    while tasks.join_next().await.is_some() {}
}

fn gone() -> ShimError {
    ShimError::Unavailable("the in-memory shim server is gone".into())
}

/// Passes a value through its wire encoding.
fn wire<M: prost::Message + Default>(encode: bool, msg: M) -> Result<M, ShimError> {
    if !encode {
        return Ok(msg);
    }
    M::decode(msg.encode_to_vec().as_slice()).map_err(|e| ShimError::Internal(format!("cannot decode message: {e}")))
}

/// Passes an error through its wire form: code and message only.
fn wire_error(encode: bool, e: ShimError) -> ShimError {
    if encode {
        ShimError::from_code(e.code(), e.to_string())
    } else {
        e
    }
}

/// Whether a call counts against [`MemOptions::max_in_flight`] for its
/// whole duration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Until it returns.
    WholeCall,
    /// Only until it starts: a `Wait` lasts as long as its process, and
    /// counting it would let a crowd of waiters block the `Kill` that ends
    /// them.
    Admission,
}

impl MemClient {
    async fn call<Req, Resp, F>(&self, req: Req, f: F) -> Result<Resp, ShimError>
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + Default + 'static,
        F: for<'a> FnOnce(&'a dyn Shim, Req) -> BoxFuture<'a, Result<Resp, ShimError>> + Send + 'static,
    {
        self.call_held(req, Hold::WholeCall, f).await
    }

    async fn call_held<Req, Resp, F>(&self, req: Req, hold: Hold, f: F) -> Result<Resp, ShimError>
    where
        Req: prost::Message + Default + 'static,
        Resp: prost::Message + Default + 'static,
        F: for<'a> FnOnce(&'a dyn Shim, Req) -> BoxFuture<'a, Result<Resp, ShimError>> + Send + 'static,
    {
        let encode = self.inner.encode;
        let req = wire(encode, req)?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |shim, permit| {
            Box::pin(async move {
                let mut tx = tx;
                let permit = (hold == Hold::WholeCall).then_some(permit);
                let result = tokio::select! {
                    r = f(shim.as_ref(), req) => r,
                    // The caller gave up: stop working for it.
                    _ = tx.closed() => return,
                };
                drop(permit);
                let result = match result {
                    Ok(resp) => wire(encode, resp),
                    Err(e) => Err(wire_error(encode, e)),
                };
                let _ = tx.send(result);
            })
        });
        self.inner.jobs.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// What the server sends on an event subscription.
enum Item {
    Event(Event),
    Error(ShimError),
    /// The shim ended the stream.
    End,
}

#[async_trait]
impl Shim for MemClient {
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ShimError> {
        self.call(req, |s, r| s.create(r)).await
    }

    async fn start(&self, req: StartRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.start(r)).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ShimError> {
        self.call(req, |s, r| s.delete(r)).await
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecResponse, ShimError> {
        self.call(req, |s, r| s.exec(r)).await
    }

    async fn pty(&self, req: PtyRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.pty(r)).await
    }

    async fn events(&self, req: EventsRequest) -> Result<EventStream, ShimError> {
        let encode = self.inner.encode;
        let req = wire(encode, req)?;
        let (items_tx, items_rx) = mpsc::channel::<Item>(self.inner.event_buffer);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), ShimError>>();
        let mut alive = self.inner.alive.clone();
        let job: Job = Box::new(move |shim, permit| {
            Box::pin(async move {
                let stream = shim.events(req).await;
                drop(permit);
                let mut stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(wire_error(encode, e)));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                loop {
                    let item = tokio::select! {
                        item = stream.next() => item,
                        // The stream's receiver was dropped: release the subscription.
                        _ = items_tx.closed() => return,
                        // Every client clone was dropped.
                        _ = alive.changed() => return,
                    };
                    let item = match item {
                        Some(Ok(ev)) => match wire(encode, ev) {
                            Ok(ev) => Item::Event(ev),
                            Err(e) => Item::Error(e),
                        },
                        Some(Err(e)) => Item::Error(wire_error(encode, e)),
                        None => Item::End,
                    };
                    let last = !matches!(item, Item::Event(_));
                    tokio::select! {
                        sent = items_tx.send(item) => if sent.is_err() { return },
                        _ = alive.changed() => return,
                    }
                    if last {
                        return;
                    }
                }
            })
        });
        self.inner.jobs.send(job).await.map_err(|_| gone())?;
        ready_rx.await.map_err(|_| gone())??;
        let stream = futures::stream::unfold(Some(items_rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Item::Event(ev)) => Some((Ok(ev), Some(rx))),
                Some(Item::Error(e)) => Some((Err(e), None)),
                Some(Item::End) => None,
                // The server went away without ending the stream.
                None => Some((Err(gone()), None)),
            }
        });
        Ok(Box::pin(stream))
    }

    async fn state(&self, req: StateRequest) -> Result<StateResponse, ShimError> {
        self.call(req, |s, r| s.state(r)).await
    }

    async fn kill(&self, req: KillRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.kill(r)).await
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse, ShimError> {
        self.call_held(req, Hold::Admission, |s, r| s.wait(r)).await
    }

    async fn close_stdin(&self, req: CloseStdinRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.close_stdin(r)).await
    }

    async fn pause(&self, req: shim_proto::v1::PauseRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.pause(r)).await
    }

    async fn resume(&self, req: shim_proto::v1::ResumeRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.resume(r)).await
    }

    async fn list_pids(
        &self,
        req: shim_proto::v1::ListPidsRequest,
    ) -> Result<shim_proto::v1::ListPidsResponse, ShimError> {
        self.call(req, |s, r| s.list_pids(r)).await
    }

    async fn update(&self, req: shim_proto::v1::UpdateRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.update(r)).await
    }

    async fn checkpoint(&self, req: shim_proto::v1::CheckpointRequest) -> Result<(), ShimError> {
        self.call(req, |s, r| s.checkpoint(r)).await
    }

    async fn stats(&self, req: shim_proto::v1::StatsRequest) -> Result<shim_proto::v1::StatsResponse, ShimError> {
        self.call(req, |s, r| s.stats(r)).await
    }
}
