//! The shim's core: the transport-agnostic [`Shim`] trait, its errors, the
//! process [`Reaper`], the [`EventBus`], and [`RuncShim`], a shim that runs
//! one container with runc.
//!
//! # Process model
//!
//! One shim holds one container. [`RuncShim`] runs `runc create` for the
//! container's init, `runc exec --detach` for each extra process, and owns
//! their stdio: it gives runc pipes (or a console socket for a terminal) and
//! copies between those and the client's FIFOs or files. The shim is a child
//! subreaper, so the container's processes are re-parented to it when runc
//! exits, and one [`Reaper`] per process owns `waitpid` for all of them and
//! for the runc processes themselves.
//!
//! # Layers
//!
//! [`ContainerShim`] is the shim's logic: request validation, lifecycle
//! states, stdio, events and their order. It drives a [`Runtime`], which
//! only starts, signals and removes processes: [`RuncRuntime`] with the runc
//! command line ([`RuncShim`]), or [`FakeRuntime`] with scripted programs
//! that need neither root nor runc ([`FakeShim`], for unit tests of the
//! programs that use a shim). Because both run behind the same logic, one
//! conformance suite (feature `testing`, module `testing::conformance`) passes
//! against both and against every transport.
//!
//! Operations that change state (Create, Start, Exec, Delete, Kill) run in a
//! task of their own: a caller that stops waiting (a client that disconnects
//! mid-call) loses the reply, never the work.
//!
//! # Event ordering
//!
//! Every subscriber of [`Shim::events`] gets every event, in this order:
//! `CREATED` before `STARTED` before the init's `EXIT`; a process's
//! `EXEC_ADDED` before its `EXIT`; an `OOM` that happens while a `Start` runs
//! after its `STARTED`, and every `OOM` before the init `EXIT` it caused;
//! the init's `EXIT` after the `EXIT`s of the execs that died with it. An
//! `EXIT` is published only once the process's output has been copied out
//! (bounded by a grace period without progress, so a background child that
//! holds the pipe open cannot delay it forever). `exit_status` is the exit
//! code, or 128 + the signal number. Events are numbered (`Event.seq`, from
//! 1 without gaps), and `EventsRequest.since` resumes a subscription after a
//! given number (see [`EventBus`]).
//!
//! # Errors
//!
//! Every operation returns [`ShimError`], whose [`ShimError::code`] names the
//! gRPC status a transport sends: bad input is `InvalidArgument`, an unknown
//! pid `NotFound`, a second `Create` `AlreadyExists`, an operation in the
//! wrong lifecycle state `FailedPrecondition`, and a failing runtime
//! `Internal` with runc's own message.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use shim_core::{Reaper, RuncConfig, RuncShim, Shim};
//! use shim_proto::v1::{CreateRequest, DeleteRequest, StartRequest, WaitRequest};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let reaper = Reaper::start()?; // once per process
//! let shim: Arc<dyn Shim> = Arc::new(RuncShim::new(RuncConfig::new("/run/my-shim/work"), reaper)?);
//! let created = shim
//!     .create(CreateRequest { id: "web".into(), bundle: "/srv/bundles/web".into(), ..Default::default() })
//!     .await?;
//! shim.start(StartRequest {}).await?;
//! let exit = shim.wait(WaitRequest { pid: created.pid }).await?;
//! shim.delete(DeleteRequest { pid: created.pid }).await?;
//! println!("exited with {}", exit.exit_status);
//! # Ok(())
//! # }
//! ```

pub mod cgroup;
pub mod container;
pub mod error;
pub mod events;
pub mod fake;
pub mod io;
pub mod logger;
pub mod oom;
pub mod reaper;
pub mod runc;
pub mod runtime;
pub mod shim;
pub mod signal;
pub mod spec;
pub mod stats;
#[cfg(feature = "testing")]
pub mod testing;

pub use container::{ContainerShim, ShimConfig};
pub use error::{Code, Result, ShimError};
pub use events::EventBus;
pub use fake::{FakeRuntime, FakeShim};
/// Re-exported: reading an [`EventStream`] takes `StreamExt::next`.
pub use futures::{Stream, StreamExt};
pub use reaper::{Exit, Reaper};
pub use runc::{RuncConfig, RuncRuntime, RuncShim};
pub use runtime::{CreateSpec, Launched, Runtime};
pub use shim::{EventStream, Shim};
pub use shim_proto as proto;
pub use signal::Signal;
