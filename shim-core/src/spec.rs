//! Request validation and the OCI `process` JSON of an exec.

use std::path::Path;

use serde_json::{json, Value};
use shim_proto::v1::ExecRequest;

use crate::error::{Result, ShimError};

/// Capability names the kernel knows (`capabilities(7)`).
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Resource limit names (`getrlimit(2)`).
pub const RLIMITS: &[&str] = &[
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
];

/// Most bytes accepted in one string or list of a request, to keep a hostile
/// request from making the shim write huge files.
pub const MAX_FIELD: usize = 64 * 1024;

/// Checks a container id: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`.
pub fn validate_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = match chars.next() {
        Some(first) => {
            first.is_ascii_alphanumeric()
                && id.len() <= 128
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        let shown: String = id.chars().take(64).collect();
        Err(ShimError::invalid("id", format!("{shown:?} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}$")))
    }
}

/// Checks a bundle path: absolute, a directory holding `config.json`.
pub fn validate_bundle(bundle: &str) -> Result<()> {
    let path = Path::new(bundle);
    if bundle.is_empty() || !path.is_absolute() {
        return Err(ShimError::invalid("bundle", format!("{bundle:?} is not an absolute path")));
    }
    if !path.is_dir() {
        return Err(ShimError::invalid("bundle", format!("{bundle:?} is not a directory")));
    }
    if !path.join("config.json").is_file() {
        return Err(ShimError::invalid("bundle", format!("{bundle:?} holds no config.json")));
    }
    Ok(())
}

/// What an exec inherits from the container's own process.
///
/// Fields the request leaves empty are taken from here; the privilege
/// settings (`noNewPrivileges`, capabilities) bound what a request may ask
/// for, so an exec never runs with more privilege than the init.
#[derive(Debug, Clone, Default)]
pub struct ProcessDefaults {
    /// `process.capabilities` of the bundle's config; `None` when the bundle
    /// has none (the runtime's defaults apply, to the init and to execs).
    pub capabilities: Option<Value>,
    /// `process.env`.
    pub env: Vec<String>,
    /// `process.cwd`.
    pub cwd: String,
    /// `process.user.uid` and `gid`.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// `process.user.additionalGids`.
    pub additional_gids: Vec<u32>,
    /// `process.noNewPrivileges`.
    pub no_new_privileges: bool,
    /// `process.apparmorProfile`.
    pub apparmor_profile: String,
    /// `process.selinuxLabel`.
    pub selinux_label: String,
    /// Whether the container's execs die with its init: it has a pid
    /// namespace of its own (a `pid` entry without a `path` in
    /// `linux.namespaces`). A config without `linux.namespaces` is taken as
    /// having one, the safe guess for the order of EXIT events.
    pub execs_die_with_init: bool,
    /// Whether the init's exit must kill what is left of the container: it
    /// has no pid namespace of its own (it joined the pod's, with a `path`,
    /// or the host's), so its other processes outlive the init unless
    /// killed. As containerd's runc shim decides it, a config without
    /// `linux.namespaces` counts as sharing.
    pub kill_all_on_exit: bool,
}

impl ProcessDefaults {
    /// Reads the defaults from a bundle's `config.json`.
    pub fn from_bundle(bundle: &str) -> Result<Self> {
        let path = Path::new(bundle).join("config.json");
        let text = std::fs::read(&path).map_err(|e| ShimError::io(format!("cannot read {}", path.display()), e))?;
        Self::from_config_json(&text).map_err(|e| ShimError::invalid("bundle", format!("{}: {e}", path.display())))
    }

