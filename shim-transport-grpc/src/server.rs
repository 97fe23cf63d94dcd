//! Serving a [`Shim`] over gRPC.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use shim_core::Shim;
use shim_proto::v1::shim_server::{Shim as GrpcService, ShimServer};
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event, EventsRequest, ExecRequest,
    ExecResponse, KillRequest, PtyRequest, StartRequest, StateRequest, StateResponse, WaitRequest, WaitResponse,
};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use crate::status::to_status;

/// Largest message accepted or sent by default (4 MiB, gRPC's usual limit).
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// Errors of setting up or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another shim is serving on this socket path.
    #[error("socket {0} is in use by a live server")]
    InUse(PathBuf),
    /// The socket's directory, or one above it, can be written by group or
    /// others (without the sticky bit, for those above): any of them could
    /// replace the socket.
    #[error(
        "{dir} has mode {mode:o}: group or others may write it, so they could replace the socket; \
         fix with `chmod go-w {dir}` or choose another directory"
    )]
    OpenDirectory {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The socket's directory, or one above it, belongs to a user other than
    /// root and this process's.
    #[error(
        "{dir} is owned by uid {owner}, who could replace the socket: it must belong to root or uid {me}; \
         fix with `chown {me} {dir}` or choose another directory"
    )]
    ForeignDirectory {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// An I/O operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// With which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("reflection service: {0}")]
    Reflection(String),
    /// The TLS material could not be used.
    #[error("tls: {0}")]
    Tls(String),
    /// Plain TCP was asked for on an address that is not loopback.
    #[error("plain tcp refused on {0}: it is not a loopback address; serve with mutual tls (serve_tcp)")]
    NotLoopback(std::net::SocketAddr),
}

/// Settings of the gRPC server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request or response, in bytes.
    pub max_message: usize,
    /// Events buffered per stream between the shim and the connection.
    pub event_buffer: usize,
    /// How long [`GrpcServer::shutdown`] lets calls in progress finish
    /// before it closes every connection anyway (a silent client would
    /// otherwise hold it forever).
    pub shutdown_grace: std::time::Duration,
    /// On TCP only: how often an HTTP/2 PING checks that the peer is still
    /// there; a peer that does not answer within as long (at most 20 s) has
    /// its connection closed.
    /// A peer behind a dead network link never closes its side, so without
    /// this its connection, and any event stream or Wait on it, would stay
    /// forever. Unix sockets need none: the kernel closes them with the
    /// peer. `None` turns it off.
    pub tcp_keepalive: Option<std::time::Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_message: DEFAULT_MAX_MESSAGE,
            event_buffer: 256,
            shutdown_grace: std::time::Duration::from_secs(5),
            tcp_keepalive: Some(DEFAULT_TCP_KEEPALIVE),
        }
    }
}

/// The default of [`ServerOptions::tcp_keepalive`].
pub const DEFAULT_TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest wait for the answer to a keepalive PING.
pub(crate) const MAX_PING_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Checks the directories a socket lives in, as sshd's StrictModes does:
/// the socket's own directory and every one above it must belong to root or
/// to us, and none may be writable by group or others, except (above the
/// socket's own) one with the sticky bit, such as `/tmp`, where others
/// cannot rename or remove what is ours. A root-owned 0755 `/run/shim` is
/// fine; a 0775 one, or one under a world-writable non-sticky directory, is
/// not.
fn check_directories(dir: &Path, me: u32) -> Result<(), ServeError> {
    let real = std::fs::canonicalize(dir).map_err(|source| ServeError::Io {
        context: "cannot resolve",
        path: dir.to_path_buf(),
        source,
    })?;
    for (depth, d) in real.ancestors().enumerate() {
        let meta = std::fs::metadata(d).map_err(|source| ServeError::Io {
            context: "cannot stat",
            path: d.to_path_buf(),
            source,
        })?;
        if meta.uid() != 0 && meta.uid() != me {
            return Err(ServeError::ForeignDirectory { dir: d.to_path_buf(), owner: meta.uid(), me });
        }
        let mode = meta.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && (depth == 0 || !sticky) {
            return Err(ServeError::OpenDirectory { dir: d.to_path_buf(), mode });
        }
    }
    Ok(())
}

