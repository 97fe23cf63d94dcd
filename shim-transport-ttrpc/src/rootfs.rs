//! The container's root filesystem from `CreateTaskRequest.rootfs`: with an
//! image, containerd passes the snapshot's mounts (overlay, or a bind mount
//! for the native snapshotter) and the shim mounts them on `BUNDLE/rootfs`;
//! with `ctr run --rootfs DIR` there are none.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::proto::containerd::types::Mount;

/// Splits mount(8)-style options into flags and the data string.
fn options(opts: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "defaults" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Mounts `mounts` in order on `bundle/rootfs`; `Ok(true)` when something
/// was mounted. On failure, what was mounted is undone.
pub fn mount_all(mounts: &[Mount], bundle: &Path) -> std::io::Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)?;
    for (i, m) in mounts.iter().enumerate() {
        let (flags, data) = options(&m.options);
        let fstype = if m.r#type == "bind" { None } else { Some(m.r#type.as_str()) };
        let data = (!data.is_empty()).then_some(data.as_str());
        if let Err(e) = mount(Some(m.source.as_str()), &target, fstype, flags, data) {
            for _ in 0..i {
                let _ = umount2(&target, MntFlags::MNT_DETACH);
            }
            return Err(std::io::Error::other(format!(
                "cannot mount {} ({}) on {}: {e}",
                m.source,
                m.r#type,
                target.display()
            )));
        }
    }
    Ok(true)
}

/// Unmounts everything on `bundle/rootfs` (lazily if busy); quiet when
/// nothing is mounted there.
pub fn unmount(bundle: &Path) {
    let target = bundle.join("rootfs");
    // Stacked mounts come off one at a time; bounded in case of a loop.
    for _ in 0..16 {
        match umount2(&target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EBUSY) => {
                let _ = umount2(&target, MntFlags::MNT_DETACH);
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "index=off", "lowerdir=/a:/b"].iter().map(|s| s.to_string()).collect();
        let (flags, data) = options(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(data, "index=off,lowerdir=/a:/b");
    }
}
