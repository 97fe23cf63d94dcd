//! A gRPC client that is itself a [`Shim`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use shim_core::{EventStream, Result, Shim, ShimError};
use shim_proto::v1::shim_client::ShimClient;
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, EventsRequest, ExecRequest,
    ExecResponse, KillRequest, PtyRequest, StartRequest, StateRequest, StateResponse, WaitRequest, WaitResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::coalesce::Coalesce;
use crate::status::from_status;

/// PEM material for reaching a shim over TCP with mutual TLS.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA certificate(s) that sign the server's certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The client's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The client's private key, PEM.
    pub key_pem: Vec<u8>,
    /// The name the server's certificate must carry, if not the URI's host.
    pub domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("domain", &self.domain).finish_non_exhaustive()
    }
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a call may take before it fails with `Unavailable`; not
    /// applied to `Wait`, `Delete` and `Events`, which last as long as the
    /// process or the subscription. Enforced by the client alone: a call
    /// that times out has still been sent, and a state-changing one (Create,
    /// Start, Exec, Kill) may still take effect in the shim.
    pub call_timeout: Duration,
    /// Largest response accepted, in bytes.
    pub max_message: usize,
    /// On TCP only: how often, while a call or event stream is open, an
    /// HTTP/2 PING checks that the shim is still there; one unanswered for
    /// as long (at most 20 s) gives the connection up and fails the open
    /// calls with `Unavailable`. Default 5 minutes, the shortest interval
    /// grpc-go and grpc-java servers accept by default (they close a
    /// connection that pings more often). `None` turns it off. Unix sockets
    /// need none.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            max_message: crate::server::DEFAULT_MAX_MESSAGE,
            tcp_keepalive: Some(Duration::from_secs(300)),
        }
    }
}

