//! Example programs of the shim library: `shimctl`, a client CLI whose
//! `demo` subcommand runs a real container through the shim.
//!
//! The library part holds the pieces the binaries share.

pub mod demo;
