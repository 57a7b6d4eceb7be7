//! A ResNet-style encoder from images to W+ (offsets from `w_avg`), trained in two
//! stages:
//!
//! - **(a) on the generator's own samples**: `z -> w` (with style mixing, so that
//!   targets cover W+), image `G(w)` with random noise, loss `mean((E(G(w)) - w)^2)`
//!   (plus, optionally, `image_weight * MSE(G(E(G(w))), G(w))`). Unlimited, exactly
//!   labelled data.
//! - **(b) on real images**: `lpips_weight * LPIPS(G(E(x)), x) + mse_weight *
//!   MSE(G(E(x)), x)` through the frozen generator, evaluated on a held-out set every
//!   `eval_every` steps, stopped after `patience` evaluations without improvement,
//!   keeping the best weights. Short on purpose: LPIPS is highly non-convex and
//!   HandsOff takes few steps here.
//!
//! Layout: a 3x3 stem, then per halving of the resolution a residual block (two 3x3
//! convs, a 1x1 skip where the width changes, leaky ReLU, `1/sqrt(2)` join) followed by
//! 2x2 average pooling down to 4x4, a 1x1 conv to `head_channels`, and a linear layer
//! to `num_ws * w_dim` offsets (initialised small, so training starts at `w_avg`).
//! [`EncoderTrainer`] checkpoints both stages and resumes them exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Generator, Inverter, NoiseMode, Result, SplitMix64, Truncation};
use labelgan_kernels::layer::{Conv2d, init_he_normal};
use labelgan_lpips::Lpips;
use labelgan_optim::{Adam, named_vars};

use crate::metrics::mse_per_image;

/// Stage (a): the generator's own samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageA {
    /// Training steps.
    pub steps: usize,
    /// Latents per step.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Probability that a sample's layers mix two latents (at a random layer).
    pub mixing: f64,
    /// Weight of the image MSE of the reconstruction (0: latent loss only; more costs a
    /// backward pass through the generator).
    pub image_weight: f64,
}

/// Stage (b): real images through the frozen generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageB {
    /// Most training steps (stopped early on the held-out images).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight of LPIPS in the loss.
    pub lpips_weight: f64,
    /// Weight of the pixel MSE in the loss.
    pub mse_weight: f64,
    /// Held-out evaluation every this many steps.
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Shape of the encoder and its two training stages.
pub struct EncoderConfig {
    /// Input size (a power of two, at least 8).
    pub resolution: usize,
    /// Stem channels.
    pub stem: usize,
    /// Channels of the residual block at each halving (`log2(resolution / 4)` of them).
    pub widths: Vec<usize>,
    /// Channels of the head before the per-w projection.
    pub head_channels: usize,
    /// ws it predicts (the generator's `num_ws`).
    pub num_ws: usize,
    /// Dimension of each w (the generator's `w_dim`).
    pub w_dim: usize,
    /// Seed of the initialisation and the batches.
    pub seed: u64,
    /// Stage (a): the generator's own samples.
    pub stage_a: StageA,
    /// Stage (b): real images with LPIPS.
    pub stage_b: StageB,
}

impl EncoderConfig {
    /// Defaults sized for `g` (toyworld's 64 px: widths 32, 64, 128, 128).
    pub fn for_generator<G: Generator + ?Sized>(g: &G) -> Self {
        let s = g.spec();
        let halvings = (s.resolution / 4).max(1).ilog2() as usize;
        let widths = (0..halvings).map(|i| (32usize << i).min(128)).collect();
        Self {
            resolution: s.resolution,
            stem: 32,
            widths,
            head_channels: 32,
            num_ws: s.num_ws,
            w_dim: s.w_dim,
            seed: 0,
            stage_a: StageA {
                steps: 3000,
                batch: 16,
                lr: 5e-4,
                mixing: 0.5,
                image_weight: 0.0,
            },
            stage_b: StageB {
                steps: 400,
                batch: 8,
                lr: 1e-4,
                lpips_weight: 10.0,
                mse_weight: 1.0,
                eval_every: 25,
                patience: 4,
            },
        }
    }