/// A [`Shim`] reached over gRPC. Cheap to clone; clones share the connection.
///
/// Over a unix socket it sends `:authority` `localhost` (as grpc-go does),
/// which the server accepts.
#[derive(Debug, Clone)]
pub struct GrpcShim {
    client: ShimClient<Channel>,
    options: ClientOptions,
    /// The socket path or URI, named in connection errors.
    target: Arc<str>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ShimError {
    ShimError::Unavailable(format!("{what}: {e}"))
}

impl GrpcShim {
    /// Connects to a shim on a unix socket.
    pub async fn connect(path: impl AsRef<Path>, options: ClientOptions) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let endpoint = Endpoint::from_static("http://localhost").connect_timeout(options.connect_timeout);
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move { tokio::net::UnixStream::connect(path).await.map(|s| TokioIo::new(Coalesce::new(s))) }
        });
        let channel = tokio::time::timeout(options.connect_timeout, endpoint.connect_with_connector(connector))
            .await
            .map_err(|_| unavailable(&format!("cannot connect to {shown}"), "timed out"))?
            .map_err(|e| unavailable(&format!("cannot connect to {shown}"), source_chain(&e)))?;
        Ok(Self::from_channel(channel, options).named(&shown))
    }

    /// Names the shim's address in connection errors of later calls.
    fn named(mut self, target: &str) -> Self {
        self.target = Arc::from(target);
        self
    }

    /// A call's failure; an unreachable shim is named by its address (the
    /// transport's own message does not say which shim it could not reach).
    fn failed(&self, status: tonic::Status) -> ShimError {
        let e = from_status(status);
        if e.code() == shim_core::Code::Unavailable {
            ShimError::Unavailable(format!("shim at {}: {e}", self.target))
        } else {
            e
        }
    }

    /// Connects to a shim served over TCP with mutual TLS
    /// ([`serve_tcp`](crate::serve_tcp)), such as `https://shim.example:5000`,
    /// presenting `tls`'s client certificate and trusting only its CA.
    pub async fn connect_tcp(uri: &str, tls: ClientTls, options: ClientOptions) -> Result<Self> {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(domain) = tls.domain {
            config = config.domain_name(domain);
        }
        Self::connect_tcp_with(uri, Some(config), options).await
    }

    /// Connects over plain TCP to a shim served by
    /// [`serve_tcp_insecure_loopback`](crate::serve_tcp_insecure_loopback),
    /// such as `http://127.0.0.1:5000`.
    pub async fn connect_tcp_insecure(uri: &str, options: ClientOptions) -> Result<Self> {
        Self::connect_tcp_with(uri, None, options).await
    }

    async fn connect_tcp_with(
        uri: &str,
        tls: Option<tonic::transport::ClientTlsConfig>,
        options: ClientOptions,
    ) -> Result<Self> {
        let mut endpoint = Endpoint::from_shared(uri.to_string())
            .map_err(|e| ShimError::invalid("uri", format!("{uri:?}: {e}")))?
            .connect_timeout(options.connect_timeout);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| ShimError::invalid("tls", format!("{e}")))?;
        }
        let endpoint = match options.tcp_keepalive {
            Some(every) => endpoint
                .http2_keep_alive_interval(every)
                .keep_alive_timeout(every.min(crate::server::MAX_PING_WAIT))
                .keep_alive_while_idle(false),
            None => endpoint,
        };
        let channel =
            endpoint.connect().await.map_err(|e| unavailable(&format!("cannot connect to {uri}"), source_chain(&e)))?;
        Ok(Self::from_channel(channel, options).named(uri))
    }

    /// A client over an existing channel.
    pub fn from_channel(channel: Channel, options: ClientOptions) -> Self {
        let client = ShimClient::new(channel)
            .max_decoding_message_size(options.max_message)
            .max_encoding_message_size(options.max_message);
        Self { client, options, target: Arc::from("the shim") }
    }

    /// Wraps a message, refusing one over the size limit up front (the
    /// codec would fail it with an opaque HTTP/2 error instead).
    fn request<T: prost::Message>(&self, msg: T) -> Result<Request<T>> {
        let len = msg.encoded_len();
        if len > self.options.max_message {
            return Err(ShimError::invalid(
                "request",
                format!("encoded request of {len} bytes is over the {}-byte message limit", self.options.max_message),
            ));
        }
        Ok(Request::new(msg))
    }

    /// Bounds a call by `call_timeout` on this side only. (Sending it as a
    /// `grpc-timeout` header as well would make the server arm a timer of
    /// its own for every call; its state-changing work runs to completion
    /// whatever the client does, so it has no use for the deadline.)
    async fn timed<T>(
        &self,
        method: &str,
        call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.options.call_timeout, call).await {
            Ok(r) => r.map(|r| r.into_inner()).map_err(|s| self.failed(s)),
            Err(_) => Err(ShimError::Unavailable(format!(
                "{method}: no answer from the shim within {:?}",
                self.options.call_timeout
            ))),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        // Many errors already print their source: say each thing once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}

#[async_trait]
impl Shim for GrpcShim {
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let r = self.request(req)?;
        self.timed("create", self.client.clone().create(r)).await
    }

    async fn start(&self, req: StartRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("start", self.client.clone().start(r)).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        // Delete waits for the process to be reaped: no call timeout.
        let r = self.request(req)?;
        self.client.clone().delete(r).await.map(|r| r.into_inner()).map_err(|s| self.failed(s))
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecResponse> {
        let r = self.request(req)?;
        self.timed("exec", self.client.clone().exec(r)).await
    }

    async fn pty(&self, req: PtyRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("pty", self.client.clone().pty(r)).await
    }

    async fn events(&self, req: EventsRequest) -> Result<EventStream> {
        let r = self.request(req)?;
        let stream = self.client.clone().events(r).await.map_err(|s| self.failed(s))?.into_inner();
        // A stream the server ends without an error item ended because the
        // connection or the server went away: say so.
        let stream = futures::stream::unfold(Some(stream), |s| async move {
            let mut s = s?;
            match s.next().await {
                Some(Ok(ev)) => Some((Ok(ev), Some(s))),
                Some(Err(status)) => Some((Err(from_status(status)), None)),
                None => Some((Err(ShimError::Unavailable("the shim ended the event stream".into())), None)),
            }
        });
        Ok(Box::pin(stream))
    }

    async fn state(&self, req: StateRequest) -> Result<StateResponse> {
        let r = self.request(req)?;
        self.timed("state", self.client.clone().state(r)).await
    }

    async fn kill(&self, req: KillRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("kill", self.client.clone().kill(r)).await
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        let r = self.request(req)?;
        self.client.clone().wait(r).await.map(|r| r.into_inner()).map_err(|s| self.failed(s))
    }

    async fn close_stdin(&self, req: CloseStdinRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("close_stdin", self.client.clone().close_stdin(r)).await
    }

    async fn pause(&self, req: shim_proto::v1::PauseRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("pause", self.client.clone().pause(r)).await
    }

    async fn resume(&self, req: shim_proto::v1::ResumeRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("resume", self.client.clone().resume(r)).await
    }

    async fn list_pids(&self, req: shim_proto::v1::ListPidsRequest) -> Result<shim_proto::v1::ListPidsResponse> {
        let r = self.request(req)?;
        self.timed("list_pids", self.client.clone().list_pids(r)).await
    }

    async fn update(&self, req: shim_proto::v1::UpdateRequest) -> Result<()> {
        let r = self.request(req)?;
        self.timed("update", self.client.clone().update(r)).await
    }

    async fn checkpoint(&self, req: shim_proto::v1::CheckpointRequest) -> Result<()> {
        let r = self.request(req)?;
        // A checkpoint of a big container takes as long as it takes.
        self.client.clone().checkpoint(r).await.map(|r| r.into_inner()).map_err(|s| self.failed(s))
    }

    async fn stats(&self, req: shim_proto::v1::StatsRequest) -> Result<shim_proto::v1::StatsResponse> {
        let r = self.request(req)?;
        self.timed("stats", self.client.clone().stats(r)).await
    }
}
