//! # labelgan
//!
//! Labelled training data from a pretrained StyleGAN2 and a handful of labelled images:
//! HandsOff (CVPR 2023) and DatasetGAN (CVPR 2021) on [candle](https://github.com/huggingface/candle),
//! without the memory wall of the published code.
//!
//! This crate is a facade: it re-exports the workspace crates under short names and
//! gathers the everyday types in [`prelude`].
//!
//! ```no_run
//! use labelgan::prelude::*;
//! # fn main() -> labelgan::core::Result<()> {
//! let g = StyleGan2::load("G.safetensors", &Device::Cpu)?;
//! let ws = g.map(&g.sample_z(8, 0)?, None, Truncation::psi(0.7))?;
//! let out = g.synthesize(&ws, NoiseMode::Const)?;
//! println!("{} taps, {} hypercolumn channels", out.taps.len(), out.taps.convs().total_channels());
//! # Ok(()) }
//! ```

pub use labelgan_core as core;
pub use labelgan_eval as eval;
pub use labelgan_factory as factory;
pub use labelgan_hypercolumn as hypercolumn;
pub use labelgan_inversion as inversion;
pub use labelgan_labeler as labeler;
pub use labelgan_lpips as lpips;
pub use labelgan_stylegan as stylegan;
pub use labelgan_toyworld as toyworld;

/// The types most programs need.
pub mod prelude {
    pub use candle_core::{DType, Device, Tensor};
    pub use labelgan_core::{
        Error, FeatureTaps, Generator, GeneratorSpec, Inverter, LabelKind, Labels, NoiseMode, PixelLabeler, Prediction,
        Result, Synthesis, Tap, TapSpec, Truncation,
    };
    pub use labelgan_hypercolumn::Upsample;
    pub use labelgan_labeler::{Ensemble, Head, LabelerConfig, PixelTargets};
    pub use labelgan_stylegan::{GeneratorConfig, StyleGan2};
}

/// The README's Rust examples, compiled as doctests so that they keep up with the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
