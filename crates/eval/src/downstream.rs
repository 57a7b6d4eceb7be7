//! The papers' downstream evaluation: train a model on a labelled dataset (synthetic or
//! real), test it on held-out real images. One UNet per label kind (or one with every
//! head), trained side by side on the CPU's cores, scored with mIoU, PCK and depth
//! error. `labelgan evaluate` and the quickstart both call this module.

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result};
use labelgan_dataset::{ImageLabels, LabelledSet, Targets};

use crate::metrics::{Confusion, DepthError, Pck};
use crate::unet::{
    Flip, KeypointLoss, TrainJob, UNet, UNetConfig, Validation, ValidationReport, default_widths, train_concurrently,
};

/// A label kind, one UNet head each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HeadKind {
    /// Segmentation masks.
    Segmentation,
    /// Keypoints.
    Keypoints,
    /// Depth maps.
    Depth,
}

impl HeadKind {
    /// All three, in order.
    pub const ALL: [HeadKind; 3] = [HeadKind::Segmentation, HeadKind::Keypoints, HeadKind::Depth];

    /// 0, 1, 2 in [`HeadKind::ALL`]'s order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `segmentation`, `keypoints` or `depth`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Segmentation => "segmentation",
            HeadKind::Keypoints => "keypoints",
            HeadKind::Depth => "depth",
        }
    }

    /// Whether `targets` has labels of this kind.
    pub fn present_in(self, targets: &Targets) -> bool {
        match self {
            HeadKind::Segmentation => targets.masks.is_some(),
            HeadKind::Keypoints => targets.keypoints.is_some(),
            HeadKind::Depth => targets.depth.is_some(),
        }
    }
}

/// How the evaluation UNets are built and trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownstreamConfig {
    /// Training steps per head kind, in [`HeadKind::ALL`]'s order (a joint UNet takes
    /// the most of its heads').
    pub steps: [usize; 3],
    /// Images per step.
    pub batch: usize,
    /// Learning rate (default: 3e-3 for a keypoint-only UNet, 1e-2 otherwise).
    pub lr: Option<f64>,
    /// Channels per level (default: [`default_widths`]).
    pub widths: Option<Vec<usize>>,
    /// Segmentation classes.
    pub classes: usize,
    /// Keypoints per image.
    pub keypoints: usize,
    /// Keypoint heatmap std in pixels.
    pub sigma: f32,
    /// Horizontal flips and the pairs they swap (`None`: no flips).
    pub flip: Option<Flip>,
    /// Random shifts of up to this many pixels.
    pub shift: usize,
    /// Seed; a UNet's own is `seed + ` its first head's index.
    pub seed: u64,
    /// Mask id of unlabelled pixels: not trained on, not scored (`None`: every id is
    /// a class).
    #[serde(default = "labelgan_core::labels::default_ignore_index")]
    pub ignore_index: Option<u32>,
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            steps: [1000, 300, 300],
            batch: 16,
            lr: None,
            widths: None,
            classes: 0,
            keypoints: 0,
            sigma: 2.0,
            flip: None,
            shift: 3,
            seed: 0,
            ignore_index: labelgan_core::DEFAULT_IGNORE_INDEX,
        }
    }
}

impl DownstreamConfig {
    /// The UNet for `heads` at `resolution` pixels.
    pub fn unet_config(&self, heads: &[HeadKind], resolution: usize) -> Result<UNetConfig> {
        let first = *heads
            .first()
            .ok_or_else(|| Error::invalid("a UNet needs at least one head"))?;
        let with = |h: HeadKind| heads.contains(&h);
        Ok(UNetConfig {
            resolution,
            widths: self
                .widths
                .clone()
                .unwrap_or_else(|| default_widths(with(HeadKind::Segmentation))),
            classes: if with(HeadKind::Segmentation) { self.classes } else { 0 },
            keypoints: if with(HeadKind::Keypoints) { self.keypoints } else { 0 },
            depth: with(HeadKind::Depth),
            sigma: self.sigma,
            // With the cosine schedule and class-balanced loss: 2000-real mIoU 0.68 after
            // 400 steps against 0.29 at 1e-3 without them (200 test faces). Keypoints on
            // 16 faces: PCK@0.1 0.84-0.92 at 3e-3 over three seeds, one of 0.35 at 1e-2.
            lr: self
                .lr
                .unwrap_or(if heads == [HeadKind::Keypoints] { 3e-3 } else { 1e-2 }),
            batch: self.batch,
            steps: heads.iter().map(|h| self.steps[h.index()]).max().unwrap_or(0),
            seed: self.seed + first.index() as u64,
            flip: self.flip.clone(),
            shift: self.shift,
            // 2000-real PCK@0.1 1.00 against 0.21 for heatmap regression (`KeypointLoss`).
            keypoint_loss: KeypointLoss::SpatialSoftmax,
            ignore_index: self.ignore_index,
        })
    }