    /// Checks the settings before an encoder is built.
    pub fn validate(&self) -> Result<()> {
        let r = self.resolution;
        if !r.is_power_of_two() || r < 8 {
            return Err(Error::invalid(format!(
                "encoder resolution must be a power of two >= 8, got {r}"
            )));
        }
        let halvings = (r / 4).ilog2() as usize;
        if self.widths.len() != halvings || self.widths.contains(&0) || self.stem == 0 || self.head_channels == 0 {
            return Err(Error::invalid(format!(
                "a {r} px encoder needs {halvings} positive widths (one per halving to 4x4), got {:?}",
                self.widths
            )));
        }
        if self.stage_a.batch == 0 || self.stage_b.batch == 0 {
            return Err(Error::invalid("stage batches must be positive"));
        }
        Ok(())
    }
}

/// A residual block (`block{b}`): two 3x3 convs (`conv0`, `conv1`), a 1x1 `skip`
/// where the width changes, leaky ReLU, joined by `1/sqrt(2)`, then 2x2 average pooling.
#[derive(Debug, Clone)]
struct ResBlock {
    conv0: Conv2d,
    conv1: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    fn new(vb: VarBuilder, out: usize, inp: usize) -> Result<Self> {
        Ok(Self {
            conv0: Conv2d::new(vb.pp("conv0"), out, inp, 3)?,
            conv1: Conv2d::new(vb.pp("conv1"), out, out, 3)?,
            skip: if out != inp {
                Some(Conv2d::new(vb.pp("skip"), out, inp, 1)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&lrelu(&self.conv0.forward(x)?)?)?;
        let skip = match &self.skip {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        labelgan_kernels::resample::avg_pool2(&(lrelu(&(h + skip)?)? * std::f64::consts::FRAC_1_SQRT_2)?)
    }
}

/// The encoder: images `[N, 3, R, R]` in [-1, 1] to ws `[N, num_ws, w_dim]`.
#[derive(Clone)]
pub struct Encoder {
    /// The settings it was built with.
    pub config: EncoderConfig,
    stem: Conv2d,
    blocks: Vec<ResBlock>,
    /// `head.conv`: 1x1 to `head_channels` at 4x4.
    head_conv: Conv2d,
    /// `head.fc`: to `num_ws * w_dim` offsets.
    head_fc: Linear,
    vars: VarMap,
    w_avg: Tensor,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("config", &self.config)
            .field("variables", &self.vars.all_vars().len())
            .finish()
    }
}

fn lrelu(x: &Tensor) -> Result<Tensor> {
    labelgan_kernels::activation::leaky_relu(x, 0.2, 1.0)
}

impl Encoder {
    /// A fresh encoder (He-normal convs, small head) around `w_avg` `[w_dim]`: weights
    /// drawn from `config.seed` layer by layer (stem, blocks, head), zero biases.
    pub fn new(config: EncoderConfig, w_avg: &Tensor, device: &Device) -> Result<Self> {
        config.validate()?;
        if w_avg.dims() != [config.w_dim] {
            return Err(Error::invalid(format!(
                "w_avg must be [{}], got {:?}",
                config.w_dim,
                w_avg.dims()
            )));
        }
        let vars = VarMap::new();
        {
            let mut rng = SplitMix64::new(config.seed);
            let conv = |name: String, o: usize, i: usize, k: usize, rng: &mut SplitMix64| -> Result<()> {
                init_he_normal(&vars, &name, (o, i, k), rng, device)
            };
            conv("stem".into(), config.stem, 3, 3, &mut rng)?;
            let mut cin = config.stem;
            for (b, &c) in config.widths.iter().enumerate() {
                conv(format!("block{b}.conv0"), c, cin, 3, &mut rng)?;
                conv(format!("block{b}.conv1"), c, c, 3, &mut rng)?;
                if c != cin {
                    conv(format!("block{b}.skip"), c, cin, 1, &mut rng)?;
                }
                cin = c;
            }
            conv("head.conv".into(), config.head_channels, cin, 1, &mut rng)?;
            let mut data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
            let fan_in = config.head_channels * 16;
            let out = config.num_ws * config.w_dim;
            let w = (rng.normal_tensor(&[out, fan_in], device)? * (0.01 / (fan_in as f64).sqrt()))?;
            data.insert("head.fc.weight".into(), Var::from_tensor(&w)?);
            data.insert("head.fc.bias".into(), Var::zeros(out, DType::F32, device)?);
        }
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let stem = Conv2d::new(vb.pp("stem"), config.stem, 3, 3)?;
        let mut blocks = Vec::with_capacity(config.widths.len());
        let mut cin = config.stem;
        for (b, &c) in config.widths.iter().enumerate() {
            blocks.push(ResBlock::new(vb.pp(format!("block{b}")), c, cin)?);
            cin = c;
        }
        let head_conv = Conv2d::new(vb.pp("head.conv"), config.head_channels, cin, 1)?;
        let head_fc = candle_nn::linear(
            config.head_channels * 16,
            config.num_ws * config.w_dim,
            vb.pp("head.fc"),
        )?;
        Ok(Self {
            config,
            stem,
            blocks,
            head_conv,
            head_fc,
            vars,
            w_avg: w_avg.to_dtype(DType::F32)?.to_device(device)?.detach(),
        })
    }

    /// The trainable variables by name, in name order (setting one changes the encoder).
    fn params(&self) -> BTreeMap<String, Var> {
        named_vars(&self.vars)
    }

    /// ws `[N, num_ws, w_dim]` for images `[N, 3, R, R]` in [-1, 1].
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let r = self.config.resolution;
        let n = match images.dims() {
            [n, 3, h, w] if *h == r && *w == r => *n,
            d => {
                return Err(Error::invalid(format!(
                    "the encoder takes [N, 3, {r}, {r}] images, got {d:?}"
                )));
            }
        };
        let mut x = lrelu(&self.stem.forward(images)?)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let h = lrelu(&self.head_conv.forward(&x)?)?.flatten_from(1)?;
        let off = self.head_fc.forward(&h)?;
        let (k, d) = (self.config.num_ws, self.config.w_dim);
        Ok(off.reshape((n, k, d))?.broadcast_add(&self.w_avg.reshape((1, 1, d))?)?)
    }

    /// Saves weights, `w_avg` and the config (metadata `encoder_config`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut t: BTreeMap<String, Tensor> = self
            .params()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        t.insert("w_avg".into(), self.w_avg.clone());
        save_safetensors(path, &t, &self.metadata()?)
    }

    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::from([(
            "encoder_config".to_string(),
            serde_json::to_string(&self.config).map_err(|e| Error::invalid(e.to_string()))?,
        )]))
    }

    /// Loads a file written by [`Encoder::save`] (or a checkpoint).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_file(&TensorFile::load(path, device)?)
    }

    fn from_file(file: &TensorFile) -> Result<Self> {
        let path = &file.path;
        let config: EncoderConfig = file
            .metadata
            .get("encoder_config")
            .ok_or_else(|| Error::format(path, "no `encoder_config` metadata: not an encoder file"))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| Error::format(path, format!("bad `encoder_config`: {e}")))
            })?;
        let w_avg = file.get_shaped("w_avg", &[config.w_dim])?;
        let device = w_avg.device().clone();
        let enc = Self::new(config, &w_avg, &device)?;
        for (k, v) in enc.params() {
            v.set(&file.get_shaped(&k, v.dims())?)?;
        }
        Ok(enc)
    }

    /// Checks that this encoder fits `g` (resolution, num_ws, w_dim).
    pub fn check_generator<G: Generator + ?Sized>(&self, g: &G) -> Result<()> {
        let s = g.spec();
        let c = &self.config;
        if (c.resolution, c.num_ws, c.w_dim) != (s.resolution, s.num_ws, s.w_dim) {
            return Err(Error::invalid(format!(
                "the encoder is for {} px, {} ws of {} dims; the generator has {} px, {} ws of {} dims",
                c.resolution, c.num_ws, c.w_dim, s.resolution, s.num_ws, s.w_dim
            )));
        }
        Ok(())
    }
}

