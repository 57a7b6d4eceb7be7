//! The process heap under candle's allocation pattern.
//!
//! candle allocates a fresh buffer for every tensor. glibc serves buffers above its
//! mmap threshold (128 KiB at start) with `mmap` and gives them back on free, and trims
//! the top of the heap as soon as 128 KiB are free, so every training step faults in,
//! zeroes and unmaps gigabytes of pages: a third of a StyleGAN training step's time was
//! kernel page clearing (`perf`, `examples/gan_speed.rs`). [`keep_freed_memory`] makes
//! glibc reuse freed buffers instead; [`release_freed_memory`] hands them back when a
//! phase with a larger footprint (the R1 step) is over.

/// The largest mmap threshold glibc accepts on 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_MAX: i32 = 32 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
    fn malloc_trim(pad: usize) -> i32;
}

/// Makes glibc keep freed heap memory for reuse: buffers up to 32 MiB come from the
/// heap instead of fresh `mmap`s, and free memory is not trimmed on every `free`.
/// Resident memory then stays at the peak of the work done so far (release it with
/// [`release_freed_memory`]). Returns whether the settings took; a no-op returning
/// false on other platforms and C libraries.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes glibc's tunables; any thread may call it.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
                && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
                && mallopt(M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// As [`keep_freed_memory`], and buffers of every size come from the heap, none from
/// `mmap`: for loops that allocate and free the same large buffers step after step
/// (GAN training, where activations of 64 images at 32 px and 256 channels are 64 MiB
/// each), which glibc would otherwise map, have the kernel zero and unmap each time.
/// All threads share the main heap: a thread's own arena holds at most 64 MiB, and
/// glibc maps anything larger even with `mmap` turned off (training runs on a rayon
/// worker, so its activations would). Call it before starting threads: one that has
/// allocated keeps its arena. Resident memory stays at the peak of the work done so
/// far.
pub fn keep_large_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: as in keep_freed_memory.
        keep_freed_memory() && unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns free heap memory to the system (all arenas, including those of threads
/// that have ended). A no-op on other platforms.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc's malloc_trim only releases free memory; any thread may call it.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_take_on_glibc() {
        let took = super::keep_freed_memory();
        assert_eq!(took, cfg!(all(target_os = "linux", target_env = "gnu")));
        super::release_freed_memory();
        assert_eq!(super::keep_large_buffers(), took);
        // A buffer far above the old mmap threshold still allocates and frees.
        let v = vec![1u8; 96 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 96 << 20);
        drop(v);
        super::release_freed_memory();
    }
}
