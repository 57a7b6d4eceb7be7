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
//! trained on a dataset folder (`labelgan-dataset`) to measure it; [`downstream`] is the
//! whole protocol (train UNets on one set, score them on another);
//! [`class_augmentation`] the image-level one (a classifier on few labelled images,
//! with and without a conditional generator's images).

pub mod class_augmentation;
pub mod downstream;
pub mod labeler_score;
pub mod metrics;
pub mod unet;

pub use class_augmentation::{
    ClassAugmentation, ClassAugmentationReport, compare_class_augmentation, generated_images,
};
pub use downstream::{
    DownstreamConfig, DownstreamJob, HeadKind, Scores, Selected, Selection, UNetProgress, score, select_unets,
    selection_score, train_unets,
};
pub use labeler_score::labeler_miou;
pub use metrics::{Confusion, DepthError, Pck};
pub use unet::{
    DENSE_WIDTHS, Flip, KeypointLoss, SEGMENTATION_WIDTHS, TrainJob, UNet, UNetConfig, Validation, ValidationReport,
    concurrent_workers, default_widths, train_concurrently,
};