    /// Classes and keypoint count of the `heads` read off the sets. Classes: `classes`
    /// if above 0 (a mask id beyond it is an error), else inferred from the ids in either
    /// set's masks ([`labelgan_dataset::segmentation_classes`]). Keypoints: the first
    /// training image's count (every test image must have as many).
    pub fn infer_label_sizes(&mut self, heads: &[HeadKind], train: &LabelledSet, test: &LabelledSet) -> Result<()> {
        if heads.contains(&HeadKind::Segmentation) {
            let mut ids = train.targets.class_ids(self.ignore_index);
            ids.extend(test.targets.class_ids(self.ignore_index));
            let asked = (self.classes > 0).then_some(self.classes);
            self.classes = labelgan_dataset::segmentation_classes(&ids, asked, self.ignore_index)?;
        }
        if !heads.contains(&HeadKind::Keypoints) {
            return Ok(());
        }
        self.keypoints = train.targets.keypoint_count();
        if let Some(tk) = &test.targets.keypoints
            && let Some((bad, k)) = tk.iter().enumerate().find(|(_, k)| k.len() != self.keypoints)
        {
            return Err(Error::invalid(format!(
                "test image {} has {} keypoints, the training images {}",
                test.names[bad],
                k.len(),
                self.keypoints
            )));
        }
        Ok(())
    }
}

/// One UNet to train: which set, which heads, and a name for the log.
#[derive(Debug, Clone)]
pub struct DownstreamJob<'a> {
    /// Shown in progress lines, e.g. `synthetic`.
    pub name: String,
    /// The training set.
    pub set: &'a LabelledSet,
    /// The heads of this UNet.
    pub heads: Vec<HeadKind>,
}

/// Progress of one UNet's training.
#[derive(Debug, Clone, Copy)]
pub struct UNetProgress<'a> {
    /// Which job ([`DownstreamJob::name`]).
    pub name: &'a str,
    /// Its heads.
    pub heads: &'a [HeadKind],
    /// Steps done and in all.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// The last step's loss.
    pub loss: f32,
}

/// Settings chosen on a validation split by [`select_unets`]: every combination of a
/// learning-rate and a width factor is trained, each scored every `steps /
/// evaluations` steps; per job the combination and step that scored best are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Multiples of the default learning rate to try.
    pub lr_factors: Vec<f64>,
    /// Multiples of the default widths to try (each width rounded, at least 1).
    pub width_factors: Vec<f64>,
    /// Validation scores per training run (the steps chosen among them).
    pub evaluations: usize,
}

impl Default for Selection {
    /// The defaults alone, their steps chosen among 10 evaluations.
    fn default() -> Self {
        Self {
            lr_factors: vec![1.0],
            width_factors: vec![1.0],
            evaluations: 10,
        }
    }
}

/// Most combinations [`select_unets`] trains per job.
pub const MAX_CANDIDATES: usize = 64;