/// Prepares `path` for a new socket: safe directories (see below), no live
/// server, no stale file. Returns the listener, its socket of mode 0600.
///
/// A missing directory is created with mode 0700. The directory and those
/// above it are checked like sshd's StrictModes: each owned by root or by
/// us, none writable by group or others (a sticky one like `/tmp` above
/// the socket's own is fine). The socket is bound in a private temporary
/// directory beside it, given mode 0600 and then renamed into place, so
/// there is no moment at which it exists at `path` with looser permissions.
pub fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    fn io<'a>(context: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ServeError + 'a {
        move |source| ServeError::Io { context, path: path.to_path_buf(), source }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("cannot create", dir))?;
    }
    let me = nix::unistd::Uid::effective().as_raw();
    check_directories(dir, me)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            if !m.file_type().is_socket() {
                return Err(ServeError::NotASocket(path.to_path_buf()));
            }
            // A live server accepts; a stale socket refuses.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io("cannot remove stale socket", path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot stat", path)(e)),
    }
    let private = nix::unistd::mkdtemp(&dir.join(".shim-bind-XXXXXX"))
        .map_err(|e| io("cannot create a private directory in", dir)(e.into()))?;
    let staged = private.join("s");
    let bound = (|| -> Result<UnixListener, ServeError> {
        let listener = UnixListener::bind(&staged).map_err(io("cannot bind", path))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot chmod", &staged))?;
        std::fs::rename(&staged, path).map_err(io("cannot move the socket to", path))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let listener = bound?;
    Ok(listener)
}

/// Refuses a unix-socket peer whose uid is neither root nor `me` (ours).
fn check_peer(req: Request<()>, me: u32) -> Result<Request<()>, Status> {
    let Some(info) = req.extensions().get::<UdsConnectInfo>() else {
        // Not a unix socket (TCP): nothing to check.
        return Ok(req);
    };
    match info.peer_cred.map(|c| c.uid()) {
        Some(uid) if uid == 0 || uid == me => Ok(req),
        Some(uid) => {
            Err(Status::permission_denied(format!("peer uid {uid} may not use this shim (allowed: 0 and {me})")))
        }
        None => Err(Status::permission_denied("peer credentials unavailable")),
    }
}

/// The tonic service over a [`Shim`].
#[derive(Clone)]
pub struct GrpcShimService {
    shim: Arc<dyn Shim>,
    shutdown: watch::Receiver<bool>,
    event_buffer: usize,
}

impl GrpcShimService {
    /// Wraps `shim`; its event streams end when `shutdown` turns true.
    pub fn new(shim: Arc<dyn Shim>, shutdown: watch::Receiver<bool>, event_buffer: usize) -> Self {
        Self { shim, shutdown, event_buffer }
    }
}

type EventResult = Result<Event, Status>;

#[tonic::async_trait]
impl GrpcService for GrpcShimService {
    async fn create(&self, r: Request<CreateRequest>) -> Result<Response<CreateResponse>, Status> {
        self.shim.create(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn start(&self, r: Request<StartRequest>) -> Result<Response<()>, Status> {
        self.shim.start(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn delete(&self, r: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        self.shim.delete(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn exec(&self, r: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        self.shim.exec(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn pty(&self, r: Request<PtyRequest>) -> Result<Response<()>, Status> {
        self.shim.pty(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    type EventsStream = Pin<Box<dyn Stream<Item = EventResult> + Send + 'static>>;

    async fn events(&self, r: Request<EventsRequest>) -> Result<Response<Self::EventsStream>, Status> {
        let mut events = self.shim.events(r.into_inner()).await.map_err(to_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<EventResult>(self.event_buffer.max(1));
        let mut shutdown = self.shutdown.clone();
        // Forwarding in a task of its own lets the stream end on shutdown, and
        // a client that goes away closes `rx`, which ends the task and with it
        // the subscription.
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    // Events first: one published just before shutdown
                    // still goes out.
                    biased;
                    item = events.next() => item,
                    _ = tx.closed() => return,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                let Some(item) = item else { return };
                let last = item.is_err();
                if tx.send(item.map_err(to_status)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn state(&self, r: Request<StateRequest>) -> Result<Response<StateResponse>, Status> {
        self.shim.state(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn kill(&self, r: Request<KillRequest>) -> Result<Response<()>, Status> {
        self.shim.kill(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn wait(&self, r: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        // A Wait can last as long as the process: it ends at shutdown, so the
        // connection can close.
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            r = self.shim.wait(r.into_inner()) => r.map(Response::new).map_err(to_status),
            _ = shutdown.wait_for(|s| *s) => Err(Status::unavailable("the shim server is shutting down")),
        }
    }

    async fn close_stdin(&self, r: Request<CloseStdinRequest>) -> Result<Response<()>, Status> {
        self.shim.close_stdin(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn pause(&self, r: Request<shim_proto::v1::PauseRequest>) -> Result<Response<()>, Status> {
        self.shim.pause(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn resume(&self, r: Request<shim_proto::v1::ResumeRequest>) -> Result<Response<()>, Status> {
        self.shim.resume(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn list_pids(
        &self,
        r: Request<shim_proto::v1::ListPidsRequest>,
    ) -> Result<Response<shim_proto::v1::ListPidsResponse>, Status> {
        self.shim.list_pids(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn update(&self, r: Request<shim_proto::v1::UpdateRequest>) -> Result<Response<()>, Status> {
        self.shim.update(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn checkpoint(&self, r: Request<shim_proto::v1::CheckpointRequest>) -> Result<Response<()>, Status> {
        self.shim.checkpoint(r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    async fn stats(
        &self,
        r: Request<shim_proto::v1::StatsRequest>,
    ) -> Result<Response<shim_proto::v1::StatsResponse>, Status> {
        self.shim.stats(r.into_inner()).await.map(Response::new).map_err(to_status)
    }
}

/// A running gRPC server; see [`GrpcServer::shutdown`].
pub struct GrpcServer {
    grace: std::time::Duration,
    shutdown: watch::Sender<bool>,
    /// `None` once waited for.
    task: Option<Task>,
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer").field("socket", &self.socket).finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// The unix socket path served, if any.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// Stops accepting, ends every event stream, waits for calls in progress,
    /// and removes the socket file.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        let result = match self.task.as_mut() {
            None => Ok(()),
            Some(task) => match tokio::time::timeout(self.grace, &mut *task).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(ServeError::Reflection(format!("server task failed: {e}"))),
                Err(_) => {
                    tracing::warn!("connections still open after the shutdown grace period; closing them");
                    task.abort();
                    Ok(())
                }
            },
        };
        self.task = None;
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Waits until the server stops by itself (it normally runs until
    /// [`GrpcServer::shutdown`]).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        let Some(task) = self.task.as_mut() else { return Ok(()) };
        let result = match task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Reflection(format!("server task failed: {e}"))),
        };
        self.task = None;
        result
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(path) = self.socket.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// PEM material for serving over TCP with mutual TLS: the server's
/// certificate chain and key, and the CA whose certificates clients must
/// present. A client without such a certificate fails the handshake.
#[derive(Clone)]
pub struct ServerTls {
    /// The server's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM.
    pub key_pem: Vec<u8>,
    /// The CA certificate(s) that sign client certificates, PEM.
    pub client_ca_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Starts the server on `incoming` in a task.
fn spawn_server<I, IO, IE>(
    shim: Arc<dyn Shim>,
    options: &ServerOptions,
    keepalive: Option<std::time::Duration>,
    tls: Option<&ServerTls>,
    incoming: I,
) -> Result<(watch::Sender<bool>, Task), ServeError>
where
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (tx, rx) = watch::channel(false);
    let service = GrpcShimService::new(shim, rx.clone(), options.event_buffer);
    let shim_server = ShimServer::new(service)
        .max_decoding_message_size(options.max_message)
        .max_encoding_message_size(options.max_message);
    let reflection = LazyReflection::default();
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.client_ca_pem))
            .client_auth_optional(false);
        builder = builder.tls_config(config).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let mut stop = rx;
    let task = tokio::spawn(async move {
        reporter.set_serving::<ShimServer<GrpcShimService>>().await;
        let me = nix::unistd::Uid::effective().as_raw();
        builder
            .http2_keepalive_interval(keepalive)
            .http2_keepalive_timeout(keepalive.map(|every| every.min(MAX_PING_WAIT)))
            .layer(tonic::service::InterceptorLayer::new(move |req| check_peer(req, me)))
            .add_service(shim_server)
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .map_err(ServeError::from)
    });
    Ok((tx, task))
}

type Task = tokio::task::JoinHandle<Result<(), ServeError>>;

type Erased = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    std::convert::Infallible,
>;

/// The reflection service (`grpc.reflection.v1`), built on its first call.
///
/// Building it decodes the whole descriptor set of the API and indexes
/// every symbol: done at start-up, that was a third of the heap pages a
/// daemon touched before it could serve (about 60 of 200 page faults) and
/// memory it kept for its whole life, for a service only tools such as
/// `grpcurl` ever call.
#[derive(Clone, Default)]
struct LazyReflection(Arc<std::sync::OnceLock<Result<Erased, String>>>);

impl tonic::server::NamedService for LazyReflection {
    const NAME: &'static str = "grpc.reflection.v1.ServerReflection";
}

fn build_reflection() -> Result<Erased, String> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shim_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map(Erased::new)
        .map_err(|e| e.to_string())
}

impl tower::Service<http::Request<tonic::body::Body>> for LazyReflection {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        use tower::ServiceExt;
        match self.0.get_or_init(build_reflection) {
            Ok(service) => Box::pin(service.clone().oneshot(req)),
            Err(e) => {
                let status = Status::internal(format!("reflection service: {e}"));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// Serves `shim` on the unix socket `path` (see [`bind_unix`] for the
/// checks made), with the health and reflection services.
pub fn serve_unix(shim: Arc<dyn Shim>, path: &Path, options: ServerOptions) -> Result<GrpcServer, ServeError> {
    let listener = bind_unix(path)?;
    // Every unix connection goes through the `:authority` adapter (see the
    // `authority` module): stock clients that send the socket path work.
    let incoming = futures::StreamExt::map(UnixListenerStream::new(listener), |conn| {
        conn.map(crate::authority::FixAuthority::new)
    });
    let (shutdown, task) = spawn_server(shim, &options, None, None, incoming)?;
    Ok(GrpcServer { grace: options.shutdown_grace, shutdown, task: Some(task), socket: Some(path.to_path_buf()) })
}

/// Serves `shim` on a TCP address with mutual TLS: only clients presenting
/// a certificate signed by `tls.client_ca_pem` complete the handshake.
///
/// A shim's API hands its caller root (a Create names the runtime binary
/// and any stdio path), so TCP is never served without client
/// authentication; for tests on one machine there is
/// [`serve_tcp_insecure_loopback`].
pub async fn serve_tcp(
    shim: Arc<dyn Shim>,
    addr: std::net::SocketAddr,
    tls: ServerTls,
    options: ServerOptions,
) -> Result<(GrpcServer, std::net::SocketAddr), ServeError> {
    serve_tcp_with(shim, addr, Some(&tls), options).await
}

/// Serves `shim` over plain TCP, without any authentication, on a loopback
/// address only (any other address is refused with
/// [`ServeError::NotLoopback`]). Every local user can then drive the shim,
/// and so act as root: for tests and development, never for production.
pub async fn serve_tcp_insecure_loopback(
    shim: Arc<dyn Shim>,
    addr: std::net::SocketAddr,
    options: ServerOptions,
) -> Result<(GrpcServer, std::net::SocketAddr), ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    tracing::warn!(%addr, "serving the shim over plain tcp without authentication (loopback only)");
    serve_tcp_with(shim, addr, None, options).await
}

async fn serve_tcp_with(
    shim: Arc<dyn Shim>,
    addr: std::net::SocketAddr,
    tls: Option<&ServerTls>,
    options: ServerOptions,
) -> Result<(GrpcServer, std::net::SocketAddr), ServeError> {
    let err = |context| move |source| ServeError::Io { context, path: PathBuf::from(addr.to_string()), source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err("cannot bind"))?;
    let local = listener.local_addr().map_err(err("cannot read the address of"))?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (shutdown, task) = spawn_server(shim, &options, options.tcp_keepalive, tls, incoming)?;
    Ok((GrpcServer { grace: options.shutdown_grace, shutdown, task: Some(task), socket: None }, local))
}
