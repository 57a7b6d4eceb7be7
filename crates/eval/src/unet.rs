//! A small UNet in candle with segmentation, keypoint-heatmap and depth heads: the
//! model that tells whether a dataset is worth training on.
//!
//! Layout: per level two 3x3 convs with ReLU (widths `widths[0..L]`), 2x2 average
//! pooling between levels; on the way up nearest 2x upsampling, concatenation with the
//! skip, two 3x3 convs; a 1x1 conv to
//! `classes + keypoints + depth` output channels. Losses: cross-entropy on the classes;
//! for keypoints a softmax over each map's pixels against a Gaussian (std `sigma`
//! pixels), or squared error on Gaussian heatmaps ([`KeypointLoss`]); squared error on
//! depth; summed. Adam. Optional augmentation: horizontal flips (with the domain's left/right
//! class and keypoint pairs swapped) and random shifts of up to `shift` pixels (edges
//! replicated), both applied to labels alike. On the CPU each conv with its bias and
//! ReLU is one op (`labelgan_kernels::conv::conv2d_bias`), and pooling and upsampling are
//! one-pass ops with their own gradients.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::peak::{PeakScale, subpixel_peak};
use labelgan_core::{Error, Result, SplitMix64};
use labelgan_dataset::{ImageLabels, Targets};
use labelgan_kernels::layer::{Conv2d, init_he_normal};
use labelgan_optim::{Adam, named_vars};

/// Shape and training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// Input height and width.
    pub resolution: usize,
    /// Channels per level (the last is the bottleneck).
    pub widths: Vec<usize>,
    /// Segmentation classes (0: no segmentation head).
    pub classes: usize,
    /// Keypoints (0: none).
    pub keypoints: usize,
    /// Whether there is a depth head.
    pub depth: bool,
    /// Heatmap std in pixels.
    pub sigma: f32,
    /// Peak learning rate (cosine schedule).
    pub lr: f64,
    /// Images per step.
    pub batch: usize,
    /// Training steps.
    pub steps: usize,
    /// Seed of the initialisation and the batches.
    pub seed: u64,
    /// Horizontal flips (half of the samples), swapping left and right labels.
    pub flip: Option<Flip>,
    /// Random shifts up to this many pixels (0: none).
    pub shift: usize,
    /// How the keypoint head is trained (files from before this option: squared error).
    #[serde(default = "heatmap_mse")]
    pub keypoint_loss: KeypointLoss,
    /// Mask id of unlabelled pixels: no loss there (`None`: every id is a class).
    #[serde(default = "labelgan_core::labels::default_ignore_index")]
    pub ignore_index: Option<u32>,
}

fn heatmap_mse() -> KeypointLoss {
    KeypointLoss::HeatmapMse
}

/// The keypoint head's loss. Either way a keypoint is decoded as the peak of its map,
/// placed between pixels by a parabola through the logits (`labelgan_core::peak`).
///
/// Measured on toyworld at 64 px (UNet widths 8/16/32, 300 steps, 200 test faces,
/// seeds 0-2), PCK@0.1:
///
/// | trained on | squared error, lr 3e-3 | spatial softmax, lr 3e-3 | spatial softmax, lr 1e-2 |
/// | --- | --- | --- | --- |
/// | 2,000 real faces | 0.21, 0.25, 0 | 1.00, 1.00, 0.99 | 1.00, 1.00, 1.00 |
/// | 16 real faces | 0.20, 0.29, 0 | 0.90, 0.84, 0.92 | 0.35, 0.95, 0.99 |
///
/// (0: the maps collapsed to zero.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeypointLoss {
    /// Squared error on Gaussian heatmaps (peak 1, std `sigma`), weighted by 100. Maps
    /// that are mostly 0 invite the all-zero answer, and the head often settles there.
    HeatmapMse,
    /// Cross-entropy of a softmax over each map's pixels against the Gaussian normalised
    /// to sum 1 (keypoints with an empty map are left out): every map must put its mass
    /// somewhere, so there is no all-zero answer.
    #[default]
    SpatialSoftmax,
}