impl Selection {
    /// Checks the settings before any work.
    pub fn validate(&self) -> Result<()> {
        let n = self.lr_factors.len() * self.width_factors.len();
        if n == 0 || n > MAX_CANDIDATES {
            return Err(Error::invalid(format!(
                "{n} learning-rate x width combinations; give 1 to {MAX_CANDIDATES}"
            )));
        }
        if let Some(f) = self
            .lr_factors
            .iter()
            .chain(&self.width_factors)
            .find(|f| !(f.is_finite() && **f > 0.0 && **f <= 1e3))
        {
            return Err(Error::invalid(format!(
                "factor {f} must be a finite number in (0, 1000]"
            )));
        }
        if !(1..=10_000).contains(&self.evaluations) {
            return Err(Error::invalid(format!(
                "{} validation evaluations per run; give 1 to 10000",
                self.evaluations
            )));
        }
        Ok(())
    }
}

/// A UNet trained by [`select_unets`] and the settings chosen for it.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The model, with the weights of the step that scored best on validation.
    pub unet: UNet,
    /// Its learning rate, widths and kept step.
    pub lr: f64,
    /// Channels per level.
    pub widths: Vec<usize>,
    /// Steps whose weights were kept (`unet.config.steps` is the schedule's length).
    pub steps: usize,
    /// Its validation score (`None`: trained without validation).
    pub score: Option<f64>,
    /// Every combination tried: learning rate, widths, best step and score.
    pub tried: Vec<(f64, Vec<usize>, usize, f64)>,
}

/// The number a validation split ranks models by (higher is better): mIoU for
/// segmentation, the mean of PCK@0.05 and PCK@0.1 for keypoints, minus the RMSE for
/// depth; summed over a joint model's heads.
pub fn selection_score(s: &Scores) -> f64 {
    s.miou.unwrap_or(0.0) + s.pck05.zip(s.pck10).map_or(0.0, |(a, b)| (a + b) / 2.0) - s.depth_rmse.unwrap_or(0.0)
}

