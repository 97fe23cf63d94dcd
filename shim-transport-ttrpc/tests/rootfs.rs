//! The rootfs of an image with many layers: overlay mount options longer
//! than the kernel's page are shortened (lower directories relative to
//! their common parent) and mounted, with real overlayfs.

use shim_transport_ttrpc::proto::containerd::types::Mount;
use shim_transport_ttrpc::rootfs;

#[test]
fn an_overlay_of_more_layers_than_a_page_holds_mounts() {
    if !shim_core::testing::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let snapshots = dir.path().join("io.containerd.snapshotter.v1.overlayfs").join("snapshots");
    // 70 layers of 100-byte paths: about 7 KiB of lowerdir, as deep images
    // under containerd's snapshot directory make.
    let mut lowers = Vec::new();
    for i in 0..70 {
        let layer = snapshots.join(format!("{i:03}-{}", "x".repeat(40))).join("fs");
        std::fs::create_dir_all(&layer).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(layer.join(format!("f{i}")), "").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(layer.join("shared"), i.to_string()).unwrap_or_else(|e| panic!("{e}"));
        lowers.push(layer.display().to_string());
    }
    let (upper, work) = (snapshots.join("upper"), snapshots.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    let lowerdir = format!("lowerdir={}", lowers.join(":"));
    assert!(lowerdir.len() > 4096, "the test needs options over a page: {} bytes", lowerdir.len());
    let mount = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            "index=off".into(),
            "workdir=".to_string() + &work.display().to_string(),
            "upperdir=".to_string() + &upper.display().to_string(),
            lowerdir,
        ],
    };
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let cwd = std::env::current_dir().ok();
    let mounted = rootfs::mount_all(&[mount], &bundle).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounted);
    assert_eq!(std::env::current_dir().ok(), cwd, "the process's working directory moved");
    let root = bundle.join("rootfs");
    let result = std::panic::catch_unwind(|| {
        for i in 0..70 {
            assert!(root.join(format!("f{i}")).exists(), "layer {i}'s file is not in the rootfs");
        }
        // The first lower directory is the top one.
        assert_eq!(std::fs::read_to_string(root.join("shared")).ok().as_deref(), Some("0"));
        std::fs::write(root.join("new"), "w").unwrap_or_else(|e| panic!("{e}"));
        assert!(upper.join("new").exists(), "a write did not go to the upper directory");
    });
    rootfs::unmount(&bundle);
    assert!(!root.join("f0").exists(), "still mounted after unmount");
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// A read-only bind mount (what a snapshot View of a one-layer image is:
/// the layer itself) stays read-only on the rootfs: a write fails and the
/// layer is untouched. A bind mount takes its flags only from a remount.
#[test]
fn a_read_only_bind_mount_stays_read_only() {
    if !shim_core::testing::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let layer = dir.path().join("layer");
    std::fs::create_dir_all(&layer).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(layer.join("in-image"), "x").unwrap_or_else(|e| panic!("{e}"));
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let mount = Mount {
        r#type: "bind".into(),
        source: layer.display().to_string(),
        target: String::new(),
        options: vec!["ro".into(), "rbind".into()],
    };
    assert!(rootfs::mount_all(&[mount], &bundle).unwrap_or_else(|e| panic!("{e}")));
    let root = bundle.join("rootfs");
    let seen = std::fs::read_to_string(root.join("in-image")).ok();
    let write = std::fs::write(root.join("written"), "w").map_err(|e| e.raw_os_error());
    rootfs::unmount(&bundle);
    assert_eq!(seen.as_deref(), Some("x"));
    assert_eq!(write, Err(Some(libc::EROFS)));
    assert!(!layer.join("written").exists(), "the image's layer was written to");
}
