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
//! println!("{} taps, {} hypercolumn channels", out.taps.len(), out.taps.features().total_channels());
//! # Ok(()) }
//! ```

pub use labelgan_core as core;
pub use labelgan_dataset as dataset;
pub use labelgan_eval as eval;
pub use labelgan_factory as factory;
pub use labelgan_gan as gan;
pub use labelgan_hypercolumn as hypercolumn;
pub use labelgan_inversion as inversion;
pub use labelgan_kernels as kernels;
pub use labelgan_labeler as labeler;
pub use labelgan_lpips as lpips;
pub use labelgan_metrics as metrics;
pub use labelgan_optim as optim;
pub use labelgan_stylegan as stylegan;
pub use labelgan_toyworld as toyworld;

/// Re-exported: the image types of labelgan's API (`DynamicImage`, `RgbImage`).
pub use image;

/// The types most programs need: the traits and what flows through them, the
/// pipelines (HandsOff, DatasetGAN, the factory, the downstream evaluation) and the
/// shipped implementations (StyleGAN2, the labeler ensemble, the inverters, LPIPS).
pub mod prelude {
    pub use candle_core::{DType, Device, Tensor};
    pub use image;
    pub use labelgan_core::io::TensorFile;
    pub use labelgan_core::{
        DeviceKind, Error, FeatureTaps, Generator, GeneratorSpec, Inverter, LabelKind, Labels, NoiseMode, PixelLabeler,
        Prediction, Progress, Result, SplitMix64, Synthesis, Tap, TapRole, TapSpec, Truncation,
    };
    pub use labelgan_dataset::{DatasetWriter, ImageLabels, LabelledSet, ManifestEntry, Sample, Targets, load_dataset};
    pub use labelgan_eval::{
        Confusion, DepthError, DownstreamConfig, DownstreamJob, Flip, HeadKind, KeypointLoss, Pck, Scores, UNet,
        UNetConfig, default_widths, labeler_miou, score, train_concurrently, train_unets,
    };
    pub use labelgan_factory::{
        FactoryConfig, FactoryEvent, FactoryRun, FitOptions, Labelers, Method, PriorCalibration, Refinement,
        ShiftClassLogits, calibrate_segmentation, fit_datasetgan, fit_handsoff, fit_labeler, fit_labelers,
        generate_dataset, invert, run_factory, taps_of,
    };
    pub use labelgan_gan::{Trainer, TrainingConfig};
    pub use labelgan_hypercolumn::{FactoredProjection, Upsample, dense, sparse};
    pub use labelgan_inversion::encoder::EncoderTrainer;
    pub use labelgan_inversion::{Encoder, EncoderConfig, LatentSpace, MeanInverter, ProjectorConfig, project};
    pub use labelgan_labeler::{Ensemble, GeneratorTaps, Head, InMemoryTaps, LabelerConfig, Precision, TapSource, fit};
    pub use labelgan_lpips::Lpips;
    pub use labelgan_metrics::{
        FeatureExtractor, FeatureStats, Features, KidConfig, MetricsConfig, compare, fid, frechet_distance,
        inception_score, kid, precision_recall,
    };
    pub use labelgan_stylegan::modulated_conv::SynthesisLayer;
    pub use labelgan_stylegan::{GeneratorConfig, StyleGan2};
    /// The built-in toy domain (`toyworld::sample`, `toyworld::write_dataset`, ...).
    pub use labelgan_toyworld as toyworld;
}

/// The README's Rust examples, compiled as doctests so that they keep up with the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust examples of `docs/`, compiled (and run) as doctests through the prelude.
#[doc = include_str!("../docs/toyworld.md")]
#[cfg(doctest)]
pub struct DocsDoctests;

/// `docs/compare_gan.md`'s Rust example.
#[doc = include_str!("../docs/compare_gan.md")]
#[cfg(doctest)]
pub struct CompareGanDoctests;

/// `docs/metrics.md`'s Rust example.
#[doc = include_str!("../docs/metrics.md")]
#[cfg(doctest)]
pub struct MetricsDoctests;