/// Trains one UNet per job, `workers` at a time (each on one core; see
/// [`train_concurrently`]), the longest first so that the last to finish is a short
/// one. Returns them in the jobs' order. A UNet trains to the same weights whatever the
/// schedule.
pub fn train_unets(
    jobs: &[DownstreamJob<'_>],
    config: &DownstreamConfig,
    workers: usize,
    device: &candle_core::Device,
    progress: &(dyn Fn(&UNetProgress<'_>) + Sync),
) -> Result<Vec<UNet>> {
    let selected = select_unets(jobs, config, &Selection::default(), None, workers, device, progress)?;
    Ok(selected.into_iter().map(|s| s.unet).collect())
}

/// [`train_unets`] with settings chosen on the validation split `val` (never the test
/// set): per job, every combination of `selection`'s learning-rate and width factors
/// is trained and scored on `val` as it trains ([`selection_score`]); the combination
/// and step that scored best are kept. Without `val`, the single combination is
/// trained to its last step.
pub fn select_unets(
    jobs: &[DownstreamJob<'_>],
    config: &DownstreamConfig,
    selection: &Selection,
    val: Option<&LabelledSet>,
    workers: usize,
    device: &candle_core::Device,
    progress: &(dyn Fn(&UNetProgress<'_>) + Sync),
) -> Result<Vec<Selected>> {
    selection.validate()?;
    if val.is_none() && selection.lr_factors.len() * selection.width_factors.len() > 1 {
        return Err(Error::invalid(
            "choosing among several settings needs a validation split",
        ));
    }
    // Per job and combination: its config, targets and name.
    struct Run {
        job: usize,
        config: UNetConfig,
        name: String,
    }
    let mut runs = Vec::new();
    let mut targets = Vec::with_capacity(jobs.len());
    for (ji, j) in jobs.iter().enumerate() {
        for h in &j.heads {
            if !h.present_in(&j.set.targets) {
                return Err(Error::invalid(format!("{} has no {} labels", j.name, h.name())));
            }
            if let Some(v) = val
                && !h.present_in(&v.targets)
            {
                return Err(Error::invalid(format!(
                    "the validation split has no {} labels",
                    h.name()
                )));
            }
        }
        let r = j.set.images.dims().get(2).copied().unwrap_or(0);
        let base = config.unet_config(&j.heads, r)?;
        let with = |h| j.heads.contains(&h);
        targets.push(j.set.targets.only(
            with(HeadKind::Segmentation),
            with(HeadKind::Keypoints),
            with(HeadKind::Depth),
        ));
        for &lf in &selection.lr_factors {
            for &wf in &selection.width_factors {
                let mut c = base.clone();
                c.lr *= lf;
                c.widths = base
                    .widths
                    .iter()
                    .map(|&w| ((w as f64 * wf).round() as usize).max(1))
                    .collect();
                c.validate()?;
                let several = selection.lr_factors.len() * selection.width_factors.len() > 1;
                let name = if several {
                    format!("{} (lr {:.0e}, widths {:?})", j.name, c.lr, c.widths)
                } else {
                    j.name.clone()
                };
                runs.push(Run {
                    job: ji,
                    config: c,
                    name,
                });
            }
        }
    }
    type Scorer<'s> = Box<dyn Fn(&UNet) -> Result<f64> + Sync + 's>;
    let scorers: Vec<Scorer<'_>> = runs
        .iter()
        .map(|run| {
            let heads = jobs[run.job].heads.clone();
            let classes = config.classes;
            Box::new(move |u: &UNet| -> Result<f64> {
                let v = val.ok_or_else(|| Error::invalid("internal: no validation split"))?;
                Ok(selection_score(&score(&[(u, &heads)], v, classes)?))
            }) as Scorer<'_>
        })
        .collect();
    // The longest first (ties: by first head, then job order).
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(runs[i].config.steps), jobs[runs[i].job].heads[0], i));
    let train_jobs = order
        .iter()
        .map(|&i| {
            let run = &runs[i];
            Ok(TrainJob {
                unet: UNet::new(run.config.clone(), device)?,
                images: &jobs[run.job].set.images,
                targets: &targets[run.job],
                validation: val.map(|_| Validation {
                    score: scorers[i].as_ref(),
                    every: run.config.steps.div_ceil(selection.evaluations).max(1),
                }),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let trained = train_concurrently(train_jobs, workers, &|k, step, loss| {
        let run = &runs[order[k]];
        progress(&UNetProgress {
            name: &run.name,
            heads: &jobs[run.job].heads,
            step,
            steps: run.config.steps,
            loss,
        })
    })?;
    let mut by_run: Vec<Option<(UNet, Option<ValidationReport>)>> = (0..runs.len()).map(|_| None).collect();
    for (&i, t) in order.iter().zip(trained) {
        by_run[i] = Some(t);
    }
    let mut out: Vec<Option<Selected>> = (0..jobs.len()).map(|_| None).collect();
    let mut tried = vec![Vec::new(); jobs.len()];
    for (run, t) in runs.iter().zip(by_run) {
        let (unet, report) = t.ok_or_else(|| Error::invalid("internal: a UNet is missing"))?;
        let (steps, score) = match &report {
            Some(r) => (r.best_step, Some(r.best_score)),
            None => (run.config.steps, None),
        };
        tried[run.job].push((
            run.config.lr,
            run.config.widths.clone(),
            steps,
            score.unwrap_or(f64::NAN),
        ));
        // Strictly better only: ties keep the earlier combination.
        let better = out[run.job]
            .as_ref()
            .is_none_or(|s| score.zip(s.score).is_some_and(|(a, b)| a > b));
        if better {
            out[run.job] = Some(Selected {
                lr: run.config.lr,
                widths: run.config.widths.clone(),
                steps,
                score,
                unet,
                tried: Vec::new(),
            });
        }
    }
    out.into_iter()
        .zip(tried)
        .map(|(s, t)| {
            let mut s = s.ok_or_else(|| Error::invalid("internal: a job has no model"))?;
            s.tried = t;
            Ok(s)
        })
        .collect()
}

/// Scores on a test set; a kind is `None` when no UNet predicted it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Mean IoU over the classes present.
    pub miou: Option<f64>,
    /// IoU per class (`None`: absent from truth and prediction).
    pub iou: Option<Vec<Option<f64>>>,
    /// Share of pixels with the right class.
    pub pixel_accuracy: Option<f64>,
    /// PCK at 0.05 of the image size.
    pub pck05: Option<f64>,
    /// PCK at 0.1 of the image size.
    pub pck10: Option<f64>,
    /// Depth RMSE on the foreground (true depth below the far plane).
    pub depth_rmse: Option<f64>,
    /// Depth AbsRel on the foreground.
    pub depth_abs_rel: Option<f64>,
}

/// Scores `preds` (one per test image, from UNets covering `heads`) against `test`.
pub fn score_predictions(
    preds: &[ImageLabels],
    heads: &[HeadKind],
    test: &LabelledSet,
    classes: usize,
    ignore_index: Option<u32>,
    scores: &mut Scores,
) -> Result<()> {
    let t = &test.targets;
    let r = test.images.dims().get(2).copied().unwrap_or(0);
    if preds.len() != test.len() {
        return Err(Error::invalid(format!(
            "{} predictions for {} test images",
            preds.len(),
            test.len()
        )));
    }
    let missing = |h: HeadKind| Error::invalid(format!("the test set has no {} labels", h.name()));
    let no_head = |h: HeadKind| Error::invalid(format!("the UNet has no {} head", h.name()));
    for &h in heads {
        match h {
            HeadKind::Segmentation => {
                let truth = t.masks.as_ref().ok_or_else(|| missing(h))?;
                let mut c = Confusion::with_ignore_index(classes, ignore_index);
                for (m, p) in truth.iter().zip(preds) {
                    c.add(m, p.mask.as_ref().ok_or_else(|| no_head(h))?)?;
                }
                let rep = c.report();
                scores.miou = Some(rep.miou);
                scores.iou = Some(rep.iou);
                scores.pixel_accuracy = Some(rep.pixel_accuracy);
            }
            HeadKind::Keypoints => {
                let truth = t.keypoints.as_ref().ok_or_else(|| missing(h))?;
                let mut k = Pck::new(&[0.05, 0.1]);
                for (kp, p) in truth.iter().zip(preds) {
                    k.add(kp, p.keypoints.as_ref().ok_or_else(|| no_head(h))?, r)?;
                }
                let v = k.report();
                (scores.pck05, scores.pck10) = (Some(v[0]), Some(v[1]));
            }
            HeadKind::Depth => {
                let truth = t.depth.as_ref().ok_or_else(|| missing(h))?;
                let mut d = DepthError::default();
                for (dt, p) in truth.iter().zip(preds) {
                    d.add_foreground(dt, p.depth.as_ref().ok_or_else(|| no_head(h))?)?;
                }
                let rep = d.report();
                (scores.depth_rmse, scores.depth_abs_rel) = (Some(rep.rmse), Some(rep.abs_rel));
            }
        }
    }
    Ok(())
}

/// Scores trained UNets (each with the heads it was trained for) on `test`; mask
/// pixels of a UNet's ignore index are left out.
pub fn score(models: &[(&UNet, &[HeadKind])], test: &LabelledSet, classes: usize) -> Result<Scores> {
    let mut scores = Scores::default();
    for (unet, heads) in models {
        let preds = unet.predict(&test.images)?;
        score_predictions(&preds, heads, test, classes, unet.config.ignore_index, &mut scores)?;
    }
    Ok(scores)
}

impl Scores {
    /// The scores present, as rows of a Markdown table `| kind | score |`.
    pub fn table(&self) -> String {
        let mut t = String::from("| kind | score |\n| --- | --- |\n");
        if let (Some(m), Some(iou)) = (self.miou, &self.iou) {
            let per: Vec<String> = iou
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{k}: {}", v.map_or("-".into(), |v| format!("{v:.3}"))))
                .collect();
            t += &format!("| mIoU | {m:.3} ({}) |\n", per.join(", "));
        }
        if let (Some(a), Some(b)) = (self.pck05, self.pck10) {
            t += &format!("| PCK@0.05 | {a:.3} |\n| PCK@0.1 | {b:.3} |\n");
        }
        if let (Some(a), Some(b)) = (self.depth_rmse, self.depth_abs_rel) {
            t += &format!("| depth RMSE (foreground) | {a:.4} |\n| depth AbsRel | {b:.3} |\n");
        }
        t
    }
}
