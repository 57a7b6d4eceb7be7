//! Fitting the pixel labelers: labels paired with the feature taps of the latents that
//! made (HandsOff: that reconstruct) the labelled images.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Generator, NoiseMode, Result, RunRecord};
use labelgan_dataset::{ImageLabels, Targets};
use labelgan_labeler::{Ensemble, GeneratorTaps, Head, LabelerConfig, TrainReport, fit};

use crate::labelers::Labelers;

/// The feature taps ([`labelgan_core::TapRole::Feature`]) of `g` for `ws`, regenerated
/// on demand, as a labeler training source.
pub fn taps_of<'a, G: Generator>(g: &'a G, ws: &Tensor) -> Result<GeneratorTaps<'a, G>> {
    let keep: Vec<String> = g.spec().feature_taps().into_iter().map(|s| s.name).collect();
    if keep.is_empty() {
        return Err(Error::invalid(
            "the generator declares no feature taps (GeneratorSpec::taps with TapRole::Feature)",
        ));
    }
    Ok(GeneratorTaps {
        generator: g,
        ws: ws.clone(),
        noise: NoiseMode::Const,
        keep,
    })
}

/// Fits a labeler on images whose latents are `ws` `[N, num_ws, w_dim]` and whose
/// labels are `labels`. HandsOff: `ws` are the inverted latents of labelled real
/// images. DatasetGAN: `ws` are the latents of generated images people labelled.
pub fn fit_labeler<G: Generator>(
    g: &G,
    ws: &Tensor,
    labels: &[ImageLabels],
    config: &LabelerConfig,
    progress: impl FnMut(&str),
) -> Result<(Ensemble, TrainReport)> {
    fit(config, &taps_of(g, ws)?, labels, progress)
}

/// How [`fit_labelers`] fits each ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Segmentation classes (default: the largest id in the masks + 1).
    pub classes: Option<usize>,
    /// Ensemble members per labeler.
    pub members: usize,
    /// Pixels sampled per labelled image.
    pub pixels_per_image: usize,
    /// Most epochs (each member stops early on its held-out pixels).
    pub max_epochs: usize,
    /// Keypoint heatmap std in pixels.
    pub sigma: f32,
    /// Seed of the members' initialisation and the pixel sampling.
    pub seed: u64,
    /// Mask id of unlabelled pixels: never fitted, not a class (`None`: every id is a
    /// class).
    #[serde(default = "labelgan_core::labels::default_ignore_index")]
    pub ignore_index: Option<u32>,
    /// Memory for the training rows gathered at a time, in MB: images are fitted in
    /// groups that fit (at least one image per group). The peak of a 512 px fit is
    /// about 1.5 GB plus this budget.
    #[serde(default = "default_feature_budget_mb")]
    pub feature_budget_mb: usize,
}

fn default_feature_budget_mb() -> usize {
    labelgan_labeler::config::DEFAULT_FEATURE_BUDGET_MB
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            classes: None,
            members: 10,
            pixels_per_image: 20_000,
            max_epochs: 20,
            sigma: 2.0,
            seed: 0,
            ignore_index: labelgan_core::DEFAULT_IGNORE_INDEX,
            feature_budget_mb: default_feature_budget_mb(),
        }
    }
}

/// Most pixels sampled per labelled image (2^26: an 8192 px image).
pub const MAX_PIXELS_PER_IMAGE: usize = 1 << 26;
/// Most labeler epochs.
pub const MAX_EPOCHS: usize = 100_000;

impl FitOptions {
    /// Checks the settings before any work.
    pub fn validate(&self) -> Result<()> {
        use labelgan_labeler::config::{MAX_CLASSES, MAX_FEATURE_BUDGET_MB, MAX_MEMBERS};
        let bad = |what: &str, v: &dyn std::fmt::Display, want: String| {
            Err(Error::invalid(format!("{what} is {v}; it must be {want}")))
        };
        if let Some(c) = self.classes
            && !(2..=MAX_CLASSES).contains(&c)
        {
            return bad("classes", &c, format!("in 2..={MAX_CLASSES}"));
        }
        if !(1..=MAX_MEMBERS).contains(&self.members) {
            return bad("members", &self.members, format!("in 1..={MAX_MEMBERS}"));
        }
        if !(1..=MAX_PIXELS_PER_IMAGE).contains(&self.pixels_per_image) {
            return bad(
                "pixels per image",
                &self.pixels_per_image,
                format!("in 1..={MAX_PIXELS_PER_IMAGE}"),
            );
        }
        if !(1..=MAX_EPOCHS).contains(&self.max_epochs) {
            return bad("max epochs", &self.max_epochs, format!("in 1..={MAX_EPOCHS}"));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return bad("sigma", &self.sigma, "a finite number above 0".into());
        }
        if self.feature_budget_mb > MAX_FEATURE_BUDGET_MB {
            return bad(
                "feature budget (MB)",
                &self.feature_budget_mb,
                format!("at most {MAX_FEATURE_BUDGET_MB}"),
            );
        }
        Ok(())
    }
}

