//! Resource usage of a container, read from its cgroup (v1 or v2).
//!
//! The shim reads the cgroup files itself rather than running `runc events
//! --stats`: a Stats call then costs a few file reads, not a process. The
//! parsers are pure functions over the files' text, so both hierarchies are
//! tested from fixtures (this project's hosts are cgroup v1; v2 is tested
//! only that way).

use shim_proto::v1::{BlkioEntry, BlkioStats, CpuStats, MemoryStats, PidsStats, StatsResponse};

pub use crate::cgroup::CgroupPaths;
use crate::error::{Result, ShimError};

/// `USER_HZ`: the unit of `cpuacct.stat` on every Linux architecture.
const TICKS_PER_SECOND: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / TICKS_PER_SECOND;
/// What cgroup v1 reports as "no limit" (`PAGE_COUNTER_MAX` pages, rounded
/// to a page): anything this large is reported as 0, "unlimited".
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// A single number in a file, or 0 (missing file, `max`).
fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// A limit as the kernel wrote it: v2's `max` is the largest number, as
/// containerd reports it; a missing file reads 0.
fn raw_limit(text: &str) -> u64 {
    match text.trim() {
        "max" => u64::MAX,
        t => t.parse().unwrap_or(0),
    }
}

/// The numbers of a one-line list (`cpuacct.usage_percpu`).
fn numbers(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn keyed(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn limit_v1(text: &str) -> u64 {
    match number(text) {
        n if n >= V1_UNLIMITED => 0,
        n => n,
    }
}

/// The files a parser reads, by name relative to the controller's directory.
pub trait CgroupFiles {
    /// The text of `file` of `controller` (v1) or of the unified directory
    /// (v2, `controller` ignored); empty when it cannot be read.
    fn read(&self, controller: &str, file: &str) -> String;
}

impl CgroupFiles for CgroupPaths {
    fn read(&self, controller: &str, file: &str) -> String {
        let dir = match self {
            CgroupPaths::V1(dirs) => dirs.get(controller),
            CgroupPaths::V2(dir) => Some(dir),
        };
        dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok()).unwrap_or_default()
    }
}

/// The stats of a cgroup v1 container.
pub fn v1_stats(files: &impl CgroupFiles) -> StatsResponse {
    let mem = |f: &str| files.read("memory", f);
    let stat_text = mem("memory.stat");
    let stat = keyed(&stat_text);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let oom = keyed(&mem("memory.oom_control"));
    let limit = mem("memory.limit_in_bytes");
    let memory = MemoryStats {
        usage: number(&mem("memory.usage_in_bytes")),
        limit: limit_v1(&limit),
        max_usage: number(&mem("memory.max_usage_in_bytes")),
        cache: get("total_cache"),
        rss: get("total_rss"),
        anon: get("total_rss"),
        file: get("total_cache"),
        oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
        failcnt: number(&mem("memory.failcnt")),
        limit_raw: number(&limit),
        events: Default::default(),
        swap_usage: number(&mem("memory.memsw.usage_in_bytes")),
        swap_limit_raw: number(&mem("memory.memsw.limit_in_bytes")),
        stat: stat.into_iter().collect(),
    };
    let acct = keyed(&files.read("cpuacct", "cpuacct.stat"));
    let throttling = keyed(&files.read("cpu", "cpu.stat"));
    let cpu = CpuStats {
        usage_total_ns: number(&files.read("cpuacct", "cpuacct.usage")),
        usage_user_ns: acct.get("user").copied().unwrap_or(0).saturating_mul(NANOS_PER_TICK),
        usage_system_ns: acct.get("system").copied().unwrap_or(0).saturating_mul(NANOS_PER_TICK),
        periods: throttling.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: throttling.get("nr_throttled").copied().unwrap_or(0),
        throttled_time_ns: throttling.get("throttled_time").copied().unwrap_or(0),
        per_cpu_ns: numbers(&files.read("cpuacct", "cpuacct.usage_percpu")),
    };
    let pids = PidsStats {
        current: number(&files.read("pids", "pids.current")),
        limit: number(&files.read("pids", "pids.max")),
    };
    let blkio = BlkioStats { entries: v1_blkio(&files.read("blkio", "blkio.throttle.io_service_bytes")) };
    StatsResponse { cgroup_version: 1, memory: Some(memory), cpu: Some(cpu), pids: Some(pids), blkio: Some(blkio) }
}

/// `MAJ:MIN Op value` lines of blkio.throttle.io_service_bytes (the
/// `Total` line of the file has no device and is skipped).
fn v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (device, op, value) = (it.next()?, it.next()?, it.next()?);
            let (major, minor) = device.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The stats of a cgroup v2 container.
pub fn v2_stats(files: &impl CgroupFiles) -> StatsResponse {
    let read = |f: &str| files.read("", f);
    let stat_text = read("memory.stat");
    let stat = keyed(&stat_text);
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let events = keyed(&read("memory.events"));
    let limit = read("memory.max");
    let memory = MemoryStats {
        usage: number(&read("memory.current")),
        // "max" reads as 0: unlimited.
        limit: number(&limit),
        // memory.peak exists from Linux 5.19 on; 0 before.
        max_usage: number(&read("memory.peak")),
        cache: get("file"),
        rss: get("anon"),
        anon: get("anon"),
        file: get("file"),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        failcnt: events.get("max").copied().unwrap_or(0),
        limit_raw: raw_limit(&limit),
        swap_usage: number(&read("memory.swap.current")),
        swap_limit_raw: raw_limit(&read("memory.swap.max")),
        events: events.into_iter().collect(),
        stat: stat.into_iter().collect(),
    };
    let cpu_stat = keyed(&read("cpu.stat"));
    let us = |k: &str| cpu_stat.get(k).copied().unwrap_or(0).saturating_mul(1000);
    let cpu = CpuStats {
        usage_total_ns: us("usage_usec"),
        usage_user_ns: us("user_usec"),
        usage_system_ns: us("system_usec"),
        periods: cpu_stat.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu_stat.get("nr_throttled").copied().unwrap_or(0),
        throttled_time_ns: us("throttled_usec"),
        per_cpu_ns: Vec::new(),
    };
    let pids = PidsStats { current: number(&read("pids.current")), limit: number(&read("pids.max")) };
    let blkio = BlkioStats { entries: v2_io(&read("io.stat")) };
    StatsResponse { cgroup_version: 2, memory: Some(memory), cpu: Some(cpu), pids: Some(pids), blkio: Some(blkio) }
}

/// `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..` lines of io.stat, as
/// entries named like v1's (`Read`, `Write` bytes; `rios`, `wios` as is).
fn v2_io(text: &str) -> Vec<BlkioEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        for pair in it {
            let Some((key, value)) = pair.split_once('=') else { continue };
            let op = match key {
                "rbytes" => "Read",
                "wbytes" => "Write",
                other => other,
            };
            if let Ok(value) = value.parse() {
                entries.push(BlkioEntry { major, minor, op: op.to_string(), value });
            }
        }
    }
    entries
}

