//! StyleGAN2 (Karras et al. 2020) behind the loop's traits: `labelgan-stylegan`'s
//! generator and residual discriminator with their official initialisation and names,
//! so that the one training loop trains them like any other architecture, and a run
//! exports G's average in the official layout (`generator.safetensors`) that the rest
//! of labelgan loads.
//!
//! What is StyleGAN2's own rides on the traits' hooks: in training, style mixing (a
//! second latent from a random layer on, for `style_mixing` of the batches) and fresh
//! per-pixel noise; the generator step tracks the mean w (`w_avg`, a buffer). Its
//! evaluation images use the stored constant noise. Conditional: the mapping embeds
//! the class (official), and D adds a projection of the class embedding onto its
//! last features (a projection discriminator, Miyato and Koyama 2018).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Generator, NoiseMode, Result, SplitMix64, Truncation};
use labelgan_optim::named_vars;
use labelgan_stylegan::discriminator::{Discriminator, DiscriminatorConfig};
use labelgan_stylegan::{GeneratorConfig, StyleGan2};

use crate::layers::Dense;
use crate::model::{DiscriminatorOutput, GanDiscriminator, GanGenerator, ProjectionClasses};
use crate::projection::add_projection;
use crate::{Architecture, BnMode, Init, ModelConfig, TrainingConfig};

/// StyleGAN2's own settings (`[model.stylegan2]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StyleGan2Config {
    /// Size of w.
    pub w_dim: usize,
    /// Layers of the mapping network.
    pub mapping_layers: usize,
    /// Generator widths: `min(g_channel_base / r, g_width)` at resolution r.
    pub g_channel_base: usize,
    /// Discriminator widths: `min(d_channel_base / r, d_width)`.
    pub d_channel_base: usize,
    /// Learning-rate multiplier of the mapping network.
    pub mapping_lr_multiplier: f64,
    /// Probability of style mixing per training batch.
    pub style_mixing: f64,
    /// Decay of the tracked mean w (`w_avg`, what truncation pulls towards).
    pub w_avg_beta: f64,
    /// Minibatch standard deviation group (the batch must be a multiple of it).
    pub mbstd_group: usize,
}

impl Default for StyleGan2Config {
    /// The small CPU configuration of `docs/training.md` (4 mapping layers, 256-d w).
    fn default() -> Self {
        Self {
            w_dim: 256,
            mapping_layers: 4,
            g_channel_base: 4096,
            d_channel_base: 4096,
            mapping_lr_multiplier: 0.01,
            style_mixing: 0.9,
            w_avg_beta: 0.995,
            mbstd_group: 4,
        }
    }
}

/// The generator's settings from a model config.
pub fn generator_config(m: &ModelConfig) -> GeneratorConfig {
    let s = &m.stylegan2;
    GeneratorConfig {
        z_dim: m.z_dim,
        c_dim: if m.conditional { m.classes } else { 0 },
        w_dim: s.w_dim,
        img_resolution: m.resolution,
        img_channels: 3,
        mapping_layers: s.mapping_layers,
        mapping_lr_multiplier: s.mapping_lr_multiplier,
        channel_base: s.g_channel_base,
        channel_max: m.g_width,
        conv_clamp: None,
    }
}

/// The discriminator's settings from a model config.
pub fn discriminator_config(m: &ModelConfig) -> DiscriminatorConfig {
    DiscriminatorConfig {
        resolution: m.resolution,
        img_channels: 3,
        channel_base: m.stylegan2.d_channel_base,
        channel_max: m.d_width,
        mbstd_group: m.stylegan2.mbstd_group,
    }
}

/// Errors on settings StyleGAN2 cannot be built with (called by
/// [`TrainingConfig::validate`]).
pub fn validate(c: &TrainingConfig) -> Result<()> {
    let (m, s) = (&c.model, &c.model.stylegan2);
    let bad = |what: &str, v: String, want: &str| Error::invalid(format!("{what} is {v}, expected {want}"));
    generator_config(m).validate()?;
    if m.resolution < 8 {
        return Err(bad(
            "model.resolution",
            m.resolution.to_string(),
            "at least 8 for stylegan2",
        ));
    }
    if m.attention_resolution != 0 {
        return Err(bad(
            "model.attention_resolution",
            m.attention_resolution.to_string(),
            "0 for stylegan2",
        ));
    }
    if m.init == Init::Orthogonal {
        return Err(bad(
            "model.init",
            "orthogonal".into(),
            "normal_0.02 or default for stylegan2 (it always starts from its official initialisation)",
        ));
    }
    if m.d_layer_norm {
        return Err(bad("model.d_layer_norm", "true".into(), "false for stylegan2"));
    }
    if !(1..=64).contains(&s.mbstd_group) {
        return Err(bad(
            "model.stylegan2.mbstd_group",
            s.mbstd_group.to_string(),
            "in 1..=64",
        ));
    }
    let group = s.mbstd_group.min(c.train.batch.max(1));
    if !c.train.batch.is_multiple_of(group) {
        return Err(bad(
            "train.batch",
            c.train.batch.to_string(),
            &format!("a multiple of {group}, the minibatch-std group (model.stylegan2.mbstd_group)"),
        ));
    }
    if !(0.0..=1.0).contains(&s.style_mixing) || !(0.0..1.0).contains(&s.w_avg_beta) {
        return Err(bad(
            "model.stylegan2.style_mixing, w_avg_beta",
            format!("{}, {}", s.style_mixing, s.w_avg_beta),
            "a probability and a decay in [0, 1)",
        ));
    }
    if !(s.mapping_lr_multiplier.is_finite() && s.mapping_lr_multiplier > 0.0) {
        return Err(bad(
            "model.stylegan2.mapping_lr_multiplier",
            s.mapping_lr_multiplier.to_string(),
            "a finite number above 0",
        ));
    }
    Ok(())
}