/// Default channels per level for a UNet with a segmentation head. Chosen on seed 0 as
/// the narrowest at which the upper bound (2,000 real toyworld faces, 1,000 steps, 500
/// test faces) stops gaining: mIoU 0.800 at 8/16/32, 0.850 at 12/24/48, 0.852 at
/// 16/32/64. Over seeds 0-2 the gain is smaller, 0.817 ± 0.015 -> 0.827 ± 0.024 (seed 1
/// lost 0.026), and 16 labelled faces overfit the wider net: 0.670 ± 0.019 -> 0.585 ±
/// 0.090 (`docs/factory.md`). A step takes about 2.5 times as long as at 8/16/32.
pub const SEGMENTATION_WIDTHS: [usize; 3] = [12, 24, 48];

/// Default channels per level for keypoint and depth UNets: at 8/16/32 the keypoint
/// upper bound reaches PCK@0.1 0.99-1.00 already (the table at [`KeypointLoss`]), and a
/// step costs about 40 % of one at [`SEGMENTATION_WIDTHS`].
pub const DENSE_WIDTHS: [usize; 3] = [8, 16, 32];

/// Most channels per level, classes or keypoints.
pub const MAX_WIDTH: usize = 4096;
/// Most levels.
pub const MAX_LEVELS: usize = 12;
/// Most images per step.
pub const MAX_BATCH: usize = 4096;
/// Most training steps.
pub const MAX_STEPS: usize = 100_000_000;
/// Most memory one batch's activations may take (16 GB).
const MAX_ACTIVATION_BYTES: f64 = 16e9;

/// The default widths for a UNet with these heads ([`SEGMENTATION_WIDTHS`] when it
/// segments, [`DENSE_WIDTHS`] otherwise).
pub fn default_widths(segmentation: bool) -> Vec<usize> {
    if segmentation {
        SEGMENTATION_WIDTHS.to_vec()
    } else {
        DENSE_WIDTHS.to_vec()
    }
}

impl UNetConfig {
    /// Output channels: classes, keypoint maps and depth.
    pub fn outputs(&self) -> usize {
        self.classes + self.keypoints + self.depth as usize
    }

    /// Checks the settings before a model is built.
    pub fn validate(&self) -> Result<()> {
        let levels = self.widths.len();
        if levels < 2 || self.widths.contains(&0) {
            return Err(Error::invalid(format!(
                "a UNet needs at least two positive widths, got {:?}",
                self.widths
            )));
        }
        if !self.resolution.is_multiple_of(1 << (levels - 1)) {
            return Err(Error::invalid(format!(
                "resolution {} is not divisible by 2^{}",
                self.resolution,
                levels - 1
            )));
        }
        if self.outputs() == 0 || self.batch == 0 {
            return Err(Error::invalid("the UNet needs a head and a positive batch"));
        }
        for (what, v, max) in [
            ("widths", self.widths.iter().copied().max().unwrap_or(0), MAX_WIDTH),
            ("levels", levels, MAX_LEVELS),
            ("classes", self.classes, MAX_WIDTH),
            ("keypoints", self.keypoints, MAX_WIDTH),
            ("batch", self.batch, MAX_BATCH),
            ("shift", self.shift, self.resolution),
            ("steps", self.steps, MAX_STEPS),
        ] {
            if v > max {
                return Err(Error::invalid(format!("UNet {what} is {v}; at most {max} is allowed")));
            }
        }
        // One batch's activations (about 4 maps per level, f32, forward and backward).
        let bytes: f64 = self
            .widths
            .iter()
            .enumerate()
            .map(|(l, &w)| (w * (self.resolution >> l).pow(2)) as f64)
            .sum::<f64>()
            * self.batch as f64
            * 4.0
            * 8.0;
        if bytes > MAX_ACTIVATION_BYTES {
            return Err(Error::invalid(format!(
                "a UNet of widths {:?} on batches of {} at {} px needs about {:.0} GB; use fewer channels or a smaller batch",
                self.widths,
                self.batch,
                self.resolution,
                bytes / 1e9
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::invalid(format!(
                "UNet lr {} and sigma {} must be finite and above 0",
                self.lr, self.sigma
            )));
        }
        Ok(())
    }
}

/// What a horizontal flip swaps: the domain's left/right class pairs and keypoint
/// pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flip {
    /// Class pairs swapped by a flip.
    pub classes: Vec<(u32, u32)>,
    /// Keypoint pairs swapped by a flip.
    pub keypoints: Vec<(usize, usize)>,
}

impl Flip {
    /// Toyworld: left and right eye classes (3, 4); eye centres (0, 1) and mouth
    /// corners (3, 4).
    pub fn toyworld() -> Self {
        Self {
            classes: vec![(3, 4)],
            keypoints: vec![(0, 1), (3, 4)],
        }
    }
}

/// Two 3x3 convolutions with ReLU: one level of the UNet (`{name}.0`, `{name}.1`).
#[derive(Debug, Clone)]
struct Level(Conv2d, Conv2d);

impl Level {
    fn new(vb: VarBuilder, o: usize, i: usize) -> Result<Self> {
        Ok(Self(
            Conv2d::new(vb.pp("0"), o, i, 3)?,
            Conv2d::new(vb.pp("1"), o, o, 3)?,
        ))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.1.forward_fused(&self.0.forward_fused(x, true)?, true)
    }
}

/// The evaluation UNet: weights and the settings they were built with.
#[derive(Clone)]
pub struct UNet {
    /// Shape and training settings.
    pub config: UNetConfig,
    /// `down{l}` for every level, the last one the bottleneck.
    down: Vec<Level>,
    /// `up{l}` for every level but the last (index `l`; run from the deepest up).
    up: Vec<Level>,
    /// The 1x1 output convolution `out`.
    out: Conv2d,
    /// The trainable variables, by name.
    vars: VarMap,
}

impl std::fmt::Debug for UNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UNet")
            .field("config", &self.config)
            .field("variables", &self.vars.all_vars().len())
            .finish()
    }
}