/// The segmentation labeler's classes for `targets` (`None` without masks): the
/// classes asked for, else inferred from the mask ids (the ignore index left out; see
/// [`labelgan_dataset::segmentation_classes`] for what is refused).
pub fn segmentation_classes(targets: &Targets, options: &FitOptions) -> Result<Option<usize>> {
    if targets.masks.is_none() {
        return Ok(None);
    }
    let ids = targets.class_ids(options.ignore_index);
    labelgan_dataset::segmentation_classes(&ids, options.classes, options.ignore_index).map(Some)
}

/// Fits one labeler per label kind present in `targets` (segmentation, keypoints,
/// depth) on the taps of the latents that `latents()` returns (called once, and only if
/// something must be fitted). With `cache`, each fitted ensemble is saved there as
/// `KIND.safetensors` with its settings and a fingerprint of the labels in
/// `KIND.json`; later calls with the same load it instead of fitting again.
pub fn fit_labelers<G: Generator>(
    g: &G,
    targets: &Targets,
    options: &FitOptions,
    cache: Option<&Path>,
    latents: &mut dyn FnMut() -> Result<Tensor>,
    progress: &mut dyn FnMut(&str),
) -> Result<Labelers> {
    if targets.is_empty() {
        return Err(Error::invalid("no labels to fit: expected masks, keypoints or depth"));
    }
    if let Some(dir) = cache {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        labelgan_core::io::remove_stale_temp_files(dir)?;
    }
    options.validate()?;
    let r = g.spec().resolution;
    let images = targets.images();
    let labels = targets.fingerprint();
    let mut ws: Option<Tensor> = None;
    let mut fit_or_load = |name: &str, head: Head| -> Result<Ensemble> {
        let path = cache.map(|d| d.join(format!("{name}.safetensors")));
        let mut cfg = LabelerConfig::new(head, r);
        cfg.members = options.members;
        cfg.pixels_per_image = options.pixels_per_image;
        cfg.max_epochs = options.max_epochs;
        cfg.seed = options.seed;
        cfg.ignore_index = options.ignore_index;
        cfg.feature_budget_mb = options.feature_budget_mb;
        // A cached labeler is used only if it was fitted with these settings on these
        // labels (its record beside it says so); otherwise it is fitted again.
        let record = RunRecord::new()
            .setting("labeler", &cfg)?
            .input("labels", labels.clone());
        let record_path = cache.map(|d| d.join(format!("{name}.json")));
        if let (Some(p), Some(rp)) = (path.as_ref().filter(|p| p.exists()), &record_path) {
            let earlier: Option<RunRecord> = std::fs::read_to_string(rp)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            match earlier.map(|e| record.difference(&e)) {
                Some(None) => {
                    progress(&format!("using the {name} labeler fitted earlier: {}", p.display()));
                    return Ensemble::load(p, g.device());
                }
                Some(Some((what, was, now))) => progress(&format!(
                    "{} was fitted with {what} = {was}, not {now}: fitting again",
                    p.display()
                )),
                None => progress(&format!("{} has no record of its settings: fitting again", p.display())),
            }
        }
        let ws = match &ws {
            Some(ws) => ws,
            None => ws.insert(latents()?),
        };
        let (e, rep) = fit_labeler(g, ws, &images, &cfg, |l| progress(&format!("{name}: {l}")))?;
        progress(&format!(
            "{name} labeler: {} epochs, best held-out loss per member {:?}",
            rep.epochs, rep.best_val_loss
        ));
        if let (Some(p), Some(rp)) = (&path, &record_path) {
            e.save(p)?;
            let text = serde_json::to_string_pretty(&record).map_err(|e| Error::invalid(e.to_string()))?;
            labelgan_core::io::write_atomic(rp, text.as_bytes())?;
            // A stop requested (SIGINT/SIGTERM) while fitting takes effect here, with
            // this labeler saved for the next run.
            labelgan_core::stop::check(&format!("the {name} labeler is saved in {}", p.display()))?;
        }
        Ok(e)
    };
    let mut labelers = Labelers::default();
    if let Some(classes) = segmentation_classes(targets, options)? {
        labelers.segmentation = Some(fit_or_load("segmentation", Head::Segmentation { classes })?);
    }
    if targets.keypoints.is_some() {
        let head = Head::Keypoints {
            count: targets.keypoint_count(),
            sigma: options.sigma,
        };
        labelers.keypoints = Some(fit_or_load("keypoints", head)?);
    }
    if targets.depth.is_some() {
        labelers.depth = Some(fit_or_load("depth", Head::Depth)?);
    }
    Ok(labelers)
}
