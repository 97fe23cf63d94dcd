//! The shim core as a containerd runtime: ttrpc on tokio and containerd's
//! `containerd.task.v2.Task` API over any [`Shim`](shim_core::Shim).
//!
//! containerd 1.6 drives its shims over ttrpc, a small framing of protobuf
//! messages on a unix socket (see [`frame`]), not gRPC. This crate has:
//!
//! - [`server::Server`] and [`client::Client`]: ttrpc with concurrent calls
//!   per connection, out-of-order responses, the 4 MiB limit, odd client
//!   stream ids, `timeout_nano` deadlines and metadata;
//! - [`task::TaskService`]: the task API translated into the core's
//!   requests (exec ids to pids, containerd's codes and event order);
//! - [`events::Forwarder`]: events to containerd, queued and retried;
//! - [`options::RuncOptions`]: containerd's runc options for a container,
//!   in both forms they arrive in (CRI's is a TOML runtime config file);
//! - [`rootfs`]: the image's mounts on the bundle's `rootfs`;
//! - [`bootstrap`]: what a shim binary reads and answers on `start` and
//!   `-info` (containerd 2.3's bootstrap and task API v3; 1.6's plain
//!   address);
//! - [`proto`]: the messages, generated with prost from `.proto` files
//!   written for this crate from containerd 1.6's field numbers.
//!
//! # Why prost, and not the `ttrpc` crate
//!
//! The `ttrpc` and `containerd-shim-protos` crates generate their types
//! with rust-protobuf (or prost with `protoc`): a second protobuf stack
//! beside the prost one every other crate of this workspace uses, and a
//! build that needs `protoc`. ttrpc itself is a 10-byte header and two
//! messages, so it is written here on tokio and the same protox/prost
//! pipeline as `shim-proto` generates everything.
//!
//! # Example
//!
//! Serving the task API for one container managed by a runc shim, with
//! events forwarded to containerd (what the `containerd-shim-rshim-v1`
//! binary of the examples does):
//!
//! ```no_run
//! use std::sync::Arc;
//! use shim_core::{Reaper, RuncConfig, RuncShim};
//! use shim_transport_ttrpc::{events::Forwarder, server::Server, task::TaskService};
//!
//! # async fn run(listener: tokio::net::UnixListener) -> Result<(), Box<dyn std::error::Error>> {
//! let shim = Arc::new(RuncShim::new(RuncConfig::new("/run/my-shim/work"), Reaper::start()?)?);
//! let events = Forwarder::start("/run/containerd/containerd.sock.ttrpc", "default", 4096);
//! let task = TaskService::new(shim, events).await?;
//! let stop = Arc::clone(&task);
//! Server::new(task).serve(listener, async move { stop.shutdown_requested().await }).await?;
//! # Ok(()) }
//! ```

pub mod bootstrap;
pub mod client;
pub mod events;
pub mod frame;
pub mod metrics;
pub mod options;
pub mod rootfs;
pub mod server;
pub mod status;
pub mod task;

pub use client::Client;
pub use server::{Request, Server, Service};
pub use status::{Code, TtrpcError};

/// Messages of ttrpc and of containerd's task, events and metrics APIs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// ttrpc's request and response envelopes.
    pub mod ttrpc {
        include!(concat!(env!("OUT_DIR"), "/ttrpc.rs"));
    }
    /// containerd's packages.
    pub mod containerd {
        /// `containerd.types`: mounts, and `-info`'s runtime info.
        pub mod types {
            include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
        }
        /// `containerd.v1.types`: task status and process info.
        pub mod v1 {
            /// The types.
            pub mod types {
                include!(concat!(env!("OUT_DIR"), "/containerd.v1.types.rs"));
            }
        }
        /// `containerd.runtime.bootstrap.v1`: `start`'s bootstrap (2.3).
        pub mod runtime {
            /// The bootstrap.
            pub mod bootstrap {
                /// Version 1.
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/containerd.runtime.bootstrap.v1.rs"));
                }
            }
        }
        /// `containerd.task.v2`: the task service.
        pub mod task {
            /// The messages of the task API.
            pub mod v2 {
                include!(concat!(env!("OUT_DIR"), "/containerd.task.v2.rs"));
            }
        }
        /// `containerd.events`: task events.
        pub mod events {
            include!(concat!(env!("OUT_DIR"), "/containerd.events.rs"));
        }
        /// `containerd.services.events.ttrpc.v1`: where shims send events.
        pub mod services {
            /// Events.
            pub mod events {
                /// Over ttrpc.
                pub mod ttrpc {
                    /// Version 1.
                    pub mod v1 {
                        include!(concat!(env!("OUT_DIR"), "/containerd.services.events.ttrpc.v1.rs"));
                    }
                }
            }
        }
    }
    /// `io.containerd.cgroups.*`: metrics.
    pub mod io {
        /// containerd.
        pub mod containerd {
            /// cgroups.
            pub mod cgroups {
                /// cgroup v1 metrics.
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/io.containerd.cgroups.v1.rs"));
                }
                /// cgroup v2 metrics.
                pub mod v2 {
                    include!(concat!(env!("OUT_DIR"), "/io.containerd.cgroups.v2.rs"));
                }
            }
        }
    }
    /// `runtimeoptions.v1`: what CRI passes on a shim's stdin.
    pub mod runtimeoptions {
        /// Version 1.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/runtimeoptions.v1.rs"));
        }
    }
}
