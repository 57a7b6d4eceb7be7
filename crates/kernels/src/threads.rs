//! How many threads the CPU kernels split their work into: the one place that decides.
//!
//! The machine's available parallelism, unless `LABELGAN_THREADS` (read once) sets a
//! positive number. Inside a rayon pool of fewer threads (the evaluation UNets train one
//! per core) work is still split this many ways, so a result never depends on the pool
//! it ran in.

use std::sync::OnceLock;

/// Threads the kernels use (at least 1).
pub fn cpu_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("LABELGAN_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}
