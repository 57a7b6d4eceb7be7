//! # labelgan-factory
//!
//! The product: a generator plus a pixel labeler in, a labelled synthetic dataset out.
//!
//! - [`dataset`]: the dataset folder (images, masks, depth, keypoints, a JSON-lines
//!   manifest, overlay previews, a contact sheet), written so that a run killed at any
//!   moment and restarted continues without corrupt, partial or duplicate files and
//!   ends byte-identical to an uninterrupted run.
//! - [`pipeline`]: sample latents, generate, label with the ensembles, drop the most
//!   uncertain fraction, write; and the fitting steps of HandsOff (labels paired with
//!   the taps of inverted latents) and DatasetGAN (labels drawn on generated images).

pub mod dataset;
pub mod pipeline;

pub use dataset::{DatasetWriter, Sample};
pub use pipeline::{FactoryConfig, Labelers, generate_dataset};
