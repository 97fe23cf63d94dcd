//! The container's root filesystem from `CreateTaskRequest.rootfs`: with an
//! image, containerd passes the snapshot's mounts (overlay, or a bind mount
//! for the native snapshotter) and the shim mounts them on `BUNDLE/rootfs`;
//! with `ctr run --rootfs DIR` there are none.

use std::path::{Path, PathBuf};

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

/// The longest directory all `paths` are in (component by component), if
/// it is more than `/`.
fn common_dir<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<PathBuf> {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        // The directory a path is in, not the path itself: each lower
        // directory must keep a name of its own under the common one.
        let parent = Path::new(p).parent()?;
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    common.filter(|c| c.is_absolute() && c.parent().is_some())
}

/// overlay's data with every `lowerdir` relative to the directory they
/// share, and that directory: the kernel reads at most a page of mount
/// data, and an image of many layers lists more (containerd's own shim
/// shortens it the same way). `None` when they share no directory but `/`.
fn compact_lowerdirs(data: &str) -> Option<(PathBuf, String)> {
    let lowers: Vec<&str> =
        data.split(',').filter_map(|o| o.strip_prefix("lowerdir=")).flat_map(|l| l.split(':')).collect();
    let common = common_dir(lowers.iter().copied())?;
    let relative = |p: &str| Path::new(p).strip_prefix(&common).ok().map(|r| r.display().to_string());
    let mut out = Vec::new();
    for o in data.split(',') {
        match o.strip_prefix("lowerdir=") {
            Some(list) => {
                let rel: Option<Vec<String>> = list.split(':').map(relative).collect();
                out.push(format!("lowerdir={}", rel?.join(":")));
            }
            None => out.push(o.to_string()),
        }
    }
    Some((common, out.join(",")))
}

/// The kernel's limit on mount data: one page, with its terminating NUL.
fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |n| n as usize)
}

/// Mounts an overlay whose data is over a page: with the lower directories
/// relative to `dir`, from a thread of its own whose working directory
/// (unshared from the process's, so no other thread sees it change) is
/// `dir`, where the kernel resolves them.
fn mount_overlay_from(dir: &Path, source: &str, target: &Path, flags: MsFlags, data: &str) -> nix::Result<()> {
    let (dir, source, target, data) = (dir.to_path_buf(), source.to_string(), target.to_path_buf(), data.to_string());
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        nix::unistd::chdir(&dir)?;
        mount(Some(source.as_str()), &target, Some("overlay"), flags, Some(data.as_str()))
    })
    .join()
    .unwrap_or(Err(nix::errno::Errno::EINVAL))
}

/// Mounts one mount on `target`.
fn mount_one(m: &Mount, target: &Path) -> Result<(), String> {
    let (flags, data) = options(&m.options);
    let page = page_size();
    if m.r#type == "overlay" && data.len() >= page {
        let Some((dir, short)) = compact_lowerdirs(&data) else {
            return Err(format!(
                "overlay options of {} bytes are over the kernel's page and its lower directories share no parent",
                data.len()
            ));
        };
        // Still over a page, the kernel would cut the list short and could
        // mount fewer layers without a word: refuse, as containerd does.
        if short.len() >= page {
            return Err(format!(
                "overlay options of {} bytes are over the kernel's page even with the lower directories relative to {}",
                short.len(),
                dir.display()
            ));
        }
        return mount_overlay_from(&dir, &m.source, target, flags, &short).map_err(|e| e.to_string());
    }
    let fstype = if m.r#type == "bind" { None } else { Some(m.r#type.as_str()) };
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, flags, data).map_err(|e| e.to_string())?;
    // A bind mount takes its flags only from a remount: without it a
    // read-only bind (a snapshot View: an image's layer itself) would be
    // writable, and the container would write into the image.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let remount = flags | MsFlags::MS_REMOUNT;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, remount, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(format!("cannot make the bind mount of {} read-only: {e}", m.source));
        }
    }
    Ok(())
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
        if let Err(e) = mount_one(m, &target) {
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
    fn lowerdirs_become_relative_to_their_common_directory() {
        let data = "index=off,lowerdir=/s/snapshots/12/fs:/s/snapshots/3/fs,upperdir=/s/snapshots/13/fs,workdir=/w";
        let (dir, short) = compact_lowerdirs(data).unwrap_or_default();
        assert_eq!(dir, PathBuf::from("/s/snapshots"));
        assert_eq!(short, "index=off,lowerdir=12/fs:3/fs,upperdir=/s/snapshots/13/fs,workdir=/w");
        // One layer keeps a name under the common directory.
        let (dir, short) = compact_lowerdirs("lowerdir=/a/b/c").unwrap_or_default();
        assert_eq!((dir, short.as_str()), (PathBuf::from("/a/b"), "lowerdir=c"));
        // Nothing shared but `/`: no shorter form.
        assert!(compact_lowerdirs("lowerdir=/a/x:/b/y").is_none());
        assert!(compact_lowerdirs("lowerdir=/x:/y").is_none());
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "index=off", "lowerdir=/a:/b"].iter().map(|s| s.to_string()).collect();
        let (flags, data) = options(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(data, "index=off,lowerdir=/a:/b");
    }
}