impl Inverter for Encoder {
    fn invert(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        let mut out = vec![];
        for s in (0..n).step_by(32) {
            out.push(self.forward(&images.narrow(0, s, 32.min(n - s))?)?.detach());
        }
        Ok(Tensor::cat(&out, 0)?)
    }
}

/// What one step of either stage reports.
#[derive(Debug, Clone, Copy)]
pub struct EncoderProgress {
    /// 'a' or 'b'.
    pub stage: char,
    /// Steps done.
    pub step: usize,
    /// Steps in the stage.
    pub steps: usize,
    /// The last step's loss.
    pub loss: f32,
    /// Stage (b): the held-out loss, on evaluation steps.
    pub holdout_loss: Option<f32>,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Trains an [`Encoder`] through both stages, with checkpoints that resume exactly.
pub struct EncoderTrainer {
    /// The encoder being trained.
    pub encoder: Encoder,
    opt: Adam,
    /// Which stage the next step belongs to ('a', 'b', or 'done').
    pub stage: String,
    /// Steps done in the current stage.
    pub step: usize,
    /// Stage (b): best held-out loss so far, its weights and evaluations since.
    best: Option<(f32, BTreeMap<String, Tensor>)>,
    since_best: usize,
}

/// Draws `[n, num_ws, w_dim]` latents with style mixing for stage (a) step `step`.
fn sample_ws<G: Generator + ?Sized>(g: &G, cfg: &EncoderConfig, step: usize) -> Result<Tensor> {
    let n = cfg.stage_a.batch;
    let seed = SplitMix64::derive(cfg.seed ^ 0x0A5A_A5A5, step as u64).next_u64();
    let z = g.sample_z(2 * n, seed)?;
    let w = g.map(&z, None, Truncation::NONE)?; // [2n, num_ws, w_dim]
    let (a, b) = (w.narrow(0, 0, n)?, w.narrow(0, n, n)?);
    let k = cfg.num_ws;
    let mut rng = SplitMix64::new(seed);
    let mut mask = vec![0f32; n * k];
    for i in 0..n {
        if rng.uniform() < cfg.stage_a.mixing {
            let cut = 1 + rng.below((k - 1).max(1) as u64) as usize;
            for m in &mut mask[i * k + cut.min(k)..(i + 1) * k] {
                *m = 1.0;
            }
        }
    }
    let mask = Tensor::from_vec(mask, (n, k, 1), w.device())?;
    Ok(((a.broadcast_mul(&(1.0 - &mask)?)? + b.broadcast_mul(&mask)?)?).detach())
}

impl EncoderTrainer {
    /// A trainer for a fresh encoder of `config`, starting at `g`'s `w_avg`.
    pub fn new<G: Generator + ?Sized>(config: EncoderConfig, g: &G) -> Result<Self> {
        let enc = Encoder::new(
            config,
            g.w_avg().ok_or_else(|| {
                Error::invalid("the encoder starts from the generator's w_avg, and this generator has none")
            })?,
            g.device(),
        )?;
        enc.check_generator(g)?;
        let lr = enc.config.stage_a.lr;
        Ok(Self {
            encoder: enc,
            opt: Adam::new(lr, (0.9, 0.999)),
            stage: "a".into(),
            step: 0,
            best: None,
            since_best: 0,
        })
    }

