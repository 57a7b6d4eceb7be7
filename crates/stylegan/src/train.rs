//! StyleGAN2 training: non-saturating logistic loss, lazy R1 penalty, generator EMA,
//! w_avg tracking, style mixing; checkpoint and resume; deterministic by seed.
//!
//! One step (a minibatch of `batch` images):
//! 1. G: `softplus(-D(G(z)))`, with style mixing and random noise; Adam on G.
//! 2. D: `softplus(D(G(z))) + softplus(-D(x))`; every `r1_interval` steps also
//!    `r1_interval * gamma / 2 * |grad_x D(x)|^2` (lazy regularisation, with Adam's lr
//!    and betas adjusted as in the paper); Adam on D.
//! 3. `G_ema <- G + (G_ema - G) * beta`, `beta = 0.5^(batch / ema_nimg)`, with the
//!    official ramp-up `ema_nimg = min(ema_nimg, nimg * rampup)`.
//!
//! The R1 penalty is a gradient of a gradient. candle builds the graph of gradients
//! only when `CANDLE_GRAD_DO_NOT_DETACH=1` is set in the environment before the first
//! backward pass of a thread (see `CANDLE_NOTES.md`); [`Trainer::new`] refuses R1
//! without it rather than silently training with a wrong penalty. R1 runs on a fresh
//! thread each time; call `labelgan_gan::second_order::r1_training_pool` (or
//! `prepare_r1_environment`) at the start of `main` so that
//! the other backward passes detach (3.5x less memory), as the `labelgan` binary does.
//!
//! Every random draw of step `s` comes from `SplitMix64::derive(seed, s)`, so a run
//! resumed from a checkpoint continues exactly as the uninterrupted run would.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Generator, NoiseMode, Result, SplitMix64, Truncation};
use labelgan_optim::named_grads;

use crate::config::GeneratorConfig;
use crate::discriminator::{Discriminator, DiscriminatorConfig};
use crate::generator::StyleGan2;

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanConfig {
    /// Image height and width.
    pub resolution: usize,
    /// Image channels.
    pub img_channels: usize,
    /// Dimension of z.
    pub z_dim: usize,
    /// Dimension of w.
    pub w_dim: usize,
    /// Layers of the mapping network.
    pub mapping_layers: usize,
    /// Generator widths: `min(channel_base / r, channel_max)`.
    pub channel_base: usize,
    /// Most channels of any generator block.
    pub channel_max: usize,
    /// Discriminator widths (default: the generator's).
    pub d_channel_base: usize,
    /// Most channels of any discriminator block.
    pub d_channel_max: usize,
    /// Images per step.
    pub batch: usize,
    /// Generator learning rate.
    pub g_lr: f64,
    /// Discriminator learning rate.
    pub d_lr: f64,
    /// Adam betas (the paper: 0, 0.99).
    pub betas: (f64, f64),
    /// R1 weight; 0 turns the penalty off.
    pub r1_gamma: f64,
    /// Lazy R1: the penalty every this many D steps.
    pub r1_interval: usize,
    /// EMA half-life in thousands of images, and its ramp-up (None: no ramp-up).
    pub ema_kimg: f64,
    /// EMA warm-up as a fraction of the images seen (`None`: none).
    pub ema_rampup: Option<f64>,
    /// Probability of style mixing per sample.
    pub style_mixing: f64,
    /// Decay of the tracked `w_avg`.
    pub w_avg_beta: f64,
    /// Learning-rate multiplier of the mapping network.
    pub mapping_lr_multiplier: f64,
    /// Seed of the initialisation, latents and noise.
    pub seed: u64,
    /// Steps at the start of the run in which only D trains: for a run that starts
    /// from a trained generator ([`Trainer::from_generator`]) with a fresh D, whose
    /// first, random gradients would otherwise undo G's training.
    #[serde(default)]
    pub g_warmup_steps: u64,
    /// With `g_warmup_steps`: end the warm-up early, at the first step at which D
    /// separates real from generated images by this margin: a moving average (0.9 per
    /// step) of `D(x) - D(G(z))` at least `gap`. `g_warmup_steps` is then the cap. A
    /// fresh D needs hundreds of steps to tell a trained G's images from real ones, and
    /// G trained against a D at chance drifts.
    #[serde(default)]
    pub g_warmup_gap: Option<f64>,
}

