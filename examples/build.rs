//! Stamps the binaries' `--version` with the git revision they were built
//! from, when the source is a git checkout and git is installed.

use std::path::Path;
use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let git = Path::new("..").join(".git");
    // Rebuild the stamp when the checked-out commit changes.
    for watched in [git.join("HEAD"), git.join("packed-refs")] {
        if watched.exists() {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            let path = git.join(reference);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty());
    let stamped = match revision {
        Some(rev) => format!("{version} (git {rev})"),
        None => version,
    };
    println!("cargo:rustc-env=SHIM_VERSION={stamped}");
}
