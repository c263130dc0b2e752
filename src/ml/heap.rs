//! Keep freed memory in the process heap instead of handing it back to the kernel.
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step. glibc serves blocks above its mmap threshold (at most 32 MiB; ResNet-18's first
//! activations at N=64 are 33.5 MiB) with a fresh `mmap` and unmaps them on free, so every
//! step page-faults them in again, and a buffer first read as zeros then written costs a
//! copy-on-write fault with a TLB shootdown on the other core. Measured on ResNet-18 N=64
//! (2 cores): backward 2.0 s -> 1.37 s, peak RSS 1182 -> 1263 MiB. Freed blocks are reused
//! by the next step instead; the peak is what the step needs, held until the process ends.
//!
//! The price is fragmentation: at ResNet-18 N=256 the heap held 3.1 GiB for 2.2 GiB in use
//! at most (still under PyTorch's peak). Measured and dropped: a caching allocator of our
//! own for large blocks (per-class maxima add up to 1.5-1.8x the peak in use, or it
//! thrashes when bounded), jemalloc and mimalloc (slower), transparent huge pages for
//! mmap-served blocks (slower at N=64). tcmalloc matched the speed with 2.7 GiB, but is a
//! system library we would have to require.

/// Serve every allocation from the heap and never trim it. Call once at start, before
/// threads allocate. A no-op outside glibc.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; both values are valid for them.
    unsafe {
        // No mmap-served blocks: large buffers come from the heap and go back to it.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // Never give the top of the heap back (-1 is SIZE_MAX once glibc widens it).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
