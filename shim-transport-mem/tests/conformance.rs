//! The conformance suite through the in-memory transport, over the runc shim
//! and over the fake shim, with prost encoding of every message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shim_core::testing::conformance::{Harness, Programs};
use shim_core::testing::{require_runc, shared_reaper};
use shim_core::{FakeShim, RuncConfig, RuncShim, Shim, ShimConfig};
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
        let config = RuncConfig::new(dir.join("work")).io_grace(Duration::from_millis(500));
        connect(Arc::new(RuncShim::new(config, shared_reaper()).unwrap()))
    }
}

struct MemOverFake;

#[async_trait]
impl Harness for MemOverFake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        connect(Arc::new(FakeShim::with_config(
            ShimConfig { io_grace: Duration::from_millis(500), ..Default::default() },
            None,
        )))
    }
}

mod mem_over_runc {
    shim_core::conformance_tests!(super::MemOverRunc);
}

mod mem_over_fake {
    shim_core::conformance_tests!(super::MemOverFake);
}