fn up2(x: &Tensor) -> Result<Tensor> {
    labelgan_kernels::resample::upsample_nearest2(x)
}

fn down2(x: &Tensor) -> Result<Tensor> {
    labelgan_kernels::resample::avg_pool2(x)
}

impl UNet {
    /// A freshly initialised UNet on `device`: He-normal weights from `config.seed`
    /// (drawn layer by layer, down then up then out), zero biases.
    pub fn new(config: UNetConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let vars = VarMap::new();
        {
            let mut rng = SplitMix64::new(config.seed);
            let mut init = |name: String, o: usize, i: usize, k: usize| -> Result<()> {
                init_he_normal(&vars, &name, (o, i, k), &mut rng, device)
            };
            let w = &config.widths;
            let mut cin = 3;
            for (l, &c) in w.iter().enumerate() {
                init(format!("down{l}.0"), c, cin, 3)?;
                init(format!("down{l}.1"), c, c, 3)?;
                cin = c;
            }
            for l in (0..w.len() - 1).rev() {
                init(format!("up{l}.0"), w[l], cin + w[l], 3)?;
                init(format!("up{l}.1"), w[l], w[l], 3)?;
                cin = w[l];
            }
            init("out".into(), config.outputs(), cin, 1)?;
        }
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let w = &config.widths;
        let mut down = Vec::with_capacity(w.len());
        let mut cin = 3;
        for (l, &c) in w.iter().enumerate() {
            down.push(Level::new(vb.pp(format!("down{l}")), c, cin)?);
            cin = c;
        }
        let mut up: Vec<Option<Level>> = (0..w.len() - 1).map(|_| None).collect();
        for l in (0..w.len() - 1).rev() {
            up[l] = Some(Level::new(vb.pp(format!("up{l}")), w[l], cin + w[l])?);
            cin = w[l];
        }
        let up = up.into_iter().flatten().collect();
        let out = Conv2d::new(vb.pp("out"), config.outputs(), cin, 1)?;
        Ok(Self {
            config,
            down,
            up,
            out,
            vars,
        })
    }

    /// The trainable variables by name, in name order.
    fn named_vars(&self) -> BTreeMap<String, Var> {
        named_vars(&self.vars)
    }

