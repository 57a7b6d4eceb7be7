//! Sample, generate, label, filter, write; and the fitting steps of HandsOff and
//! DatasetGAN.
//!
//! Filtering works on blocks of `block` consecutive latents (candidates): in each block
//! the `round(filter_fraction * block)` images with the highest uncertainty score are
//! dropped (ties to the later candidate) and the rest are written in candidate order,
//! until `count` images are written. Blocks make the choice local, so the run streams
//! and resumes exactly: a restart regenerates the block it was in and skips what the
//! manifest already holds.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use labelgan_core::image_io::tensor_to_images;
use labelgan_core::{Error, FeatureTaps, Generator, NoiseMode, Result, SplitMix64, Truncation};
use labelgan_eval::Targets;
use labelgan_labeler::train::{GeneratorTaps, PixelTargets, TrainReport, fit};
use labelgan_labeler::{Ensemble, Head, LabelerConfig};
use labelgan_stylegan::StyleGan2;

use crate::dataset::{DatasetWriter, Sample};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactoryConfig {
    /// Images to write.
    pub count: usize,
    /// Latent seed: candidate `c` is `z ~ N(0, I)` from `SplitMix64::derive(seed, c)`.
    pub seed: u64,
    /// Truncation psi (1: none).
    pub psi: f64,
    /// Fraction of each block dropped as most uncertain (HandsOff: 0.1).
    pub filter_fraction: f64,
    /// Candidates per filtering block.
    pub block: usize,
    /// Images per generator batch.
    pub batch: usize,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        Self {
            count: 1000,
            seed: 0,
            psi: 1.0,
            filter_fraction: 0.1,
            block: 50,
            batch: 8,
        }
    }
}

impl FactoryConfig {
    /// Images kept per block.
    pub fn keep_per_block(&self) -> usize {
        let drop = (self.filter_fraction * self.block as f64).round() as usize;
        self.block.saturating_sub(drop)
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.filter_fraction) {
            return Err(Error::invalid(format!(
                "filter fraction must be in [0, 1), got {}",
                self.filter_fraction
            )));
        }
        if self.block == 0 || self.batch == 0 || self.keep_per_block() == 0 {
            return Err(Error::invalid(
                "block and batch must be positive and keep at least one image per block",
            ));
        }
        Ok(())
    }
}

/// The ensembles that label each image; the first present of segmentation, keypoints,
/// depth gives the score used for filtering.
#[derive(Debug, Clone, Default)]
pub struct Labelers {
    pub segmentation: Option<Ensemble>,
    pub keypoints: Option<Ensemble>,
    pub depth: Option<Ensemble>,
}

