//! The example programs of the shim library.
//!
//! - `shim`: a standalone shim daemon serving the runc shim over gRPC on a
//!   unix socket ([`daemon`]).
//! - `shimctl`: a client CLI for it, with `run` (a container wired to the
//!   terminal, like `runc run`) and `demo` ([`ctl`], [`demo`]).

pub mod ctl;
pub mod daemon;
pub mod demo;
pub mod logs;
pub mod many;
pub mod memory;

// The embedding guide's code blocks are compiled (and the ones that need no
// root or runc run) as this crate's doctests, so the guide cannot drift
// from the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedding.md")]
pub struct EmbeddingGuide;