    /// A run that starts from `init`'s weights instead of random ones (to retrain an
    /// encoder for a generator that changed): the architecture in `config` must be
    /// `init`'s, and the outputs are centred on `g`'s `w_avg`, not on `init`'s. A
    /// mismatch names the first parameter that differs.
    pub fn from_encoder<G: Generator + ?Sized>(config: EncoderConfig, g: &G, init: &Encoder) -> Result<Self> {
        let t = Self::new(config, g)?;
        let (params, init_params) = (t.encoder.params(), init.params());
        for (name, var) in &params {
            let src = init_params.get(name).ok_or_else(|| {
                Error::invalid(format!(
                    "the initial encoder has no parameter `{name}`: its architecture differs from the one configured"
                ))
            })?;
            if src.dims() != var.dims() {
                return Err(Error::invalid(format!(
                    "encoder parameter `{name}` is {:?} in the initial encoder but {:?} here: \
                     its architecture (or the generator's number of ws and w_dim) differs",
                    src.dims(),
                    var.dims()
                )));
            }
            var.set(&src.as_tensor().to_device(var.device())?.copy()?)?;
        }
        if let Some(extra) = init_params.keys().find(|k| !params.contains_key(*k)) {
            return Err(Error::invalid(format!(
                "the initial encoder has a parameter `{extra}` that the configured architecture does not make"
            )));
        }
        Ok(t)
    }

