//! What the container is made of and uses: ListPids (the processes of its
//! cgroup) and Stats (its cgroup's usage).

use std::collections::BTreeSet;

use shim_proto::v1::{ListPidsRequest, ListPidsResponse, ProcessInfo, StatsRequest, StatsResponse};

use super::{lock, ContainerShim};
use crate::error::{Result, ShimError};
use crate::runtime::Runtime;

impl<R: Runtime> ContainerShim<R> {
    pub(super) async fn list_pids_now(&self, _req: ListPidsRequest) -> Result<ListPidsResponse> {
        let (id, ours) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to list: create it first".into()))?;
            (c.id.clone(), c.procs.keys().copied().collect::<BTreeSet<u32>>())
        };
        let pids = self.inner.runtime.pids(&id).await?;
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo { pid, shim_pid: if ours.contains(&pid) { pid } else { 0 } })
            .collect();
        Ok(ListPidsResponse { processes })
    }

    pub(super) async fn stats_now(&self, _req: StatsRequest) -> Result<StatsResponse> {
        let (id, pid) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to measure: create it first".into()))?;
            // After the init exited the cgroup stays until Delete: kubelet
            // and CRI read it then (CRI checks for a missed OOM after every
            // exit 137), as containerd's runc shim answers them.
            (c.id.clone(), c.init_pid)
        };
        self.inner.runtime.stats(&id, pid).await
    }
}
