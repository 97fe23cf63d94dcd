//! Where a process's cgroups are, and moving a process into a cgroup.
//!
//! The shim learns a container's cgroups from its init's `/proc/PID/cgroup`
//! once, at create (stats and the OOM watch then read the files there), and
//! moves a shim into the cgroup containerd's `ShimCgroup` option names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, ShimError};

/// Where a process's cgroups are: the controllers' directories on v1, the
/// one unified directory on v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPaths {
    /// cgroup v1: the directory of each controller.
    V1(HashMap<String, PathBuf>),
    /// cgroup v2: the process's directory in the unified hierarchy.
    V2(PathBuf),
}

impl CgroupPaths {
    /// From the text of `/proc/PID/cgroup`, with the hierarchy mounted at
    /// `root` (`/sys/fs/cgroup`). v1 when any named controller is listed.
    pub fn parse(proc_cgroup: &str, root: &Path) -> Option<Self> {
        let mut v1 = HashMap::new();
        let mut unified = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let rel = path.trim_start_matches('/');
            if controllers.is_empty() {
                unified = Some(root.join(rel));
                continue;
            }
            for controller in controllers.split(',') {
                // The mount point is named after the controllers it holds,
                // e.g. cpu,cpuacct; the single-name links point to it.
                let controller = controller.trim_start_matches("name=");
                v1.insert(controller.to_string(), root.join(controller).join(rel));
            }
        }
        if !v1.is_empty() {
            Some(Self::V1(v1))
        } else {
            unified.map(Self::V2)
        }
    }

    /// The directory of the memory controller (v1) or the unified one.
    pub fn memory_dir(&self) -> Option<&Path> {
        match self {
            CgroupPaths::V1(dirs) => dirs.get("memory").map(PathBuf::as_path),
            CgroupPaths::V2(dir) => Some(dir),
        }
    }

    /// The paths of process `pid`.
    pub fn of_pid(pid: u32) -> Result<Self> {
        let path = format!("/proc/{pid}/cgroup");
        let text = std::fs::read_to_string(&path).map_err(|e| ShimError::io(format!("cannot read {path}"), e))?;
        Self::parse(&text, Path::new("/sys/fs/cgroup"))
            .ok_or_else(|| ShimError::Internal(format!("{path} names no cgroup: {:?}", text.trim())))
    }

    /// The cgroup `path` (from each hierarchy's root, as containerd's
    /// `ShimCgroup` option names it) in the hierarchies that `proc_cgroup`
    /// (the text of a `/proc/PID/cgroup`, usually this process's) lists,
    /// mounted at `root`.
    pub fn named(path: &str, proc_cgroup: &str, root: &Path) -> Option<Self> {
        let path = format!("/{}", path.trim_start_matches('/'));
        let mut relocated = String::new();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (id, controllers) = (parts.next()?, parts.next()?);
            relocated.push_str(&format!("{id}:{controllers}:{path}\n"));
        }
        Self::parse(&relocated, root)
    }

    /// [`named`](Self::named) with this process's hierarchies, as mounted
    /// at `/sys/fs/cgroup`.
    pub fn named_here(path: &str) -> Result<Self> {
        let own = "/proc/self/cgroup";
        let text = std::fs::read_to_string(own).map_err(|e| ShimError::io(format!("cannot read {own}"), e))?;
        Self::named(path, &text, Path::new("/sys/fs/cgroup"))
            .ok_or_else(|| ShimError::Internal(format!("{own} names no cgroup: {:?}", text.trim())))
    }

    /// Moves process `pid` into these cgroups. On v1 a hierarchy where the
    /// directory does not exist is left out, as containerd's Go shim does
    /// for its `ShimCgroup`; it is an error when it exists in none.
    pub fn add_process(&self, pid: u32) -> Result<()> {
        let write = |dir: &Path| {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .map_err(|e| ShimError::io(format!("cannot move process {pid} into {}", dir.display()), e))
        };
        match self {
            CgroupPaths::V2(dir) => write(dir),
            CgroupPaths::V1(dirs) => {
                // cpu and cpuacct (and the like) are links to one mount:
                // write each real directory once.
                let mut real: Vec<PathBuf> = dirs.values().filter_map(|d| std::fs::canonicalize(d).ok()).collect();
                real.sort();
                real.dedup();
                if real.is_empty() {
                    let any = dirs.values().next().map(|d| d.display().to_string()).unwrap_or_default();
                    return Err(ShimError::InvalidArgument {
                        field: "cgroup",
                        reason: format!("no hierarchy has it (for one, {any} does not exist)"),
                    });
                }
                real.iter().try_for_each(|d| write(d))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_of_both_hierarchies() {
        let v1 = "12:pids:/runc/c1\n4:memory:/runc/c1\n3:cpu,cpuacct:/runc/c1\n1:name=systemd:/x\n0::/\n";
        let Some(CgroupPaths::V1(dirs)) = CgroupPaths::parse(v1, Path::new("/sys/fs/cgroup")) else { panic!("not v1") };
        assert_eq!(dirs.get("memory"), Some(&PathBuf::from("/sys/fs/cgroup/memory/runc/c1")));
        assert_eq!(dirs.get("cpuacct"), Some(&PathBuf::from("/sys/fs/cgroup/cpuacct/runc/c1")));
        // A hybrid host (v1 controllers and the unified mount) is v1.
        let paths = CgroupPaths::parse(v1, Path::new("/sys/fs/cgroup"));
        assert_eq!(paths.as_ref().and_then(CgroupPaths::memory_dir), Some(Path::new("/sys/fs/cgroup/memory/runc/c1")));
        let v2 = CgroupPaths::parse("0::/system.slice/runc-c1.scope\n", Path::new("/sys/fs/cgroup"));
        assert_eq!(v2, Some(CgroupPaths::V2(PathBuf::from("/sys/fs/cgroup/system.slice/runc-c1.scope"))));
        assert_eq!(CgroupPaths::parse("garbage", Path::new("/")), None);
    }

    #[test]
    fn a_named_cgroup_in_this_process_hierarchies() {
        let v1 = "12:pids:/user.slice\n3:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/x\n0::/\n";
        let Some(CgroupPaths::V1(dirs)) = CgroupPaths::named("shims", v1, Path::new("/sys/fs/cgroup")) else {
            panic!("not v1")
        };
        assert_eq!(dirs.get("pids"), Some(&PathBuf::from("/sys/fs/cgroup/pids/shims")));
        assert_eq!(dirs.get("cpu"), Some(&PathBuf::from("/sys/fs/cgroup/cpu/shims")));
        assert_eq!(dirs.get("systemd"), Some(&PathBuf::from("/sys/fs/cgroup/systemd/shims")));
        let v2 = CgroupPaths::named("/k8s.io/shims", "0::/init.scope\n", Path::new("/sys/fs/cgroup"));
        assert_eq!(v2, Some(CgroupPaths::V2(PathBuf::from("/sys/fs/cgroup/k8s.io/shims"))));
    }

    #[test]
    fn a_process_moves_only_into_what_exists() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let v2 = CgroupPaths::named("/shims", "0::/\n", root.path()).unwrap_or_else(|| panic!("no paths"));
        // Not there: the error names the directory.
        let e = v2.add_process(42).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("cannot move process 42 into") && e.contains("shims"), "{e}");
        std::fs::create_dir(root.path().join("shims")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        v2.add_process(42).unwrap_or_else(|e| panic!("{e}"));
        let written = std::fs::read_to_string(root.path().join("shims/cgroup.procs")).unwrap_or_default();
        assert_eq!(written, "42");

        let v1 = CgroupPaths::named("/shims", "2:memory:/\n1:pids:/\n", root.path()).unwrap_or_else(|| panic!("none"));
        let e = v1.add_process(7).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("no hierarchy has it"), "{e}");
        std::fs::create_dir_all(root.path().join("pids/shims")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        v1.add_process(7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(root.path().join("pids/shims/cgroup.procs")).unwrap_or_default(), "7");
        assert!(!root.path().join("memory/shims").exists());
    }
}