    /// Reads the defaults from the bytes of a `config.json`; fields that are
    /// missing or of the wrong type take their defaults.
    pub fn from_config_json(text: &[u8]) -> std::result::Result<Self, String> {
        let config: Value = serde_json::from_slice(text).map_err(|e| format!("not valid json: {e}"))?;
        let process = config.get("process");
        let get = |k: &str| process.and_then(|p| p.get(k));
        let user = get("user");
        let uid = |k: &str| user.and_then(|u| u.get(k)).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok());
        let text = |k: &str| get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(Self {
            capabilities: get("capabilities").cloned(),
            env: get("env")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            cwd: get("cwd").and_then(Value::as_str).unwrap_or("/").to_string(),
            uid: uid("uid").unwrap_or(0),
            gid: uid("gid").unwrap_or(0),
            additional_gids: user
                .and_then(|u| u.get("additionalGids"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_u64().and_then(|g| u32::try_from(g).ok())).collect())
                .unwrap_or_default(),
            no_new_privileges: get("noNewPrivileges").and_then(Value::as_bool).unwrap_or(false),
            apparmor_profile: text("apparmorProfile"),
            selinux_label: text("selinuxLabel"),
            execs_die_with_init: own_pid_namespace(&config),
            kill_all_on_exit: !new_pid_namespace(&config),
        })
    }
}

/// The members of an OCI `LinuxResources` object, with whether each is an
/// object (`true`) or an array (`false`).
const RESOURCES: &[(&str, bool)] = &[
    ("devices", false),
    ("memory", true),
    ("cpu", true),
    ("pids", true),
    ("blockIO", true),
    ("hugepageLimits", false),
    ("network", true),
    ("rdma", true),
    ("unified", true),
];

