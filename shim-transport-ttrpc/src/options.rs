//! containerd's runc options for a container, from the two forms they reach
//! a shim in, and kept in the bundle for a later `delete`.
//!
//! - `containerd.runc.v1.Options` (protobuf): what containerd's Go client
//!   sends for a runtime it knows to be runc.
//! - `runtimeoptions.v1.Options`: what CRI sends for every other runtime
//!   type, `io.containerd.rshim.v1` among them. Its `config_path` names a
//!   TOML file; newer containerd releases instead put the runtime's whole
//!   `options` table in `config_body` when no path is set. Either way the
//!   keys are those of containerd's runc options table: `BinaryName`,
//!   `Root`, `SystemdCgroup`, `NoPivotRoot`, `ShimCgroup`; others are ignored, as CRI's
//!   table may hold keys meant for someone else. `ctr run
//!   --runtime-config-path FILE` sends this form too.
//!
//! `Root` is a base directory, as for containerd's runc shim: the runtime
//! keeps the state of a container of namespace `ns` in `<Root>/<ns>`.

use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::Any;
use serde::{Deserialize, Serialize};

use crate::proto::runtimeoptions::v1::Options as ConfigOptions;

/// The file in the bundle that keeps a container's options for `delete`,
/// which runs after the shim that had them is gone (the name and JSON
/// fields containerd's runc shim uses for the same purpose).
pub const OPTIONS_FILE: &str = "options.json";

/// The runc options this shim applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuncOptions {
    /// The runtime binary (runc's path or name); empty: the shim's own.
    pub binary_name: String,
    /// Base of the runtime's state directory; empty: the shim's own.
    pub root: String,
    /// Run the runtime with `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// Run the runtime with `--no-pivot`.
    pub no_pivot_root: bool,
    /// The cgroup a new shim process joins at `start` (from each
    /// hierarchy's root); empty: the one it was started in.
    pub shim_cgroup: String,
}

/// The same options as written in a TOML table.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TomlOptions {
    binary_name: String,
    root: String,
    systemd_cgroup: bool,
    no_pivot_root: bool,
    shim_cgroup: String,
}

/// `containerd.runc.v1.Options`: the fields of it this shim reads.
#[derive(Clone, PartialEq, Message)]
struct ProtoOptions {
    #[prost(bool, tag = "1")]
    no_pivot_root: bool,
    #[prost(string, tag = "3")]
    shim_cgroup: String,
    #[prost(string, tag = "6")]
    binary_name: String,
    #[prost(string, tag = "7")]
    root: String,
    #[prost(bool, tag = "9")]
    systemd_cgroup: bool,
}

/// Why a container's options could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The `Any` did not decode as the type its URL names.
    #[error("options of type {type_url} do not decode: {reason}")]
    Decode {
        /// The type URL.
        type_url: String,
        /// The decoder's message.
        reason: String,
    },
    /// The runtime config file could not be read.
    #[error("cannot read the runtime config file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        reason: String,
    },
    /// The TOML of the runtime config is malformed or has a key of the
    /// wrong type.
    #[error("runtime config {source_name}: {reason}")]
    Toml {
        /// The file, or "body" for `config_body`.
        source_name: String,
        /// The parser's message, with the line.
        reason: String,
    },
    /// `Root` is not an absolute path.
    #[error("runc option Root {0:?} is not an absolute path")]
    RelativeRoot(String),
    /// The options file in the bundle could not be written or read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// The error.
        reason: String,
    },
}

impl RuncOptions {
    /// The options an `Any` carries: none for a type this shim does not
    /// know (it is another runtime's business), an error for one it knows
    /// that does not decode or names a config it cannot use.
    pub fn from_any(any: &Any) -> Result<Self, OptionsError> {
        let type_url = any.type_url.trim_start_matches("type.googleapis.com/");
        let decode_error =
            |e: prost::DecodeError| OptionsError::Decode { type_url: type_url.to_string(), reason: e.to_string() };
        let options = match type_url {
            "containerd.runc.v1.Options" => {
                let p = ProtoOptions::decode(any.value.as_slice()).map_err(decode_error)?;
                Self {
                    binary_name: p.binary_name,
                    root: p.root,
                    systemd_cgroup: p.systemd_cgroup,
                    no_pivot_root: p.no_pivot_root,
                    shim_cgroup: p.shim_cgroup,
                }
            }
            "runtimeoptions.v1.Options" => {
                let c = ConfigOptions::decode(any.value.as_slice()).map_err(decode_error)?;
                if !c.config_path.is_empty() {
                    let text = std::fs::read_to_string(&c.config_path)
                        .map_err(|e| OptionsError::Read { path: c.config_path.clone(), reason: e.to_string() })?;
                    Self::from_toml(&text, &c.config_path)?
                } else if !c.config_body.is_empty() {
                    let text = String::from_utf8_lossy(&c.config_body);
                    Self::from_toml(&text, "body")?
                } else {
                    Self::default()
                }
            }
            _ => Self::default(),
        };
        if !options.root.is_empty() && !Path::new(&options.root).is_absolute() {
            return Err(OptionsError::RelativeRoot(options.root));
        }
        Ok(options)
    }

