//! Which vector instructions the hand-written kernels use: detected once per process.
//!
//! `LABELGAN_SIMD=portable` (read once, at the first call) makes every kernel take its
//! portable body, for comparing the paths or ruling one out.

use std::sync::OnceLock;

/// The instruction sets the kernels have bodies for, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// No vector body: plain Rust, any CPU.
    Portable,
    /// x86-64 AVX2 with FMA.
    Avx2Fma,
    /// x86-64 AVX-512F (with AVX2 and FMA).
    Avx512,
}

/// The best level this CPU supports (or `Portable` when `LABELGAN_SIMD=portable`).
pub fn simd() -> Simd {
    static LEVEL: OnceLock<Simd> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var("LABELGAN_SIMD").is_ok_and(|v| v.eq_ignore_ascii_case("portable")) {
            return Simd::Portable;
        }
        detect()
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Simd {
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        Simd::Avx512
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        Simd::Avx2Fma
    } else {
        Simd::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Simd {
    Simd::Portable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_decided_once_and_supported() {
        let a = simd();
        assert_eq!(a, simd());
        #[cfg(target_arch = "x86_64")]
        if a >= Simd::Avx2Fma {
            assert!(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"));
        }
    }
}
