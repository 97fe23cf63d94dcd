//! What a containerd shim binary reads and prints outside the task API:
//! `start`'s stdin and answer, and `-info`.
//!
//! - containerd 1.6 to 2.2 write the runtime options (a protobuf `Any`, or
//!   nothing) on `start`'s stdin and take the trimmed output as the shim's
//!   address, which they drive with task API v2.
//! - containerd 2.3 writes a protobuf `BootstrapParams` instead (its id, the
//!   socket directory, the runtime options as extensions) and takes a
//!   protobuf `BootstrapResult` as the answer: with `version = 3` and
//!   `protocol = "ttrpc"` it drives the shim with `containerd.task.v3.Task`,
//!   whose messages are v2's (see [`task::SERVICE_V3`](crate::task::SERVICE_V3)).
//!   The bytes carry no marker, so [`StartInput::parse`] tells the two apart
//!   by their fields: a bootstrap names the `-id` in field 1 and has fields
//!   beyond 1 and 2; an `Any` has only those two, a type URL in field 1.
//! - containerd 2.2 and later run `<shim> -info` (options on stdin, or
//!   nothing) and read a protobuf `RuntimeInfo`: name, version, the options,
//!   and the OCI runtime's features as `runc features` prints them (JSON).

use prost::Message;
use prost_types::Any;

use crate::proto::containerd::runtime::bootstrap::v1::{BootstrapParams, BootstrapResult};
use crate::proto::containerd::types::{RuntimeInfo, RuntimeVersion};

/// The type URL containerd decodes the OCI runtime's features by (the
/// value is the features JSON).
pub const FEATURES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// The task API version a shim answers containerd 2.3's bootstrap with.
pub const TASK_API_VERSION: i32 = 3;

/// What `start` found on its stdin.
#[derive(Debug, Clone, PartialEq)]
pub enum StartInput {
    /// containerd 2.3's bootstrap: answer with [`start_answer`]'s `BootstrapResult`.
    Bootstrap(BootstrapParams),
    /// containerd 1.6 to 2.2: the runtime options, if any; answer with the
    /// plain address.
    Options(Option<Any>),
}

impl StartInput {
    /// Tells `stdin` (all of it) of a `start` for container `id` apart.
    /// Bytes that are neither form are taken as no options: `start` needs
    /// none of them, and containerd judges the answer.
    pub fn parse(stdin: &[u8], id: &str) -> Self {
        if stdin.is_empty() {
            return Self::Options(None);
        }
        if let Ok(params) = BootstrapParams::decode(stdin) {
            let beyond_any = !params.containerd_version.is_empty()
                || !params.containerd_ttrpc_address.is_empty()
                || !params.containerd_grpc_address.is_empty()
                || !params.containerd_binary.is_empty()
                || !params.extensions.is_empty()
                || params.socket_dir.is_some()
                || params.log_level != 0;
            if params.instance_id == id && beyond_any {
                return Self::Bootstrap(params);
            }
        }
        Self::Options(Any::decode(stdin).ok())
    }

    /// The runtime options carried, in either form.
    pub fn options(&self) -> Option<&Any> {
        match self {
            Self::Bootstrap(p) => p.extensions.iter().find_map(|e| e.value.as_ref()),
            Self::Options(o) => o.as_ref(),
        }
    }

    /// The socket directory containerd asked for (2.3's shim manager
    /// setting), if any.
    pub fn socket_dir(&self) -> Option<&str> {
        match self {
            Self::Bootstrap(p) => p.socket_dir.as_deref().filter(|d| !d.is_empty()),
            Self::Options(_) => None,
        }
    }
}

/// What `start` prints for a shim serving ttrpc on `address` (a `unix://`
/// URI): a protobuf `BootstrapResult` naming task API v3 after a bootstrap,
/// else the address alone. Nothing else may be printed, nor a newline.
pub fn start_answer(input: &StartInput, address: &str) -> Vec<u8> {
    match input {
        StartInput::Bootstrap(_) => BootstrapResult {
            version: TASK_API_VERSION,
            address: address.to_string(),
            protocol: "ttrpc".into(),
            metadata: Default::default(),
        }
        .encode_to_vec(),
        StartInput::Options(_) => address.as_bytes().to_vec(),
    }
}