/// The stats of the container whose cgroups are `paths`. A cgroup that is
/// gone (its directory removed) is an error, not a set of zeros.
pub fn of_cgroup(paths: &CgroupPaths) -> Result<StatsResponse> {
    let dir = paths.memory_dir().ok_or_else(|| ShimError::Internal("the container has no memory cgroup".into()))?;
    if !dir.exists() {
        return Err(ShimError::FailedPrecondition(format!(
            "the container's cgroup {} no longer exists",
            dir.display()
        )));
    }
    let stats = match paths {
        CgroupPaths::V1(_) => v1_stats(paths),
        CgroupPaths::V2(_) => v2_stats(paths),
    };
    // Removed while being read: what was read may be partly zeros.
    if !dir.exists() {
        return Err(ShimError::FailedPrecondition(format!(
            "the container's cgroup {} no longer exists (removed while its stats were read)",
            dir.display()
        )));
    }
    Ok(stats)
}

/// The stats of the container whose init is `pid`.
pub fn of_pid(pid: u32) -> Result<StatsResponse> {
    of_cgroup(&CgroupPaths::of_pid(pid)?)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Files held in memory, by name.
    struct Fixture(HashMap<&'static str, &'static str>);

    impl CgroupFiles for Fixture {
        fn read(&self, _controller: &str, file: &str) -> String {
            self.0.get(file).map(|s| s.to_string()).unwrap_or_default()
        }
    }

    #[test]
    fn v1_files() {
        let f = Fixture(HashMap::from([
            ("memory.usage_in_bytes", "1048576\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "2097152\n"),
            ("memory.failcnt", "3\n"),
            ("memory.stat", "cache 10\nrss 20\ntotal_cache 4096\ntotal_rss 8192\ntotal_inactive_file 1024\n"),
            ("cpuacct.usage_percpu", "100 200 \n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.stat", "user 5\nsystem 7\n"),
            ("cpu.stat", "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n"),
            ("pids.current", "4\n"),
            ("pids.max", "max\n"),
            ("blkio.throttle.io_service_bytes", "8:0 Read 512\n8:0 Write 1024\nTotal 1536\n"),
        ]));
        let s = v1_stats(&f);
        assert_eq!(s.cgroup_version, 1);
        let m = s.memory.unwrap_or_default();
        assert_eq!((m.usage, m.limit, m.max_usage, m.failcnt, m.oom_kills), (1048576, 0, 2097152, 3, 1));
        assert_eq!((m.cache, m.rss), (4096, 8192));
        // Unlimited: 0, and the kernel's own number for containerd.
        assert_eq!(m.limit_raw, 9223372036854771712);
        assert_eq!(m.stat.get("total_inactive_file"), Some(&1024));
        assert_eq!(m.stat.len(), 5);
        let c = s.cpu.unwrap_or_default();
        assert_eq!(c.per_cpu_ns, [100, 200]);
        assert_eq!((c.usage_total_ns, c.usage_user_ns, c.usage_system_ns), (123456789, 50_000_000, 70_000_000));
        assert_eq!((c.periods, c.throttled_periods, c.throttled_time_ns), (10, 2, 3000));
        assert_eq!(s.pids, Some(PidsStats { current: 4, limit: 0 }));
        let b = s.blkio.unwrap_or_default().entries;
        assert_eq!(b.len(), 2);
        assert_eq!(b.first(), Some(&BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 512 }));
    }

    #[test]
    fn v2_files() {
        let f = Fixture(HashMap::from([
            ("memory.current", "1048576\n"),
            ("memory.max", "16777216\n"),
            ("memory.peak", "2097152\n"),
            ("memory.stat", "anon 8192\nfile 4096\nkernel_stack 16384\ninactive_file 2048\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"),
            (
                "cpu.stat",
                "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 10\nnr_throttled 2\nthrottled_usec 30\n",
            ),
            ("pids.current", "4\n"),
            ("pids.max", "100\n"),
            ("io.stat", "8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n"),
        ]));
        let s = v2_stats(&f);
        assert_eq!(s.cgroup_version, 2);
        let m = s.memory.unwrap_or_default();
        assert_eq!(
            (m.usage, m.limit, m.max_usage, m.anon, m.file, m.oom_kills, m.failcnt),
            (1048576, 16777216, 2097152, 8192, 4096, 1, 5)
        );
        assert_eq!((m.limit_raw, m.swap_limit_raw), (16777216, u64::MAX));
        assert_eq!(m.stat.get("inactive_file"), Some(&2048));
        assert_eq!(m.events.get("oom"), Some(&1));
        assert_eq!(m.events.len(), 6);
        let c = s.cpu.unwrap_or_default();
        assert_eq!(
            (c.usage_total_ns, c.usage_user_ns, c.usage_system_ns, c.throttled_time_ns),
            (1_000_000, 600_000, 400_000, 30_000)
        );
        assert_eq!(s.pids, Some(PidsStats { current: 4, limit: 100 }));
        let b = s.blkio.unwrap_or_default().entries;
        assert!(b.contains(&BlkioEntry { major: 8, minor: 0, op: "Write".into(), value: 1024 }));
        assert_eq!(b.len(), 6);
        // "max" and missing files read as 0 (unlimited, unknown).
        let empty = v2_stats(&Fixture(HashMap::from([("memory.max", "max\n")])));
        assert_eq!(empty.memory.as_ref().map(|m| (m.limit, m.limit_raw)), Some((0, u64::MAX)));
    }
}
