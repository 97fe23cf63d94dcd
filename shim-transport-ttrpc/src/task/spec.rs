//! The OCI process JSON of containerd's `ExecProcessRequest` as the core's
//! exec request.

use shim_core::proto::v1 as core;

use crate::proto::ttrpc::Status;
use crate::status::{status, Code};

/// The core's exec request from the OCI process JSON containerd sends in
/// `ExecProcessRequest.spec` (stdio and terminal come from the request).
/// The core then keeps the exec within the container's own privileges.
pub fn exec_request(spec: &[u8]) -> Result<core::ExecRequest, Status> {
    let bad = |why: String| status(Code::InvalidArgument, format!("exec spec: {why}"));
    let v: serde_json::Value = serde_json::from_slice(spec).map_err(|e| bad(format!("not JSON: {e}")))?;
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let args = strings("args");
    if args.is_empty() {
        return Err(bad("process.args is empty".into()));
    }
    let user = v.get("user").map(|u| core::User {
        uid: u.get("uid").and_then(|x| x.as_u64()).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
        gid: u.get("gid").and_then(|x| x.as_u64()).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
        additional_gids: u
            .get("additionalGids")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok())).collect())
            .unwrap_or_default(),
    });
    let capabilities = v
        .pointer("/capabilities/bounding")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let rlimits = v
        .get("rlimits")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .map(|r| core::Rlimit {
                    r#type: r.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
                    hard: r.get("hard").and_then(|x| x.as_u64()).unwrap_or(0),
                    soft: r.get("soft").and_then(|x| x.as_u64()).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let text = |key: &str| v.get(key).and_then(|s| s.as_str()).unwrap_or_default().to_string();
    Ok(core::ExecRequest {
        args,
        env: strings("env"),
        cwd: text("cwd"),
        user,
        capabilities,
        rlimits,
        no_new_privileges: v.get("noNewPrivileges").and_then(|b| b.as_bool()).unwrap_or(false),
        apparmor_profile: text("apparmorProfile"),
        selinux_label: text("selinuxLabel"),
        ..Default::default()
    })
}
