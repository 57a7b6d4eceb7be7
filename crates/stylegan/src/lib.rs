//! labelgan-stylegan: the StyleGAN2(-ADA) generator, loading official `G_ema` weights
//! by their own state-dict names and returning every layer's features.
//!
//! ```no_run
//! use labelgan_core::{Generator, NoiseMode, Truncation};
//! use labelgan_stylegan::StyleGan2;
//! # fn main() -> labelgan_core::Result<()> {
//! let device = candle_core::Device::Cpu;
//! let g = StyleGan2::load("G.safetensors", &device)?;
//! let z = g.sample_z(4, 0)?;                                // [4, z_dim], seed 0
//! let ws = g.map(&z, None, Truncation::psi(0.7))?;        // [4, num_ws, w_dim]
//! let out = g.synthesize(&ws, NoiseMode::Const)?;          // image + taps
//! let b8 = out.taps.get("synthesis.b8.conv0").unwrap();    // [4, C, 8, 8]
//! # let _ = b8; Ok(()) }
//! ```
//!
//! What is computed is specified in `docs/stylegan2.md`; parity with the official
//! PyTorch code is tested on reference outputs in `tests/fixtures/stylegan2`. The
//! networks are trained by `labelgan-gan`'s one loop (`architecture = "stylegan2"`).
//!
//! References: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
//! CVPR 2020; Karras et al., "Training Generative Adversarial Networks with Limited
//! Data", NeurIPS 2020.

pub mod config;
pub mod conv2d_resample;
pub mod discriminator;
pub mod equalized_conv;
pub mod fc;
pub mod generator;
pub mod mapping;
pub mod modulated_conv;
pub mod synthesis;
pub mod upfirdn;

pub use config::GeneratorConfig;
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use generator::StyleGan2;
pub use labelgan_core::{Error, Result};
pub use labelgan_kernels::conv;