impl GanConfig {
    /// Defaults for a small CPU run at `resolution`: the StyleGAN2-ADA `auto` rules
    /// for gamma (`0.0002 r^2 / batch`) and EMA (`batch * 10 / 32` kimg), 4 mapping
    /// layers, 256-d latents.
    pub fn small(resolution: usize) -> Self {
        let batch = 16;
        Self {
            resolution,
            img_channels: 3,
            z_dim: 256,
            w_dim: 256,
            mapping_layers: 4,
            channel_base: 4096,
            channel_max: 128,
            d_channel_base: 4096,
            d_channel_max: 128,
            batch,
            g_lr: 0.0025,
            d_lr: 0.0025,
            betas: (0.0, 0.99),
            r1_gamma: 0.0002 * (resolution * resolution) as f64 / batch as f64,
            r1_interval: 16,
            ema_kimg: batch as f64 * 10.0 / 32.0,
            ema_rampup: Some(0.05),
            style_mixing: 0.9,
            w_avg_beta: 0.995,
            mapping_lr_multiplier: 0.01,
            seed: 0,
            g_warmup_steps: 0,
            g_warmup_gap: None,
        }
    }

    /// The generator's architecture.
    pub fn generator(&self) -> GeneratorConfig {
        GeneratorConfig {
            z_dim: self.z_dim,
            c_dim: 0,
            w_dim: self.w_dim,
            img_resolution: self.resolution,
            img_channels: self.img_channels,
            mapping_layers: self.mapping_layers,
            mapping_lr_multiplier: self.mapping_lr_multiplier,
            channel_base: self.channel_base,
            channel_max: self.channel_max,
            conv_clamp: None,
        }
    }

    /// The discriminator's architecture.
    pub fn discriminator(&self) -> DiscriminatorConfig {
        DiscriminatorConfig {
            resolution: self.resolution,
            img_channels: self.img_channels,
            channel_base: self.d_channel_base,
            channel_max: self.d_channel_max,
            mbstd_group: 4,
        }
    }

    /// D's Adam learning rate and betas. With lazy R1, D's Adam sees fewer, larger
    /// steps (paper, Appendix B): both are scaled by `r1_interval / (r1_interval + 1)`.
    fn d_adam(&self) -> (f64, (f64, f64)) {
        if self.r1_gamma > 0.0 {
            let mb = self.r1_interval as f64 / (self.r1_interval as f64 + 1.0);
            (self.d_lr * mb, (self.betas.0.powf(mb), self.betas.1.powf(mb)))
        } else {
            (self.d_lr, self.betas)
        }
    }

    /// Checks every setting (sizes bounded) before anything is allocated.
    pub fn validate(&self) -> Result<()> {
        self.generator().validate()?;
        if self.batch == 0
            || !self
                .batch
                .is_multiple_of(self.discriminator().mbstd_group.min(self.batch))
        {
            return Err(Error::invalid(format!(
                "batch must be a positive multiple of 4 (minibatch-std groups), got {}",
                self.batch
            )));
        }
        if self.d_channel_max > crate::config::MAX_WIDTH {
            return Err(Error::invalid(format!(
                "d_channel_max is {}; at most {} is allowed",
                self.d_channel_max,
                crate::config::MAX_WIDTH
            )));
        }
        if self.batch > MAX_BATCH {
            return Err(Error::invalid(format!(
                "batch is {}; at most {MAX_BATCH} is allowed",
                self.batch
            )));
        }
        if self.r1_interval == 0 {
            return Err(Error::invalid("r1_interval must be at least 1"));
        }
        for (name, v) in [("g_lr", self.g_lr), ("d_lr", self.d_lr), ("r1_gamma", self.r1_gamma)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!("{name} must be a finite number >= 0, got {v}")));
            }
        }
        if self.g_warmup_gap.is_some_and(f64::is_nan) {
            return Err(Error::invalid("g_warmup_gap is NaN"));
        }
        if self.g_warmup_gap.is_some() && self.g_warmup_steps == 0 {
            return Err(Error::invalid(
                "g_warmup_gap needs g_warmup_steps > 0 (--g-warmup-steps N), the most D-only steps to take",
            ));
        }
        Ok(())
    }
}

