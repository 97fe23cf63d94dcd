//! The conformance suite against the runc shim called directly, and against
//! the fake shim: passing both is what makes the fake honest.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shim_core::testing::conformance::{Harness, Programs};
use shim_core::testing::{require_runc, shared_reaper};
use shim_core::{FakeShim, RuncConfig, RuncShim, Shim, ShimConfig};

struct RuncDirect;

#[async_trait]
impl Harness for RuncDirect {
    fn available(&self) -> bool {
        require_runc()
    }
    fn programs(&self) -> Programs {
        Programs::Busybox
    }
    async fn shim(&self, dir: &Path) -> Arc<dyn Shim> {
        let config = RuncConfig::new(dir.join("work")).io_grace(Duration::from_millis(500));
        Arc::new(RuncShim::new(config, shared_reaper()).unwrap_or_else(|e| panic!("shim: {e}")))
    }
}

struct Fake;

#[async_trait]
impl Harness for Fake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        Arc::new(FakeShim::with_config(ShimConfig { io_grace: Duration::from_millis(500), ..Default::default() }, None))
    }
}

mod runc_direct {
    shim_core::conformance_tests!(super::RuncDirect);
}

mod fake {
    shim_core::conformance_tests!(super::Fake);
}