    /// Raw outputs `[N, outputs, R, R]` for images `[N, 3, R, R]` in [-1, 1].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let r = self.config.resolution;
        if x.dims().len() != 4 || x.dims()[1..] != [3, r, r] {
            return Err(Error::invalid(format!(
                "the UNet takes [N, 3, {r}, {r}], got {:?}",
                x.dims()
            )));
        }
        let mut skips = vec![];
        let mut h = x.clone();
        for (l, level) in self.down.iter().enumerate() {
            if l > 0 {
                h = down2(&h)?;
            }
            h = level.forward(&h)?;
            skips.push(h.clone());
        }
        for (level, skip) in self.up.iter().zip(&skips).rev() {
            h = level.forward(&Tensor::cat(&[up2(&h)?, skip.clone()], 1)?)?;
        }
        self.out.forward_fused(&h, false)
    }

    /// Predictions for images `[N, 3, R, R]`, in chunks.
    pub fn predict(&self, x: &Tensor) -> Result<Vec<ImageLabels>> {
        let (c, k, r) = (self.config.classes, self.config.keypoints, self.config.resolution);
        let mut out = vec![];
        for s in (0..x.dim(0)?).step_by(16) {
            let n = 16.min(x.dim(0)? - s);
            let y = self.forward(&x.narrow(0, s, n)?)?.detach();
            let classes = if c > 0 {
                Some(y.narrow(1, 0, c)?.argmax(1)?.flatten_from(1)?.to_vec2::<u32>()?)
            } else {
                None
            };
            let heat = if k > 0 {
                Some(y.narrow(1, c, k)?.flatten_from(2)?.to_vec3::<f32>()?)
            } else {
                None
            };
            let depth = if self.config.depth {
                Some(y.narrow(1, c + k, 1)?.flatten_from(1)?.to_vec2::<f32>()?)
            } else {
                None
            };
            for i in 0..n {
                out.push(ImageLabels {
                    mask: classes.as_ref().map(|v| v[i].clone()),
                    keypoints: heat.as_ref().map(|v| {
                        v[i].iter()
                            .map(|m| {
                                let (x, y) = subpixel_peak(r, r, PeakScale::Log, |x, y| m[y * r + x]);
                                [x, y]
                            })
                            .collect()
                    }),
                    depth: depth.as_ref().map(|v| v[i].clone()),
                });
            }
        }
        Ok(out)
    }

    /// The loss on a batch (targets already augmented), summed over the heads.
    fn loss(&self, x: &Tensor, t: &BatchTargets) -> Result<Tensor> {
        let (c, k) = (self.config.classes, self.config.keypoints);
        let y = self.forward(x)?;
        let mut total = Tensor::zeros((), DType::F32, x.device())?;
        if let Some(onehot) = &t.onehot {
            let logp = candle_nn::ops::log_softmax(&y.narrow(1, 0, c)?, 1)?;
            let ce = (logp * onehot)?.sum(1)?.mean_all()?.neg()?;
            total = (total + ce)?;
        }
        if let Some(h) = &t.heatmaps {
            total = (total + keypoint_loss(self.config.keypoint_loss, &y.narrow(1, c, k)?, h)?)?;
        }
        if let Some(d) = &t.depth {
            total = (total + (y.narrow(1, c + k, 1)? - d)?.sqr()?.mean_all()?)?;
        }
        Ok(total)
    }

    /// Trains on `images` `[N, 3, R, R]` with `targets`; `progress(step, loss)`.
    pub fn train(&mut self, images: &Tensor, targets: &Targets, progress: &mut dyn FnMut(usize, f32)) -> Result<()> {
        self.train_validated(images, targets, None, progress).map(|_| ())
    }

    /// [`UNet::train`], scoring the model on a validation split every
    /// `validation.every` steps and at the end: the weights that scored best are kept
    /// (the number of steps is chosen on the validation split, never on test data).
    /// Returns the scores, `None` without a validation split.
    pub fn train_validated(
        &mut self,
        images: &Tensor,
        targets: &Targets,
        validation: Option<&Validation<'_>>,
        progress: &mut dyn FnMut(usize, f32),
    ) -> Result<Option<ValidationReport>> {
        let cfg = self.config.clone();
        let n = images.dim(0)?;
        check_targets(&cfg, targets, n)?;
        let mut opt = Adam::new(cfg.lr, (0.9, 0.999));
        let class_weights = balanced_weights(cfg.classes, targets.masks.as_deref());
        let mut report = ValidationReport {
            best_step: 0,
            best_score: f64::NEG_INFINITY,
            curve: vec![],
        };
        let mut best: Vec<Tensor> = vec![];
        // Linear warm-up over the first 5 % of the steps, then cosine decay to 0.
        let warm = (cfg.steps / 20).max(1);
        for step in 0..cfg.steps {
            let ramp = ((step + 1) as f64 / warm as f64).min(1.0);
            opt.lr = cfg.lr * ramp * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / cfg.steps as f64).cos());
            let mut rng = SplitMix64::derive(cfg.seed ^ 0x00E7_A100, step as u64);
            let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.below(n as u64) as usize).collect();
            let (x, t) = batch(&cfg, images, targets, &idx, &class_weights, &mut rng)?;
            let loss = self.loss(&x, &t)?;
            let v = loss.to_scalar::<f32>()?;
            if !v.is_finite() {
                return Err(Error::invalid(format!(
                    "UNet training diverged at step {step} (loss {v})"
                )));
            }
            opt.update_from(&self.named_vars(), &loss.backward()?)?;
            progress(step + 1, v);
            if let Some(val) = validation
                && ((step + 1) % val.every.max(1) == 0 || step + 1 == cfg.steps)
            {
                let s = (val.score)(self)?;
                report.curve.push((step + 1, s));
                // Ties keep the earlier (shorter) model; NaN never wins.
                if s > report.best_score {
                    (report.best_step, report.best_score) = (step + 1, s);
                    best = self
                        .named_vars()
                        .values()
                        .map(|v| v.as_tensor().copy())
                        .collect::<candle_core::Result<_>>()?;
                }
            }
        }
        if validation.is_none() {
            return Ok(None);
        }
        if report.best_step == 0 {
            return Err(Error::invalid("no validation score was finite"));
        }
        for (v, b) in self.named_vars().values().zip(&best) {
            v.set(b)?;
        }
        Ok(Some(report))
    }

    /// Saves the weights and the config (safetensors with metadata).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let t = self
            .named_vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let meta = BTreeMap::from([(
            "unet_config".to_string(),
            serde_json::to_string(&self.config).map_err(|e| Error::invalid(e.to_string()))?,
        )]);
        save_safetensors(path, &t, &meta)
    }

    /// Loads a file written by [`UNet::save`].
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let file = TensorFile::load(path, device)?;
        let cfg: UNetConfig = file
            .metadata
            .get("unet_config")
            .ok_or_else(|| Error::format(&file.path, "no `unet_config` metadata: not a UNet file"))
            .and_then(|s| serde_json::from_str(s).map_err(|e| Error::format(&file.path, e.to_string())))?;
        let u = Self::new(cfg, device)?;
        for (k, v) in u.named_vars() {
            v.set(&file.get_shaped(&k, v.dims())?)?;
        }
        Ok(u)
    }
}

