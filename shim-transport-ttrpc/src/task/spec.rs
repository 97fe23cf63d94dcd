//! The OCI process JSON of containerd's `ExecProcessRequest` as the core's
//! exec request.

use shim_core::proto::v1 as core;

use crate::proto::ttrpc::Status;
use crate::status::{status, Code};

/// The core's exec request from the OCI process JSON containerd sends in
/// `ExecProcessRequest.spec` (stdio and terminal come from the request).
/// The process goes to the runtime as containerd sent it, as containerd's
/// runc shim passes it on (`user.umask`, `oomScoreAdj`, `consoleSize`,
/// scheduler and I/O priority, every capability set); `args` is read here
/// too, so a bad spec fails with the exec's own message.
pub fn exec_request(spec: &[u8]) -> Result<core::ExecRequest, Status> {
    let bad = |why: String| status(Code::InvalidArgument, format!("exec spec: {why}"));
    let v: serde_json::Value = serde_json::from_slice(spec).map_err(|e| bad(format!("not JSON: {e}")))?;
    let args: Vec<String> = v
        .get("args")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if args.is_empty() {
        return Err(bad("process.args is empty".into()));
    }
    Ok(core::ExecRequest { args, process: spec.to_vec(), ..Default::default() })
}
