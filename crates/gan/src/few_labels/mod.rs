//! Training with few labels (Lucic et al., "High-Fidelity Image Generation With Fewer
//! Labels", ICML 2019): a finite training set of which a seeded fraction keeps its
//! labels, and what the other images get: no label (the projection has no term for
//! them unless co-training predicts one), nothing at all (the run trains on the
//! labelled subset only), or a random label (the "random labels" baseline).

mod inferred_labels;
mod label_inference;
mod labelled_set;
mod split;

pub use inferred_labels::{Inference, InferredLabels};
pub use label_inference::{
    LinearProbe, ProbeReport, image_features, infer_with_classifier, infer_with_kmeans, standardise,
};
pub use labelled_set::LabelledSet;
pub use split::LabelSplit;

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result};

/// What the images outside the labelled fraction get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlabelled {
    /// They train without a label (co-training, `train.class_predictor`, names one).
    #[default]
    None,
    /// They are left out: the run trains on the labelled subset only.
    Drop,
    /// Every image, labelled or not, gets a fixed random label (the baseline that
    /// shows what labels that carry no information do).
    Random,
    /// They get the labels inferred for them (S2GAN): `labels.inferred` names the
    /// file `labelgan infer-labels` wrote.
    Inferred,
}

/// Which training images keep their labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Images in the finite training set drawn from a built-in stream (0: the stream
    /// unlimited, or a folder's images as they are).
    #[serde(default)]
    pub images: usize,
    /// Share of the training images that keep their labels, in (0, 1].
    #[serde(default = "all")]
    pub fraction: f64,
    /// Seed of the choice of labelled images (apart from the run's seed, so that runs
    /// of several seeds share one labelled subset).
    #[serde(default)]
    pub seed: u64,
    /// What the other images get.
    #[serde(default)]
    pub unlabelled: Unlabelled,
    /// With `unlabelled = "inferred"`: the inferred labels' file.
    #[serde(default)]
    pub inferred: String,
    /// With inferred labels: their distributions (soft labels) rather than their
    /// classes.
    #[serde(default)]
    pub soft: bool,
}

fn all() -> f64 {
    1.0
}

impl Default for LabelsConfig {
    fn default() -> Self {
        Self {
            images: 0,
            fraction: 1.0,
            seed: 0,
            unlabelled: Unlabelled::None,
            inferred: String::new(),
            soft: false,
        }
    }
}

/// Largest finite training set (images held in memory).
pub const MAX_IMAGES: usize = 10_000_000;

impl LabelsConfig {
    /// Whether every image keeps its own label (the fully supervised case).
    pub fn is_full(&self) -> bool {
        self.fraction >= 1.0 && self.unlabelled != Unlabelled::Random
    }

    /// Whether these are the defaults: every image labelled, no finite set.
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(Error::invalid(format!(
                "labels.fraction is {}, expected a share in (0, 1]",
                self.fraction
            )));
        }
        if self.images > MAX_IMAGES {
            return Err(Error::invalid(format!(
                "labels.images is {}, expected at most {MAX_IMAGES}",
                self.images
            )));
        }
        let wants_file = self.unlabelled == Unlabelled::Inferred;
        if wants_file == self.inferred.is_empty() {
            return Err(Error::invalid(
                "labels.inferred names the inferred labels' file with labels.unlabelled = \"inferred\", and only then",
            ));
        }
        if self.soft && self.unlabelled != Unlabelled::Inferred {
            return Err(Error::invalid("labels.soft needs labels.unlabelled = \"inferred\""));
        }
        Ok(())
    }
}
