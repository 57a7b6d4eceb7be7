//! # labelgan-eval
//!
//! Whether a synthetic dataset is worth training on is measured by training a model on
//! it and testing on real labelled images. This crate holds the metrics:
//!
//! - segmentation: per-class IoU and their mean over the classes present ([`Confusion`]);
//! - keypoints: PCK, the share of predicted keypoints within `alpha * image size` of
//!   the truth ([`Pck`], at 0.05 and 0.1 in the reports);
//! - depth: RMSE and AbsRel (`mean |d - d*| / d*`) ([`DepthError`]).
//!
//! Each accumulates over images and reports at the end. [`unet`] is the small UNet
//! trained on a dataset folder ([`dataset`]) to measure it.

pub mod dataset;
pub mod metrics;
pub mod unet;

pub use dataset::{LabelledSet, load_dataset};
pub use metrics::{Confusion, DepthError, Pck};
pub use unet::{
    DENSE_WIDTHS, KeypointLoss, SEGMENTATION_WIDTHS, Targets, TrainJob, UNet, UNetConfig, concurrent_workers,
    default_widths, train_concurrently,
};
