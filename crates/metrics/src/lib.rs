//! # labelgan-metrics
//!
//! Metrics that compare two sets of images through a feature extractor's embeddings.
//! [`frechet`]: the Frechet distance between Gaussians fitted to the two sets' features
//! (FID when the features are Inception's; `labelgan fid` uses LPIPS backbones'), with
//! the running mean and covariance ([`FeatureStats`]) and the symmetric eigensolver
//! the matrix square root needs.

pub mod frechet;

pub use frechet::{FeatureStats, frechet_distance};
