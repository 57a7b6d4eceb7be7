//! labelgan-labeler: the pixel labeler of DatasetGAN and HandsOff.
//!
//! An ensemble of small MLPs classifies (or regresses) every pixel from its
//! hypercolumn: `Linear(D, h1) → ReLU → BatchNorm → Linear(h1, h2) → ReLU → BatchNorm →
//! Linear(h2, C)`, 10 members by default, each with its own seed. Prediction is the
//! members' majority vote (segmentation) or mean (keypoint heatmaps, depth); the
//! per-pixel uncertainty is the Jensen-Shannon divergence across members
//! (`H(mean p) - mean H(p)`; variance for regression) and an image's score is the mean
//! of its 10 % most uncertain pixels, used to filter bad samples.
//!
//! Inference never builds the hypercolumn: the first layers of all members form one
//! `[D, M*h1]` matrix applied with the factored projection of `labelgan-hypercolumn`
//! (project at native resolution, then upsample) in row tiles, with BatchNorm folded
//! into the following linear layers. Training gathers only the sampled pixels' rows.
//!
//! References: Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal
//! Human Effort", CVPR 2021; Xu et al., "HandsOff", CVPR 2023; Lakshminarayanan et al.,
//! "Simple and Scalable Predictive Uncertainty Estimation using Deep Ensembles", 2017.

pub mod config;
pub mod ensemble;
mod host;
pub mod predict;
pub mod train;

pub use config::{Head, LabelerConfig, Precision};
pub use ensemble::Ensemble;
pub use predict::{ImagePrediction, Prepared};
pub use train::{GeneratorTaps, InMemoryTaps, TapSource, TrainReport, fit};