/// Checks the JSON of an Update: an OCI `LinuxResources` object of at most
/// 64 KiB whose members are the spec's, each of the right JSON type (and
/// numbers where `memory`, `cpu` and `pids` hold numbers). Anything else is
/// refused before the runtime sees it.
pub fn validate_resources(json: &[u8]) -> Result<Value> {
    if json.len() > MAX_FIELD {
        return Err(ShimError::invalid("resources", format!("{} bytes is more than {MAX_FIELD}", json.len())));
    }
    let value: Value =
        serde_json::from_slice(json).map_err(|e| ShimError::invalid("resources", format!("not valid json: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ShimError::invalid("resources", "must be a JSON object (an OCI LinuxResources)"));
    };
    for (key, member) in object {
        let Some((_, is_object)) = RESOURCES.iter().find(|(name, _)| name == key) else {
            let shown: String = key.chars().take(64).collect();
            let known: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
            return Err(ShimError::invalid(
                "resources",
                format!("unknown member {shown:?} (an OCI LinuxResources has {})", known.join(", ")),
            ));
        };
        if *is_object && !member.is_object() {
            return Err(ShimError::invalid("resources", format!("{key} must be an object")));
        }
        if !*is_object && !member.is_array() {
            return Err(ShimError::invalid("resources", format!("{key} must be an array")));
        }
        if matches!(key.as_str(), "memory" | "cpu" | "pids") {
            for (field, v) in member.as_object().into_iter().flatten() {
                // cpu.cpus and cpu.mems are cpuset strings; the rest are numbers.
                let ok = if matches!(field.as_str(), "cpus" | "mems") {
                    v.is_string()
                } else {
                    v.is_number() || v.is_boolean()
                };
                if !ok {
                    let shown: String = field.chars().take(64).collect();
                    return Err(ShimError::invalid("resources", format!("{key}.{shown} has the wrong type")));
                }
            }
        }
    }
    Ok(value)
}

/// Whether the container has a pid namespace of its own, a config without
/// `linux.namespaces` counting as having one.
fn own_pid_namespace(config: &Value) -> bool {
    config.pointer("/linux/namespaces").is_none() || new_pid_namespace(config)
}

/// Whether `linux.namespaces` asks for a new pid namespace: a `pid` entry
/// without a `path`.
fn new_pid_namespace(config: &Value) -> bool {
    let namespaces = config.pointer("/linux/namespaces").and_then(Value::as_array);
    namespaces.into_iter().flatten().any(|ns| {
        ns.get("type").and_then(Value::as_str) == Some("pid")
            && ns.get("path").and_then(Value::as_str).is_none_or(str::is_empty)
    })
}

fn check_len(field: &'static str, items: &[String]) -> Result<()> {
    let total: usize = items.iter().map(String::len).sum();
    if total > MAX_FIELD {
        return Err(ShimError::invalid(field, format!("{total} bytes is more than the {MAX_FIELD} allowed")));
    }
    if items.iter().any(|s| s.contains('\0')) {
        return Err(ShimError::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

/// The capability sets an exec may hold: what it asks for, but never more
/// than the container's own process has in each set.
fn exec_capabilities(asked: &[String], bundle: Option<&Value>) -> Value {
    const SETS: [&str; 5] = ["bounding", "effective", "inheritable", "permitted", "ambient"];
    let mut out = serde_json::Map::new();
    for set in SETS {
        let allowed: Option<Vec<&str>> = bundle.map(|b| {
            b.get(set)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        });
        // Inheritable is never granted by a request (runc does not set it
        // from the seed's one list either); only the bundle's is kept.
        let granted: Vec<&str> = match (set, &allowed) {
            ("inheritable", Some(allowed)) => allowed.clone(),
            ("inheritable", None) => continue,
            (_, Some(allowed)) => asked.iter().map(String::as_str).filter(|c| allowed.contains(c)).collect(),
            (_, None) => asked.iter().map(String::as_str).collect(),
        };
        out.insert(set.into(), json!(granted));
    }
    Value::Object(out)
}

/// The largest `ExecRequest.process` taken.
const MAX_PROCESS_JSON: usize = 1 << 20;

/// `ExecRequest.process` as the runtime gets it: the caller's object, with
/// `terminal` from the request (the shim's stdio follows that flag). Checked
/// only for what would otherwise fail later with a vaguer message.
fn given_process(req: &ExecRequest) -> Result<Value> {
    if req.process.len() > MAX_PROCESS_JSON {
        return Err(ShimError::invalid(
            "process",
            format!("{} bytes is more than the {MAX_PROCESS_JSON} allowed", req.process.len()),
        ));
    }
    let mut process: Value =
        serde_json::from_slice(&req.process).map_err(|e| ShimError::invalid("process", format!("not JSON: {e}")))?;
    let Some(obj) = process.as_object_mut() else {
        return Err(ShimError::invalid("process", "not a JSON object"));
    };
    let args = obj.get("args").and_then(Value::as_array);
    if args.is_none_or(|a| a.is_empty()) {
        return Err(ShimError::invalid("process", "process.args is empty"));
    }
    if args.and_then(|a| a.first()).and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ShimError::invalid("process", "process.args[0] is not a non-empty string"));
    }
    if obj.get("cwd").and_then(Value::as_str).is_some_and(|c| !c.starts_with('/')) {
        return Err(ShimError::invalid("process", "process.cwd is not an absolute path"));
    }
    obj.insert("terminal".into(), Value::Bool(req.terminal));
    Ok(process)
}

/// Validates an exec request and builds its OCI `process` object.
///
/// Empty `env`, `cwd`, `apparmor_profile`, `selinux_label`, `capabilities` or
/// an absent `user` are taken from the container's own process. The exec
/// never gets more privilege than that process: `noNewPrivileges` is set if
/// either the bundle or the request sets it, and requested capabilities are
/// cut down to the bundle's in each set. A bundle without a `capabilities`
/// object leaves the exec without one too, so the runtime gives it the same
/// defaults it gave the init (not an empty set).
pub fn exec_process(req: &ExecRequest, defaults: &ProcessDefaults) -> Result<Value> {
    if !req.process.is_empty() {
        return given_process(req);
    }
    if req.args.is_empty() {
        return Err(ShimError::invalid("args", "must not be empty"));
    }
    if req.args.first().is_some_and(String::is_empty) {
        return Err(ShimError::invalid("args", "argv[0] must not be empty"));
    }
    check_len("args", &req.args)?;
    check_len("env", &req.env)?;
    check_len("capabilities", &req.capabilities)?;
    for single in
        [("cwd", &req.cwd), ("selinux_label", &req.selinux_label), ("apparmor_profile", &req.apparmor_profile)]
    {
        check_len(single.0, std::slice::from_ref(single.1))?;
    }
    if let Some(bad) = req.env.iter().find(|kv| !kv.contains('=') || kv.starts_with('=')) {
        let shown: String = bad.chars().take(64).collect();
        return Err(ShimError::invalid("env", format!("{shown:?} is not KEY=VALUE")));
    }
    let cwd = if req.cwd.is_empty() { defaults.cwd.clone() } else { req.cwd.clone() };
    if !cwd.starts_with('/') {
        let shown: String = cwd.chars().take(64).collect();
        return Err(ShimError::invalid("cwd", format!("{shown:?} is not an absolute path")));
    }
    if let Some(bad) = req.capabilities.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
        let shown: String = bad.chars().take(64).collect();
        return Err(ShimError::invalid("capabilities", format!("unknown capability {shown:?}")));
    }
    let mut rlimits = Vec::new();
    for r in &req.rlimits {
        if !RLIMITS.contains(&r.r#type.as_str()) {
            let shown: String = r.r#type.chars().take(64).collect();
            return Err(ShimError::invalid("rlimits", format!("unknown rlimit {shown:?}")));
        }
        if r.soft > r.hard {
            return Err(ShimError::invalid(
                "rlimits",
                format!("{} soft limit {} is above its hard limit {}", r.r#type, r.soft, r.hard),
            ));
        }
        rlimits.push(json!({ "type": r.r#type, "hard": r.hard, "soft": r.soft }));
    }
    let capabilities = if req.capabilities.is_empty() {
        defaults.capabilities.clone()
    } else {
        Some(exec_capabilities(&req.capabilities, defaults.capabilities.as_ref()))
    };
    let user = match &req.user {
        Some(u) => json!({ "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids }),
        None => json!({ "uid": defaults.uid, "gid": defaults.gid, "additionalGids": defaults.additional_gids }),
    };
    let env = if req.env.is_empty() { defaults.env.clone() } else { req.env.clone() };
    let mut process = json!({
        "terminal": req.terminal,
        "user": user,
        "args": req.args,
        "env": env,
        "cwd": cwd,
        "noNewPrivileges": req.no_new_privileges || defaults.no_new_privileges,
    });
    if let Some(obj) = process.as_object_mut() {
        if let Some(caps) = capabilities {
            obj.insert("capabilities".into(), caps);
        }
        if !rlimits.is_empty() {
            obj.insert("rlimits".into(), Value::Array(rlimits));
        }
        let or_default =
            |asked: &str, bundle: &str| if asked.is_empty() { bundle.to_string() } else { asked.to_string() };
        let apparmor = or_default(&req.apparmor_profile, &defaults.apparmor_profile);
        if !apparmor.is_empty() {
            obj.insert("apparmorProfile".into(), json!(apparmor));
        }
        let selinux = or_default(&req.selinux_label, &defaults.selinux_label);
        if !selinux.is_empty() {
            obj.insert("selinuxLabel".into(), json!(selinux));
        }
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shim_proto::v1::{Rlimit, User};

    fn req() -> ExecRequest {
        ExecRequest { args: vec!["true".into()], ..Default::default() }
    }

    #[test]
    fn ids() {
        for good in ["a", "A0", "web-1.prod_x", &"a".repeat(128)] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "../x", "a b", "é", &"a".repeat(129), "a\0"] {
            assert_eq!(validate_id(bad).map_err(|e| e.code()), Err(crate::Code::InvalidArgument), "{bad:?}");
        }
    }

    #[test]
    fn every_field_reaches_the_process() {
        let r = ExecRequest {
            terminal: true,
            selinux_label: "l".into(),
            user: Some(User { uid: 1, gid: 2, additional_gids: vec![3] }),
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: "/tmp".into(),
            capabilities: vec!["CAP_KILL".into()],
            rlimits: vec![Rlimit { r#type: "RLIMIT_NOFILE".into(), hard: 10, soft: 5 }],
            no_new_privileges: true,
            apparmor_profile: "p".into(),
            ..Default::default()
        };
        let p = exec_process(&r, &ProcessDefaults::default()).unwrap_or_default();
        assert_eq!(
            p,
            json!({
                "terminal": true,
                "user": { "uid": 1, "gid": 2, "additionalGids": [3] },
                "args": ["sh"], "env": ["A=1"], "cwd": "/tmp",
                "capabilities": { "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"] },
                "noNewPrivileges": true,
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 10, "soft": 5 }],
                "apparmorProfile": "p",
                "selinuxLabel": "l"
            })
        );
    }

    #[test]
    fn bad_exec_requests() {
        let d = ProcessDefaults { cwd: "/".into(), ..Default::default() };
        let code = |r: ExecRequest| exec_process(&r, &d).map_err(|e| e.code()).err();
        let inv = Some(crate::Code::InvalidArgument);
        assert_eq!(code(ExecRequest::default()), inv);
        assert_eq!(code(ExecRequest { cwd: "tmp".into(), ..req() }), inv);
        assert_eq!(code(ExecRequest { capabilities: vec!["CAP_FLY".into()], ..req() }), inv);
        assert_eq!(
            code(ExecRequest { rlimits: vec![Rlimit { r#type: "RLIMIT_X".into(), hard: 1, soft: 1 }], ..req() }),
            inv
        );
        assert_eq!(
            code(ExecRequest { rlimits: vec![Rlimit { r#type: "RLIMIT_CORE".into(), hard: 1, soft: 2 }], ..req() }),
            inv
        );
        assert_eq!(code(ExecRequest { env: vec!["NOEQUALS".into()], ..req() }), inv);
        assert_eq!(code(ExecRequest { args: vec!["x".repeat(MAX_FIELD + 1)], ..req() }), inv);
        assert_eq!(code(req()), None);
    }

    #[test]
    fn an_exec_never_gets_more_privilege_than_the_bundle() {
        let config = br#"{"process":{"cwd":"/","noNewPrivileges":true,
            "user":{"uid":5,"gid":6,"additionalGids":[7,8]},
            "apparmorProfile":"confined","selinuxLabel":"s0",
            "capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],
                            "inheritable":["CAP_KILL"],"permitted":["CAP_KILL","CAP_CHOWN"]}}}"#;
        let d = ProcessDefaults::from_config_json(config).unwrap_or_default();
        // A seed client leaves every privilege field empty or false.
        let p = exec_process(&req(), &d).unwrap_or_default();
        assert_eq!(p["noNewPrivileges"], json!(true));
        assert_eq!(p["user"], json!({ "uid": 5, "gid": 6, "additionalGids": [7, 8] }));
        assert_eq!(p["apparmorProfile"], json!("confined"));
        assert_eq!(p["selinuxLabel"], json!("s0"));
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_KILL", "CAP_CHOWN"]));
        // Asking for more than the bundle has gets the intersection only.
        let asked =
            ExecRequest { capabilities: vec!["CAP_SYS_ADMIN".into(), "CAP_CHOWN".into(), "CAP_KILL".into()], ..req() };
        let p = exec_process(&asked, &d).unwrap_or_default();
        assert_eq!(
            p["capabilities"],
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_KILL"], "ambient": []
            })
        );
    }

    #[test]
    fn resources_are_checked_before_the_runtime_sees_them() {
        let ok = |j: &str| validate_resources(j.as_bytes()).map(|_| ()).map_err(|e| e.code());
        let inv = Err(crate::Code::InvalidArgument);
        assert_eq!(ok(r#"{"memory":{"limit":1048576,"swap":1048576},"pids":{"limit":10}}"#), Ok(()));
        assert_eq!(ok(r#"{"cpu":{"quota":50000,"period":100000,"cpus":"0-1"}}"#), Ok(()));
        assert_eq!(ok("{}"), Ok(()));
        assert_eq!(ok("[]"), inv);
        assert_eq!(ok("not json"), inv);
        assert_eq!(ok(r#"{"memroy":{"limit":1}}"#), inv);
        assert_eq!(ok(r#"{"memory":5}"#), inv);
        assert_eq!(ok(r#"{"devices":{}}"#), inv);
        assert_eq!(ok(r#"{"memory":{"limit":"lots"}}"#), inv);
        assert_eq!(ok(&format!(r#"{{"unified":{{"x":"{}"}}}}"#, "a".repeat(MAX_FIELD))), inv);
    }

    #[test]
    fn a_given_process_goes_to_the_runtime_as_it_is() {
        let given = json!({
            "args": ["sh"], "cwd": "/", "user": {"uid": 1, "gid": 2, "umask": 18},
            "oomScoreAdj": 5, "consoleSize": {"height": 10, "width": 20},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": []},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}, "terminal": false
        });
        let r = ExecRequest { terminal: true, process: given.to_string().into_bytes(), ..Default::default() };
        let p = exec_process(&r, &ProcessDefaults::default()).unwrap_or_default();
        let mut expected = given.clone();
        expected["terminal"] = json!(true);
        assert_eq!(p, expected);
        let bad = |v: &str| {
            let r = ExecRequest { process: v.as_bytes().to_vec(), ..Default::default() };
            exec_process(&r, &ProcessDefaults::default()).map_err(|e| e.code())
        };
        for v in ["[]", "nope", r#"{"args":[]}"#, r#"{"args":[""]}"#, r#"{"args":["sh"],"cwd":"x"}"#] {
            assert_eq!(bad(v), Err(crate::Code::InvalidArgument), "{v}");
        }
    }

    #[test]
    fn whether_execs_die_with_the_init() {
        let die = |config: &str| ProcessDefaults::from_config_json(config.as_bytes()).map(|d| d.execs_die_with_init);
        assert_eq!(die(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#), Ok(true));
        assert_eq!(die(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#), Ok(false));
        assert_eq!(die(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#), Ok(false));
        assert_eq!(die(r#"{"process":{}}"#), Ok(true));
    }

    #[test]
    fn whether_the_init_exit_kills_the_rest() {
        let kill = |config: &str| ProcessDefaults::from_config_json(config.as_bytes()).map(|d| d.kill_all_on_exit);
        assert_eq!(kill(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#), Ok(false));
        assert_eq!(kill(r#"{"linux":{"namespaces":[{"type":"pid","path":""}]}}"#), Ok(false));
        // hostPID, and a pod's shared namespace joined by path.
        assert_eq!(kill(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#), Ok(true));
        assert_eq!(kill(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#), Ok(true));
        assert_eq!(kill(r#"{"process":{}}"#), Ok(true));
    }

    #[test]
    fn a_bundle_without_capabilities_gives_the_exec_none_either() {
        let d = ProcessDefaults::from_config_json(br#"{"process":{"cwd":"/"}}"#).unwrap_or_default();
        let p = exec_process(&req(), &d).unwrap_or_default();
        assert_eq!(p.get("capabilities"), None, "{p}");
        assert_eq!(p["noNewPrivileges"], json!(false));
        let p = exec_process(&ExecRequest { no_new_privileges: true, ..req() }, &d).unwrap_or_default();
        assert_eq!(p["noNewPrivileges"], json!(true));
    }
}
