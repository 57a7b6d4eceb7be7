//! # labelgan-factory
//!
//! The product: a generator plus a few labelled images in, a labelled synthetic
//! dataset out. Every step takes any [`Generator`](labelgan_core::Generator),
//! [`Inverter`](labelgan_core::Inverter) and [`PixelLabeler`](labelgan_core::PixelLabeler).
//!
//! - [`handsoff`]: where the labelled images' latents come from (HandsOff inverts real
//!   images; DatasetGAN knows them), and [`fitting`] the labelers on their features;
//! - [`calibration`]: class-prior calibration of the segmentation labeler;
//! - [`sampling`], [`filter`], [`generate`]: candidates, HandsOff's uncertainty filter,
//!   and the resumable dataset folder they are written to (`labelgan-dataset`);
//! - [`pipeline`]: all of it in one call, [`run_factory`], recorded in [`record`] so
//!   that a resume never mixes two runs;
//! - [`shards`]: one dataset made on N machines and joined, byte for byte.

pub mod calibration;
pub mod config;
pub mod filter;
pub mod fitting;
pub mod generate;
pub mod handsoff;
pub mod labelers;
pub mod pipeline;
pub mod record;
pub mod sampling;
mod shard_plan;
pub mod shards;

pub use calibration::{
    CALIBRATION_FILE, CALIBRATION_STREAM, CalibrationReport, PriorCalibration, ShiftClassLogits,
    calibrate_class_priors, calibrate_class_priors_cached, calibrate_segmentation, class_frequencies,
};
pub use config::FactoryConfig;
pub use filter::keep_most_certain;
pub use fitting::{FitOptions, fit_labeler, fit_labelers, segmentation_classes, taps_of};
pub use generate::{DatasetProgress, generate_dataset};
pub use handsoff::{Refinement, check_latents, fit_datasetgan, fit_handsoff, invert};
pub use labelers::Labelers;
pub use pipeline::{FactoryEvent, FactoryOutput, FactoryRun, Method, factory_record, run_factory};
pub use record::{LABELERS_DIR, RUN_FILE, RUN_OUTPUTS, clear_run, generator_fingerprint};
pub use sampling::{candidate_class, candidate_z, synthesize_candidates};
pub use shards::{copy_labelers, merge_shards};
