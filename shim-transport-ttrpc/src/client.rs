//! A ttrpc client on tokio: many calls in flight on one connection, matched
//! to their responses by stream id (odd, increasing, as the protocol asks of
//! a client).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::frame::{read_frame, write_frame, Frame, TYPE_REQUEST, TYPE_RESPONSE};
use crate::proto::ttrpc::{KeyValue, Request, Response};
use crate::status::TtrpcError;

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Response>>>>;

/// A connection to a ttrpc server.
pub struct Client {
    address: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU32,
    closed: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<Response>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Connects to the ttrpc server listening on the unix socket `path`.
    pub async fn connect(path: impl AsRef<std::path::Path>) -> Result<Self, TtrpcError> {
        let address = path.as_ref().display().to_string();
        let stream = UnixStream::connect(path.as_ref())
            .await
            .map_err(|source| TtrpcError::Io { address: address.clone(), source })?;
        let (mut rd, wr) = stream.into_split();
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (pending, closed) = (Arc::clone(&pending), Arc::clone(&closed));
            tokio::spawn(async move {
                while let Ok(Some(frame)) = read_frame(&mut rd).await {
                    let Frame::Whole(header, payload) = frame else { continue };
                    if header.kind != TYPE_RESPONSE {
                        continue;
                    }
                    let tx = lock(&pending).remove(&header.stream_id);
                    // An undecodable answer ends its call (as a closed
                    // connection would) rather than leaving it waiting.
                    if let (Some(tx), Ok(response)) = (tx, Response::decode(payload.as_slice())) {
                        let _ = tx.send(response);
                    }
                }
                closed.store(true, Ordering::SeqCst);
                // Every call still waiting learns the connection is gone.
                lock(&pending).clear();
            })
        };
        Ok(Self { address, writer: tokio::sync::Mutex::new(wr), pending, next_id: AtomicU32::new(1), closed, reader })
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Calls `service`/`method` with `req`; `timeout` is sent to the server
    /// as `timeout_nano` and bounds the wait here.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        service: &str,
        method: &str,
        req: &Req,
        timeout: Option<Duration>,
        metadata: &[(&str, &str)],
    ) -> Result<Resp, TtrpcError> {
        let name = format!("{service}/{method}");
        let call = self.call_raw(service, method, req.encode_to_vec(), timeout, metadata);
        let response = match timeout {
            None => call.await?,
            Some(t) => tokio::time::timeout(t, call)
                .await
                .map_err(|_| TtrpcError::Timeout { method: name.clone(), timeout: t })??,
        };
        match response.status {
            Some(st) if st.code != 0 => Err(TtrpcError::Status { method: name, code: st.code, message: st.message }),
            _ => Resp::decode(response.payload.as_slice())
                .map_err(|source| TtrpcError::Decode { what: "response", source }),
        }
    }

    async fn call_raw(
        &self,
        service: &str,
        method: &str,
        payload: Vec<u8>,
        timeout: Option<Duration>,
        metadata: &[(&str, &str)],
    ) -> Result<Response, TtrpcError> {
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let request = Request {
            service: service.into(),
            method: method.into(),
            payload,
            timeout_nano: timeout.map(|t| i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0),
            metadata: metadata.iter().map(|(k, v)| KeyValue { key: (*k).into(), value: (*v).into() }).collect(),
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        // Removes the entry however this call ends (answered, failed, or
        // dropped at the caller's timeout).
        let _entry = Entry { pending: &self.pending, id };
        if self.is_closed() {
            return Err(TtrpcError::Closed(self.address.clone()));
        }
        let written = {
            let mut w = self.writer.lock().await;
            // A call dropped in the middle of its write (its caller's
            // timeout) leaves half a frame on the wire: the connection is
            // then unusable, and says so, rather than garbling later calls.
            let torn = Torn { closed: &self.closed, armed: true };
            let r = write_frame(&mut *w, id, TYPE_REQUEST, &request.encode_to_vec()).await;
            torn.disarm();
            r
        };
        if let Err(source) = written {
            return Err(TtrpcError::Io { address: self.address.clone(), source });
        }
        rx.await.map_err(|_| TtrpcError::Closed(self.address.clone()))
    }
}

struct Entry<'a> {
    pending: &'a Pending,
    id: u32,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

struct Torn<'a> {
    closed: &'a AtomicBool,
    armed: bool,
}

impl Torn<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Torn<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.closed.store(true, Ordering::SeqCst);
        }
    }
}
