//! Labeler settings.

use serde::{Deserialize, Serialize};

use labelgan_core::LabelKind;

/// What the ensemble predicts per pixel, and its loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Head {
    /// `classes` logits, cross-entropy; majority vote; Jensen-Shannon uncertainty.
    Segmentation {
        /// Number of classes, background included.
        classes: usize,
    },
    /// One Gaussian heatmap per keypoint (std `sigma` pixels), squared error; decoded
    /// to the arg-max of the mean heatmap.
    Keypoints {
        /// Number of keypoints.
        count: usize,
        /// Heatmap standard deviation in output pixels.
        sigma: f32,
    },
    /// One depth value per pixel, squared error.
    Depth,
}

impl Head {
    /// Outputs per pixel.
    pub fn outputs(&self) -> usize {
        match self {
            Head::Segmentation { classes } => *classes,
            Head::Keypoints { count, .. } => *count,
            Head::Depth => 1,
        }
    }

    /// The corresponding label kind.
    pub fn kind(&self) -> LabelKind {
        match self {
            Head::Segmentation { classes } => LabelKind::Segmentation { classes: *classes },
            Head::Keypoints { count, .. } => LabelKind::Keypoints { count: *count },
            Head::Depth => LabelKind::Depth,
        }
    }
}

/// Ensemble shape and training settings. `Default` is DatasetGAN's setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelerConfig {
    /// The head.
    pub head: Head,
    /// Ensemble members.
    pub members: usize,
    /// Hidden widths `(h1, h2)`; `None` = DatasetGAN's rule: (256, 32) below 32 classes,
    /// (256, 128) from 32 up.
    pub hidden: Option<(usize, usize)>,
    /// Bilinear (the papers) or nearest upsampling of the taps.
    pub bilinear: bool,
    /// Output resolution of the labels.
    pub resolution: usize,
    /// Base seed; member m uses a seed derived from (seed, m).
    pub seed: u64,
    /// Adam learning rate.
    pub lr: f64,
    /// Pixels per mini-batch, per member.
    pub batch_size: usize,
    /// Most epochs.
    pub max_epochs: usize,
    /// Stop a member after this many epochs without held-out improvement.
    pub patience: usize,
    /// Pixels sampled per training image (every class present is represented).
    pub pixels_per_image: usize,
    /// Fraction of the sampled pixels held out for early stopping.
    pub holdout: f32,
    /// At most this many held-out pixels over all images (kept in f16 for the whole
    /// run: 50 images of 20,000 pixels at 512 px would otherwise hold 1.1 GB); each
    /// image holds out at most its share, the rest of its pixels train.
    #[serde(default = "default_max_holdout_pixels")]
    pub max_holdout_pixels: usize,
    /// Memory for gathered training features at a time, in MB (images are processed in
    /// groups that fit).
    pub feature_budget_mb: usize,
    /// Pixels per inference tile.
    pub tile_pixels: usize,
}

fn default_max_holdout_pixels() -> usize {
    25_000
}

impl LabelerConfig {
    /// DatasetGAN's settings for `head` at `resolution`.
    pub fn new(head: Head, resolution: usize) -> Self {
        Self {
            head,
            members: 10,
            hidden: None,
            bilinear: true,
            resolution,
            seed: 0,
            lr: 1e-3,
            batch_size: 256,
            max_epochs: 20,
            patience: 3,
            pixels_per_image: 20_000,
            holdout: 0.1,
            max_holdout_pixels: default_max_holdout_pixels(),
            feature_budget_mb: 1024,
            tile_pixels: 1024,
        }
    }

    /// `(h1, h2)`.
    pub fn hidden_sizes(&self) -> (usize, usize) {
        self.hidden.unwrap_or(if self.head.outputs() < 32 {
            (256, 32)
        } else {
            (256, 128)
        })
    }

    /// The upsampling mode.
    pub fn upsample(&self) -> labelgan_hypercolumn::Upsample {
        if self.bilinear {
            labelgan_hypercolumn::Upsample::Bilinear
        } else {
            labelgan_hypercolumn::Upsample::Nearest
        }
    }
}
