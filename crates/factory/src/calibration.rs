//! Class-prior calibration of a segmentation labeler.
//!
//! A labeler fitted on a few inverted images, whose labels sit a pixel or two off the
//! generated parts they name, draws small parts (eyes, nose, mouth) too large; a UNet
//! trained on its masks learns the same. Calibration shifts its class logits so that
//! the classes cover the same share of generated images' pixels as they cover in the
//! labelled masks.

use std::path::Path;

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, FeatureTaps, Generator, LabelKind, Labels, PixelLabeler, Result};
use labelgan_labeler::Ensemble;

use crate::labelers::Labelers;
use crate::sampling::synthesize_candidates;

/// A segmentation labeler whose class logits can be shifted: what calibration moves.
pub trait ShiftClassLogits: PixelLabeler + Clone {
    /// Adds `shift[k]` to class `k`'s logit (every member, for an ensemble).
    fn shift_class_logits(&mut self, shift: &[f32]) -> Result<()>;
}

impl ShiftClassLogits for Ensemble {
    fn shift_class_logits(&mut self, shift: &[f32]) -> Result<()> {
        self.shift_outputs(shift)
    }
}

/// Settings of [`calibrate_class_priors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorCalibration {
    /// Generated images the labeler's class frequencies are measured on.
    pub images: usize,
    /// Rounds of measuring and shifting.
    pub rounds: usize,
    /// Latent seed. The images come from their own stream
    /// (`SplitMix64::derive(seed ^ CALIBRATION_STREAM, i)`), not from the dataset's
    /// candidates.
    pub seed: u64,
    /// Truncation psi of the images (use the dataset's).
    pub psi: f64,
    /// Images per generator batch.
    pub batch: usize,
    /// A conditional generator's class (use the dataset's; `None`: classes in turn).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class: Option<u32>,
}

/// Most calibration images (their feature maps are held in memory, about 1 MB each at
/// 64 px) and rounds.
pub const MAX_CALIBRATION_IMAGES: usize = 4096;
/// Most calibration rounds.
pub const MAX_CALIBRATION_ROUNDS: usize = 1000;

impl PriorCalibration {
    /// Checks the settings before any work (`rounds == 0` is "off" and always valid).
    pub fn validate(&self) -> Result<()> {
        if self.rounds == 0 {
            return Ok(());
        }
        if !(1..=MAX_CALIBRATION_IMAGES).contains(&self.images) {
            return Err(Error::invalid(format!(
                "calibration images is {}; it must be in 1..={MAX_CALIBRATION_IMAGES}",
                self.images
            )));
        }
        if self.rounds > MAX_CALIBRATION_ROUNDS {
            return Err(Error::invalid(format!(
                "calibration rounds is {}; at most {MAX_CALIBRATION_ROUNDS} is allowed",
                self.rounds
            )));
        }
        if !(1..=MAX_CALIBRATION_IMAGES).contains(&self.batch) || !self.psi.is_finite() {
            return Err(Error::invalid(format!(
                "calibration batch {} must be in 1..={MAX_CALIBRATION_IMAGES} and psi {} finite",
                self.batch, self.psi
            )));
        }
        Ok(())
    }
}

/// XORed into the seed of the calibration images' latents.
pub const CALIBRATION_STREAM: u64 = 0xca11_b0a7_e000_0001;

impl Default for PriorCalibration {
    fn default() -> Self {
        Self {
            images: 64,
            rounds: 12,
            seed: 0,
            psi: 1.0,
            batch: 8,
            class: None,
        }
    }
}

/// What [`calibrate_class_priors`] measured and chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Share of pixels per class in the labelled masks.
    pub target: Vec<f64>,
    /// Share per class in the labeler's masks of the calibration images, before.
    pub before: Vec<f64>,
    /// The same with the chosen shift.
    pub after: Vec<f64>,
    /// Added to each class's logit (every member).
    pub shift: Vec<f32>,
    /// Mean |log(share / target)| over the classes, before and after.
    pub distance_before: f64,
    /// The same after the chosen shift.
    pub distance_after: f64,
}

/// Share of pixels per class over `masks` (ids below `classes`; pixels of
/// `ignore_index` left out).
pub fn class_frequencies(masks: &[Vec<u32>], classes: usize, ignore_index: Option<u32>) -> Result<Vec<f64>> {
    let mut n = vec![0u64; classes];
    for m in masks {
        for &v in m.iter().filter(|&&v| Some(v) != ignore_index) {
            let slot = n
                .get_mut(v as usize)
                .ok_or_else(|| Error::invalid(format!("mask holds class {v} but there are {classes} classes")))?;
            *slot += 1;
        }
    }
    let total = n.iter().sum::<u64>().max(1) as f64;
    Ok(n.into_iter().map(|v| v as f64 / total).collect())
}