    fn update(&mut self, loss: &Tensor) -> Result<f32> {
        let v = loss.to_scalar::<f32>()?;
        if !v.is_finite() {
            return Err(Error::invalid(format!(
                "encoder training diverged in stage {} at step {} (loss {v}); lower the learning rate",
                self.stage, self.step
            )));
        }
        self.opt.update_from(&self.encoder.params(), &loss.backward()?)?;
        Ok(v)
    }

    /// One stage (a) step; returns the loss.
    pub fn step_a<G: Generator + ?Sized>(&mut self, g: &G) -> Result<f32> {
        let cfg = self.encoder.config.clone();
        let ws = sample_ws(g, &cfg, self.step)?;
        let img = g
            .image(&ws, NoiseMode::Random(cfg.seed.wrapping_add(self.step as u64)))?
            .detach();
        let pred = self.encoder.forward(&img)?;
        let mut loss = (&pred - &ws)?.sqr()?.mean_all()?;
        if cfg.stage_a.image_weight > 0.0 {
            let rec = g.image(&pred, NoiseMode::Const)?;
            loss = (loss + (mse_per_image(&rec, &img)?.mean_all()? * cfg.stage_a.image_weight)?)?;
        }
        let v = self.update(&loss)?;
        self.step += 1;
        Ok(v)
    }

    /// The stage (b) loss per image of `images`.
    pub fn loss_b<G: Generator + ?Sized>(&self, g: &G, lpips: &Lpips, images: &Tensor) -> Result<Tensor> {
        let c = &self.encoder.config.stage_b;
        let rec = g.image(&self.encoder.forward(images)?, NoiseMode::Const)?;
        let mut loss = (mse_per_image(&rec, images)? * c.mse_weight)?;
        if c.lpips_weight != 0.0 {
            loss = (loss + (lpips.distance(&rec, images)? * c.lpips_weight)?)?;
        }
        Ok(loss)
    }

