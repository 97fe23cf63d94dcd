//! The error type of every [`Shim`](crate::Shim) operation.

/// The gRPC status code an error maps to.
///
/// Transports translate [`ShimError`] to their own status type through this
/// code and back, so a client sees the same code whatever the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request is malformed (gRPC `INVALID_ARGUMENT`).
    InvalidArgument,
    /// The process or container does not exist (gRPC `NOT_FOUND`).
    NotFound,
    /// The container already exists (gRPC `ALREADY_EXISTS`).
    AlreadyExists,
    /// The request is valid but not in the current state (gRPC `FAILED_PRECONDITION`).
    FailedPrecondition,
    /// The caller may not do this (gRPC `PERMISSION_DENIED`).
    PermissionDenied,
    /// The shim or its connection is gone, or a stream fell behind (gRPC `UNAVAILABLE`).
    Unavailable,
    /// The runtime or the host failed (gRPC `INTERNAL`).
    Internal,
    /// The shim's runtime cannot do this at all (gRPC `UNIMPLEMENTED`).
    Unimplemented,
}

impl Code {
    /// The canonical gRPC name of the code, such as `NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a shim operation failed. Each variant maps to one [`Code`].
///
/// Messages are lower-case and name the offending value, so they can be shown
/// to an operator as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShimError {
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field, such as `id` or `stdout`.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// No process with this pid is known to the shim.
    #[error("process {pid} not found")]
    ProcessNotFound {
        /// The pid asked for.
        pid: u32,
    },
    /// The shim already holds a container.
    #[error("container {id:?} already exists in this shim")]
    AlreadyExists {
        /// The id of the container the shim holds.
        id: String,
    },
    /// The runtime already has a container of this id that this shim does
    /// not hold: another shim's, or one left by a shim that died.
    #[error(
        "container {id:?} already exists in the runtime's state ({runtime}), not in this shim: another shim's, \
         or left by one that died; if it is stale, remove it with `{runtime} delete --force {id}`"
    )]
    ExistsInRuntime {
        /// The container id.
        id: String,
        /// The runtime binary and its root, as a command prefix.
        runtime: String,
    },
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The runtime does not support the operation (a custom
    /// [`Runtime`](crate::Runtime) that cannot pause, say).
    #[error("not supported: {0}")]
    Unimplemented(String),
    /// The shim or the connection to it is gone, or an event stream fell behind.
    #[error("{0}")]
    Unavailable(String),
    /// The OCI runtime failed; `message` is the runtime's own error text.
    #[error("runtime {binary} {command} failed: {message}")]
    Runtime {
        /// The runtime binary.
        binary: String,
        /// The runtime subcommand, such as `create`.
        command: String,
        /// What the runtime said (its JSON log's error lines) or how it ended.
        message: String,
    },
    /// An I/O operation of the shim failed.
    #[error("{context}: {message}")]
    Io {
        /// What the shim was doing, with the path involved.
        context: String,
        /// The OS error.
        message: String,
    },
    /// An unexpected internal failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// An error received from a remote shim through a transport.
    #[error("{message}")]
    Remote {
        /// The status code the remote shim sent.
        code: Code,
        /// The remote error's message, unchanged.
        message: String,
    },
}

impl ShimError {
    /// The gRPC status code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ShimError::InvalidArgument { .. } => Code::InvalidArgument,
            ShimError::ProcessNotFound { .. } => Code::NotFound,
            ShimError::AlreadyExists { .. } | ShimError::ExistsInRuntime { .. } => Code::AlreadyExists,
            ShimError::FailedPrecondition(_) => Code::FailedPrecondition,
            ShimError::PermissionDenied(_) => Code::PermissionDenied,
            ShimError::Unimplemented(_) => Code::Unimplemented,
            ShimError::Unavailable(_) => Code::Unavailable,
            ShimError::Runtime { .. } | ShimError::Io { .. } | ShimError::Internal(_) => Code::Internal,
            ShimError::Remote { code, .. } => *code,
        }
    }

    /// Builds an [`ShimError::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ShimError::InvalidArgument { field, reason: reason.into() }
    }

    /// Builds an [`ShimError::Io`] from an OS error and what was being done.
    pub fn io(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        ShimError::Io { context: context.into(), message: err.to_string() }
    }

    /// Rebuilds an error from a code and message received over a transport.
    ///
    /// The message is kept whole, so `to_string()` gives what the remote
    /// shim's error said.
    pub fn from_code(code: Code, message: impl Into<String>) -> Self {
        ShimError::Remote { code, message: message.into() }
    }
}

/// Shorthand for results of shim operations.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;
