//! One training loop for every architecture: D steps per G step, Adam per network, a
//! loss and a penalty from the config, a G weight average, and checkpoints that resume
//! bit-exactly (every random draw is derived from the seed and the step).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Result, SplitMix64};
use labelgan_optim::{Adam, named_grads};

use crate::architectures::networks;
use crate::aux_heads::AuxiliaryHeads;
use crate::co_training::{class_loss, projection_classes};
use crate::compare_gan_generator::CompareGanGenerator;
use crate::model::{GanDiscriminator, GanGenerator};
use crate::real_classes::RealClasses;
use crate::self_supervision::{rotated_classes, rotated_count, rotation_loss, with_rotations};
use crate::{Architecture, BnMode, Penalty, StyleGan2Generator, TrainingConfig};
use labelgan_core::one_hot;

/// Real images `[n, 3, R, R]` in [-1, 1] starting at image `start` of the data, with
/// their classes (needed when the model is conditional). The same `start` must give
/// the same images, so that a resumed run sees what an unbroken one would.
pub type RealBatches<'a> = dyn FnMut(u64, usize) -> Result<(Tensor, Option<RealClasses>)> + 'a;

/// Stream tags, so that the draws of one step never coincide.
const Z_STREAM: u64 = 0x7a;
const CLASS_STREAM: u64 = 0x63;
const PENALTY_STREAM: u64 = 0x70;
const NOISE_STREAM: u64 = 0x6e;
const STANDING_STREAM: u64 = 0x7374_616e_6469_6e67;

/// Batches, and images per batch, of the exported generator's standing statistics.
pub const STANDING_BATCHES: u64 = 20;
/// See [`STANDING_BATCHES`].
pub const STANDING_BATCH: usize = 50;

/// What one G step (with its D steps) did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepReport {
    /// D's GAN loss (without the penalty and the heads' losses), on its last step.
    pub d_loss: f32,
    /// The penalty's value (0 without one), on D's last step.
    pub penalty: f32,
    /// G's GAN loss (without the rotation loss).
    pub g_loss: f32,
    /// The rotation loss on real images (0 without self-supervision), D's last step.
    pub rotation_real: f32,
    /// The rotation loss on generated images in G's step (0 without self-supervision).
    pub rotation_fake: f32,
    /// The class predictor's loss on labelled real images (0 without co-training).
    pub class_loss: f32,
}

/// A loss's value as an `f32`.
fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

/// Both networks, their optimisers and the G weight average.
pub struct Trainer {
    /// What the run is made of.
    pub config: TrainingConfig,
    g: Box<dyn GanGenerator + Send + Sync>,
    d: Box<dyn GanDiscriminator + Send + Sync>,
    /// D's rotation head and class predictor, as the config asks.
    heads: AuxiliaryHeads,
    g_vars: BTreeMap<String, Var>,
    d_vars: BTreeMap<String, Var>,
    opt_g: Adam,
    opt_d: Adam,
    /// The G weight average, once started.
    ema: Option<BTreeMap<String, Tensor>>,
    /// G steps done.
    pub step: u64,
    /// Moving average (0.9 per step) of `D(x) - D(G(z))`: how well D separates them.
    pub gap_average: f64,
    /// The step at which G started training (`None` while it rests: `g_warmup_steps`).
    pub g_started: Option<u64>,
    device: Device,
}

impl Trainer {
    /// Fresh networks for `config` (validated) on `device`, initialised from its seed.
    pub fn new(config: &TrainingConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let (g, g_vars, d, mut d_vars) = networks(config, device)?;
        let (heads, head_vars) = AuxiliaryHeads::new(config, d.feature_dim(), device)?;
        d_vars.extend(head_vars);
        let t = &config.train;
        // Lazy regularisation: D's Adam sees fewer, larger steps (StyleGAN2, appendix B).
        let lazy = t.penalty != Penalty::None && t.penalty_weight > 0.0 && t.penalty_interval > 1;
        let mb = if lazy {
            t.penalty_interval as f64 / (t.penalty_interval as f64 + 1.0)
        } else {
            1.0
        };
        Ok(Self {
            config: config.clone(),
            g,
            d,
            heads,
            g_vars,
            d_vars,
            opt_g: Adam::new(t.g_lr, (t.g_betas[0], t.g_betas[1])),
            opt_d: Adam::new(t.d_lr * mb, (t.d_betas[0].powf(mb), t.d_betas[1].powf(mb))),
            ema: None,
            step: 0,
            gap_average: 0.0,
            g_started: (t.g_warmup_steps == 0).then_some(0),
            device: device.clone(),
        })
    }