/// Floor on the shares compared in log space (a class absent from the masks).
const SHARE_FLOOR: f64 = 1e-5;

fn share_distance(share: &[f64], target: &[f64]) -> f64 {
    let n = share.len().max(1) as f64;
    share
        .iter()
        .zip(target)
        .map(|(s, t)| (s.max(SHARE_FLOOR) / t.max(SHARE_FLOOR)).ln().abs())
        .sum::<f64>()
        / n
}

/// Class-prior calibration of a segmentation labeler: shifts its class logits so that
/// the classes cover the same share of generated images' pixels as they cover in the
/// labelled masks (`target`, from [`class_frequencies`]).
///
/// A labeler fitted on a few inverted images, whose labels sit a pixel or two off the
/// generated parts they name, draws small parts (eyes, nose, mouth) too large; a UNet
/// trained on its masks learns the same. The shift is found by rounds of measuring the
/// shares on `opts.images` generated images and moving each class's logit by
/// `log(target / share)`; the round closest to the target (mean absolute log ratio)
/// wins, and the shift 0 competes too, so the result is never further from the target
/// than the labeler was. The calibration images' feature maps are kept in memory for
/// the rounds (about 1 MB per image at 64 px).
pub fn calibrate_class_priors<G: Generator + ?Sized, L: ShiftClassLogits>(
    g: &G,
    seg: &L,
    target: &[f64],
    opts: &PriorCalibration,
    progress: &mut dyn FnMut(&str),
) -> Result<(L, CalibrationReport)> {
    let classes = match seg.kind() {
        LabelKind::Segmentation { classes } => *classes,
        _ => return Err(Error::invalid("class-prior calibration needs a segmentation labeler")),
    };
    if target.len() != classes {
        return Err(Error::invalid(format!(
            "target shares for {} classes but the labeler has {classes}",
            target.len()
        )));
    }
    if target.iter().any(|t| !t.is_finite() || *t < 0.0) {
        return Err(Error::invalid(format!(
            "target shares must be finite and >= 0: {target:?}"
        )));
    }
    if opts.images == 0 || opts.batch == 0 {
        return Err(Error::invalid(
            "calibration needs at least one image and a positive batch",
        ));
    }
    opts.validate()?;
    let r = g.spec().resolution;
    let seed = opts.seed ^ CALIBRATION_STREAM;
    let mut batches: Vec<FeatureTaps> = Vec::new();
    for s in (0..opts.images).step_by(opts.batch) {
        let k = opts.batch.min(opts.images - s);
        let (_, _, syn) = synthesize_candidates(g, seed, opts.class, s as u64, k, opts.psi)?;
        batches.push(syn.taps.features());
    }
    let measure = |e: &L| -> Result<Vec<f64>> {
        let mut n = vec![0u64; classes];
        for taps in &batches {
            let p = e.predict(taps)?;
            let Labels::Segmentation(t) = &p.labels else {
                return Err(Error::invalid("class-prior calibration needs a segmentation labeler"));
            };
            if p.uncertainty.dims()[1..] != [r, r] {
                return Err(Error::invalid(format!(
                    "the labeler predicts {:?} px but the generator makes {r} px images",
                    &p.uncertainty.dims()[1..]
                )));
            }
            for c in t.flatten_all()?.to_vec1::<u32>()? {
                n[(c as usize).min(classes - 1)] += 1;
            }
        }
        let total = n.iter().sum::<u64>().max(1) as f64;
        Ok(n.into_iter().map(|v| v as f64 / total).collect())
    };
    let before = measure(seg)?;
    let distance_before = share_distance(&before, target);
    progress(&format!(
        "class-prior calibration on {} generated images: distance {distance_before:.3} before",
        opts.images
    ));
    let mut best = (distance_before, vec![0f32; classes], before.clone());
    let (mut shift, mut share) = (vec![0f32; classes], before.clone());
    // Per-class step gain, doubled while a class stays on the same side of its target
    // (logits far apart barely move the vote per unit of shift) and quartered when it
    // crosses over.
    let (mut gain, mut last_sign) = (vec![1f64; classes], vec![0f64; classes]);
    for round in 0..opts.rounds {
        for k in 0..classes {
            let step = (target[k].max(SHARE_FLOOR) / share[k].max(SHARE_FLOOR)).ln();
            let sign = if step.abs() < 1e-3 { 0.0 } else { step.signum() };
            gain[k] = if sign == 0.0 {
                1.0
            } else if sign == last_sign[k] {
                (gain[k] * 2.0).min(64.0)
            } else if last_sign[k] != 0.0 {
                (gain[k] * 0.25).max(1.0 / 64.0)
            } else {
                gain[k]
            };
            last_sign[k] = sign;
            shift[k] += (step.clamp(-2.0, 2.0) * gain[k]) as f32;
        }
        let mut e = seg.clone();
        e.shift_class_logits(&shift)?;
        share = measure(&e)?;
        let d = share_distance(&share, target);
        progress(&format!("  round {}: distance {d:.3}", round + 1));
        if d < best.0 {
            best = (d, shift.clone(), share.clone());
        }
    }
    let (distance_after, shift, after) = best;
    let mut out = seg.clone();
    out.shift_class_logits(&shift)?;
    Ok((
        out,
        CalibrationReport {
            target: target.to_vec(),
            before,
            after,
            shift,
            distance_before,
            distance_after,
        },
    ))
}

