//! Shared by the factory's integration tests.

use candle_core::Device;
use labelgan_stylegan::{GeneratorConfig, StyleGan2};

/// A tiny random generator: 16 px, 8-d latents, at most 8 channels.
pub fn tiny_g() -> StyleGan2 {
    tiny_g_with_classes(0)
}

/// [`tiny_g`] conditioned on `c_dim` classes (0: unconditional).
pub fn tiny_g_with_classes(c_dim: usize) -> StyleGan2 {
    let cfg = GeneratorConfig {
        c_dim,
        z_dim: 8,
        w_dim: 8,
        img_resolution: 16,
        mapping_layers: 2,
        channel_base: 64,
        channel_max: 8,
        ..Default::default()
    };
    StyleGan2::random(&cfg, 5, &Device::Cpu).unwrap()
}