    fn holdout_loss<G: Generator + ?Sized>(&self, g: &G, lpips: &Lpips, holdout: &Tensor) -> Result<f32> {
        let n = holdout.dim(0)?;
        let mut total = 0f64;
        for s in (0..n).step_by(16) {
            let x = holdout.narrow(0, s, 16.min(n - s))?;
            total += self.loss_b(g, lpips, &x)?.detach().sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok((total / n.max(1) as f64) as f32)
    }

    /// A copy of the weights (its own storage: `Var::set` overwrites the live one).
    fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.encoder
            .params()
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    fn restore(&mut self, w: &BTreeMap<String, Tensor>) -> Result<()> {
        for (k, v) in &self.encoder.params() {
            if let Some(t) = w.get(k) {
                v.set(t)?;
            }
        }
        Ok(())
    }

    /// Runs whatever is left of both stages, checkpointing to `checkpoint` (if given)
    /// every `checkpoint_every` steps. `train`/`holdout`: real images for stage (b).
    #[allow(clippy::too_many_arguments)]
    pub fn run<G: Generator + ?Sized>(
        &mut self,
        g: &G,
        lpips: &Lpips,
        train: &Tensor,
        holdout: &Tensor,
        checkpoint: Option<&Path>,
        checkpoint_every: usize,
        progress: &mut dyn FnMut(&EncoderProgress),
    ) -> Result<()> {
        self.run_stage_a(g, checkpoint, checkpoint_every, progress)?;
        self.run_stage_b(g, lpips, train, holdout, checkpoint, checkpoint_every, progress)
    }

    fn save_to(&self, checkpoint: Option<&Path>) -> Result<()> {
        match checkpoint {
            Some(p) => self.save_checkpoint(p),
            None => Ok(()),
        }
    }

    /// Runs what is left of stage (a) (nothing once in stage (b)), then moves to stage
    /// (b).
    pub fn run_stage_a<G: Generator + ?Sized>(
        &mut self,
        g: &G,
        checkpoint: Option<&Path>,
        checkpoint_every: usize,
        progress: &mut dyn FnMut(&EncoderProgress),
    ) -> Result<()> {
        let cfg = self.encoder.config.clone();
        let started = Instant::now();
        let mut done_here = 0usize;
        let save = |t: &Self| t.save_to(checkpoint);
        while self.stage == "a" && self.step < cfg.stage_a.steps {
            if labelgan_core::stop::requested() {
                save(self)?;
                return Err(Error::Stopped(format!("stage (a) step {} checkpointed", self.step)));
            }
            let loss = self.step_a(g)?;
            done_here += cfg.stage_a.batch;
            progress(&EncoderProgress {
                stage: 'a',
                step: self.step,
                steps: cfg.stage_a.steps,
                loss,
                holdout_loss: None,
                images_per_second: done_here as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
            if checkpoint_every > 0 && self.step.is_multiple_of(checkpoint_every) {
                save(self)?;
            }
        }
        if self.stage == "a" {
            self.stage = "b".into();
            self.step = 0;
            self.opt = Adam::new(cfg.stage_b.lr, (0.9, 0.999));
            save(self)?;
        }
        Ok(())
    }

    /// Runs what is left of stage (b) (after stage (a)), restores the best held-out
    /// weights and marks training done.
    #[allow(clippy::too_many_arguments)]
    pub fn run_stage_b<G: Generator + ?Sized>(
        &mut self,
        g: &G,
        lpips: &Lpips,
        train: &Tensor,
        holdout: &Tensor,
        checkpoint: Option<&Path>,
        checkpoint_every: usize,
        progress: &mut dyn FnMut(&EncoderProgress),
    ) -> Result<()> {
        if self.stage == "a" {
            return Err(Error::invalid("stage (a) is not finished"));
        }
        let cfg = self.encoder.config.clone();
        let started = Instant::now();
        let mut done_here = 0usize;
        let save = |t: &Self| t.save_to(checkpoint);
        let n = train.dim(0)?;
        if self.stage == "b" && cfg.stage_b.steps > 0 && n == 0 {
            return Err(Error::invalid("stage (b) needs real training images"));
        }
        if self.stage == "b" && self.best.is_none() && holdout.dim(0)? > 0 {
            let l = self.holdout_loss(g, lpips, holdout)?;
            self.best = Some((l, self.snapshot()?));
            progress(&EncoderProgress {
                stage: 'b',
                step: 0,
                steps: cfg.stage_b.steps,
                loss: l,
                holdout_loss: Some(l),
                images_per_second: 0.0,
            });
        }
        while self.stage == "b" && self.step < cfg.stage_b.steps {
            if labelgan_core::stop::requested() {
                save(self)?;
                return Err(Error::Stopped(format!("stage (b) step {} checkpointed", self.step)));
            }
            let mut rng = SplitMix64::derive(cfg.seed ^ 0x0B0B_B0B0, self.step as u64);
            let idx: Vec<u32> = (0..cfg.stage_b.batch).map(|_| rng.below(n as u64) as u32).collect();
            let x = train.index_select(&Tensor::new(idx, train.device())?, 0)?;
            let loss = self.loss_b(g, lpips, &x)?.mean_all()?;
            let v = self.update(&loss)?;
            self.step += 1;
            done_here += cfg.stage_b.batch;
            let mut held = None;
            if cfg.stage_b.eval_every > 0 && self.step.is_multiple_of(cfg.stage_b.eval_every) && holdout.dim(0)? > 0 {
                let l = self.holdout_loss(g, lpips, holdout)?;
                held = Some(l);
                if self.best.as_ref().is_none_or(|(b, _)| l < *b) {
                    self.best = Some((l, self.snapshot()?));
                    self.since_best = 0;
                } else {
                    self.since_best += 1;
                }
            }
            progress(&EncoderProgress {
                stage: 'b',
                step: self.step,
                steps: cfg.stage_b.steps,
                loss: v,
                holdout_loss: held,
                images_per_second: done_here as f64 / started.elapsed().as_secs_f64().max(1e-9),
            });
            if self.since_best >= cfg.stage_b.patience.max(1) {
                break;
            }
            if checkpoint_every > 0 && self.step.is_multiple_of(checkpoint_every) {
                save(self)?;
            }
        }
        if self.stage == "b" {
            if let Some((_, w)) = self.best.take() {
                self.restore(&w)?;
            }
            self.stage = "done".into();
            save(self)?;
        }
        Ok(())
    }

    /// Writes weights, optimiser state, stage, step and the stage (b) best.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut t: BTreeMap<String, Tensor> = self
            .encoder
            .params()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        t.insert("w_avg".into(), self.encoder.w_avg.clone());
        self.opt.save_into("opt", &mut t);
        let mut meta = self.encoder.metadata()?;
        if let Some((l, w)) = &self.best {
            for (k, v) in w {
                t.insert(format!("best.{k}"), v.clone());
            }
            meta.insert("best_loss".into(), format!("{l}"));
        }
        meta.insert("stage".into(), self.stage.clone());
        meta.insert("step".into(), self.step.to_string());
        meta.insert("opt_step".into(), self.opt.step.to_string());
        meta.insert("since_best".into(), self.since_best.to_string());
        save_safetensors(path, &t, &meta)
    }

    /// Resumes from [`EncoderTrainer::save_checkpoint`]'s file.
    pub fn load_checkpoint<G: Generator + ?Sized>(path: impl AsRef<Path>, g: &G) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::load(path, g.device())?;
        let encoder = Encoder::from_file(&file)?;
        encoder.check_generator(g)?;
        let meta = |k: &str| -> Result<String> {
            file.metadata
                .get(k)
                .cloned()
                .ok_or_else(|| Error::format(path, format!("no `{k}` metadata: not an encoder checkpoint")))
        };
        let num = |k: &str| -> Result<usize> {
            meta(k)?
                .parse()
                .map_err(|_| Error::format(path, format!("metadata `{k}` is not a number")))
        };
        let stage = meta("stage")?;
        let lr = if stage == "a" {
            encoder.config.stage_a.lr
        } else {
            encoder.config.stage_b.lr
        };
        let mut opt = Adam::new(lr, (0.9, 0.999));
        opt.load_from("opt", &file, num("opt_step")? as u64);
        let best = match file.metadata.get("best_loss") {
            Some(l) => {
                let l: f32 = l
                    .parse()
                    .map_err(|_| Error::format(path, "metadata `best_loss` is not a number"))?;
                let w = encoder
                    .params()
                    .keys()
                    .map(|k| Ok((k.clone(), file.get(&format!("best.{k}"))?.clone())))
                    .collect::<Result<_>>()?;
                Some((l, w))
            }
            None => None,
        };
        Ok(Self {
            encoder,
            opt,
            stage,
            step: num("step")?,
            best,
            since_best: num("since_best")?,
        })
    }
}
