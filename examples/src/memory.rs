//! Keeping an idle shim small: what the example binaries do after start-up.

use std::time::Duration;

/// How often the idle trimmer looks at the shim (see [`after_start_up`]).
/// Not at once after activity: a short-lived container (`ctr run --rm`,
/// `shimctl run`) would pay for faulting the code back in on its next calls
/// (0.8 ms measured over a Create and Start), and so does the first call
/// after each idle period.
pub const CODE_RELEASE_AFTER: Duration = Duration::from_secs(2);

/// Less CPU than this in one [`CODE_RELEASE_AFTER`] period is idle. An idle
/// shim wakes about three times a second (the reaper's check, the runtime's
/// timers), and on the test VM each wake-up costs 0.1-0.3 ms of CPU, kernel
/// included: 1.0-1.5 ms per period was measured, so a 1 ms bound missed
/// most idle periods. The shim's own CPU for a call is less than runc's: a
/// fresh daemon's Create about 1 ms, a Start or Delete about 0.5 ms, so a
/// period with a few calls also counts as idle and the code goes back after
/// it (the next calls fault theirs in again: 0.8 ms over a Create and a
/// Start). A burst of execs, or steady traffic, stays above the bound.
const IDLE_CPU: Duration = Duration::from_millis(5);

/// One malloc arena for the whole process (glibc; musl, which `make daemon`
/// links, has one heap anyway): each thread would otherwise get its own, and
/// a shim is mostly idle, so the extra arenas are only resident memory. Call
/// before the process starts any thread.
pub fn one_malloc_arena() {
    // SAFETY: mallopt only adjusts allocator parameters.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives back what start-up allocated and freed (`malloc_trim`, with glibc;
/// musl, which `make daemon` links, has no such call) and starts
/// the idle trimmer: every [`CODE_RELEASE_AFTER`] it looks at the CPU the
/// shim used; in the first idle period after a busy one (or after start-up)
/// the code pages go back (see [`release_code_pages`]).
/// An idle shim, which is what a shim is for most of its container's life,
/// so holds only what it keeps using. Call once the shim serves, from its
/// runtime.
pub fn after_start_up() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    tokio::spawn(async {
        let mut last = cpu_time();
        // Start-up counts as activity.
        let mut was_busy = true;
        loop {
            tokio::time::sleep(CODE_RELEASE_AFTER).await;
            let idle = cpu_time().saturating_sub(last) < IDLE_CPU;
            // Once per idle stretch: releasing again while idle would only
            // make the shim fault its idle code back in every period.
            if idle && was_busy {
                release_code_pages();
            }
            was_busy = !idle;
            // Taken after the release, so its own work is not activity.
            last = cpu_time();
        }
    });
}

/// CPU time used by the whole process so far. The process's CPU clock counts
/// every nanosecond its threads ran; getrusage's times are sampled at the
/// scheduler tick and miss a shim that runs for a few hundred microseconds
/// at a time.
fn cpu_time() -> Duration {
    // SAFETY: clock_gettime fills the zeroed struct it is given.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Drops this binary's code and read-only data from the process's resident
/// set: the code of start-up and of Create and Start ran and is not needed
/// again for a while, and what the shim does use comes back on first touch
/// from the page cache (a minor fault per page). A shim idles for its
/// container's life; this way it holds only the code it runs.
///
/// A mapping that holds only pages of the file (code, read-only data never
/// written) is unmapped with `MADV_DONTNEED`: the kernel reloads exactly the
/// same bytes from the file when a page is used again, the pages stay in the
/// page cache for other shims and for the next shim's start, and it works on
/// pages other shims share as well. A mapping with private copies (read-only
/// data after relocation) gets `MADV_PAGEOUT`, which frees its pages of the
/// file that no other process maps and keeps the copies (they cannot be
/// paged out without swap). `MADV_PAGEOUT` is not used on the others: it
/// also drops their pages from the page cache, and the next shim to start
/// then read its code from disk (measured: 995 of the binary's pages cached
/// before an idle trim, 359 after). Pages holding state (writable mappings,
/// heap, stacks) are never touched.
pub fn release_code_pages() {
    for m in read_only_mappings() {
        let advice = if m.private_copies { libc::MADV_PAGEOUT } else { libc::MADV_DONTNEED };
        // SAFETY: advice on read-only mappings of this process's own binary;
        // DONTNEED only where every page is the file's own (see above), so a
        // page used again is reloaded unchanged.
        unsafe {
            libc::madvise(m.addr, m.len, advice);
        }
    }
}

/// A read-only mapping of this binary.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
    /// Whether some of its pages are (or may be) private copies (smaps'
    /// `Anonymous` or `Swap` not 0): written once, by relocation, and no
    /// longer the file's bytes.
    private_copies: bool,
}

