//! Any bytes a peer may send to a ttrpc server: frames, requests and the
//! task API's messages, through the real connection loop of
//! `shim-transport-ttrpc` (over an in-memory pipe) with a service that
//! decodes every request type the task API takes. Never a panic, and the
//! server answers or closes: it never hangs on garbage.
#![no_main]

use std::sync::Arc;

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use shim_transport_ttrpc::proto::containerd::task::v2 as api;
use shim_transport_ttrpc::proto::ttrpc::Status;
use shim_transport_ttrpc::server::{serve_connection, Request, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Decoder;

#[async_trait]
impl Service for Decoder {
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status> {
        let p = req.payload.as_slice();
        let _ = match req.method.as_str() {
            "Create" => api::CreateTaskRequest::decode(p).map(|_| ()),
            "Exec" => api::ExecProcessRequest::decode(p).map(|r| {
                // The OCI process JSON inside, as the task service reads it.
                if let Some(spec) = r.spec {
                    let _ = shim_transport_ttrpc::task::exec_request(&spec.value);
                }
            }),
            "Update" => api::UpdateTaskRequest::decode(p).map(|_| ()),
            "Kill" => api::KillRequest::decode(p).map(|_| ()),
            _ => api::StateRequest::decode(p).map(|_| ()),
        };
        Ok(Vec::new())
    }
}

fuzz_target!(|data: &[u8]| {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(_) => return,
    };
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_connection(server, Arc::new(Decoder)));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the server neither answered nor closed");
        let _ = task.await;
    });
});
