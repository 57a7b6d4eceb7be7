//! Labeler settings.

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, LabelKind, Result};

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
    /// Segmentation: pixels of this class id are never sampled (unlabelled; 255 by
    /// default, as in torchvision and mmseg).
    #[serde(default = "labelgan_core::labels::default_ignore_index")]
    pub ignore_index: Option<u32>,
    /// Memory for gathered training rows at a time, in MB: images are processed in groups
    /// whose rows (f16) fit, at least one image per group. Larger groups mix more images
    /// into each minibatch; one-image groups cost the fit (docs/performance.md).
    pub feature_budget_mb: usize,
    /// Pixels per inference tile.
    pub tile_pixels: usize,
    /// The arithmetic of inference's first layer on the CPU (written to files only when
    /// not f32, so records made before it existed still match).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

/// The arithmetic of inference's first layer (the projection of the hypercolumn, almost
/// all of labelling's work) on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// Features and weights rounded to bf16 (8 significant bits), products summed in
    /// f32, on Intel AMX's tiles where the CPU has them (elsewhere f32). Labelling takes
    /// about two thirds of the f32 time; a pixel whose members' votes are nearly tied
    /// can change its label (both measured in docs/performance.md).
    Bf16,
}

impl Precision {
    /// Whether this is [`Precision::F32`], the default.
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The name configs and command lines use.
    pub fn name(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// `f32` or `bf16`, as in configs.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(Error::invalid(format!("precision {s:?}: expected f32 or bf16"))),
        }
    }
}

/// The default [`LabelerConfig::feature_budget_mb`].
pub const DEFAULT_FEATURE_BUDGET_MB: usize = 512;

/// The largest [`LabelerConfig::feature_budget_mb`]: beyond it the budget in bytes
/// would not fit a 64-bit count.
pub const MAX_FEATURE_BUDGET_MB: usize = 1 << 30;

/// Most classes (or keypoints) a labeler takes: masks are 8-bit in the dataset format,
/// and far more would only allocate without purpose.
pub const MAX_CLASSES: usize = 4096;
/// Most ensemble members (the papers use 10).
pub const MAX_MEMBERS: usize = 256;
/// Largest label resolution.
pub const MAX_RESOLUTION: usize = 8192;

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
            ignore_index: labelgan_core::DEFAULT_IGNORE_INDEX,
            feature_budget_mb: DEFAULT_FEATURE_BUDGET_MB,
            tile_pixels: 1024,
            precision: Precision::F32,
        }
    }

    /// Checks the settings before anything is built: counts positive and bounded,
    /// rates and fractions finite and in range. The error names the setting and value.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: &dyn std::fmt::Display, want: &str| {
            Err(Error::invalid(format!(
                "labeler setting `{what}` is {v}; it must be {want}"
            )))
        };
        match self.head {
            Head::Segmentation { classes } if !(2..=MAX_CLASSES).contains(&classes) => {
                return bad("classes", &classes, &format!("in 2..={MAX_CLASSES}"));
            }
            Head::Keypoints { count, .. } if !(1..=MAX_CLASSES).contains(&count) => {
                return bad("keypoints", &count, &format!("in 1..={MAX_CLASSES}"));
            }
            Head::Keypoints { sigma, .. } if !(sigma.is_finite() && sigma > 0.0) => {
                return bad("sigma", &sigma, "a finite number above 0");
            }
            _ => {}
        }
        if !(1..=MAX_MEMBERS).contains(&self.members) {
            return bad("members", &self.members, &format!("in 1..={MAX_MEMBERS}"));
        }
        if !(1..=MAX_RESOLUTION).contains(&self.resolution) {
            return bad("resolution", &self.resolution, &format!("in 1..={MAX_RESOLUTION}"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", &self.lr, "a finite number above 0");
        }
        if !(self.holdout.is_finite() && (0.0..1.0).contains(&self.holdout)) {
            return bad("holdout", &self.holdout, "in [0, 1)");
        }
        if self.feature_budget_mb > MAX_FEATURE_BUDGET_MB {
            return bad(
                "feature_budget_mb",
                &self.feature_budget_mb,
                &format!("at most {MAX_FEATURE_BUDGET_MB} (1 PB)"),
            );
        }
        let (h1, h2) = self.hidden_sizes();
        for (what, v) in [
            ("batch_size", self.batch_size),
            ("max_epochs", self.max_epochs),
            ("pixels_per_image", self.pixels_per_image),
            ("tile_pixels", self.tile_pixels),
            ("hidden.0", h1),
            ("hidden.1", h2),
        ] {
            if v == 0 {
                return bad(what, &v, "at least 1");
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 is not written, so records and files made before the setting existed still
    /// match; bf16 is written and read back; a file without it reads as f32.
    #[test]
    fn precision_is_written_only_when_not_f32() {
        let mut cfg = LabelerConfig::new(Head::Depth, 32);
        let json = serde_json::to_value(&cfg).unwrap();
        assert!(json.get("precision").is_none(), "{json}");
        let back: LabelerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.precision, Precision::F32);
        cfg.precision = Precision::Bf16;
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["precision"], "bf16");
        assert_eq!(serde_json::from_value::<LabelerConfig>(json).unwrap(), cfg);
    }

    /// The command line's names are the config files' names.
    #[test]
    fn precision_parses_the_names_configs_use() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        let e = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert!(e.contains("\"fp16\"") && e.contains("f32 or bf16"), "{e}");
    }

    #[test]
    fn settings_are_validated_naming_the_setting() {
        let ok = LabelerConfig::new(Head::Keypoints { count: 5, sigma: 2.0 }, 64);
        assert!(ok.validate().is_ok());
        let cases: Vec<(LabelerConfig, &str)> = vec![
            (
                LabelerConfig::new(
                    Head::Keypoints {
                        count: 5,
                        sigma: f32::NAN,
                    },
                    64,
                ),
                "`sigma` is NaN",
            ),
            (
                LabelerConfig::new(Head::Segmentation { classes: 1_000_000_000 }, 64),
                "`classes` is 1000000000",
            ),
            (
                LabelerConfig {
                    members: 0,
                    ..ok.clone()
                },
                "`members` is 0",
            ),
            (
                LabelerConfig {
                    members: 1_000_000_000,
                    ..ok.clone()
                },
                "`members`",
            ),
            (
                LabelerConfig {
                    lr: f64::INFINITY,
                    ..ok.clone()
                },
                "`lr` is inf",
            ),
            (
                LabelerConfig {
                    holdout: 1.0,
                    ..ok.clone()
                },
                "`holdout` is 1",
            ),
            (
                LabelerConfig {
                    batch_size: 0,
                    ..ok.clone()
                },
                "`batch_size` is 0",
            ),
            (
                LabelerConfig {
                    hidden: Some((0, 4)),
                    ..ok.clone()
                },
                "`hidden.0` is 0",
            ),
            (
                LabelerConfig {
                    feature_budget_mb: usize::MAX,
                    ..ok.clone()
                },
                "`feature_budget_mb` is 18446744073709551615",
            ),
        ];
        for (cfg, want) in cases {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }
}
