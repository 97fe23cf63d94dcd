//! The conformance suite through the in-memory transport, over the runc shim
//! and over the fake shim, with prost encoding of every message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::testing::conformance::{runc_shim, FakeShims, Harness, Programs};
use shim_core::testing::require_runc;
use shim_core::Shim;
use shim_transport_mem::MemOptions;

fn connect(shim: Arc<dyn Shim>) -> Arc<dyn Shim> {
    // The client owns its server: dropping the shim closes the connection.
    Arc::new(shim_transport_mem::connect(shim, MemOptions { encode: true, ..Default::default() }))
}

struct MemOverRunc;

#[async_trait]
impl Harness for MemOverRunc {
    fn available(&self) -> bool {
        require_runc()
    }
    fn programs(&self) -> Programs {
        Programs::Busybox
    }
    async fn shim(&self, dir: &Path) -> Arc<dyn Shim> {
        connect(runc_shim(dir))
    }
}

#[derive(Default)]
struct MemOverFake(FakeShims);

#[async_trait]
impl Harness for MemOverFake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        connect(self.0.make())
    }
    fn reuse_pid(&self, pid: u32) -> bool {
        self.0.reuse_pid(pid)
    }
}

mod mem_over_runc {
    shim_core::conformance_tests!(super::MemOverRunc);
}

mod mem_over_fake {
    shim_core::conformance_tests!(super::MemOverFake::default());
}
