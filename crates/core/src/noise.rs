//! Per-pixel noise inputs of StyleGAN's synthesis layers.
//!
//! Each synthesis layer adds `noise * noise_strength` after its convolution. `Const`
//! uses the fixed noise buffers stored with the weights (reproducible images), `Random`
//! draws fresh Gaussian noise from a seed, `None` adds nothing.

use serde::{Deserialize, Serialize};

/// Which noise the synthesis layers add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NoiseMode {
    /// The stored `noise_const` buffers (the official `noise_mode='const'`).
    #[default]
    Const,
    /// Fresh N(0, 1) noise, drawn deterministically from this seed.
    Random(u64),
    /// No noise (the official `noise_mode='none'`).
    None,
}
