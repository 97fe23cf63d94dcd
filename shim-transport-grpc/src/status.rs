//! Mapping between [`ShimError`] and gRPC statuses.

use shim_core::{Code, ShimError};
use tonic::Status;

/// The gRPC code of a shim error code.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::Internal => tonic::Code::Internal,
    }
}

/// A shim error as a status, with its message intact.
pub fn to_status(e: ShimError) -> Status {
    Status::new(grpc_code(e.code()), e.to_string())
}

/// A status as a shim error. Codes the shim never sends (a deadline, a
/// message too large, an unknown method) map to the nearest shim code and
/// keep the gRPC code's name in the message.
pub fn from_status(s: Status) -> ShimError {
    let code = match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Code::InvalidArgument,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::AlreadyExists => Code::AlreadyExists,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => Code::PermissionDenied,
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => Code::Unavailable,
        tonic::Code::ResourceExhausted => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let message = match s.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::NotFound
        | tonic::Code::AlreadyExists
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unimplemented
        | tonic::Code::Unavailable
        | tonic::Code::Internal => s.message().to_string(),
        other => format!("{other:?}: {}", s.message()),
    };
    ShimError::from_code(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Unavailable,
            Code::Internal,
        ] {
            let e = ShimError::from_code(code, "msg");
            let back = from_status(to_status(e));
            assert_eq!(back.code(), code);
            assert_eq!(back.to_string(), "msg");
        }
        let e = from_status(Status::deadline_exceeded("slow"));
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("slow"));
    }
}