/// Most images per training step.
pub const MAX_BATCH: usize = 4096;

pub use labelgan_core::image_io::ImageSource;

/// `ln(1 + e^x)`, stable for large |x|.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?))?)
}

pub use labelgan_optim::Adam;

/// Losses of one step.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StepLosses {
    /// `softplus(-D(G(z)))`.
    pub g: f32,
    /// `softplus(D(G(z))) + softplus(-D(x))`.
    pub d: f32,
    /// Mean `D(x)` and `D(G(z))` (the gap says how well D separates them).
    pub real_score: f32,
    /// Mean D score of the generated images.
    pub fake_score: f32,
    /// The R1 penalty `gamma/2 |grad|^2` (mean), on steps that compute it.
    pub r1: Option<f32>,
}

/// Buffers that are not trained (copied to G_ema as they are).
fn is_buffer(name: &str) -> bool {
    name.ends_with("noise_const") || name.ends_with("resample_filter") || name == "mapping.w_avg"
}

/// A training run in memory.
pub struct Trainer {
    /// The settings of the run.
    pub config: GanConfig,
    /// The generator being trained; its parameters are `g_params`.
    pub g: StyleGan2,
    g_params: BTreeMap<String, Var>,
    /// The discriminator.
    pub d: Discriminator,
    /// EMA of the generator's parameters (and its buffers), by official name.
    ema: BTreeMap<String, Tensor>,
    opt_g: Adam,
    opt_d: Adam,
    /// Steps done and images shown to D.
    pub step: u64,
    /// Real images shown to D so far.
    pub nimg: u64,
    /// Moving average of `D(x) - D(G(z))` (0.9 per step), and the step at which G
    /// started training (None while it is held by the warm-up).
    pub gap_average: f64,
    /// `nimg` at which G training started (after D warm-up), if it has.
    pub g_started: Option<u64>,
    device: Device,
}

fn generator_from(tensors: &BTreeMap<String, Tensor>, kwargs: String) -> Result<StyleGan2> {
    let file = TensorFile {
        path: "<training>".into(),
        tensors: tensors.clone().into_iter().collect(),
        metadata: [("init_kwargs".to_string(), kwargs)].into(),
    };
    let mut g = StyleGan2::from_file(&file)?;
    g.thaw();
    Ok(g)
}

impl Trainer {
    /// A fresh run: official initialisation from `config.seed`.
    pub fn new(config: GanConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let g0 = StyleGan2::random(&config.generator(), config.seed, device)?;
        let d = Discriminator::new(config.discriminator(), config.seed ^ 0xD15C, device)?;
        Self::assemble(config, g0.state_dict(), None, d, 0, 0, device)
    }

