//! Stamps the binaries' `--version` with the git revision they were built
//! from, when the source is a git checkout and git is installed, and links
//! the code a container's lifecycle runs next to each other (`code-order.txt`).

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
    let revision = stdout_of("git", &["rev-parse", "--short=12", "HEAD"]).filter(|r| !r.is_empty());
    println!("cargo:rustc-env=SHIM_REVISION={}", revision.as_deref().unwrap_or_default());
    let stamped = match revision {
        Some(rev) => format!("{version} (git {rev})"),
        None => version,
    };
    println!("cargo:rustc-env=SHIM_VERSION={stamped}");
    order_code();
}

/// What `program args` printed, trimmed, if it ran and succeeded.
fn stdout_of(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// With `SHIM_CODE_ORDER=1` (set by `make daemon`, the operator build),
/// passes `code-order.txt` (written by `benches/scripts/code-order.sh`) to
/// the linker, so the functions a shim runs from its start to a container's
/// delete sit together in its text instead of spread over all of it.
///
/// Why: the kernel maps a binary's code 64 KiB around each page a process
/// first touches, so code spread over the text leaves nearly all of it
/// resident (2.4 of 2.5 MiB in the daemon just after Start, of which the
/// lifecycle runs about 1 MiB). The numbers are in docs/PERFORMANCE.md.
///
/// Opt-in: the names in the file are those of that build (symbol hashes
/// depend on the toolchain, the profile, the flags, the dependencies and
/// the code the daemons run), and
/// it needs the toolchain's own `rust-lld` behind a gcc or clang driver
/// (passed explicitly, so an older default linker does not matter). Names
/// the file does not know are ignored, which costs memory, never
/// correctness; a file written by another toolchain gets a warning.
fn order_code() {
    println!("cargo:rerun-if-changed=code-order.txt");
    println!("cargo:rerun-if-env-changed=SHIM_CODE_ORDER");
    println!("cargo:rerun-if-env-changed=SHIM_LINK_MAP");
    // `code-order.sh` reads where each function landed from linker maps,
    // written only when asked: they do not change what is linked.
    if let Ok(dir) = std::env::var("SHIM_LINK_MAP") {
        for bin in ["shim", "containerd-shim-rshim-v1"] {
            println!("cargo:rustc-link-arg-bin={bin}=-Xlinker");
            println!("cargo:rustc-link-arg-bin={bin}=-Map={dir}/{bin}.map");
        }
    }
    if std::env::var("SHIM_CODE_ORDER").map_or(true, |v| v != "1") {
        return;
    }
    let order = match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(dir) => Path::new(&dir).join("code-order.txt"),
        Err(_) => return,
    };
    let (Ok(host), Ok(target)) = (std::env::var("HOST"), std::env::var("TARGET")) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(&order) else {
        println!("cargo:warning=SHIM_CODE_ORDER=1 but {} cannot be read: code not ordered", order.display());
        return;
    };
    // A musl build on a glibc host of the same architecture is native too
    // (`make daemon` is one): the host's linker links it.
    let arch = |triple: &str| triple.split('-').next().map(str::to_string);
    if arch(&host) != arch(&target) || !target.contains("-linux-") || !host.contains("-linux-") {
        println!("cargo:warning=SHIM_CODE_ORDER=1 orders code only in native Linux builds");
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Some(sysroot) = stdout_of(&rustc, &["--print", "sysroot"]) else {
        return;
    };
    // The file's first line names the compiler it was written with: the
    // names of another one mostly do not match.
    let written_with = text.lines().next().and_then(|l| l.strip_prefix("# ")).unwrap_or_default();
    if let Some(version) = stdout_of(&rustc, &["-V"]) {
        if version != written_with {
            println!(
                "cargo:warning=code-order.txt was written with {written_with:?}, this is {version:?}: \
                 run benches/scripts/code-order.sh again (the build works, its code is less well ordered)"
            );
        }
    }
    let bin = Path::new(&sysroot).join("lib/rustlib").join(&host).join("bin");
    let gcc_ld = bin.join("gcc-ld");
    if !gcc_ld.join("ld.lld").exists() || !bin.join("rust-lld").exists() {
        println!("cargo:warning=SHIM_CODE_ORDER=1 needs the toolchain's rust-lld: code not ordered");
        return;
    }
    for arg in [
        format!("-B{}", gcc_ld.display()),
        "-fuse-ld=lld".to_string(),
        "-Xlinker".to_string(),
        format!("--symbol-ordering-file={}", order.display()),
        "-Xlinker".to_string(),
        "--no-warn-symbol-ordering".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
