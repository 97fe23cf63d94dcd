//! The core's Stats as containerd's cgroup metrics types
//! (`io.containerd.cgroups.v1.Metrics` / `io.containerd.cgroups.v2.Metrics`),
//! which `ctr task metrics` and CRI decode by their type URL.
//!
//! Every `memory.stat` counter goes into the field of its name, and limits
//! go as the kernel reports them (unlimited is a huge number, not 0), as
//! containerd's runc shim sends them: CRI computes a container's working
//! set as usage less `(total_)inactive_file`, and its available bytes as
//! the limit less that, taking a limit above 2^62 as unlimited.

use prost_types::Any;
use shim_core::proto::v1::{MemoryStats, StatsResponse};

use crate::proto::io::containerd::cgroups::{v1, v2};
use crate::task::any;

/// containerd's metrics message for the cgroup version the stats came from.
pub fn to_containerd(s: &StatsResponse) -> Any {
    let mem = s.memory.clone().unwrap_or_default();
    let cpu = s.cpu.clone().unwrap_or_default();
    let pids = s.pids.unwrap_or_default();
    let blkio = s.blkio.clone().unwrap_or_default();
    if s.cgroup_version == 2 {
        let m = v2::Metrics {
            pids: Some(v2::PidsStat { current: pids.current, limit: pids.limit }),
            cpu: Some(v2::CpuStat {
                usage_usec: cpu.usage_total_ns / 1000,
                user_usec: cpu.usage_user_ns / 1000,
                system_usec: cpu.usage_system_ns / 1000,
                nr_periods: cpu.periods,
                nr_throttled: cpu.throttled_periods,
                throttled_usec: cpu.throttled_time_ns / 1000,
            }),
            memory: Some(v2_memory(&mem)),
            memory_events: Some(v2::MemoryEvents {
                low: event(&mem, "low"),
                high: event(&mem, "high"),
                max: mem.failcnt,
                oom: event(&mem, "oom"),
                oom_kill: mem.oom_kills,
            }),
            io: Some(v2::IoStat { usage: io_entries(&blkio.entries) }),
            ..Default::default()
        };
        return any("io.containerd.cgroups.v2.Metrics", &m);
    }
    let entries = |op_filter: &[&str]| -> Vec<v1::BlkIoEntry> {
        blkio
            .entries
            .iter()
            .filter(|e| op_filter.contains(&e.op.as_str()))
            .map(|e| v1::BlkIoEntry {
                op: e.op.clone(),
                device: String::new(),
                major: e.major,
                minor: e.minor,
                value: e.value,
            })
            .collect()
    };
    let m = v1::Metrics {
        pids: Some(v1::PidsStat { current: pids.current, limit: pids.limit }),
        cpu: Some(v1::CpuStat {
            usage: Some(v1::CpuUsage {
                total: cpu.usage_total_ns,
                kernel: cpu.usage_system_ns,
                user: cpu.usage_user_ns,
                per_cpu: cpu.per_cpu_ns.clone(),
            }),
            throttling: Some(v1::Throttle {
                periods: cpu.periods,
                throttled_periods: cpu.throttled_periods,
                throttled_time: cpu.throttled_time_ns,
            }),
        }),
        memory: Some(v1_memory(&mem)),
        blkio: Some(v1::BlkIoStat { io_service_bytes_recursive: entries(&["Read", "Write"]), ..Default::default() }),
        memory_oom_control: Some(v1::MemoryOomControl { oom_kill: mem.oom_kills, ..Default::default() }),
        ..Default::default()
    };
    any("io.containerd.cgroups.v1.Metrics", &m)
}

/// The memory limit as the kernel reports it; a runtime that gives only
/// the plain limit (0 for unlimited) is taken at its word.
fn raw_limit(mem: &MemoryStats) -> u64 {
    if mem.limit_raw != 0 {
        mem.limit_raw
    } else {
        mem.limit
    }
}

/// A `memory.events` counter, 0 when not reported.
fn event(mem: &MemoryStats, key: &str) -> u64 {
    mem.events.get(key).copied().unwrap_or(0)
}

/// cgroup v1's memory message: `memory.stat` by name, the usage and swap
/// counters with their raw limits.
fn v1_memory(mem: &MemoryStats) -> v1::MemoryStat {
    let g = |key: &str| mem.stat.get(key).copied().unwrap_or(0);
    // The core fills `cache`/`rss` from the hierarchy's totals: a runtime
    // without `memory.stat` still reports them.
    let or = |key: &str, fallback: u64| mem.stat.get(key).copied().unwrap_or(fallback);
    v1::MemoryStat {
        cache: or("cache", mem.cache),
        rss: or("rss", mem.rss),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: or("total_cache", mem.cache),
        total_rss: or("total_rss", mem.rss),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: Some(v1::MemoryEntry {
            limit: raw_limit(mem),
            usage: mem.usage,
            max: mem.max_usage,
            failcnt: mem.failcnt,
        }),
        swap: Some(v1::MemoryEntry { limit: mem.swap_limit_raw, usage: mem.swap_usage, ..Default::default() }),
        ..Default::default()
    }
}