    /// A run that continues training `g` (its weights become G and G_ema; w_avg is
    /// kept) with a fresh discriminator from `config.seed`. `config` must describe
    /// `g`'s architecture; a mismatch names the first tensor that differs.
    pub fn from_generator(config: GanConfig, g: &StyleGan2, device: &Device) -> Result<Self> {
        config.validate()?;
        let want = StyleGan2::random(&config.generator(), config.seed, device)?.state_dict();
        let have = g.state_dict();
        for (k, t) in &want {
            match have.get(k) {
                None => {
                    return Err(Error::invalid(format!(
                        "the generator has no tensor `{k}` that the training config expects: \
                         pass the generator's own architecture (z/w dims, mapping layers, channel base and max)"
                    )));
                }
                Some(h) if h.dims() != t.dims() => {
                    return Err(Error::invalid(format!(
                        "generator tensor `{k}` is {:?} but the training config makes {:?}: \
                         pass the generator's own architecture (z/w dims, mapping layers, channel base and max)",
                        h.dims(),
                        t.dims()
                    )));
                }
                _ => {}
            }
        }
        if let Some(k) = have.keys().find(|k| !want.contains_key(*k)) {
            return Err(Error::invalid(format!(
                "the generator has a tensor `{k}` that the training config does not make"
            )));
        }
        let d = Discriminator::new(config.discriminator(), config.seed ^ 0xD15C, device)?;
        Self::assemble(config, have, None, d, 0, 0, device)
    }

    fn assemble(
        config: GanConfig,
        g_state: BTreeMap<String, Tensor>,
        ema: Option<BTreeMap<String, Tensor>>,
        d: Discriminator,
        step: u64,
        nimg: u64,
        device: &Device,
    ) -> Result<Self> {
        if config.r1_gamma > 0.0
            && std::env::var("CANDLE_GRAD_DO_NOT_DETACH").map_or(true, |v| v.is_empty() || v == "0")
        {
            return Err(Error::invalid(
                "the R1 penalty needs second-order gradients: set CANDLE_GRAD_DO_NOT_DETACH=1 in the \
                 environment before starting (the labelgan binary does this), or set r1_gamma to 0",
            ));
        }
        let kwargs = config.generator().init_kwargs();
        let mut g_params = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (k, t) in &g_state {
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            if is_buffer(k) {
                tensors.insert(k.clone(), t);
            } else {
                let v = Var::from_tensor(&t)?;
                tensors.insert(k.clone(), v.as_tensor().clone());
                g_params.insert(k.clone(), v);
            }
        }
        let g = generator_from(&tensors, kwargs)?;
        let ema = match ema {
            Some(e) => e,
            None => g_state
                .iter()
                .map(|(k, t)| Ok((k.clone(), t.to_dtype(DType::F32)?.to_device(device)?.copy()?)))
                .collect::<Result<_>>()?,
        };
        let (lr_d, betas_d) = config.d_adam();
        let g_started = (config.g_warmup_steps == 0).then_some(0);
        Ok(Self {
            opt_g: Adam::new(config.g_lr, config.betas),
            opt_d: Adam::new(lr_d, betas_d),
            config,
            g,
            g_params,
            d,
            ema,
            step,
            nimg,
            gap_average: 0.0,
            g_started,
            device: device.clone(),
        })
    }

    /// ws for `z` with style mixing (probability `style_mixing`, one cutoff per batch),
    /// and the batch mean of the un-mixed w for w_avg tracking.
    fn mapped(&self, rng: &mut SplitMix64) -> Result<(Tensor, Tensor)> {
        let n = self.config.batch;
        let z = rng.normal_tensor(&[n, self.config.z_dim], &self.device)?;
        let ws = self.g.mapping.forward(&z, None, Truncation::NONE)?;
        let w_mean = ws.narrow(1, 0, 1)?.squeeze(1)?.mean(0)?.detach();
        let num_ws = ws.dim(1)?;
        if rng.uniform() < self.config.style_mixing {
            let cutoff = 1 + rng.below(num_ws as u64 - 1) as usize;
            let z2 = rng.normal_tensor(&[n, self.config.z_dim], &self.device)?;
            let ws2 = self.g.mapping.forward(&z2, None, Truncation::NONE)?;
            let mixed = Tensor::cat(&[ws.narrow(1, 0, cutoff)?, ws2.narrow(1, cutoff, num_ws - cutoff)?], 1)?;
            return Ok((mixed, w_mean));
        }
        Ok((ws, w_mean))
    }

