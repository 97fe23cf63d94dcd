//! The core's events, read in order by one task and forwarded as
//! containerd's: an exit never overtakes the start it follows.

use std::sync::Arc;
use std::time::Duration;

use shim_core::proto::v1 as core;
use shim_core::{Shim, StreamExt};

use super::{any, now, TaskService};
use crate::proto::containerd::events as ev;

impl TaskService {
    /// Forwards the events of container `cid`, which `shim` runs, until its
    /// record is dropped (which stops this task) or the stream ends. Events
    /// of other containers on the same shim (one shim given to
    /// [`TaskService::new`] serves one container after another) are not
    /// this task's.
    pub(super) async fn forward_events(
        self: Arc<Self>,
        cid: String,
        shim: Arc<dyn Shim>,
        mut events: shim_core::EventStream,
    ) {
        let mut last: Option<u64> = None;
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    last = Some(event.seq);
                    if event.id == cid {
                        self.translate(&cid, event).await;
                    }
                }
                Some(Err(e)) => {
                    // Fell behind the core's ring: resume after the last
                    // event handled, or, if those are gone, go on live.
                    tracing::error!(error = %e, "the core's event stream failed; resubscribing");
                    let resumed = shim.events(core::EventsRequest { since: last }).await;
                    events = match resumed {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "events were lost; forwarding goes on from now");
                            match shim.events(core::EventsRequest::default()).await {
                                Ok(s) => s,
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot subscribe to the core's events; they stop here");
                                    return;
                                }
                            }
                        }
                    };
                }
                None => return,
            }
        }
    }

    /// The exec id of `pid` in container `cid`, waiting (bounded) for
    /// `Start` to record it: the core publishes an exec's first event before
    /// its Exec call returns.
    async fn exec_id_of(&self, cid: &str, pid: u32) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            if let Some(id) = self.lock().containers.get(cid).and_then(|c| c.by_pid.get(&pid)) {
                return Some(id.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    async fn translate(&self, cid: &str, e: core::Event) {
        let kind = e.event_type().unwrap_or(core::EventType::Exit);
        let (cid, bundle, rootfs, checkpoint, io) = {
            let st = self.lock();
            let Some(c) = st.containers.get(cid) else { return };
            let io = ev::TaskIo {
                stdin: c.init.stdin.clone(),
                stdout: c.init.stdout.clone(),
                stderr: c.init.stderr.clone(),
                terminal: c.init.terminal,
            };
            (c.id.clone(), c.bundle.clone(), c.rootfs.clone(), c.checkpoint.clone(), io)
        };
        match kind {
            core::EventType::Created => {
                let m = ev::TaskCreate { container_id: cid, bundle, rootfs, io: Some(io), checkpoint, pid: e.pid };
                self.sink.publish("/tasks/create", any("containerd.events.TaskCreate", &m));
            }
            core::EventType::Started => {
                let m = ev::TaskStart { container_id: cid, pid: e.pid };
                self.sink.publish("/tasks/start", any("containerd.events.TaskStart", &m));
            }
            core::EventType::ExecAdded => {
                let Some(exec_id) = self.exec_id_of(&cid, e.pid).await else {
                    tracing::warn!(pid = e.pid, "an exec's pid was never recorded; its start event is not forwarded");
                    return;
                };
                let m = ev::TaskExecStarted { container_id: cid, exec_id, pid: e.pid };
                self.sink.publish("/tasks/exec-started", any("containerd.events.TaskExecStarted", &m));
            }
            core::EventType::Exit => {
                let at = now();
                let Some(exec_id) = self.exec_id_of(&cid, e.pid).await else {
                    // Never the init's (its pid is recorded by Create): an
                    // exit nobody can name is logged, not misattributed.
                    tracing::warn!(
                        pid = e.pid,
                        status = e.exit_status,
                        "exit of a process with no exec id; not forwarded"
                    );
                    return;
                };
                // Queued before the exit is recorded: Delete and Wait see the
                // record, so what they publish comes after this.
                let id = if exec_id.is_empty() { cid.clone() } else { exec_id.clone() };
                let m = ev::TaskExit {
                    container_id: cid.clone(),
                    id,
                    pid: e.pid,
                    exit_status: e.exit_status,
                    exited_at: Some(at),
                };
                self.sink.publish("/tasks/exit", any("containerd.events.TaskExit", &m));
                self.set(&cid, &exec_id, |p| {
                    p.exit.get_or_insert((e.exit_status, at));
                });
                self.changed.notify_waiters();
            }
            core::EventType::Oom => {
                self.sink.publish("/tasks/oom", any("containerd.events.TaskOOM", &ev::TaskOom { container_id: cid }));
            }
            core::EventType::ContainerPaused => {
                self.sink.publish(
                    "/tasks/paused",
                    any("containerd.events.TaskPaused", &ev::TaskPaused { container_id: cid }),
                );
            }
            core::EventType::ContainerResumed => {
                let m = ev::TaskResumed { container_id: cid };
                self.sink.publish("/tasks/resumed", any("containerd.events.TaskResumed", &m));
            }
        }
    }
}