#[derive(Serialize, Deserialize)]
struct SavedCalibration {
    options: PriorCalibration,
    report: CalibrationReport,
}

/// File name of a saved calibration in a labeler cache folder.
pub const CALIBRATION_FILE: &str = "segmentation_calibration.json";

/// [`calibrate_class_priors`], remembered in `cache/segmentation_calibration.json`:
/// a later call with the same options and target applies the saved shift instead of
/// measuring again (a resumed run labels with exactly the same labeler).
pub fn calibrate_class_priors_cached<G: Generator + ?Sized, L: ShiftClassLogits>(
    g: &G,
    seg: &L,
    target: &[f64],
    opts: &PriorCalibration,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(L, CalibrationReport)> {
    let path = cache.map(|d| d.join(CALIBRATION_FILE));
    if let Some(p) = path.as_ref().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let saved: SavedCalibration =
            serde_json::from_str(&text).map_err(|e| Error::format(p, format!("calibration: {e}")))?;
        // Compared with a tolerance: JSON need not give back the last bit of a float.
        let same_target = saved.report.target.len() == target.len()
            && saved
                .report
                .target
                .iter()
                .zip(target)
                .all(|(a, b)| (a - b).abs() < 1e-12);
        if saved.options.images == opts.images
            && saved.options.rounds == opts.rounds
            && saved.options.seed == opts.seed
            && saved.options.batch == opts.batch
            && (saved.options.psi - opts.psi).abs() < 1e-12
            && same_target
        {
            progress(&format!(
                "using the class-prior calibration made earlier: {}",
                p.display()
            ));
            let mut e = seg.clone();
            e.shift_class_logits(&saved.report.shift)?;
            return Ok((e, saved.report));
        }
        progress(&format!(
            "{} was made with other settings; calibrating again",
            p.display()
        ));
    }
    let (e, report) = calibrate_class_priors(g, seg, target, opts, progress)?;
    if let Some(p) = &path {
        let saved = SavedCalibration {
            options: opts.clone(),
            report: report.clone(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| Error::invalid(e.to_string()))?;
        labelgan_core::io::write_atomic(p, text.as_bytes())?;
    }
    Ok((e, report))
}

impl CalibrationReport {
    /// The shares in percent and the shift, one line each.
    pub fn summary(&self) -> String {
        let pct = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.2}", 100.0 * x))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let shift = self
            .shift
            .iter()
            .map(|x| format!("{x:+.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "class shares (%), labelled masks: {}\ngenerated, before: {} (distance {:.3})\n\
             generated, after:  {} (distance {:.3})\nlogit shift: {shift}",
            pct(&self.target),
            pct(&self.before),
            self.distance_before,
            pct(&self.after),
            self.distance_after
        )
    }
}

/// Calibrates `labelers.segmentation`, if there is one, to the class shares of the
/// labelled `masks` ([`calibrate_class_priors_cached`]; `opts.rounds == 0`: left as
/// is). Returns the report.
pub fn calibrate_segmentation<G: Generator + ?Sized, L: ShiftClassLogits>(
    g: &G,
    labelers: &mut Labelers<L>,
    masks: &[Vec<u32>],
    ignore_index: Option<u32>,
    opts: &PriorCalibration,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<CalibrationReport>> {
    let Some(seg) = labelers.segmentation.as_ref() else {
        return Ok(None);
    };
    if opts.rounds == 0 {
        return Ok(None);
    }
    let classes = match seg.kind() {
        LabelKind::Segmentation { classes } => *classes,
        _ => return Err(Error::invalid("the segmentation labeler does not predict classes")),
    };
    let target = class_frequencies(masks, classes, ignore_index)?;
    let (cal, report) = calibrate_class_priors_cached(g, seg, &target, opts, cache, progress)?;
    labelers.segmentation = Some(cal);
    Ok(Some(report))
}