/// `-info`'s answer: the runtime `name` at `version` (and source
/// `revision`), the `options` it was asked about, and the OCI runtime's
/// `features` JSON where it gave one.
pub fn runtime_info(
    name: &str,
    version: &str,
    revision: &str,
    options: Option<Any>,
    features: Option<Vec<u8>>,
) -> Vec<u8> {
    RuntimeInfo {
        name: name.to_string(),
        version: Some(RuntimeVersion { version: version.to_string(), revision: revision.to_string() }),
        options,
        features: features.map(|json| Any { type_url: FEATURES_TYPE_URL.to_string(), value: json }),
        annotations: Default::default(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::containerd::runtime::bootstrap::v1::Extension;

    fn runc_options() -> Any {
        // containerd.runc.v1.Options { binary_name (6) = "runc" }.
        Any { type_url: "containerd.runc.v1.Options".into(), value: vec![0x32, 4, b'r', b'u', b'n', b'c'] }
    }

    #[test]
    fn the_forms_of_start_stdin() {
        assert_eq!(StartInput::parse(b"", "c1"), StartInput::Options(None));
        let any = runc_options();
        assert_eq!(StartInput::parse(&any.encode_to_vec(), "c1"), StartInput::Options(Some(any.clone())));
        // runtimeoptions.v1.Options, as CRI sends it to 1.6's shims.
        let cri = Any { type_url: "runtimeoptions.v1.Options".into(), value: vec![0x12, 2, b'/', b'x'] };
        assert_eq!(StartInput::parse(&cri.encode_to_vec(), "c1").options(), Some(&cri));

        let params = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            log_level: -4,
            containerd_version: "v2.3.4".into(),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            containerd_grpc_address: "/run/containerd/containerd.sock".into(),
            containerd_binary: "/usr/bin/containerd".into(),
            extensions: vec![Extension { value: Some(any.clone()) }],
            socket_dir: Some("/run/containerd/s".into()),
        };
        let input = StartInput::parse(&params.encode_to_vec(), "c1");
        assert_eq!(input, StartInput::Bootstrap(params.clone()));
        assert_eq!((input.options(), input.socket_dir()), (Some(&any), Some("/run/containerd/s")));
        // Another id in field 1: not this start's bootstrap.
        assert!(matches!(StartInput::parse(&params.encode_to_vec(), "c2"), StartInput::Options(_)));
        assert!(matches!(StartInput::parse(b"\xff\xff garbage", "c1"), StartInput::Options(None)));
    }

    #[test]
    fn answers_as_containerd_reads_them() {
        let address = "unix:///run/containerd/s/x";
        assert_eq!(start_answer(&StartInput::Options(None), address), address.as_bytes());
        let bootstrap = StartInput::Bootstrap(BootstrapParams { instance_id: "c1".into(), ..Default::default() });
        let answer = BootstrapResult::decode(start_answer(&bootstrap, address).as_slice()).unwrap_or_default();
        assert_eq!((answer.version, answer.address.as_str(), answer.protocol.as_str()), (3, address, "ttrpc"));

        let info = runtime_info("io.containerd.rshim.v1", "0.1.0", "abc", Some(runc_options()), Some(b"{}".to_vec()));
        let info = RuntimeInfo::decode(info.as_slice()).unwrap_or_default();
        assert_eq!(info.name, "io.containerd.rshim.v1");
        assert_eq!(info.version.map(|v| v.version), Some("0.1.0".into()));
        assert_eq!(info.options, Some(runc_options()));
        assert_eq!(info.features.map(|f| (f.type_url, f.value)), Some((FEATURES_TYPE_URL.into(), b"{}".to_vec())));
    }
}