fn check_targets(cfg: &UNetConfig, t: &Targets, n: usize) -> Result<()> {
    let px = cfg.resolution * cfg.resolution;
    let bad = |what: &str| {
        Err(Error::invalid(format!(
            "{what} targets do not match the UNet's heads or the {n} images"
        )))
    };
    match (&t.masks, cfg.classes > 0) {
        (Some(m), true) if m.len() == n && m.iter().all(|v| v.len() == px) => {
            let c = cfg.classes as u32;
            if let Some((i, v)) = m.iter().enumerate().find_map(|(i, v)| {
                v.iter()
                    .find(|&&x| x >= c && Some(x) != cfg.ignore_index)
                    .map(|x| (i, *x))
            }) {
                return Err(Error::invalid(format!(
                    "training mask {i} holds class {v}, but the UNet has {c} classes (and ignores {:?})",
                    cfg.ignore_index
                )));
            }
        }
        (None, false) => {}
        _ => return bad("segmentation"),
    }
    match (&t.keypoints, cfg.keypoints > 0) {
        (Some(k), true) if k.len() == n && k.iter().all(|v| v.len() == cfg.keypoints) => {}
        (None, false) => {}
        _ => return bad("keypoint"),
    }
    match (&t.depth, cfg.depth) {
        (Some(d), true) if d.len() == n && d.iter().all(|v| v.len() == px) => {}
        (None, false) => {}
        _ => return bad("depth"),
    }
    Ok(())
}

