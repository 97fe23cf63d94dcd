//! Status codes on the ttrpc wire (gRPC's numbering) and the errors of this
//! crate.

use crate::proto::ttrpc::Status;

/// The status codes this crate sends; the numbers are gRPC's, which
/// containerd maps back to its own errors (NotFound, AlreadyExists, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// Not classified (containerd: unknown).
    Unknown = 2,
    /// Malformed request.
    InvalidArgument = 3,
    /// The caller's `timeout_nano` passed.
    DeadlineExceeded = 4,
    /// No such container or process, or it already exited (Kill).
    NotFound = 5,
    /// A container or exec id that is taken.
    AlreadyExists = 6,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A message over the size limit.
    ResourceExhausted = 8,
    /// Valid, but not in the current state.
    FailedPrecondition = 9,
    /// Unknown method, or not supported.
    Unimplemented = 12,
    /// The shim or the host failed.
    Internal = 13,
    /// The shim (or containerd) cannot be reached.
    Unavailable = 14,
}

/// A status with a code and message.
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status { code: code as i32, message: message.into(), details: Vec::new() }
}

/// The ttrpc code of a core error.
pub fn code_of(e: &shim_core::ShimError) -> Code {
    match e.code() {
        shim_core::Code::InvalidArgument => Code::InvalidArgument,
        shim_core::Code::NotFound => Code::NotFound,
        shim_core::Code::AlreadyExists => Code::AlreadyExists,
        shim_core::Code::FailedPrecondition => Code::FailedPrecondition,
        shim_core::Code::PermissionDenied => Code::PermissionDenied,
        shim_core::Code::Unavailable => Code::Unavailable,
        shim_core::Code::Internal => Code::Internal,
        shim_core::Code::Unimplemented => Code::Unimplemented,
    }
}

/// The status of a core error.
pub fn from_shim(e: &shim_core::ShimError) -> Status {
    status(code_of(e), e.to_string())
}

/// Errors of the ttrpc client.
#[derive(Debug, thiserror::Error)]
pub enum TtrpcError {
    /// Connecting to or talking with the server failed.
    #[error("ttrpc connection to {address}: {source}")]
    Io {
        /// The socket path.
        address: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error status.
    #[error("ttrpc call {method} failed with code {code}: {message}")]
    Status {
        /// `service/method`.
        method: String,
        /// The gRPC code number.
        code: i32,
        /// The server's message.
        message: String,
    },
    /// A message could not be decoded.
    #[error("cannot decode the ttrpc {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },
    /// The connection closed before the response arrived.
    #[error("ttrpc connection to {0} closed before the response")]
    Closed(String),
    /// No response within the timeout.
    #[error("ttrpc call {method} got no response within {timeout:?}")]
    Timeout {
        /// `service/method`.
        method: String,
        /// The timeout.
        timeout: std::time::Duration,
    },
}

impl TtrpcError {
    /// The gRPC code of a status error, or `None` for a transport error.
    pub fn code(&self) -> Option<i32> {
        match self {
            TtrpcError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}
