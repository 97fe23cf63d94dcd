//! The core's Stats as containerd's cgroup metrics types
//! (`io.containerd.cgroups.v1.Metrics` / `io.containerd.cgroups.v2.Metrics`),
//! which `ctr task metrics` and CRI decode by their type URL.

use prost_types::Any;
use shim_core::proto::v1::StatsResponse;

use crate::proto::io::containerd::cgroups::{v1, v2};
use crate::task::any;

/// containerd's metrics message for the cgroup version the stats came from.
pub fn to_containerd(s: &StatsResponse) -> Any {
    let mem = s.memory.unwrap_or_default();
    let cpu = s.cpu.unwrap_or_default();
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
            memory: Some(v2::MemoryStat {
                anon: mem.anon,
                file: mem.file,
                usage: mem.usage,
                usage_limit: mem.limit,
                ..Default::default()
            }),
            memory_events: Some(v2::MemoryEvents { oom_kill: mem.oom_kills, max: mem.failcnt, ..Default::default() }),
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
                per_cpu: Vec::new(),
            }),
            throttling: Some(v1::Throttle {
                periods: cpu.periods,
                throttled_periods: cpu.throttled_periods,
                throttled_time: cpu.throttled_time_ns,
            }),
        }),
        memory: Some(v1::MemoryStat {
            cache: mem.cache,
            rss: mem.rss,
            total_cache: mem.cache,
            total_rss: mem.rss,
            usage: Some(v1::MemoryEntry {
                limit: mem.limit,
                usage: mem.usage,
                max: mem.max_usage,
                failcnt: mem.failcnt,
            }),
            ..Default::default()
        }),
        blkio: Some(v1::BlkIoStat { io_service_bytes_recursive: entries(&["Read", "Write"]), ..Default::default() }),
        memory_oom_control: Some(v1::MemoryOomControl { oom_kill: mem.oom_kills, ..Default::default() }),
        ..Default::default()
    };
    any("io.containerd.cgroups.v1.Metrics", &m)
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