/// Buffers of the generator that are not trained.
fn is_buffer(name: &str) -> bool {
    name.ends_with("noise_const") || name.ends_with("resample_filter") || name == W_AVG
}

/// The tracked mean w.
const W_AVG: &str = "mapping.w_avg";

/// StyleGAN2's generator with its trainable weights as [`Var`]s.
pub struct StyleGan2Generator {
    g: StyleGan2,
    w_avg: Mutex<Tensor>,
    style_mixing: f64,
    w_avg_beta: f64,
    classes: Option<usize>,
}

impl StyleGan2Generator {
    /// A generator from `state` (official names: a fresh initialisation or a trained
    /// model), and its trainable weights by name.
    pub fn from_state(
        m: &ModelConfig,
        state: &BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<(Self, BTreeMap<String, Var>)> {
        let config = generator_config(m);
        let expected = StyleGan2::random(&config, 0, device)?.state_dict();
        let mut vars = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (k, want) in &expected {
            let t = state.get(k).ok_or_else(|| {
                Error::invalid(format!(
                    "the generator has no tensor `{k}` that the config's StyleGAN2 makes: give its own \
                     architecture (z_dim, model.stylegan2 settings, g_width as channel_max)"
                ))
            })?;
            if t.dims() != want.dims() {
                return Err(Error::invalid(format!(
                    "generator tensor `{k}` is {:?}, the config's StyleGAN2 makes {:?}",
                    t.dims(),
                    want.dims()
                )));
            }
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            if is_buffer(k) {
                tensors.insert(k.clone(), t);
            } else {
                let v = Var::from_tensor(&t)?;
                tensors.insert(k.clone(), v.as_tensor().clone());
                vars.insert(k.clone(), v);
            }
        }
        if let Some(k) = state.keys().find(|k| !expected.contains_key(*k)) {
            return Err(Error::invalid(format!(
                "the generator has a tensor `{k}` that the config's StyleGAN2 does not make"
            )));
        }
        let file = TensorFile {
            path: "<training>".into(),
            tensors: tensors.into_iter().collect(),
            metadata: [("init_kwargs".to_string(), config.init_kwargs())].into(),
        };
        let mut g = StyleGan2::from_file(&file)?;
        g.thaw();
        let w_avg = g.mapping.w_avg.clone();
        Ok((
            Self {
                g,
                w_avg: Mutex::new(w_avg),
                style_mixing: m.stylegan2.style_mixing,
                w_avg_beta: m.stylegan2.w_avg_beta,
                classes: m.conditional.then_some(m.classes),
            },
            vars,
        ))
    }

    /// The official initialisation from `seed`.
    pub fn new(m: &ModelConfig, seed: u64, device: &Device) -> Result<(Self, BTreeMap<String, Var>)> {
        let state = StyleGan2::random(&generator_config(m), seed, device)?.state_dict();
        Self::from_state(m, &state, device)
    }

    fn w_avg(&self) -> Tensor {
        self.w_avg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn classes(&self, y: Option<&Tensor>) -> Result<Option<Tensor>> {
        match (self.classes, y) {
            (Some(_), None) => Err(Error::invalid("a conditional generator needs the classes")),
            (Some(_), Some(y)) => Ok(Some(y.clone())),
            (None, _) => Ok(None),
        }
    }
}

impl GanGenerator for StyleGan2Generator {
    fn z_dim(&self) -> usize {
        self.g.spec().z_dim
    }

    fn forward(&self, z: &Tensor, y: Option<&Tensor>, _mode: BnMode) -> Result<Tensor> {
        let ws = self.g.mapping.forward(z, self.classes(y)?.as_ref(), Truncation::NONE)?;
        self.g.image(&ws, NoiseMode::Const)
    }

    fn forward_train(&self, z: &Tensor, y: Option<&Tensor>, rng: &mut SplitMix64, track: bool) -> Result<Tensor> {
        let c = self.classes(y)?;
        let ws = self.g.mapping.forward(z, c.as_ref(), Truncation::NONE)?;
        if track {
            let mean = ws.narrow(1, 0, 1)?.squeeze(1)?.mean(0)?.detach();
            let mut avg = self.w_avg.lock().unwrap_or_else(|e| e.into_inner());
            *avg = ((&mean - &*avg)?.affine(1.0 - self.w_avg_beta, 0.0)? + &*avg)?;
        }
        let num_ws = ws.dim(1)?;
        let ws = if num_ws > 1 && rng.uniform() < self.style_mixing {
            let cutoff = 1 + rng.below(num_ws as u64 - 1) as usize;
            let z2 = rng.normal_tensor(z.dims(), z.device())?;
            let ws2 = self.g.mapping.forward(&z2, c.as_ref(), Truncation::NONE)?;
            Tensor::cat(&[ws.narrow(1, 0, cutoff)?, ws2.narrow(1, cutoff, num_ws - cutoff)?], 1)?
        } else {
            ws
        };
        self.g.image(&ws, NoiseMode::Random(rng.next_u64()))
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        BTreeMap::from([(W_AVG.to_string(), self.w_avg())])
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        let t = from
            .get(W_AVG)
            .ok_or_else(|| Error::invalid(format!("the checkpoint has no generator buffer `{W_AVG}`")))?;
        let now = self.w_avg();
        if t.dims() != now.dims() {
            return Err(Error::invalid(format!(
                "generator buffer `{W_AVG}` is {:?}, expected {:?}",
                t.dims(),
                now.dims()
            )));
        }
        *self.w_avg.lock().unwrap_or_else(|e| e.into_inner()) = t.to_dtype(DType::F32)?.to_device(now.device())?;
        Ok(())
    }

    fn export(&self, weights: &BTreeMap<String, Tensor>, path: &Path) -> Result<bool> {
        let mut state = self.g.state_dict();
        for (k, t) in weights {
            state.insert(k.clone(), t.clone());
        }
        state.insert(W_AVG.to_string(), self.w_avg());
        let meta = BTreeMap::from([("init_kwargs".to_string(), self.g.init_kwargs())]);
        save_safetensors(path, &state, &meta)?;
        Ok(true)
    }
}

/// StyleGAN2's residual discriminator, with a projection discriminator's class term
/// `<embed(y), features>` when conditional.
pub struct StyleGan2Discriminator {
    d: Discriminator,
    projection: Option<Dense>,
}

impl StyleGan2Discriminator {
    /// The official initialisation from `seed` (and, when conditional, a class
    /// embedding N(0, 0.02) under `projection.*` in `vars`); its weights by name.
    pub fn new(m: &ModelConfig, seed: u64, device: &Device) -> Result<(Self, BTreeMap<String, Var>)> {
        if m.architecture != Architecture::Stylegan2 {
            return Err(Error::invalid(
                "internal: a StyleGAN2 discriminator for another architecture",
            ));
        }
        let d = Discriminator::new(discriminator_config(m), seed ^ 0xD15C, device)?;
        let mut vars = d.params();
        let projection = match m.conditional {
            true => {
                let vm = VarMap::new();
                let vb = crate::seeded_var_builder(&vm, seed, DType::F32, device);
                let features = discriminator_config(m).channels(4);
                let embed = Dense::new(m.classes, features, false, None, Init::Normal002, vb.pp("projection"))?;
                vars.extend(named_vars(&vm));
                Some(embed)
            }
            false => None,
        };
        Ok((Self { d, projection }, vars))
    }
}

impl GanDiscriminator for StyleGan2Discriminator {
    fn feature_dim(&self) -> usize {
        self.d.config.channels(4)
    }

    fn forward_features(
        &self,
        x: &Tensor,
        classes: &mut ProjectionClasses,
        training: bool,
    ) -> Result<DiscriminatorOutput> {
        let features = self.d.features(x)?;
        let logits = self.d.logits(&features)?;
        let y = classes(&features)?;
        let logits = add_projection(logits, self.projection.as_ref(), &features, y.as_ref(), training)?;
        Ok(DiscriminatorOutput { logits, features })
    }

    /// The minibatch-std groups: sample `i` shares statistics with `i + n / g`, ... only.
    fn penalty_groups(&self, n: usize) -> usize {
        let g = self.d.config.mbstd_group.min(n).max(1);
        if n.is_multiple_of(g) { n / g } else { 1 }
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        BTreeMap::new()
    }

    fn set_buffers(&self, _from: &BTreeMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}
