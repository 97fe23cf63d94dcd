//! The conformance suite against the runc shim called directly, and against
//! the fake shim: passing both is what makes the fake honest.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::testing::conformance::{runc_shim, FakeShims, Harness, Programs};
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

#[derive(Default)]
struct Fake(FakeShims);

#[async_trait]
impl Harness for Fake {
    fn programs(&self) -> Programs {
        Programs::Fake
    }
    async fn shim(&self, _dir: &Path) -> Arc<dyn Shim> {
        self.0.make()
    }
    fn reuse_pid(&self, pid: u32) -> bool {
        self.0.reuse_pid(pid)
    }
}

mod runc_direct {
    shim_core::conformance_tests!(super::RuncDirect);
}

mod fake {
    shim_core::conformance_tests!(super::Fake::default());
}