    /// Changes both learning rates mid-run (D's keeps the lazy-regularisation scaling).
    /// Setting `config.g_lr` or `config.d_lr` directly has no effect after construction.
    pub fn set_learning_rates(&mut self, g_lr: f64, d_lr: f64) {
        self.config.g_lr = g_lr;
        self.config.d_lr = d_lr;
        self.opt_g.lr = g_lr;
        self.opt_d.lr = self.config.d_adam().0;
    }

    /// G's half of a step: `softplus(-D(G(z)))`, Adam on G, w_avg tracking.
    fn generator_step(&mut self, rng: &mut SplitMix64, out: &mut StepLosses) -> Result<()> {
        let (ws, w_mean) = self.mapped(rng)?;
        let fake = self.g.image(&ws, NoiseMode::Random(rng.next_u64()))?;
        let loss_g = softplus(&self.d.forward(&fake)?.neg()?)?.mean_all()?;
        out.g = loss_g.to_scalar::<f32>()?;
        let grads = named_grads(&self.g_params, &loss_g.backward()?);
        self.opt_g.update(&self.g_params, &grads)?;
        drop(grads);
        // w_avg tracks the mapping's output.
        let beta = self.config.w_avg_beta;
        let w_avg = &self.g.mapping.w_avg;
        self.g.mapping.w_avg = (((&w_mean - w_avg)? * (1.0 - beta))? + w_avg)?;
        Ok(())
    }

    /// One training step on reals from `source`.
    pub fn step(&mut self, source: &ImageSource) -> Result<StepLosses> {
        let mut rng = SplitMix64::derive(self.config.seed, self.step);
        let n = self.config.batch;
        let mut out = StepLosses::default();
        if self.g_started.is_none() {
            let capped = self.step >= self.config.g_warmup_steps;
            let separated = self.config.g_warmup_gap.is_some_and(|gap| self.gap_average >= gap);
            if capped || separated {
                self.g_started = Some(self.step);
            }
        }
        if self.g_started.is_some() {
            self.generator_step(&mut rng, &mut out)?;
        } else {
            out.g = f32::NAN;
        }
        // Discriminator.
        let (ws, _) = self.mapped(&mut rng)?;
        let fake = self.g.image(&ws, NoiseMode::Random(rng.next_u64()))?.detach();
        let real = source.batch(self.step, n, &mut rng, &self.device)?;
        if real.dims()
            != [
                n,
                self.config.img_channels,
                self.config.resolution,
                self.config.resolution,
            ]
        {
            return Err(Error::invalid(format!(
                "real images must be [{n}, {}, {r}, {r}], got {:?}",
                self.config.img_channels,
                real.dims(),
                r = self.config.resolution
            )));
        }
        let fake_logits = self.d.forward(&fake)?;
        let real_logits = self.d.forward(&real)?;
        let loss_d = (softplus(&fake_logits)?.mean_all()? + softplus(&real_logits.neg()?)?.mean_all()?)?;
        out.d = loss_d.to_scalar::<f32>()?;
        out.real_score = real_logits.mean_all()?.to_scalar::<f32>()?;
        out.fake_score = fake_logits.mean_all()?.to_scalar::<f32>()?;
        self.gap_average = 0.9 * self.gap_average + 0.1 * (out.real_score as f64 - out.fake_score as f64);
        let regularize = self.config.r1_gamma > 0.0 && self.step.is_multiple_of(self.config.r1_interval as u64);
        let d_params = self.d.params();
        let mut grads = named_grads(&d_params, &loss_d.backward()?);
        if regularize {
            // On a fresh thread: its first backward reads CANDLE_GRAD_DO_NOT_DETACH, so
            // only this step keeps the graph of gradients (see `prepare_r1_environment`).
            let (d, gamma, weight) = (&self.d, self.config.r1_gamma, self.config.r1_interval as f64);
            let (value, r1) = std::thread::scope(|s| {
                s.spawn(move || r1_gradients(d, &real, gamma, weight))
                    .join()
                    .map_err(|_| Error::invalid("the R1 thread panicked"))?
            })?;
            labelgan_kernels::heap::release_freed_memory();
            out.r1 = Some(value);
            for (k, t) in r1 {
                let sum = match grads.remove(&k) {
                    Some(g) => (g + t)?,
                    None => t,
                };
                grads.insert(k, sum);
            }
        }
        self.opt_d.update(&d_params, &grads)?;
        drop(grads);
        self.step += 1;
        self.nimg += n as u64;
        self.update_ema()?;
        Ok(out)
    }

