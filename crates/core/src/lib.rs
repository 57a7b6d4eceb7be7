//! labelgan-core: the traits every labelgan crate speaks and the types they share.
//!
//! A GAN-based label factory has three moving parts, each a small trait here so that a
//! user can plug in their own:
//! - [`Generator`]: latents to images plus per-layer feature maps ([`FeatureTaps`]);
//! - [`Inverter`]: images back to latents (HandsOff's first step);
//! - [`PixelLabeler`]: feature maps to per-pixel labels with an uncertainty.
//!
//! Conventions (see `docs/architecture.md`): tensors are NCHW f32, images in [-1, 1],
//! every random draw takes an explicit seed, library code returns [`Error`] instead of
//! panicking on bad input.
//!
//! References: Xu et al., "HandsOff: Labeled Dataset Generation With No Additional
//! Human Annotations", CVPR 2023; Zhang et al., "DatasetGAN: Efficient Labeled Data
//! Factory with Minimal Human Effort", CVPR 2021.

pub mod cross_entropy;
pub mod device;
pub mod epoch_order;
pub mod error;
pub mod finite;
pub mod image_io;
pub mod io;
pub mod labels;
pub mod lock;
pub mod noise;
pub mod one_hot;
pub mod peak;
pub mod progress;
pub mod record;
pub mod rng;
pub mod rotation;
pub mod safetensors_stream;
pub mod shard;
pub mod stop;
pub mod taps;
pub mod traits;
pub mod truncation;

pub use device::DeviceKind;
pub use epoch_order::{EpochOrder, select_rows};
pub use error::{Error, Result};
pub use finite::{ensure_finite, max_abs_diff, max_rel_diff};
pub use labels::{DEFAULT_IGNORE_INDEX, LabelKind, Labels, Prediction};
pub use lock::RunLock;
pub use noise::NoiseMode;
pub use one_hot::{check_class, one_hot};
pub use progress::Progress;
pub use record::RunRecord;
pub use rng::SplitMix64;
pub use shard::Shard;
pub use taps::{FeatureTaps, Tap, TapRole, TapSpec};
pub use traits::{FeatureExtractor, Generator, GeneratorSpec, Inverter, PixelLabeler, Synthesis};
pub use truncation::Truncation;

/// Re-exported so that downstream crates name the same candle types.
pub use candle_core;
