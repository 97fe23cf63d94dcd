//! Keeping an idle shim small: what the example binaries do after start-up.

use std::time::Duration;

/// How often the idle trimmer looks at the shim (see [`after_start_up`]).
/// Not at once after activity: a short-lived container (`ctr run --rm`,
/// `shimctl run`) would pay for faulting the code back in on its next calls
/// (0.8 ms measured over a Create and Start), and so does the first call
/// after each idle period.
pub const CODE_RELEASE_AFTER: Duration = Duration::from_secs(2);

/// Less CPU than this in one [`CODE_RELEASE_AFTER`] period is idle: the
/// reaper's once-a-second check and the trimmer itself take microseconds.
const IDLE_CPU: Duration = Duration::from_millis(1);

/// Gives back what start-up allocated and freed (`malloc_trim`) and starts
/// the idle trimmer: every [`CODE_RELEASE_AFTER`] it looks at the CPU the
/// shim used; in the first idle period after a busy one (or after start-up)
/// the code pages go back (see [`release_code_pages`]).
/// An idle shim, which is what a shim is for most of its container's life,
/// so holds only what it keeps using. Call once the shim serves, from its
/// runtime.
pub fn after_start_up() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
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
/// `MADV_PAGEOUT` frees the pages no other process maps. The code itself
/// (`r-xp`, never written) is also unmapped with `MADV_DONTNEED`, which works
/// on pages other shims share as well: each of many shims started from one
/// binary then maps only what it runs. Read-only data is not: after
/// relocation it may be a private copy that only exists in memory. Pages
/// holding state (writable mappings, heap, stacks) are never touched.
pub fn release_code_pages() {
    for (addr, len, code) in read_only_mappings() {
        // SAFETY: advice on read-only mappings of this process's own binary.
        // PAGEOUT keeps every page's content (a private copy cannot be paged
        // out without swap and stays). DONTNEED is given only for code,
        // which is never written, so the kernel reloads exactly the same
        // bytes from the file when a page is used again.
        unsafe {
            libc::madvise(addr, len, libc::MADV_PAGEOUT);
            if code {
                libc::madvise(addr, len, libc::MADV_DONTNEED);
            }
        }
    }
}

/// This binary's read-only mappings: (address, length, whether code).
fn read_only_mappings() -> Vec<(*mut libc::c_void, usize, bool)> {
    let mut found = Vec::new();
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return found };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return found };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !(perms == "r-xp" || perms == "r--p") || !line.ends_with(exe.as_ref()) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else { continue };
        found.push((start as *mut libc::c_void, end.saturating_sub(start), perms == "r-xp"));
    }
    found
}