    /// `gamma / 2 * mean_i |grad_x D(x_i)|^2`, differentiable with respect to D's
    /// parameters (needs `CANDLE_GRAD_DO_NOT_DETACH=1`).
    pub fn r1_penalty(&self, real: &Tensor) -> Result<Tensor> {
        r1_penalty(&self.d, real, self.config.r1_gamma)
    }

    fn update_ema(&mut self) -> Result<()> {
        let c = &self.config;
        let mut ema_nimg = c.ema_kimg * 1000.0;
        if let Some(r) = c.ema_rampup {
            ema_nimg = ema_nimg.min(self.nimg as f64 * r);
        }
        let beta = 0.5f64.powf(c.batch as f64 / ema_nimg.max(1e-8));
        for (k, v) in &self.g_params {
            let cur = v.as_tensor().detach();
            let e = self
                .ema
                .get(k)
                .ok_or_else(|| Error::invalid(format!("internal: no EMA of `{k}`")))?;
            let next = ((e - &cur)? * beta + &cur)?;
            self.ema.insert(k.clone(), next);
        }
        self.ema.insert("mapping.w_avg".into(), self.g.mapping.w_avg.copy()?);
        Ok(())
    }

    /// The EMA generator (what gets shipped), ready for inference.
    pub fn generator_ema(&self) -> Result<StyleGan2> {
        let file = TensorFile {
            path: "<G_ema>".into(),
            tensors: self.ema.clone().into_iter().collect(),
            metadata: [("init_kwargs".to_string(), self.config.generator().init_kwargs())].into(),
        };
        StyleGan2::from_file(&file)
    }

