//! The bundle builder produces a bundle that runc really runs.
//!
//! This binary has no reaper, so it may wait for runc with `Command::output`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::process::Command;

use shim_core::testing::{require_runc, BundleBuilder};

#[test]
fn runc_runs_a_built_bundle() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bundle = BundleBuilder::new()
        .args(["sh", "-c", "echo hello from $(hostname); id -u"])
        .hostname("bundle-test")
        .build(&dir.path().join("bundle"))
        .unwrap_or_else(|e| panic!("build bundle: {e}"));
    let id = format!("bundle-test-{}", std::process::id());
    let out = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .output()
        .unwrap_or_else(|e| panic!("runc run: {e}"));
    let _ = Command::new("runc").args(["delete", "--force", &id]).output();
    assert!(out.status.success(), "runc run failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from bundle-test\n0\n");
}

#[test]
fn config_carries_every_setting() {
    let config = BundleBuilder::new()
        .args(["cat"])
        .env("A=1")
        .cwd("/tmp")
        .terminal(true)
        .user(1000, 1001)
        .memory_limit(32 << 20)
        .config();
    assert_eq!(config["process"]["args"], serde_json::json!(["cat"]));
    assert_eq!(config["process"]["terminal"], true);
    assert_eq!(config["process"]["cwd"], "/tmp");
    assert_eq!(config["process"]["user"]["uid"], 1000);
    assert_eq!(config["process"]["user"]["gid"], 1001);
    assert!(config["process"]["env"].as_array().is_some_and(|e| e.contains(&"A=1".into())));
    assert_eq!(config["linux"]["resources"]["memory"]["limit"], 32 << 20);
    let namespaces = config["linux"]["namespaces"].as_array().cloned().unwrap_or_default();
    assert!(namespaces.contains(&serde_json::json!({"type": "pid"})));
    assert!(!namespaces.contains(&serde_json::json!({"type": "network"})));
}
