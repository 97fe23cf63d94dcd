//! The conformance suite through the in-memory transport, over the runc shim
//! and over the fake shim, with prost encoding of every message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::testing::conformance::{fake_shim, runc_shim, Harness, Programs};
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

struct MemOverFake;

#[async_trait]
impl Harness for MemOverFake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        connect(fake_shim())
    }
}

mod mem_over_runc {
    shim_core::conformance_tests!(super::MemOverRunc);
}

mod mem_over_fake {
    shim_core::conformance_tests!(super::MemOverFake);
}