/// Cross-entropy weight per class: inverse square root of its pixel frequency in the
/// training masks, scaled so that the mean weight over pixels is 1 (small classes such
/// as eyes and mouth are learnt early instead of after the large ones). Classes absent
/// from the masks get weight 0.
fn balanced_weights(classes: usize, masks: Option<&[Vec<u32>]>) -> Vec<f32> {
    let mut counts = vec![0f64; classes];
    for m in masks.unwrap_or_default() {
        for &c in m {
            if (c as usize) < classes {
                counts[c as usize] += 1.0;
            }
        }
    }
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return vec![1.0; classes];
    }
    let raw: Vec<f64> = counts
        .iter()
        .map(|&n| if n > 0.0 { (total / n).sqrt() } else { 0.0 })
        .collect();
    let mean: f64 = raw.iter().zip(&counts).map(|(w, n)| w * n).sum::<f64>() / total;
    raw.iter().map(|w| (w / mean) as f32).collect()
}

struct BatchTargets {
    onehot: Option<Tensor>,
    heatmaps: Option<Tensor>,
    depth: Option<Tensor>,
}

/// Gathers, augments (flip, shift) and encodes a batch.
fn batch(
    cfg: &UNetConfig,
    images: &Tensor,
    t: &Targets,
    idx: &[usize],
    class_weights: &[f32],
    rng: &mut SplitMix64,
) -> Result<(Tensor, BatchTargets)> {
    let r = cfg.resolution;
    let dev = images.device();
    let px = r * r;
    let (b, c, k) = (idx.len(), cfg.classes, cfg.keypoints);
    let all = images.index_select(&Tensor::new(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), dev)?, 0)?;
    let all = all.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let mut x = vec![0f32; b * 3 * px];
    let mut onehot = vec![0f32; if c > 0 { b * c * px } else { 0 }];
    let mut heat = vec![0f32; b * k * px];
    let mut depth = vec![0f32; if cfg.depth { b * px } else { 0 }];
    for (j, &i) in idx.iter().enumerate() {
        let flip = cfg.flip.is_some() && rng.uniform() < 0.5;
        let s = cfg.shift as i64;
        let (dx, dy) = if s > 0 {
            (
                rng.below(2 * s as u64 + 1) as i64 - s,
                rng.below(2 * s as u64 + 1) as i64 - s,
            )
        } else {
            (0, 0)
        };
        // Output pixel (x, y) reads source pixel src(x, y).
        let src = |xo: usize, yo: usize| -> usize {
            let xs = if flip { r - 1 - xo } else { xo } as i64 - dx;
            let ys = yo as i64 - dy;
            (ys.clamp(0, r as i64 - 1) as usize) * r + xs.clamp(0, r as i64 - 1) as usize
        };
        let Flip {
            classes: class_swap,
            keypoints: kp_swap,
        } = cfg.flip.clone().unwrap_or_default();
        for yo in 0..r {
            for xo in 0..r {
                let (o, si) = (yo * r + xo, src(xo, yo));
                for ch in 0..3 {
                    x[(j * 3 + ch) * px + o] = all[(j * 3 + ch) * px + si];
                }
                if let Some(m) = &t.masks {
                    let mut cl = m[i][si];
                    if flip {
                        for &(a, bb) in &class_swap {
                            if cl == a {
                                cl = bb;
                            } else if cl == bb {
                                cl = a;
                            }
                        }
                    }
                    // An ignored pixel has no target: it adds nothing to the loss.
                    if (cl as usize) < c {
                        onehot[(j * c + cl as usize) * px + o] = class_weights[cl as usize];
                    }
                }
                if let Some(d) = &t.depth {
                    depth[j * px + o] = d[i][si];
                }
            }
        }
        if let Some(kps) = &t.keypoints {
            let mut kp = kps[i].clone();
            if flip {
                for p in kp.iter_mut() {
                    p[0] = (r - 1) as f32 - p[0];
                }
                for &(a, bb) in &kp_swap {
                    kp.swap(a, bb);
                }
            }
            for (q, p) in kp.iter().enumerate() {
                let (cx, cy) = (p[0] + dx as f32, p[1] + dy as f32);
                let s2 = 2.0 * cfg.sigma * cfg.sigma;
                for yo in 0..r {
                    for xo in 0..r {
                        let d2 = (xo as f32 - cx).powi(2) + (yo as f32 - cy).powi(2);
                        heat[(j * k + q) * px + yo * r + xo] = (-d2 / s2).exp();
                    }
                }
            }
        }
    }
    let x = Tensor::from_vec(x, (b, 3, r, r), dev)?;
    let targets = BatchTargets {
        onehot: if c > 0 {
            Some(Tensor::from_vec(onehot, (b, c, r, r), dev)?)
        } else {
            None
        },
        heatmaps: if k > 0 {
            Some(Tensor::from_vec(heat, (b, k, r, r), dev)?)
        } else {
            None
        },
        depth: if cfg.depth {
            Some(Tensor::from_vec(depth, (b, 1, r, r), dev)?)
        } else {
            None
        },
    };
    Ok((x, targets))
}