impl Labelers {
    fn all(&self) -> Vec<&Ensemble> {
        [&self.segmentation, &self.keypoints, &self.depth]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Progress of [`generate_dataset`].
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub written: usize,
    pub count: usize,
    /// Images written per second in this run.
    pub rate: f64,
    pub eta_seconds: f64,
}

/// The latent of candidate `c`.
pub fn candidate_z(g: &StyleGan2, seed: u64, c: u64) -> Result<Tensor> {
    g.sample_z(1, SplitMix64::derive(seed, c).next_u64())
}

/// Candidates `first..first + k` of latent seed `seed`: their z (one `[1, z_dim]` each)
/// and their synthesis at truncation `psi` with constant noise, as one batch.
fn synthesize_candidates(
    g: &StyleGan2,
    seed: u64,
    first: u64,
    k: usize,
    psi: f64,
) -> Result<(Vec<Tensor>, labelgan_core::Synthesis)> {
    let zs = (0..k as u64)
        .map(|j| candidate_z(g, seed, first + j))
        .collect::<Result<Vec<_>>>()?;
    let ws = g.map(&Tensor::cat(&zs, 0)?, None, Truncation::psi(psi))?;
    let syn = g.synthesize(&ws, NoiseMode::Const)?;
    Ok((zs, syn))
}

/// Generates and labels candidates `start..start + n`: per candidate its z, the image
/// and each labeler's prediction.
fn label_candidates(
    g: &StyleGan2,
    prepared: &[(&Ensemble, labelgan_labeler::predict::Prepared)],
    cfg: &FactoryConfig,
    start: u64,
    n: usize,
) -> Result<Vec<Sample>> {
    let r = g.spec().resolution;
    let mut out = Vec::with_capacity(n);
    for s in (0..n).step_by(cfg.batch) {
        let k = cfg.batch.min(n - s);
        let (zs, syn) = synthesize_candidates(g, cfg.seed, start + s as u64, k, cfg.psi)?;
        let taps: FeatureTaps = syn.taps.convs();
        let images = tensor_to_images(&syn.image)?;
        for j in 0..k {
            let mut sample = Sample {
                index: 0,
                candidate: start + (s + j) as u64,
                seed: cfg.seed,
                z: zs[j].flatten_all()?.to_vec1()?,
                rgb: images[j].to_rgb8().into_raw(),
                mask: None,
                depth: None,
                keypoints: None,
                score: f32::NAN,
            };
            for (e, f) in prepared {
                if e.config.resolution != r {
                    return Err(Error::invalid(format!(
                        "a labeler predicts at {} px but the generator makes {r} px images",
                        e.config.resolution
                    )));
                }
                let p = e.predict_prepared(f, &taps, j)?;
                if sample.score.is_nan() {
                    sample.score = p.score;
                }
                if let Some(c) = p.classes {
                    sample.mask = Some(c.iter().map(|&v| v.min(255) as u8).collect());
                } else if let Some(k) = p.keypoints {
                    sample.keypoints = Some(k.iter().map(|&(x, y)| [x, y]).collect());
                } else if let Some(v) = p.values {
                    sample.depth = Some(v);
                }
            }
            out.push(sample);
        }
    }
    Ok(out)
}

/// Samples, labels, filters and writes `cfg.count` images to `out`, resuming a run
/// that was interrupted. `progress` is called after every image; returning `false`
/// stops the run (the folder stays resumable). Returns the number of images written.
pub fn generate_dataset(
    g: &StyleGan2,
    labelers: &Labelers,
    cfg: &FactoryConfig,
    out: &Path,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<usize> {
    cfg.validate()?;
    let ens = labelers.all();
    if ens.is_empty() {
        return Err(Error::invalid("the factory needs at least one labeler"));
    }
    let device = g.device().clone();
    let prepared = ens
        .iter()
        .map(|e| Ok((*e, e.prepare(&device)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut w = DatasetWriter::open(out, g.spec().resolution)?;
    let keep = cfg.keep_per_block();
    let started = Instant::now();
    let first = w.done();
    while w.done() < cfg.count {
        let block = w.done() / keep;
        let start = (block * cfg.block) as u64;
        let cands = label_candidates(g, &prepared, cfg, start, cfg.block)?;
        // Drop the most uncertain; keep candidate order.
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| cands[a].score.total_cmp(&cands[b].score).then(a.cmp(&b)));
        let mut kept: Vec<usize> = order[..keep].to_vec();
        kept.sort_unstable();
        let mut cands: Vec<Option<Sample>> = cands.into_iter().map(Some).collect();
        for (j, &ci) in kept.iter().enumerate() {
            let index = block * keep + j;
            if index < w.done() || index >= cfg.count {
                continue;
            }
            let mut s = cands[ci]
                .take()
                .ok_or_else(|| Error::invalid("internal: candidate kept twice"))?;
            s.index = index;
            w.write(&s)?;
            let done_here = w.done() - first;
            let rate = done_here as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let p = Progress {
                written: w.done(),
                count: cfg.count,
                rate,
                eta_seconds: (cfg.count - w.done()) as f64 / rate.max(1e-9),
            };
            if !progress(&p) {
                return Ok(w.done());
            }
        }
    }
    w.finish(serde_json::json!({
        "generator_resolution": g.spec().resolution,
        "config": cfg,
        "filtering": format!(
            "per block of {} candidates, the {} most uncertain dropped",
            cfg.block,
            cfg.block - keep
        ),
    }))?;
    Ok(w.done())
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
    pub distance_after: f64,
}

/// Share of pixels per class over `masks` (ids below `classes`).
pub fn class_frequencies(masks: &[Vec<u32>], classes: usize) -> Result<Vec<f64>> {
    let mut n = vec![0u64; classes];
    for m in masks {
        for &v in m {
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
pub fn calibrate_class_priors(
    g: &StyleGan2,
    seg: &Ensemble,
    target: &[f64],
    opts: &PriorCalibration,
    progress: &mut dyn FnMut(&str),
) -> Result<(Ensemble, CalibrationReport)> {
    let classes = match seg.config.head {
        labelgan_labeler::Head::Segmentation { classes } => classes,
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
    let r = g.spec().resolution;
    if seg.config.resolution != r {
        return Err(Error::invalid(format!(
            "the labeler predicts at {} px but the generator makes {r} px images",
            seg.config.resolution
        )));
    }
    let seed = opts.seed ^ CALIBRATION_STREAM;
    let mut batches: Vec<(FeatureTaps, usize)> = Vec::new();
    for s in (0..opts.images).step_by(opts.batch) {
        let k = opts.batch.min(opts.images - s);
        let (_, syn) = synthesize_candidates(g, seed, s as u64, k, opts.psi)?;
        batches.push((syn.taps.convs(), k));
    }
    let device = g.device().clone();
    let measure = |e: &Ensemble| -> Result<Vec<f64>> {
        let f = e.prepare(&device)?;
        let mut n = vec![0u64; classes];
        for (taps, k) in &batches {
            for j in 0..*k {
                let p = e.predict_prepared(&f, taps, j)?;
                for &c in p.classes.as_deref().unwrap_or_default() {
                    n[(c as usize).min(classes - 1)] += 1;
                }
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
        e.shift_outputs(&shift)?;
        share = measure(&e)?;
        let d = share_distance(&share, target);
        progress(&format!("  round {}: distance {d:.3}", round + 1));
        if d < best.0 {
            best = (d, shift.clone(), share.clone());
        }
    }
    let (distance_after, shift, after) = best;
    let mut out = seg.clone();
    out.shift_outputs(&shift)?;
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
pub fn calibrate_class_priors_cached(
    g: &StyleGan2,
    seg: &Ensemble,
    target: &[f64],
    opts: &PriorCalibration,
    cache: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<(Ensemble, CalibrationReport)> {
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
            e.shift_outputs(&saved.report.shift)?;
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
pub fn calibrate_segmentation(
    g: &StyleGan2,
    labelers: &mut Labelers,
    masks: &[Vec<u32>],
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
    let target = class_frequencies(masks, seg.config.head.outputs())?;
    let (cal, report) = calibrate_class_priors_cached(g, seg, &target, opts, cache, progress)?;
    labelers.segmentation = Some(cal);
    Ok(Some(report))
}

/// The conv taps of `g` for `ws`, regenerated on demand, as a labeler training source.
pub fn taps_of<'a>(g: &'a StyleGan2, ws: &Tensor) -> Result<GeneratorTaps<'a, StyleGan2>> {
    let probe = g.synthesize(&ws.narrow(0, 0, 1)?, NoiseMode::Const)?;
    let keep = probe.taps.convs().specs().into_iter().map(|s| s.name).collect();
    Ok(GeneratorTaps {
        generator: g,
        ws: ws.clone(),
        noise: NoiseMode::Const,
        keep,
    })
}

/// How [`fit_labelers`] fits each ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Segmentation classes (default: the largest id in the masks + 1).
    pub classes: Option<usize>,
    pub members: usize,
    pub pixels_per_image: usize,
    pub max_epochs: usize,
    /// Keypoint heatmap std in pixels.
    pub sigma: f32,
    pub seed: u64,
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
        }
    }
}

/// Fits one labeler per label kind present in `targets` (segmentation, keypoints,
/// depth) on the taps of the latents that `latents()` returns (called once, and only if
/// something must be fitted). With `cache`, each fitted ensemble is saved there as
/// `KIND.safetensors` and later calls load it instead of fitting again.
pub fn fit_labelers(
    g: &StyleGan2,
    targets: &Targets,
    options: &FitOptions,
    cache: Option<&Path>,
    latents: &mut dyn FnMut() -> Result<Tensor>,
    progress: &mut dyn FnMut(&str),
) -> Result<Labelers> {
    if targets.masks.is_none() && targets.keypoints.is_none() && targets.depth.is_none() {
        return Err(Error::invalid("no labels to fit: expected masks, keypoints or depth"));
    }
    if let Some(dir) = cache {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        labelgan_core::io::remove_stale_temp_files(dir)?;
    }
    let r = g.spec().resolution;
    let mut ws: Option<Tensor> = None;
    let mut fit_or_load = |name: &str, head: Head, t: Vec<PixelTargets>| -> Result<Ensemble> {
        let path = cache.map(|d| d.join(format!("{name}.safetensors")));
        if let Some(p) = path.as_ref().filter(|p| p.exists()) {
            progress(&format!("using the {name} labeler fitted earlier: {}", p.display()));
            return Ensemble::load(p, g.device());
        }
        if ws.is_none() {
            ws = Some(latents()?);
        }
        let mut cfg = LabelerConfig::new(head, r);
        cfg.members = options.members;
        cfg.pixels_per_image = options.pixels_per_image;
        cfg.max_epochs = options.max_epochs;
        cfg.seed = options.seed;
        let (e, rep) = fit_labeler(g, ws.as_ref().expect("set above"), &t, &cfg, |l| {
            progress(&format!("{name}: {l}"))
        })?;
        progress(&format!(
            "{name} labeler: {} epochs, best held-out loss per member {:?}",
            rep.epochs, rep.best_val_loss
        ));
        if let Some(p) = &path {
            e.save(p)?;
        }
        Ok(e)
    };
    let mut labelers = Labelers::default();
    if let Some(m) = &targets.masks {
        let found = m.iter().flat_map(|v| v.iter()).copied().max().unwrap_or(0) as usize + 1;
        let classes = options.classes.unwrap_or(found);
        if found > classes {
            return Err(Error::invalid(format!(
                "masks hold class {} but only {classes} classes were asked for",
                found - 1
            )));
        }
        let t = m.iter().map(|v| PixelTargets::Segmentation(v.clone())).collect();
        labelers.segmentation = Some(fit_or_load("segmentation", Head::Segmentation { classes }, t)?);
    }
    if let Some(k) = &targets.keypoints {
        let count = k.first().map_or(0, |v| v.len());
        let t = k
            .iter()
            .map(|v| PixelTargets::Keypoints(v.iter().map(|p| (p[0], p[1])).collect()))
            .collect();
        let head = Head::Keypoints {
            count,
            sigma: options.sigma,
        };
        labelers.keypoints = Some(fit_or_load("keypoints", head, t)?);
    }
    if let Some(d) = &targets.depth {
        let t = d.iter().map(|v| PixelTargets::Depth(v.clone())).collect();
        labelers.depth = Some(fit_or_load("depth", Head::Depth, t)?);
    }
    Ok(labelers)
}

/// Fits a labeler on images whose latents are `ws` `[N, num_ws, w_dim]` and whose
/// labels are `targets`. HandsOff: `ws` are the inverted latents of labelled real
/// images. DatasetGAN: `ws` are the latents of generated images people labelled.
pub fn fit_labeler(
    g: &StyleGan2,
    ws: &Tensor,
    targets: &[PixelTargets],
    config: &LabelerConfig,
    progress: impl FnMut(&str),
) -> Result<(Ensemble, TrainReport)> {
    fit(config, &taps_of(g, ws)?, targets, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_per_block_rounds_the_dropped_share() {
        let c = FactoryConfig {
            block: 50,
            filter_fraction: 0.1,
            ..FactoryConfig::default()
        };
        assert_eq!(c.keep_per_block(), 45);
        let c = FactoryConfig {
            block: 4,
            filter_fraction: 0.3,
            ..FactoryConfig::default()
        };
        assert_eq!(c.keep_per_block(), 3);
        assert!(
            FactoryConfig {
                filter_fraction: 1.0,
                ..FactoryConfig::default()
            }
            .validate()
            .is_err()
        );
    }
}