/// This binary's read-only mappings, from `/proc/self/smaps`.
fn read_only_mappings() -> Vec<Mapping> {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return Vec::new() };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
    mappings_of(&smaps, &exe.to_string_lossy())
}

/// The read-only mappings of the file `exe` in the text of an smaps file.
fn mappings_of(smaps: &str, exe: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    // The mapping whose fields are being read, if it is one of ours (start,
    // length), and how many of its Anonymous and Swap lines said 0.
    let mut current: Option<(usize, usize, u8)> = None;
    // A mapping is taken for the file's own bytes only if both lines were
    // there and said 0; otherwise it keeps PAGEOUT, the safe advice.
    let finish = |(start, len, zeros): (usize, usize, u8)| Mapping {
        addr: start as *mut libc::c_void,
        len,
        private_copies: zeros < 2,
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first == "Anonymous:" || first == "Swap:" {
            // Copies in memory (Anonymous) or swapped out (Swap): a PAGEOUT
            // of a relocated mapping moves its copies to swap, where
            // Anonymous no longer counts them, and DONTNEED would then drop
            // them.
            if let Some((_, _, zeros)) = current.as_mut() {
                if fields.next() == Some("0") {
                    *zeros += 1;
                }
            }
            continue;
        }
        // A header line: "start-end perms offset dev inode path".
        let Some((start, end)) = first.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        found.extend(current.take().map(finish));
        let perms = fields.next().unwrap_or("");
        if (perms == "r-xp" || perms == "r--p") && line.ends_with(exe) {
            current = Some((start, end.saturating_sub(start), 0));
        }
    }
    found.extend(current.map(finish));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mappings_with_no_copies_in_memory_or_swap_are_the_files_own() {
        let smaps = "\
1000-2000 r--p 00000000 08:01 7 /bin/shim
Rss:                   4 kB
Anonymous:             0 kB
Swap:                  0 kB
2000-3000 r-xp 00001000 08:01 7 /bin/shim
Anonymous:             0 kB
Swap:                  0 kB
3000-4000 r--p 00002000 08:01 7 /bin/shim
Anonymous:             0 kB
Swap:                  8 kB
4000-5000 r--p 00003000 08:01 7 /bin/shim
Anonymous:             4 kB
Swap:                  0 kB
5000-6000 r--p 00004000 08:01 7 /bin/shim
Rss:                   4 kB
6000-7000 rw-p 00005000 08:01 7 /bin/shim
Anonymous:             0 kB
Swap:                  0 kB
7000-8000 r--p 00000000 08:01 9 /lib/other
Anonymous:             0 kB
Swap:                  0 kB
";
        let found: Vec<(usize, bool)> =
            mappings_of(smaps, "/bin/shim").iter().map(|m| (m.addr as usize, m.private_copies)).collect();
        // Swapped-out copies and missing lines count as copies; writable
        // mappings and other files are not ours to advise.
        assert_eq!(found, [(0x1000, false), (0x2000, false), (0x3000, true), (0x4000, true), (0x5000, true)]);
    }

    #[test]
    fn code_is_told_apart_from_relocated_data() {
        let mappings = read_only_mappings();
        let here = code_is_told_apart_from_relocated_data as *const () as usize;
        let code = mappings.iter().find(|m| (m.addr as usize..m.addr as usize + m.len).contains(&here));
        let code = code.unwrap_or_else(|| panic!("no read-only mapping holds this test's code"));
        assert!(!code.private_copies, "the code mapping was taken for relocated data: it would be paged out");
        release_code_pages();
        // Still runs: the code came back from the file.
        assert!(!read_only_mappings().is_empty());
    }
}
