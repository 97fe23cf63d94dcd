//! The conformance suite against the runc shim called directly, and against
//! the fake shim: passing both is what makes the fake honest.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::testing::conformance::{fake_shim, runc_shim, Harness, Programs};
use shim_core::testing::require_runc;
use shim_core::Shim;

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
        runc_shim(dir)
    }
}

struct Fake;

#[async_trait]
impl Harness for Fake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        fake_shim()
    }
}

mod runc_direct {
    shim_core::conformance_tests!(super::RuncDirect);
}

mod fake {
    shim_core::conformance_tests!(super::Fake);
}
