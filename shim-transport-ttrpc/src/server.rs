//! A ttrpc server on tokio: every request runs as its own task, so a call
//! that blocks (Wait) never holds up the others on the connection, and its
//! response goes out whenever it is ready (out of order).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::frame::{read_frame, write_frame, Frame, TYPE_REQUEST, TYPE_RESPONSE};
use crate::proto::ttrpc::{Response, Status};
use crate::status::{status, Code};

/// One call as the server hands it to a [`Service`].
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Fully qualified service name, such as `containerd.task.v2.Task`.
    pub service: String,
    /// Method name, such as `Create`.
    pub method: String,
    /// The encoded request message.
    pub payload: Vec<u8>,
    /// Metadata pairs in the order sent (a key may repeat).
    pub metadata: Vec<(String, String)>,
    /// The caller's timeout, when it set one; the server enforces it.
    pub timeout: Option<Duration>,
}

impl Request {
    /// The first value of a metadata key.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What a ttrpc server serves: one method call in, an encoded response or
/// a status out.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Handles one call. An unknown service or method is `UNIMPLEMENTED`.
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status>;
}

/// Serves ttrpc connections accepted from a unix listener.
pub struct Server<S> {
    service: Arc<S>,
    /// The uid and gid a peer must run as.
    peer: Option<(u32, u32)>,
}

impl<S: Service> Server<S> {
    /// A server for `service`, accepting any peer.
    pub fn new(service: Arc<S>) -> Self {
        Self { service, peer: None }
    }

    /// Accepts only peers running as `uid` and `gid` (checked with
    /// `SO_PEERCRED`), as containerd's shims do (ttrpc's same-user check);
    /// others are disconnected at once.
    pub fn same_user(mut self, uid: u32, gid: u32) -> Self {
        self.peer = Some((uid, gid));
        self
    }

    /// Accepts connections until `shutdown` completes; each connection is
    /// served on its own task. A failed accept (no fds left, say) is logged
    /// and retried, never the end of the server.
    pub async fn serve(
        &self,
        listener: UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // A peer that went away between connect and accept.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                    Err(e) => {
                        // Out of fds or memory for a moment: the shim must
                        // outlive it (its container does), so wait and retry.
                        tracing::error!(error = %e, "accepting a ttrpc connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if let Some((uid, gid)) = self.peer {
                match stream.peer_cred() {
                    Ok(cred) if cred.uid() == uid && cred.gid() == gid => {}
                    Ok(cred) => {
                        tracing::warn!(
                            peer_uid = cred.uid(),
                            peer_gid = cred.gid(),
                            "refused a ttrpc connection from another user or group"
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a ttrpc peer's credentials");
                        continue;
                    }
                }
            }
            tokio::spawn(serve_connection(stream, Arc::clone(&self.service)));
        }
    }
}

/// Serves one connection (a unix socket, or any byte stream such as an
/// in-memory pipe) until the peer closes it or the framing breaks.
pub async fn serve_connection<T, S>(stream: T, service: Arc<S>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
    S: Service,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((id, payload)) = rx.recv().await {
            if let Err(e) = write_frame(&mut wr, id, TYPE_RESPONSE, &payload).await {
                tracing::debug!(error = %e, "ttrpc connection closed while writing");
                break;
            }
        }
    });
    loop {
        let frame = match read_frame(&mut rd).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "ttrpc connection ended");
                break;
            }
        };
        let (header, payload) = match frame {
            Frame::TooLarge(h) => {
                let msg = format!("message of {} bytes is over the limit of {}", h.length, crate::frame::MAX_PAYLOAD);
                reply(&tx, h.stream_id, Err(status(Code::ResourceExhausted, msg)));
                continue;
            }
            Frame::Whole(h, p) => (h, p),
        };
        if header.kind != TYPE_REQUEST {
            continue;
        }
        let id = header.stream_id;
        if id % 2 == 0 {
            reply(&tx, id, Err(status(Code::InvalidArgument, format!("stream id {id} is even: clients use odd ids"))));
            continue;
        }
        let req = match crate::proto::ttrpc::Request::decode(payload.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                reply(&tx, id, Err(status(Code::InvalidArgument, format!("cannot decode the request: {e}"))));
                continue;
            }
        };
        let timeout = u64::try_from(req.timeout_nano).ok().filter(|n| *n > 0).map(Duration::from_nanos);
        let req = Request {
            service: req.service,
            method: req.method,
            payload: req.payload,
            metadata: req.metadata.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            timeout,
        };
        let (service, tx) = (Arc::clone(&service), tx.clone());
        tokio::spawn(async move {
            let what = format!("{}/{}", req.service, req.method);
            tracing::debug!(call = %what, stream = id, "ttrpc request");
            // A deadline ends the wait for the answer, never the call: a
            // Create or Delete that changed state half-way still finishes
            // its work after the DEADLINE_EXCEEDED went out. A panicking
            // call is answered INTERNAL, and the connection serves on.
            let call = std::panic::AssertUnwindSafe(service.handle(req)).catch_unwind();
            tokio::pin!(call);
            let joined = match timeout {
                None => Some(call.as_mut().await),
                Some(t) => tokio::time::timeout(t, call.as_mut()).await.ok(),
            };
            let finish = joined.is_none();
            let result = match joined {
                Some(Ok(r)) => r,
                Some(Err(_)) => Err(status(Code::Internal, format!("{what}: the call panicked"))),
                None => Err(status(
                    Code::DeadlineExceeded,
                    format!("{what}: deadline of {:?} exceeded", timeout.unwrap_or_default()),
                )),
            };
            tracing::debug!(call = %what, stream = id, code = result.as_ref().err().map(|s| s.code).unwrap_or(0), "ttrpc reply");
            reply(&tx, id, result);
            if finish {
                let _ = call.await;
            }
        });
    }
    // In-flight calls still answer through their senders; the writer ends
    // when the last one is done (or the peer is gone).
    drop(tx);
    let _ = writer.await;
}

fn reply(tx: &mpsc::UnboundedSender<(u32, Vec<u8>)>, id: u32, result: Result<Vec<u8>, Status>) {
    let response = match result {
        Ok(payload) => Response { status: Some(Status { code: 0, ..Default::default() }), payload },
        Err(status) => Response { status: Some(status), payload: Vec::new() },
    };
    let mut bytes = response.encode_to_vec();
    if bytes.len() > crate::frame::MAX_PAYLOAD {
        let st = status(Code::ResourceExhausted, format!("response of {} bytes is over the ttrpc limit", bytes.len()));
        bytes = Response { status: Some(st), payload: Vec::new() }.encode_to_vec();
    }
    let _ = tx.send((id, bytes));
}
