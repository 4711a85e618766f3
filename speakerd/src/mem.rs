//! Handing freed heap memory back to the kernel after bulk work (glibc's `malloc_trim`), large blocks
//! mapped on their own ([`fix_mmap_threshold`]), and a list handed over while it shrinks
//! ([`drain_shrinking`]).
//!
//! glibc keeps memory freed inside its heaps for reuse, so after a bulk load the process would stay
//! larger than its tables for good. The callers are the places where a bulk request has been applied
//! and dropped (both gRPC APIs, the config file) and a session writer that went idle after a large
//! send. docs/BENCHMARKS.md has the measured effect.

/// A request of at least this many announcements is a bulk load: its transient memory (the decoded
/// request, the diff) is handed back to the kernel by its caller once it has been applied and dropped
/// ([`release_after_bulk`]).
const BULK_ANNOUNCEMENTS: usize = 10_000;

/// Called where a request of `announcements` has been applied and dropped: after a bulk load
/// ([`BULK_ANNOUNCEMENTS`] or more), [`release_freed_memory`].
pub fn release_after_bulk(announcements: usize) {
    if announcements >= BULK_ANNOUNCEMENTS {
        release_freed_memory();
    }
}

/// `malloc_trim(0)` on a blocking thread, called where a bulk request has been applied and dropped
/// (both APIs, the config file: [`release_after_bulk`]). Not from the speaker itself: its caller still
/// holds the request then. Not on a timer either: a trim that came later landed in the middle of the
/// next API calls (glibc holds its arena locks while it walks the heap, which stalled them).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        // SAFETY: malloc_trim has no preconditions; it only releases free memory of glibc's heaps.
        rt.spawn_blocking(|| unsafe { libc::malloc_trim(0) });
    }
}

/// [`release_freed_memory`] half a second from now, once however many times it is asked for meanwhile:
/// when a session's writer goes idle after a large send (its freed write buffers sit in glibc's
/// per-thread arenas otherwise).
pub fn release_freed_memory_later() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SCHEDULED: AtomicBool = AtomicBool::new(false);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    rt.spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        SCHEDULED.store(false, Ordering::Release);
        release_freed_memory();
    });
}

/// Blocks of at least this size are mapped on their own by glibc's malloc and unmapped when freed.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Makes glibc map every block of [`MMAP_THRESHOLD`] or more on its own, for good. By default the
/// threshold rises to the size of each large block freed, after which large blocks (a bulk request's
/// bytes, its decode buffers) come from the heaps of whichever threads touched them, where they stay
/// as free memory between requests, and repeated bulk requests raised the peak. Called at start-up.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it takes the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// How many items [`drain_shrinking`] takes between two shrinks of its list.
const SHRINK_EVERY: usize = 4096;

/// The items of `v` in order, the list's memory handed back as they are taken: the list is reversed
/// in place, taken from its end and shrunk every [`SHRINK_EVERY`] items (with glibc, shrinking a block
/// in place moves nothing). For a large list that is turned into another structure (the config file's
/// announcements into the owner's set), which then grows into what the list gives back instead of
/// beside the whole list.
pub fn drain_shrinking<T>(mut v: Vec<T>) -> impl Iterator<Item = T> {
    v.reverse();
    let mut taken = 0usize;
    std::iter::from_fn(move || {
        let x = v.pop()?;
        taken += 1;
        if taken.is_multiple_of(SHRINK_EVERY) {
            v.shrink_to_fit();
        }
        Some(x)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_shrinking_gives_every_item_in_order() {
        for n in [0, 1, SHRINK_EVERY - 1, SHRINK_EVERY, SHRINK_EVERY * 2 + 7] {
            let v: Vec<usize> = (0..n).collect();
            assert_eq!(drain_shrinking(v).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>(), "{n} items");
        }
    }
}