    /// The options of a TOML table with containerd's runc option names.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, OptionsError> {
        let t: TomlOptions = toml::from_str(text)
            .map_err(|e| OptionsError::Toml { source_name: source_name.to_string(), reason: e.to_string() })?;
        Ok(Self {
            binary_name: t.binary_name,
            root: t.root,
            systemd_cgroup: t.systemd_cgroup,
            no_pivot_root: t.no_pivot_root,
            shim_cgroup: t.shim_cgroup,
        })
    }

    /// The runtime's state directory for a container of `namespace`:
    /// `<Root>/<namespace>`, or `None` when no `Root` was given.
    pub fn runtime_root(&self, namespace: Option<&str>) -> Option<PathBuf> {
        if self.root.is_empty() {
            return None;
        }
        let root = PathBuf::from(&self.root);
        Some(match namespace {
            Some(ns) => root.join(ns),
            None => root,
        })
    }

    /// Keeps the options in `bundle` for [`RuncOptions::load`]; nothing is
    /// written for the defaults. Written whole or not at all.
    pub fn save(&self, bundle: &Path) -> Result<(), OptionsError> {
        if *self == Self::default() {
            return Ok(());
        }
        let path = bundle.join(OPTIONS_FILE);
        let tmp = bundle.join(format!(".{OPTIONS_FILE}.tmp"));
        let file_error =
            |e: std::io::Error| OptionsError::File { path: path.display().to_string(), reason: e.to_string() };
        let json = serde_json::to_vec(self)
            .map_err(|e| OptionsError::File { path: path.display().to_string(), reason: e.to_string() })?;
        std::fs::write(&tmp, json).map_err(file_error)?;
        std::fs::rename(&tmp, &path).map_err(file_error)
    }

    /// The options [`RuncOptions::save`] kept in `bundle`; the defaults when
    /// there are none.
    pub fn load(bundle: &Path) -> Result<Self, OptionsError> {
        let path = bundle.join(OPTIONS_FILE);
        let file_error = |reason: String| OptionsError::File { path: path.display().to_string(), reason };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| file_error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(file_error(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any { type_url: type_url.into(), value }
    }

    #[test]
    fn runc_options_decode() {
        let p = ProtoOptions {
            no_pivot_root: true,
            binary_name: "crun".into(),
            root: "/r".into(),
            systemd_cgroup: true,
            shim_cgroup: "/shims".into(),
        };
        let o = RuncOptions::from_any(&any("containerd.runc.v1.Options", p.encode_to_vec())).unwrap_or_default();
        let want = RuncOptions {
            binary_name: "crun".into(),
            root: "/r".into(),
            systemd_cgroup: true,
            no_pivot_root: true,
            shim_cgroup: "/shims".into(),
        };
        assert_eq!(o, want);
    }

    #[test]
    fn config_body_and_unknown_keys() {
        let body =
            b"SystemdCgroup = true\nRoot = \"/run/x\"\nShimCgroup = \"/s\"\nSomethingElse = 3\n[nested]\nk = 1\n"
                .to_vec();
        let c = ConfigOptions { type_url: String::new(), config_path: String::new(), config_body: body };
        let o = RuncOptions::from_any(&any("runtimeoptions.v1.Options", c.encode_to_vec()));
        let o = o.unwrap_or_else(|e| panic!("{e}"));
        assert!(o.systemd_cgroup);
        assert_eq!(o.shim_cgroup, "/s");
        assert_eq!(o.runtime_root(Some("k8s.io")), Some(PathBuf::from("/run/x/k8s.io")));
        assert_eq!(o.binary_name, "");
    }

    #[test]
    fn bad_configs_are_errors_that_say_where() {
        let c = ConfigOptions { config_path: "/nonexistent/rshim.toml".into(), ..Default::default() };
        let e = RuncOptions::from_any(&any("runtimeoptions.v1.Options", c.encode_to_vec())).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/rshim.toml"), "{e}");
        let e = RuncOptions::from_toml("SystemdCgroup = \"yes\"\n", "f.toml").unwrap_err().to_string();
        assert!(e.contains("f.toml") && e.contains("SystemdCgroup"), "{e}");
        let c = ConfigOptions { config_body: b"Root = \"relative\"".to_vec(), ..Default::default() };
        let e = RuncOptions::from_any(&any("runtimeoptions.v1.Options", c.encode_to_vec()));
        assert!(matches!(e, Err(OptionsError::RelativeRoot(_))), "{e:?}");
        let e = RuncOptions::from_any(&any("containerd.runc.v1.Options", vec![0xff, 0xff])).unwrap_err();
        assert!(e.to_string().contains("containerd.runc.v1.Options"), "{e}");
    }

    #[test]
    fn other_types_are_not_ours() {
        assert_eq!(RuncOptions::from_any(&any("some.other.Options", vec![1, 2, 3])).ok(), Some(RuncOptions::default()));
    }

    #[test]
    fn saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RuncOptions::load(dir.path()).ok(), Some(RuncOptions::default()));
        RuncOptions::default().save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!dir.path().join(OPTIONS_FILE).exists(), "nothing is written for the defaults");
        let o = RuncOptions { root: "/r".into(), systemd_cgroup: true, ..Default::default() };
        o.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(RuncOptions::load(dir.path()).ok(), Some(o));
    }
}