    /// Writes everything needed to resume (atomically).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut t = BTreeMap::new();
        for (k, v) in &self.g_params {
            t.insert(format!("G.{k}"), v.as_tensor().clone());
        }
        t.insert("G.mapping.w_avg".into(), self.g.mapping.w_avg.clone());
        for (k, v) in self.g.state_dict() {
            if is_buffer(&k) && k != "mapping.w_avg" {
                t.insert(format!("G.{k}"), v);
            }
        }
        for (k, v) in &self.ema {
            t.insert(format!("G_ema.{k}"), v.clone());
        }
        for (k, v) in self.d.tensors() {
            t.insert(format!("D.{k}"), v);
        }
        self.opt_g.save_into("adam_g", &mut t);
        self.opt_d.save_into("adam_d", &mut t);
        let config = serde_json::to_string(&self.config).map_err(|e| Error::invalid(e.to_string()))?;
        let meta = BTreeMap::from([
            ("labelgan_gan_checkpoint".to_string(), "1".to_string()),
            ("config".to_string(), config),
            ("step".to_string(), self.step.to_string()),
            ("nimg".to_string(), self.nimg.to_string()),
            ("adam_g_step".to_string(), self.opt_g.step.to_string()),
            ("adam_d_step".to_string(), self.opt_d.step.to_string()),
            ("gap_average".to_string(), self.gap_average.to_string()),
            (
                "g_started".to_string(),
                self.g_started.map_or("none".into(), |s| s.to_string()),
            ),
        ]);
        save_safetensors(path, &t, &meta)
    }

    /// Resumes from [`Trainer::save_checkpoint`]'s file.
    pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::load(path, device)?;
        let meta = |k: &str| -> Result<&String> {
            file.metadata
                .get(k)
                .ok_or_else(|| Error::format(path, format!("not a labelgan GAN checkpoint (no `{k}` metadata)")))
        };
        meta("labelgan_gan_checkpoint")?;
        let config: GanConfig = serde_json::from_str(meta("config")?)
            .map_err(|e| Error::format(path, format!("bad `config` metadata: {e}")))?;
        let num = |k: &str| -> Result<u64> {
            meta(k)?
                .parse()
                .map_err(|_| Error::format(path, format!("metadata `{k}` is not a number")))
        };
        let take = |prefix: &str| -> BTreeMap<String, Tensor> {
            file.tensors
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
                .collect()
        };
        let d = Discriminator::from_tensors(config.discriminator(), &take("D."), device)?;
        let mut tr = Self::assemble(
            config,
            take("G."),
            Some(take("G_ema.")),
            d,
            num("step")?,
            num("nimg")?,
            device,
        )?;
        // Checkpoints from before the adaptive warm-up: G started at the fixed step.
        tr.g_started = match file.metadata.get("g_started").map(String::as_str) {
            None => (tr.step >= tr.config.g_warmup_steps).then_some(tr.config.g_warmup_steps),
            Some("none") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::format(path, "metadata `g_started` is not a number"))?,
            ),
        };
        if let Some(v) = file.metadata.get("gap_average") {
            tr.gap_average = v
                .parse()
                .map_err(|_| Error::format(path, "metadata `gap_average` is not a number"))?;
        }
        tr.opt_g.load_from("adam_g", &file, num("adam_g_step")?);
        tr.opt_d.load_from("adam_d", &file, num("adam_d_step")?);
        Ok(tr)
    }
}

/// `gamma / 2 * mean_i |grad_x D(x_i)|^2` for discriminator `d` at `real`.
pub fn r1_penalty(d: &Discriminator, real: &Tensor, gamma: f64) -> Result<Tensor> {
    let x = Var::from_tensor(&real.detach())?;
    let logits = d.forward(x.as_tensor())?;
    let grads = logits.sum_all()?.backward()?;
    let g = grads
        .get(&x)
        .ok_or_else(|| Error::invalid("internal: no gradient with respect to the real images"))?;
    let n = real.dim(0)?;
    Ok((g.sqr()?.reshape((n, ()))?.sum(1)?.mean_all()? * (gamma / 2.0))?)
}

/// The R1 penalty's value and `weight` times its gradients with respect to D's
/// parameters (detached), computed one minibatch-std group at a time: D's statistics
/// couple the samples of a group only, so this is exact, and the graph of gradients
/// (kept by `CANDLE_GRAD_DO_NOT_DETACH`) is held for one group instead of the batch.
pub fn r1_gradients(
    d: &Discriminator,
    real: &Tensor,
    gamma: f64,
    weight: f64,
) -> Result<(f32, BTreeMap<String, Tensor>)> {
    let n = real.dim(0)?;
    let g = d.config.mbstd_group.min(n).max(1);
    let groups = n / g;
    let (mut value, mut acc) = (0f32, BTreeMap::<String, Tensor>::new());
    for j in 0..groups {
        // Group j of the full batch holds samples j, j + groups, j + 2 groups, ...
        let idx: Vec<u32> = (0..g).map(|k| (j + k * groups) as u32).collect();
        let sub = real.index_select(&Tensor::new(idx, real.device())?, 0)?;
        let penalty = r1_penalty(d, &sub, gamma)?;
        value += penalty.to_scalar::<f32>()? / groups as f32;
        let grads = (penalty * (weight / groups as f64))?.backward()?;
        for (k, t) in named_grads(&d.params(), &grads) {
            let t = t.detach();
            let sum = match acc.remove(&k) {
                Some(a) => (a + t)?,
                None => t,
            };
            acc.insert(k, sum);
        }
    }
    Ok((value, acc))
}
