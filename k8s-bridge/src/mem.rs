//! Handing freed heap memory back to the kernel (glibc): the bridge's big transient allocations are
//! the initial lists (every object decoded, then reduced) and a whole pass (the state computed beside
//! the old one), both in the runtime's worker threads, whose heaps keep what they freed.

/// Blocks of this size or more get their own mapping and go back to the kernel when freed.
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap threshold: by default it rises to the size of each large block freed, and large
/// blocks (list pages, a whole state's vectors) then stay in the heaps as free memory. At start-up.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it takes the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Gives the heaps' free memory back to the kernel, on a blocking thread (glibc walks every heap under
/// its lock; the loop must not wait for that). After a whole pass.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        // SAFETY: malloc_trim has no preconditions; it only releases free memory of glibc's heaps.
        rt.spawn_blocking(|| unsafe { libc::malloc_trim(0) });
    }
}
