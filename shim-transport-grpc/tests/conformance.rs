//! The conformance suite over gRPC on a real unix socket, against the runc
//! shim and the fake shim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::testing::conformance::{runc_shim, FakeShims, Harness, Programs};
use shim_core::testing::{require_runc, Guarded};
use shim_core::Shim;
use shim_transport_grpc::{serve_unix, ClientOptions, GrpcServer, GrpcShim, ServerOptions};

async fn over_grpc(shim: Arc<dyn Shim>, dir: &Path) -> Arc<dyn Shim> {
    let socket = dir.join("sock").join("shim.sock");
    let server = serve_unix(shim, &socket, ServerOptions::default()).unwrap();
    let client = GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap();
    Arc::new(Guarded::<GrpcServer> { shim: Arc::new(client), guard: server })
}

struct GrpcOverRunc;

#[async_trait]
impl Harness for GrpcOverRunc {
    fn available(&self) -> bool {
        require_runc()
    }
    fn programs(&self) -> Programs {
        Programs::Busybox
    }
    async fn shim(&self, dir: &Path) -> Arc<dyn Shim> {
        over_grpc(runc_shim(dir), dir).await
    }
}

#[derive(Default)]
struct GrpcOverFake(FakeShims);

#[async_trait]
impl Harness for GrpcOverFake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, dir: &Path) -> Arc<dyn Shim> {
        over_grpc(self.0.make(), dir).await
    }
    fn reuse_pid(&self, pid: u32) -> bool {
        self.0.reuse_pid(pid)
    }
}

mod grpc_over_runc {
    shim_core::conformance_tests!(super::GrpcOverRunc);
}

mod grpc_over_fake {
    shim_core::conformance_tests!(super::GrpcOverFake::default());
}