    /// Fresh networks whose generator starts from trained weights `state` (by name, as
    /// the architecture's export writes them: StyleGAN2's official layout, its
    /// `mapping.w_avg` included), with a fresh discriminator. A missing or misshapen
    /// tensor is an error naming it.
    pub fn with_generator(config: &TrainingConfig, state: &BTreeMap<String, Tensor>, device: &Device) -> Result<Self> {
        let mut t = Self::new(config, device)?;
        if config.model.architecture == Architecture::Stylegan2 {
            let (g, vars) = StyleGan2Generator::from_state(&config.model, state, device)?;
            t.g = Box::new(g);
            t.g_vars = vars;
            return Ok(t);
        }
        for (k, v) in &t.g_vars {
            let w = state
                .get(k)
                .ok_or_else(|| Error::invalid(format!("the generator has no tensor `{k}` that the config makes")))?;
            if w.dims() != v.as_tensor().dims() {
                return Err(Error::invalid(format!(
                    "generator tensor `{k}` is {:?}, the config makes {:?}",
                    w.dims(),
                    v.as_tensor().dims()
                )));
            }
            v.set(&w.to_dtype(DType::F32)?.to_device(device)?)?;
        }
        Ok(t)
    }

    /// Real images shown to D so far.
    pub fn images_seen(&self) -> u64 {
        self.step * (self.config.train.d_steps * self.config.train.batch) as u64
    }

    /// The device the networks live on.
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// The generator's parameters by name.
    pub fn generator_vars(&self) -> &BTreeMap<String, Var> {
        &self.g_vars
    }

    /// The discriminator's parameters by name.
    pub fn discriminator_vars(&self) -> &BTreeMap<String, Var> {
        &self.d_vars
    }

    /// Latents and (for a conditional model) one-hot classes for draw `index` of
    /// stream `tag` at the current step.
    fn latents(&self, tag: u64, index: u64, n: usize) -> Result<(Tensor, Option<Tensor>)> {
        let key = (self.step << 8) | index;
        let m = &self.config.model;
        let z = SplitMix64::derive(self.config.seed ^ (tag << 56), key).normal_tensor(&[n, m.z_dim], &self.device)?;
        let y = if m.conditional {
            let mut rng = SplitMix64::derive(self.config.seed ^ (CLASS_STREAM << 56), key);
            let classes: Vec<u32> = (0..n).map(|_| rng.below(m.classes as u64) as u32).collect();
            Some(one_hot(&classes, m.classes, &self.device)?)
        } else {
            None
        };
        Ok((z, y))
    }

    /// How many images of a batch are turned for the rotation task (`None`: off).
    fn rotated(&self) -> Result<Option<usize>> {
        let t = &self.config.train;
        match t.rotation_batch_fraction {
            0 => Ok(None),
            f => Ok(Some(rotated_count(t.batch, f)?)),
        }
    }

