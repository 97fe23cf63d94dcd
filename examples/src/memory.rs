//! Keeping an idle shim small: what the example binaries do after start-up.

use std::time::Duration;

/// How long after it starts serving a shim gives its code pages back (see
/// [`release_code_pages`]). Not at once: a short-lived container (`ctr run
/// --rm`, `shimctl run`) would pay for faulting the code back in on its first
/// calls (0.8 ms measured on Create and Start).
pub const CODE_RELEASE_AFTER: Duration = Duration::from_secs(2);

/// Gives back what start-up allocated and freed (`malloc_trim`), and after
/// [`CODE_RELEASE_AFTER`] the binary's code pages (see
/// [`release_code_pages`]). Call once the shim serves, from its runtime.
pub fn after_start_up() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    tokio::spawn(async {
        tokio::time::sleep(CODE_RELEASE_AFTER).await;
        release_code_pages();
    });
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
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !(perms == "r-xp" || perms == "r--p") || !line.ends_with(exe.as_ref()) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else { continue };
        let (addr, len) = (start as *mut libc::c_void, end.saturating_sub(start));
        // SAFETY: advice on read-only mappings of this process's own binary.
        // PAGEOUT keeps every page's content (a private copy cannot be paged
        // out without swap and stays). DONTNEED is given only for code,
        // which is never written, so the kernel reloads exactly the same
        // bytes from the file when a page is used again.
        unsafe {
            libc::madvise(addr, len, libc::MADV_PAGEOUT);
            if perms == "r-xp" {
                libc::madvise(addr, len, libc::MADV_DONTNEED);
            }
        }
    }
}