/// The keypoint head's loss for its output `y [B, K, H, W]` and Gaussian heatmaps `h`
/// (peak 1; all zero for a keypoint that is not in the image).
fn keypoint_loss(kind: KeypointLoss, y: &Tensor, h: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        // Heatmaps are mostly 0: weigh their squared error up so that peaks form. (It
        // then dominates a shared trunk; train segmentation as its own model.)
        KeypointLoss::HeatmapMse => ((y - h)?.sqr()?.mean_all()? * 100.0)?,
        KeypointLoss::SpatialSoftmax => {
            let logp = candle_nn::ops::log_softmax(&y.flatten_from(2)?, D::Minus1)?;
            let h = h.flatten_from(2)?;
            let mass = h.sum_keepdim(D::Minus1)?;
            let present = mass.gt(0f64)?.to_dtype(DType::F32)?;
            // Empty maps divide 0 by 1 and count for nothing.
            let target = h.broadcast_div(&(&mass + (1.0 - &present)?)?)?;
            let ce = (logp * target)?.sum_all()?.neg()?;
            (ce / present.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64)?
        }
    })
}

/// How many models [`train_concurrently`] should train at once on `device`: one per
/// core on the CPU, one at a time on a GPU (which each model fills on its own).
pub fn concurrent_workers(device: &Device) -> usize {
    if device.is_cpu() {
        labelgan_kernels::cpu_threads()
    } else {
        1
    }
}

/// One model to train with [`train_concurrently`].
pub struct TrainJob<'a> {
    /// The model to train.
    pub unet: UNet,
    /// Its training images `[N, 3, R, R]`.
    pub images: &'a Tensor,
    /// Their labels.
    pub targets: &'a Targets,
    /// Steps chosen on a validation split ([`UNet::train_validated`]), if any.
    pub validation: Option<Validation<'a>>,
}

/// A validation split for [`UNet::train_validated`]: how to score a model on it
/// (higher is better) and how often.
pub struct Validation<'a> {
    /// The model's score on the validation split.
    pub score: &'a (dyn Fn(&UNet) -> Result<f64> + Sync),
    /// Score every this many steps (and after the last).
    pub every: usize,
}

/// What [`UNet::train_validated`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The step whose weights were kept.
    pub best_step: usize,
    /// Their validation score.
    pub best_score: f64,
    /// (step, score) at every evaluation.
    pub curve: Vec<(usize, f64)>,
}