    /// One G step after `d_steps` D steps, on real images from `real`.
    pub fn train_step(&mut self, real: &mut RealBatches) -> Result<StepReport> {
        let t = self.config.train.clone();
        let m = self.config.model.clone();
        let rotated = self.rotated()?;
        let turn = |x: &Tensor| -> Result<Tensor> {
            match rotated {
                Some(c) => with_rotations(x, c),
                None => Ok(x.clone()),
            }
        };
        let turn_classes = |y: &Option<Tensor>| -> Result<Option<Tensor>> {
            match (rotated, y) {
                (Some(c), Some(y)) => Ok(Some(rotated_classes(y, c)?)),
                _ => Ok(y.clone()),
            }
        };
        let mut report = StepReport::default();
        for k in 0..t.d_steps {
            let start = (self.step * t.d_steps as u64 + k as u64) * t.batch as u64;
            let (x, classes) = real(start, t.batch)?;
            if x.dims() != [t.batch, 3, m.resolution, m.resolution] {
                return Err(Error::invalid(format!(
                    "real batch is {:?}, expected [{}, 3, {r}, {r}]",
                    x.dims(),
                    t.batch,
                    r = m.resolution
                )));
            }
            let y_real = match (m.conditional, classes) {
                (true, Some(c)) if c.len()? == t.batch => Some(c.rows(m.classes, &self.device)?),
                (true, Some(c)) => {
                    return Err(Error::invalid(format!(
                        "{} real classes for a batch of {}",
                        c.len()?,
                        t.batch
                    )));
                }
                (true, None) => return Err(Error::invalid("a conditional model needs the real images' classes")),
                (false, _) => None,
            };
            let (z, y_fake) = self.latents(Z_STREAM, k as u64, t.batch)?;
            let mut noise = self.stream(NOISE_STREAM, k as u64);
            let fake = self.g.forward_train(&z, y_fake.as_ref(), &mut noise, false)?.detach();
            let (real_in, y_real_in) = (turn(&x)?, turn_classes(&y_real)?);
            let (fake_in, y_fake_in) = (turn(&fake)?, turn_classes(&y_fake)?);
            // Co-training: the predictor names unlabelled reals' classes from φ(x); the
            // penalty's pass uses the same classes (as the reference does).
            let (mut predicted, mut y_projected) = (None, None);
            let real_out = {
                let (predictor, soft) = (&self.heads.predictor, t.soft_predictions);
                let mut classes = |phi: &Tensor| -> Result<Option<Tensor>> {
                    match (predictor, &y_real_in) {
                        (Some(p), Some(y)) => {
                            let logits = p.forward(phi, true)?;
                            let y = projection_classes(y, &logits, soft)?;
                            predicted = Some(logits);
                            y_projected = Some(y.narrow(0, 0, t.batch)?);
                            Ok(Some(y))
                        }
                        (_, y) => Ok(y.clone()),
                    }
                };
                self.d.forward_features(&real_in, &mut classes, true)?
            };
            let fake_out = self
                .d
                .forward_features(&fake_in, &mut |_| Ok(y_fake_in.clone()), false)?;
            let real_logits = real_out.logits.narrow(0, 0, t.batch)?;
            let fake_logits = fake_out.logits.narrow(0, 0, t.batch)?;
            let loss = t.loss.discriminator(&real_logits, &fake_logits)?;
            report.d_loss = scalar(&loss.total)?;
            let mut total = loss.total;
            if let (Some(head), Some(c)) = (&self.heads.rotation, rotated) {
                let r = rotation_loss(&head.forward(&real_out.features, true)?, c)?;
                report.rotation_real = scalar(&r)?;
                total = (total + (r * t.rotation_weight_d)?)?;
            }
            if let (Some(logits), Some(y)) = (&predicted, &y_real) {
                let c = class_loss(&logits.narrow(0, 0, t.batch)?, y)?;
                report.class_loss = scalar(&c)?;
                total = (total + (c * t.class_predictor_weight)?)?;
            }
            let gap = (real_logits.mean_all()? - fake_logits.mean_all()?)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            self.gap_average = 0.9 * self.gap_average + 0.1 * gap;
            let mut grads = named_grads(&self.d_vars, &total.backward()?);
            let update = self.step * t.d_steps as u64 + k as u64;
            if t.penalty != Penalty::None && t.penalty_weight > 0.0 && update.is_multiple_of(t.penalty_interval as u64)
            {
                let y_penalty = y_projected.as_ref().or(y_real.as_ref());
                let (value, pg) = self.penalty_gradients(&x, &fake, y_penalty, k as u64)?;
                report.penalty = value;
                for (name, g) in pg {
                    let sum = match grads.remove(&name) {
                        Some(a) => (a + g)?,
                        None => g,
                    };
                    grads.insert(name, sum);
                }
            }
            self.opt_d.update(&self.d_vars, &grads)?;
        }
        if self.g_started.is_none() {
            let capped = self.step >= t.g_warmup_steps;
            let separated = t.g_warmup_gap > 0.0 && self.gap_average >= t.g_warmup_gap;
            if capped || separated {
                self.g_started = Some(self.step);
            }
        }
        if self.g_started.is_some() {
            let (z, y) = self.latents(Z_STREAM, 255, t.batch)?;
            let mut noise = self.stream(NOISE_STREAM, 255);
            let fake = self.g.forward_train(&z, y.as_ref(), &mut noise, true)?;
            let y_in = turn_classes(&y)?;
            let out = self
                .d
                .forward_features(&turn(&fake)?, &mut |_| Ok(y_in.clone()), false)?;
            let g_loss = t.loss.generator(&out.logits.narrow(0, 0, t.batch)?)?;
            report.g_loss = scalar(&g_loss)?;
            let mut total = g_loss;
            if let (Some(head), Some(c)) = (&self.heads.rotation, rotated) {
                let r = rotation_loss(&head.forward(&out.features, false)?, c)?;
                report.rotation_fake = scalar(&r)?;
                total = (total + (r * t.rotation_weight_g)?)?;
            }
            self.opt_g.update_from(&self.g_vars, &total.backward()?)?;
        }
        self.step += 1;
        self.update_average()?;
        let values = [
            report.d_loss,
            report.g_loss,
            report.penalty,
            report.rotation_real,
            report.rotation_fake,
            report.class_loss,
        ];
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "training diverged at step {}: D loss {}, G loss {}, penalty {}, rotation {} / {}, class {}",
                self.step, values[0], values[1], values[2], values[3], values[4], values[5]
            )));
        }
        Ok(report)
    }

    /// A generator for draw `index` of stream `tag` at the current step.
    fn stream(&self, tag: u64, index: u64) -> SplitMix64 {
        SplitMix64::derive(self.config.seed ^ (tag << 56), (self.step << 8) | index)
    }

    /// The weighted penalty's value and gradients with respect to D's weights, on a
    /// fresh thread (which keeps the graph of gradients; `second_order`).
    fn penalty_gradients(
        &self,
        real: &Tensor,
        fake: &Tensor,
        y: Option<&Tensor>,
        index: u64,
    ) -> Result<(f32, BTreeMap<String, Tensor>)> {
        let t = &self.config.train;
        let mut rng = SplitMix64::derive(self.config.seed ^ (PENALTY_STREAM << 56), (self.step << 8) | index);
        let d = &self.d;
        let d_fn = |x: &Tensor, y: Option<&Tensor>| d.forward(x, y, false);
        let groups = d.penalty_groups(real.dim(0)?);
        // Lazy: every `penalty_interval` updates, as much as that many would add.
        let weight = t.penalty_weight * t.penalty_interval as f64;
        std::thread::scope(|s| {
            s.spawn(|| {
                t.penalty
                    .gradients(&d_fn, (real, fake, y), groups, weight, &self.d_vars, &mut rng)
            })
            .join()
            .map_err(|_| Error::invalid("the penalty's thread panicked"))?
        })
    }

    /// The weight average's decay at this step: `ema_decay`, or from the half-life
    /// (`0.5^(batch / half-life images)`, the half-life at most `ema_rampup` of the
    /// images seen), or `None` while off.
    fn average_decay(&self) -> Option<f64> {
        let t = &self.config.train;
        if (self.images_seen() as f64) < t.ema_start_kimg * 1000.0 {
            return None;
        }
        if t.ema_half_life_kimg > 0.0 {
            let mut half_life = t.ema_half_life_kimg * 1000.0;
            if t.ema_rampup > 0.0 {
                half_life = half_life.min(self.images_seen() as f64 * t.ema_rampup);
            }
            return Some(0.5f64.powf(t.batch as f64 / half_life.max(1e-8)));
        }
        (t.ema_decay > 0.0).then_some(t.ema_decay)
    }

    fn update_average(&mut self) -> Result<()> {
        let Some(decay) = self.average_decay() else {
            return Ok(());
        };
        let current = |v: &Var| v.as_tensor().detach().copy();
        self.ema = Some(match self.ema.take() {
            None => self
                .g_vars
                .iter()
                .map(|(k, v)| Ok((k.clone(), current(v)?)))
                .collect::<Result<_>>()?,
            Some(avg) => avg
                .into_iter()
                .map(|(k, a)| {
                    let w = self.g_vars[&k].as_tensor().detach();
                    Ok((k, ((a * decay)? + (w * (1.0 - decay))?)?))
                })
                .collect::<Result<_>>()?,
        });
        Ok(())
    }

    /// Runs `f` with the weight average in the generator's place (the trained weights
    /// put back after, whatever `f` returned).
    fn with_average<T>(&self, avg: &BTreeMap<String, Tensor>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut old = BTreeMap::new();
        for (k, v) in &self.g_vars {
            old.insert(k.clone(), v.as_tensor().detach().copy()?);
            v.set(&avg[k])?;
        }
        let out = f();
        for (k, v) in &self.g_vars {
            v.set(&old[k])?;
        }
        out
    }

    /// Images from latents `z` (and one-hot classes) with the generator in evaluation
    /// mode, using the weight average when there is one and `average` asks for it (its
    /// batch norm then normalises with the batch's statistics: the moving averages
    /// belong to the trained weights, not to their average).
    pub fn generate(&self, z: &Tensor, y: Option<&Tensor>, average: bool) -> Result<Tensor> {
        match (&self.ema, average) {
            (Some(avg), true) => self.with_average(avg, || self.g.forward(z, y, BnMode::Batch)),
            _ => self.g.forward(z, y, BnMode::Eval),
        }
    }

    /// The class predictor's probabilities `[N, classes]` for images `x` (co-training's
    /// inferred labels), with D in evaluation mode; `None` without a class predictor.
    pub fn predict_classes(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(head) = &self.heads.predictor else {
            return Ok(None);
        };
        let m = &self.config.model;
        // Zero class rows: the projection term adds nothing, only φ(x) is wanted.
        let none = Tensor::zeros((x.dim(0)?, m.classes), DType::F32, &self.device)?;
        let out = self
            .d
            .forward_features(&x.to_device(&self.device)?, &mut |_| Ok(Some(none.clone())), false)?;
        let logits = head.forward(&out.features, false)?;
        Ok(Some(candle_nn::ops::softmax_last_dim(&logits)?))
    }

    /// The batch-norm statistics the exported generator evaluates with: with a weight
    /// average, standing statistics of the average itself over
    /// [`STANDING_BATCHES`] batches of [`STANDING_BATCH`] (classes in turn, as Compare
    /// GAN computes them before scoring); without one, the moving averages.
    fn export_buffers(&self) -> Result<BTreeMap<String, Tensor>> {
        let Some(avg) = &self.ema else {
            return Ok(self.g.buffers());
        };
        let moving = self.g.buffers();
        let m = &self.config.model;
        let standing = self.with_average(avg, || {
            for b in 0..STANDING_BATCHES {
                let z =
                    SplitMix64::derive(STANDING_STREAM, b).normal_tensor(&[STANDING_BATCH, m.z_dim], &self.device)?;
                let y = if m.conditional {
                    let classes: Vec<u32> = (0..STANDING_BATCH).map(|i| (i % m.classes) as u32).collect();
                    Some(one_hot(&classes, m.classes, &self.device)?)
                } else {
                    None
                };
                self.g.forward(&z, y.as_ref(), BnMode::Accumulate)?;
            }
            Ok(self.g.buffers())
        });
        // Restoring the moving averages also forgets the standing statistics.
        self.g.set_buffers(&moving)?;
        standing
    }

    /// Writes the generator as a model file the rest of labelgan loads, with the
    /// weight average when there is one: StyleGAN2 in the official layout, the Compare
    /// GAN architectures as a [`CompareGanGenerator`] file.
    pub fn export_generator(&self, path: &Path) -> Result<()> {
        let weights = match &self.ema {
            Some(avg) => avg.clone(),
            None => self
                .g_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect(),
        };
        if self.g.export(&weights, path)? {
            return Ok(());
        }
        CompareGanGenerator::save(path, &self.config.model, &weights, &self.export_buffers()?)
    }

    /// Writes everything a resume needs (weights, buffers, optimiser moments, the
    /// average, the step, the config) to one safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut out = BTreeMap::new();
        for (prefix, vars) in [("g", &self.g_vars), ("d", &self.d_vars)] {
            for (k, v) in vars {
                out.insert(format!("{prefix}.{k}"), v.as_tensor().detach());
            }
        }
        for (k, t) in self.g.buffers() {
            out.insert(format!("g_buffer.{k}"), t);
        }
        let mut d_buffers = self.d.buffers();
        self.heads.buffers(&mut d_buffers);
        for (k, t) in d_buffers {
            out.insert(format!("d_buffer.{k}"), t);
        }
        if let Some(avg) = &self.ema {
            for (k, t) in avg {
                out.insert(format!("g_average.{k}"), t.clone());
            }
        }
        self.opt_g.save_into("adam_g", &mut out);
        self.opt_d.save_into("adam_d", &mut out);
        let meta = BTreeMap::from([
            ("step".to_string(), self.step.to_string()),
            ("config".to_string(), self.config.to_toml()?),
            ("adam_g_step".to_string(), self.opt_g.step.to_string()),
            ("gap_average".to_string(), self.gap_average.to_string()),
            (
                "g_started".to_string(),
                self.g_started.map_or("none".into(), |s| s.to_string()),
            ),
        ]);
        save_safetensors(path, &out, &meta)
    }

    /// Reads a checkpoint [`Trainer::save`] wrote, refusing one made with another
    /// config (naming the first setting that differs).
    pub fn load(path: &Path, config: &TrainingConfig, device: &Device) -> Result<Self> {
        let file = TensorFile::load(path, device)?;
        let saved = file
            .metadata
            .get("config")
            .ok_or_else(|| Error::format(path, "no `config` in the metadata: not a labelgan GAN checkpoint"))?;
        let mut saved: TrainingConfig =
            toml::from_str(saved).map_err(|e| Error::format(path, format!("its config: {e}")))?;
        // The training length may grow and the scoring interval change on resume;
        // nothing else may.
        saved.train.kimg = config.train.kimg;
        saved.eval.every_kimg = config.eval.every_kimg;
        let (a, b) = (
            labelgan_core::RunRecord::new().setting("config", &saved)?,
            labelgan_core::RunRecord::new().setting("config", config)?,
        );
        if let Some((name, was, now)) = b.difference(&a) {
            return Err(Error::format(
                path,
                format!("was made with {name} = {was}, this run has {now}"),
            ));
        }
        let mut tr = Trainer::new(config, device)?;
        let get = |key: String, like: &Tensor| -> Result<Tensor> { file.get_shaped(&key, like.dims()) };
        for (prefix, vars) in [("g", &tr.g_vars), ("d", &tr.d_vars)] {
            for (k, v) in vars {
                v.set(&get(format!("{prefix}.{k}"), v.as_tensor())?)?;
            }
        }
        let strip = |prefix: &str| -> BTreeMap<String, Tensor> {
            file.tensors
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
                .collect()
        };
        tr.g.set_buffers(&strip("g_buffer."))?;
        let d_buffers = strip("d_buffer.");
        tr.d.set_buffers(&d_buffers)?;
        tr.heads.set_buffers(&d_buffers)?;
        let avg = strip("g_average.");
        tr.ema = (!avg.is_empty()).then_some(avg);
        tr.step = file
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::format(path, "metadata `step` is missing or not a number"))?;
        let updates_d = tr.step * tr.config.train.d_steps as u64;
        let meta = |key: &str| file.metadata.get(key).map(String::as_str);
        // Checkpoints from before G's rest existed: G trained from the start.
        let g_steps = match meta("adam_g_step") {
            Some(v) => v
                .parse()
                .map_err(|_| Error::format(path, "metadata `adam_g_step` is not a number"))?,
            None => tr.step,
        };
        tr.g_started = match meta("g_started") {
            None => Some(0),
            Some("none") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::format(path, "metadata `g_started` is not a number"))?,
            ),
        };
        if let Some(v) = meta("gap_average") {
            tr.gap_average = v
                .parse()
                .map_err(|_| Error::format(path, "metadata `gap_average` is not a number"))?;
        }
        tr.opt_g.load_from("adam_g", &file, g_steps);
        tr.opt_d.load_from("adam_d", &file, updates_d);
        Ok(tr)
    }
}