/// cgroup v2's memory message: `memory.stat` by name, usage and swap with
/// their raw limits.
fn v2_memory(mem: &MemoryStats) -> v2::MemoryStat {
    let g = |key: &str| mem.stat.get(key).copied().unwrap_or(0);
    v2::MemoryStat {
        anon: mem.stat.get("anon").copied().unwrap_or(mem.anon),
        file: mem.stat.get("file").copied().unwrap_or(mem.file),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        workingset_refault: g("workingset_refault"),
        workingset_activate: g("workingset_activate"),
        workingset_nodereclaim: g("workingset_nodereclaim"),
        pgrefill: g("pgrefill"),
        pgscan: g("pgscan"),
        pgsteal: g("pgsteal"),
        pgactivate: g("pgactivate"),
        pgdeactivate: g("pgdeactivate"),
        pglazyfree: g("pglazyfree"),
        pglazyfreed: g("pglazyfreed"),
        thp_fault_alloc: g("thp_fault_alloc"),
        thp_collapse_alloc: g("thp_collapse_alloc"),
        usage: mem.usage,
        usage_limit: raw_limit(mem),
        swap_usage: mem.swap_usage,
        swap_limit: mem.swap_limit_raw,
    }
}

/// v2 `io.stat` counters, one entry per device.
fn io_entries(entries: &[shim_core::proto::v1::BlkioEntry]) -> Vec<v2::IoEntry> {
    let mut out: Vec<v2::IoEntry> = Vec::new();
    for e in entries {
        let i = match out.iter().position(|o| o.major == e.major && o.minor == e.minor) {
            Some(i) => i,
            None => {
                out.push(v2::IoEntry { major: e.major, minor: e.minor, ..Default::default() });
                out.len() - 1
            }
        };
        let Some(o) = out.get_mut(i) else { continue };
        match e.op.as_str() {
            "rbytes" | "Read" => o.rbytes = e.value,
            "wbytes" | "Write" => o.wbytes = e.value,
            "rios" => o.rios = e.value,
            "wios" => o.wios = e.value,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use shim_core::proto::v1::{CpuStats, MemoryStats, StatsResponse};

    use super::*;

    fn memory(pairs: &[(&str, u64)], limit_raw: u64) -> MemoryStats {
        MemoryStats {
            usage: 50 << 20,
            limit_raw,
            stat: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn v1_carries_every_counter_and_the_raw_limit() {
        let s = StatsResponse {
            cgroup_version: 1,
            memory: Some(memory(&[("total_inactive_file", 40 << 20), ("pgfault", 7), ("cache", 3)], u64::MAX >> 1)),
            cpu: Some(CpuStats { per_cpu_ns: vec![5, 6], ..Default::default() }),
            ..Default::default()
        };
        let any = to_containerd(&s);
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::decode(any.value.as_slice()).unwrap_or_default();
        let mem = m.memory.unwrap_or_default();
        assert_eq!((mem.total_inactive_file, mem.pg_fault, mem.cache), (40 << 20, 7, 3));
        // What CRI computes: the working set leaves out inactive file pages;
        // a limit above 2^62 is unlimited, not 0 to subtract from.
        let usage = mem.usage.unwrap_or_default();
        assert_eq!(usage.usage - mem.total_inactive_file, 10 << 20);
        assert!(usage.limit > 1 << 62);
        assert_eq!(m.cpu.and_then(|c| c.usage).map(|u| u.per_cpu), Some(vec![5, 6]));
    }

    #[test]
    fn v2_carries_every_counter_the_events_and_the_raw_limit() {
        let mut mem = memory(&[("inactive_file", 40 << 20), ("slab", 9), ("anon", 1)], u64::MAX);
        mem.events = [("oom".to_string(), 2), ("high".to_string(), 4)].into_iter().collect();
        mem.oom_kills = 1;
        let s = StatsResponse { cgroup_version: 2, memory: Some(mem), ..Default::default() };
        let m = v2::Metrics::decode(to_containerd(&s).value.as_slice()).unwrap_or_default();
        let mem = m.memory.unwrap_or_default();
        assert_eq!((mem.inactive_file, mem.slab, mem.anon, mem.usage_limit), (40 << 20, 9, 1, u64::MAX));
        let events = m.memory_events.unwrap_or_default();
        assert_eq!((events.oom, events.high, events.oom_kill), (2, 4, 1));
    }
}
