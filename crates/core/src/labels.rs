//! Label kinds and predictions.
//!
//! labelgan makes three kinds of dense labels: segmentation class maps, keypoints
//! (decoded from one heatmap per keypoint) and depth maps.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The class id that marks unlabelled pixels in masks (as in torchvision and mmseg):
/// never sampled for fitting, never scored. `None` in a setting makes every id a class.
pub const DEFAULT_IGNORE_INDEX: Option<u32> = Some(255);

/// [`DEFAULT_IGNORE_INDEX`], for serde defaults of saved settings.
pub fn default_ignore_index() -> Option<u32> {
    DEFAULT_IGNORE_INDEX
}

/// What a labeler predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelKind {
    /// Per-pixel class ids in `0..classes`.
    Segmentation {
        /// Number of classes, background included.
        classes: usize,
    },
    /// `count` keypoints, each an (x, y) position in pixels.
    Keypoints {
        /// Number of keypoints.
        count: usize,
    },
    /// A per-pixel depth value.
    Depth,
}

/// A batch of labels. Shapes follow `docs/architecture.md`.
#[derive(Debug, Clone)]
pub enum Labels {
    /// Class ids `[N, H, W]`, u32.
    Segmentation(Tensor),
    /// Positions `[N, K, 2]` as (x, y) pixels, f32.
    Keypoints(Tensor),
    /// Depth `[N, 1, H, W]`, f32.
    Depth(Tensor),
}

/// A labeler's output for a batch of images.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The labels (majority vote or mean over the ensemble).
    pub labels: Labels,
    /// Per-pixel uncertainty `[N, H, W]` (Jensen-Shannon divergence or variance).
    pub uncertainty: Tensor,
    /// Per-image uncertainty score `[N]` (used to filter the worst samples).
    pub score: Tensor,
}