/// Trains several UNets at once, `workers` at a time, each on a thread with a
/// single-threaded rayon pool of its own; returns them (with their validation reports,
/// for jobs with a validation split) in the jobs' order, or the first error.
/// `progress(job, step, loss)` is called from the workers.
///
/// The small convolutions of these UNets use two cores poorly: on a 2-core Xeon one
/// model ran 7.6 steps/s on both cores and 5.1 on one, while two single-threaded
/// models side by side ran 9.5 steps/s each (`examples/unet_speed.rs`). Each model's
/// arithmetic does not depend on the pool's size (GEMMs split their output, and the
/// weight gradient splits its images by the machine's core count, not the pool's), so a
/// model trains to the same weights either way.
pub fn train_concurrently(
    jobs: Vec<TrainJob<'_>>,
    workers: usize,
    progress: &(dyn Fn(usize, usize, f32) + Sync),
) -> Result<Vec<(UNet, Option<ValidationReport>)>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = jobs.len();
    let workers = workers.clamp(1, n.max(1));
    let slots: Vec<Mutex<Option<TrainJob<'_>>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    type Trained = Result<(UNet, Option<ValidationReport>)>;
    let done: Vec<Mutex<Option<Trained>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .map_err(|e| format!("cannot start a worker thread: {e}"));
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let job = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
                    let result = match (job, &pool) {
                        (Some(mut job), Ok(pool)) => pool
                            .install(|| {
                                job.unet.train_validated(
                                    job.images,
                                    job.targets,
                                    job.validation.as_ref(),
                                    &mut |s, l| progress(i, s, l),
                                )
                            })
                            .map(|r| (job.unet, r)),
                        (None, _) => Err(Error::invalid("internal: a training job was taken twice")),
                        (_, Err(e)) => Err(Error::invalid(e.clone())),
                    };
                    *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    done.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(Error::invalid("internal: a training job did not run")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform logits over 16 pixels cost ln 16 per keypoint whatever the target; an
    /// empty map is left out of the mean; a logit map equal to the target's log costs
    /// the target's entropy. Squared error: 100 times the mean square.
    #[test]
    fn keypoint_losses_by_hand() {
        let dev = Device::Cpu;
        let mut h = vec![0f32; 2 * 16];
        (h[5], h[6]) = (1.0, 0.5);
        let h = Tensor::from_vec(h, (1, 2, 4, 4), &dev).unwrap();
        let zero = Tensor::zeros((1, 2, 4, 4), DType::F32, &dev).unwrap();
        let ce = keypoint_loss(KeypointLoss::SpatialSoftmax, &zero, &h).unwrap();
        assert!((ce.to_scalar::<f32>().unwrap() - 16f32.ln()).abs() < 1e-5);
        let mut y = vec![-60f32; 2 * 16];
        (y[5], y[6]) = ((2f32 / 3.0).ln(), (1f32 / 3.0).ln());
        let y = Tensor::from_vec(y, (1, 2, 4, 4), &dev).unwrap();
        let entropy = -(2f32 / 3.0) * (2f32 / 3.0).ln() - (1f32 / 3.0) * (1f32 / 3.0).ln();
        let ce = keypoint_loss(KeypointLoss::SpatialSoftmax, &y, &h).unwrap();
        assert!((ce.to_scalar::<f32>().unwrap() - entropy).abs() < 1e-5);
        let mse = keypoint_loss(KeypointLoss::HeatmapMse, &zero, &h).unwrap();
        assert!((mse.to_scalar::<f32>().unwrap() - 100.0 * 1.25 / 32.0).abs() < 1e-4);
    }

    #[test]
    fn flips_swap_classes_and_keypoints() {
        let r = 4;
        let cfg = UNetConfig {
            resolution: r,
            widths: vec![2, 2],
            classes: 5,
            keypoints: 2,
            depth: true,
            sigma: 0.5,
            lr: 1e-3,
            batch: 1,
            steps: 1,
            seed: 0,
            flip: Some(Flip {
                classes: vec![(3, 4)],
                keypoints: vec![(0, 1)],
            }),
            shift: 0,
            keypoint_loss: KeypointLoss::HeatmapMse,
            ignore_index: Some(255),
        };
        let img = Tensor::arange(0f32, 48.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 3, r, r))
            .unwrap();
        let mut mask = vec![0u32; 16];
        mask[0] = 3; // left eye at (0, 0)
        let depth: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let t = Targets {
            masks: Some(vec![mask]),
            keypoints: Some(vec![vec![[0.0, 1.0], [3.0, 2.0]]]),
            depth: Some(vec![depth]),
        };
        // Find draws with and without a flip.
        let (mut flipped, mut plain) = (false, false);
        for seed in 0..20 {
            let mut rng = SplitMix64::new(seed);
            let (x, bt) = batch(&cfg, &img, &t, &[0], &[1.0; 8], &mut rng).unwrap();
            let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let oh = bt.onehot.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let heat = bt.heatmaps.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if x[0] == 3.0 {
                // Mirrored: pixel (3, 0) was (0, 0) and is now the right eye (class 4).
                flipped = true;
                assert_eq!(oh[4 * 16 + 3], 1.0);
                assert_eq!(
                    bt.depth.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[3],
                    0.0
                );
                // Keypoint 0 is the old keypoint 1 mirrored: (0, 2); its heatmap peaks there.
                assert_eq!(heat[2 * 4], 1.0);
            } else {
                plain = true;
                assert_eq!(x[0], 0.0);
                assert_eq!(oh[3 * 16], 1.0);
                assert_eq!(heat[4], 1.0);
            }
        }
        assert!(flipped && plain);
    }
}
