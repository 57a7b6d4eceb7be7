//! A GAN training run's every option, read from a TOML file with `key=value`
//! overrides, validated before anything is built, and written back resolved into the
//! run folder (Compare GAN's gin configs, as TOML).
//!
//! ```toml
//! seed = 0
//!
//! [model]
//! architecture = "resnet_cifar"   # sndcgan | resnet_cifar | biggan | stylegan2
//! resolution = 32
//! conditional = true
//! classes = 10
//! z_dim = 128
//! g_width = 256
//! d_width = 128
//! g_norm = "batch_norm"           # none | batch_norm | self_modulated (conditional: class-conditional)
//! d_spectral_norm = true
//! d_layer_norm = false            # layer norm on D's hidden activations
//! init = "normal_0.02"            # normal_0.02 | orthogonal | default (each layer's own)
//! attention_resolution = 0        # biggan: self-attention at this size (0: none)
//! embed_dim = 128                 # biggan: the shared class embedding
//!
//! [model.stylegan2]               # architecture = "stylegan2" (g_width, d_width: channel maxima)
//! w_dim = 256
//! mapping_layers = 4
//! g_channel_base = 4096
//! d_channel_base = 4096
//! mapping_lr_multiplier = 0.01
//! style_mixing = 0.9
//! w_avg_beta = 0.995
//! mbstd_group = 4
//!
//! [train]
//! loss = "hinge"                  # non_saturating | hinge | wasserstein | least_squares
//! penalty = "none"                # none | wgan_gp | dragan | r1
//! penalty_weight = 10.0
//! batch = 64
//! d_steps = 1
//! g_lr = 0.0002
//! d_lr = 0.0002
//! g_betas = [0.5, 0.999]
//! d_betas = [0.5, 0.999]
//! ema_decay = 0.0                 # G weight EMA; 0: off
//! ema_start_kimg = 0.0
//! kimg = 100.0
//! penalty_interval = 1            # lazy regularisation: the penalty every k D steps
//! ema_half_life_kimg = 0.0        # StyleGAN2's average (instead of ema_decay)
//! ema_rampup = 0.0
//! g_warmup_steps = 0              # G rests while a fresh D catches up
//! g_warmup_gap = 0.0
//!
//! [eval]
//! every_kimg = 10.0
//! images = 2000
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result};

use crate::few_labels::LabelsConfig;
use crate::{Loss, Penalty, StyleGan2Config};

/// Largest channel width, latent size, batch and class count accepted.
pub const MAX_SIZE: usize = 8192;

/// The network families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The DCGAN of the spectral-norm paper (Miyato et al. 2018).
    Sndcgan,
    /// The CIFAR ResNet of WGAN-GP and SNGAN, 32 px.
    ResnetCifar,
    /// BigGAN's ResNet: hierarchical z, a shared class embedding, optional
    /// self-attention, a projection discriminator.
    Biggan,
    /// StyleGAN2 (Karras et al. 2020): the mapping network, modulated convolutions and
    /// the residual discriminator, with their official initialisation; settings in
    /// `[model.stylegan2]`, `g_width` and `d_width` the channel maxima.
    Stylegan2,
}

/// How the generator normalises its activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorNorm {
    /// None.
    None,
    /// Batch norm (class-conditional when the model is conditional).
    BatchNorm,
    /// Self-modulated batch norm (on z, and the class when conditional).
    SelfModulated,
}

/// How weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// N(0, 0.02), DCGAN's.
    #[serde(rename = "normal_0.02")]
    Normal002,
    /// Each layer's own default.
    #[serde(rename = "default")]
    Default,
    /// Orthogonal weight matrices (BigGAN's).
    #[serde(rename = "orthogonal")]
    Orthogonal,
}

/// The networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Network family.
    pub architecture: Architecture,
    /// Image side in pixels.
    pub resolution: usize,
    /// Conditioned on a class (G's normalisation and a projection discriminator).
    pub conditional: bool,
    /// Number of classes (when conditional).
    pub classes: usize,
    /// Latent size.
    pub z_dim: usize,
    /// Generator base width (channels).
    pub g_width: usize,
    /// Discriminator base width.
    pub d_width: usize,
    /// Generator normalisation.
    pub g_norm: GeneratorNorm,
    /// Spectral norm on every discriminator weight.
    pub d_spectral_norm: bool,
    /// Layer norm on D's hidden activations (before each non-linearity after the
    /// first layer), Compare GAN's `layer_norm` for D.
    #[serde(default)]
    pub d_layer_norm: bool,
    /// Weight initialisation.
    pub init: Init,
    /// BigGAN: the size at which both networks apply self-attention (0: none).
    #[serde(default)]
    pub attention_resolution: usize,
    /// BigGAN: the shared class embedding's size.
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// StyleGAN2's own settings.
    #[serde(default)]
    pub stylegan2: StyleGan2Config,
}

fn default_embed_dim() -> usize {
    128
}

/// The optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The GAN loss.
    pub loss: Loss,
    /// A gradient penalty on D.
    pub penalty: Penalty,
    /// Its weight.
    pub penalty_weight: f64,
    /// Images per step.
    pub batch: usize,
    /// Discriminator steps per generator step.
    pub d_steps: usize,
    /// Generator learning rate.
    pub g_lr: f64,
    /// Discriminator learning rate.
    pub d_lr: f64,
    /// Generator Adam betas.
    pub g_betas: [f64; 2],
    /// Discriminator Adam betas.
    pub d_betas: [f64; 2],
    /// Decay of the generator's weight average (0: none).
    pub ema_decay: f64,
    /// When the average starts, in thousands of images.
    pub ema_start_kimg: f64,
    /// Training length, in thousands of real images shown to D.
    pub kimg: f64,
    /// Lazy regularisation (StyleGAN2): the penalty on every this many D steps only,
    /// times this many; with more than 1, D's Adam learning rate and betas are scaled
    /// by `k / (k + 1)` (Karras et al. 2020, appendix B).
    #[serde(default = "one")]
    pub penalty_interval: usize,
    /// The weight average's half-life in thousands of images (StyleGAN2's `ema_kimg`;
    /// 0: use `ema_decay`).
    #[serde(default)]
    pub ema_half_life_kimg: f64,
    /// With a half-life: at most this fraction of the images seen (StyleGAN2's ramp-up;
    /// 0: none).
    #[serde(default)]
    pub ema_rampup: f64,
    /// G rests for the first this many steps while D trains (for a run that starts
    /// from a trained generator with a fresh D).
    #[serde(default)]
    pub g_warmup_steps: u64,
    /// With `g_warmup_steps`: end the rest early once D separates real from generated
    /// images by this margin (a moving average, 0.9 per step, of `D(x) - D(G(z))`);
    /// 0: rest all `g_warmup_steps`.
    #[serde(default)]
    pub g_warmup_gap: f64,
    /// Self-supervision in D (SSGAN, S3GAN): `batch / this` images of each real and
    /// generated batch take part in the rotation task, a quarter of them upright and
    /// the same images turned by 90, 180 and 270 degrees appended (the reference's
    /// `rotated_batch_fraction`); 0: off.
    #[serde(default)]
    pub rotation_batch_fraction: usize,
    /// Weight of the rotation loss on real images in D's loss.
    #[serde(default = "one_f64")]
    pub rotation_weight_d: f64,
    /// Weight of the rotation loss on generated images in G's loss.
    #[serde(default = "rotation_weight_g")]
    pub rotation_weight_g: f64,
    /// Co-training (S2GAN-CO, S3GAN): a class predictor on D's features, trained on
    /// the labelled real images, names the classes of the unlabelled ones for the
    /// projection term. Needs a conditional model.
    #[serde(default)]
    pub class_predictor: bool,
    /// Weight of the predictor's cross-entropy in D's loss.
    #[serde(default = "one_f64")]
    pub class_predictor_weight: f64,
    /// The predictor's softmax for unlabelled images rather than its argmax.
    #[serde(default)]
    pub soft_predictions: bool,
}

fn one() -> usize {
    1
}

fn one_f64() -> f64 {
    1.0
}

/// SSGAN's weight of the generated images' rotation loss.
fn rotation_weight_g() -> f64 {
    0.2
}

/// Scoring while training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Score every this many thousand images (and at the end).
    pub every_kimg: f64,
    /// Generated and real images per score.
    pub images: usize,
}

/// Everything a training run is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// The networks.
    pub model: ModelConfig,
    /// The optimisation.
    pub train: TrainConfig,
    /// Scoring while training.
    pub eval: EvalConfig,
    /// Which training images keep their labels (all, by default).
    #[serde(default)]
    pub labels: LabelsConfig,
}

impl Default for TrainingConfig {
    /// A conditional CIFAR ResNet with hinge loss and spectral norm in D (SNGAN's
    /// recipe with Compare GAN's defaults for the optimiser).
    fn default() -> Self {
        Self {
            seed: 0,
            model: ModelConfig {
                architecture: Architecture::ResnetCifar,
                resolution: 32,
                conditional: true,
                classes: 10,
                z_dim: 128,
                g_width: 256,
                d_width: 128,
                g_norm: GeneratorNorm::BatchNorm,
                d_spectral_norm: true,
                d_layer_norm: false,
                init: Init::Normal002,
                attention_resolution: 0,
                embed_dim: 128,
                stylegan2: StyleGan2Config::default(),
            },
            train: TrainConfig {
                loss: Loss::Hinge,
                penalty: Penalty::None,
                penalty_weight: 10.0,
                batch: 64,
                d_steps: 1,
                g_lr: 2e-4,
                d_lr: 2e-4,
                g_betas: [0.5, 0.999],
                d_betas: [0.5, 0.999],
                ema_decay: 0.0,
                ema_start_kimg: 0.0,
                kimg: 100.0,
                penalty_interval: 1,
                ema_half_life_kimg: 0.0,
                ema_rampup: 0.0,
                g_warmup_steps: 0,
                g_warmup_gap: 0.0,
                rotation_batch_fraction: 0,
                rotation_weight_d: 1.0,
                rotation_weight_g: rotation_weight_g(),
                class_predictor: false,
                class_predictor_weight: 1.0,
                soft_predictions: false,
            },
            labels: LabelsConfig::default(),
            eval: EvalConfig {
                every_kimg: 10.0,
                images: 2000,
            },
        }
    }
}

fn bad(what: &str, value: impl std::fmt::Display, want: &str) -> Error {
    Error::invalid(format!("{what} is {value}, expected {want}"))
}

impl TrainingConfig {
    /// Reads a TOML file (every key optional: the rest come from the defaults), applies
    /// `sets` (`section.key=value`, the value in TOML syntax; a bare word is a string)
    /// and validates the result. Unknown keys, in the file or a `--set`, are errors
    /// naming them.
    pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut table = toml::Table::try_from(Self::default()).map_err(|e| Error::invalid(e.to_string()))?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let file: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| Error::format(path, one_line(&e.to_string())))?;
            merge(&mut table, file, "").map_err(|e| Error::format(path, e))?;
        }
        for set in sets {
            apply_set(&mut table, set)?;
        }
        let cfg: TrainingConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let source = path.map_or("the settings".to_string(), |p| p.display().to_string());
            Error::invalid(format!("{source} (with any --set): {}", one_line(&e.to_string())))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resolved config as TOML (what a run folder keeps).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))
    }

    /// Errors on any option out of range or combination that cannot be built.
    pub fn validate(&self) -> Result<()> {
        let (m, t, e) = (&self.model, &self.train, &self.eval);
        self.labels.validate()?;
        if !self.labels.is_full() && !m.conditional {
            return Err(bad(
                "labels.fraction, labels.unlabelled",
                format!("{}, {:?}", self.labels.fraction, self.labels.unlabelled),
                "all labels (1, none) for an unconditional model",
            ));
        }
        if !m.resolution.is_power_of_two() || !(16..=1024).contains(&m.resolution) {
            return Err(bad("model.resolution", m.resolution, "a power of two in 16..=1024"));
        }
        if m.architecture == Architecture::Stylegan2 {
            crate::stylegan2::validate(self)?;
        }
        if m.architecture == Architecture::ResnetCifar && m.resolution != 32 {
            return Err(bad("model.resolution", m.resolution, "32 for resnet_cifar"));
        }
        if m.embed_dim > MAX_SIZE {
            return Err(bad("model.embed_dim", m.embed_dim, &format!("at most {MAX_SIZE}")));
        }
        if m.architecture == Architecture::Biggan {
            crate::biggan::validate(m)?;
        } else if m.attention_resolution != 0 {
            return Err(bad(
                "model.attention_resolution",
                m.attention_resolution,
                "0 except for biggan",
            ));
        }
        for (name, v) in [
            ("model.z_dim", m.z_dim),
            ("model.g_width", m.g_width),
            ("model.d_width", m.d_width),
        ] {
            if !(1..=MAX_SIZE).contains(&v) {
                return Err(bad(name, v, &format!("in 1..={MAX_SIZE}")));
            }
        }
        if m.conditional && !(2..=MAX_SIZE).contains(&m.classes) {
            return Err(bad(
                "model.classes",
                m.classes,
                &format!("in 2..={MAX_SIZE} for a conditional model"),
            ));
        }
        let positive = |name: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(name, v, "a finite number above 0"))
            }
        };
        positive("train.g_lr", t.g_lr)?;
        positive("train.d_lr", t.d_lr)?;
        positive("train.kimg", t.kimg)?;
        positive("eval.every_kimg", e.every_kimg)?;
        if !(t.penalty_weight.is_finite() && t.penalty_weight >= 0.0) {
            return Err(bad(
                "train.penalty_weight",
                t.penalty_weight,
                "a finite number of at least 0",
            ));
        }
        for (name, b) in [("train.g_betas", t.g_betas), ("train.d_betas", t.d_betas)] {
            if !b.iter().all(|v| (0.0..1.0).contains(v)) {
                return Err(bad(name, format!("{b:?}"), "two numbers in [0, 1)"));
            }
        }
        if !((0.0..1.0).contains(&t.ema_decay) && t.ema_start_kimg.is_finite() && t.ema_start_kimg >= 0.0) {
            return Err(bad(
                "train.ema_decay, ema_start_kimg",
                format!("{}, {}", t.ema_decay, t.ema_start_kimg),
                "a decay in [0, 1) and a start of at least 0",
            ));
        }
        if !(1..=1000).contains(&t.penalty_interval) {
            return Err(bad("train.penalty_interval", t.penalty_interval, "in 1..=1000"));
        }
        for (name, v) in [
            ("train.ema_half_life_kimg", t.ema_half_life_kimg),
            ("train.ema_rampup", t.ema_rampup),
            ("train.g_warmup_gap", t.g_warmup_gap),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(name, v, "a finite number of at least 0"));
            }
        }
        if t.ema_half_life_kimg > 0.0 && t.ema_decay > 0.0 {
            return Err(bad(
                "train.ema_decay",
                t.ema_decay,
                "0 when train.ema_half_life_kimg sets the average",
            ));
        }
        if t.g_warmup_gap > 0.0 && t.g_warmup_steps == 0 {
            return Err(bad(
                "train.g_warmup_gap",
                t.g_warmup_gap,
                "0 unless train.g_warmup_steps caps the rest",
            ));
        }
        if !(1..=MAX_SIZE).contains(&t.batch) {
            return Err(bad("train.batch", t.batch, &format!("in 1..={MAX_SIZE}")));
        }
        if t.rotation_batch_fraction > 0 {
            crate::self_supervision::rotated_count(t.batch, t.rotation_batch_fraction)?;
        }
        for (name, v) in [
            ("train.rotation_weight_d", t.rotation_weight_d),
            ("train.rotation_weight_g", t.rotation_weight_g),
            ("train.class_predictor_weight", t.class_predictor_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(name, v, "a finite number of at least 0"));
            }
        }
        if t.class_predictor && !m.conditional {
            return Err(bad(
                "train.class_predictor",
                true,
                "false for an unconditional model (model.conditional = false)",
            ));
        }
        if !(1..=100).contains(&t.d_steps) {
            return Err(bad("train.d_steps", t.d_steps, "in 1..=100"));
        }
        if !(2..=10_000_000).contains(&e.images) {
            return Err(bad("eval.images", e.images, "in 2..=10000000"));
        }
        Ok(())
    }
}

/// The first line of a parser's message (toml's span multiple lines with a caret).
pub(crate) fn one_line(msg: &str) -> String {
    msg.lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Overlays `file` on `base`, refusing keys `base` does not have.
fn merge(base: &mut toml::Table, file: toml::Table, prefix: &str) -> std::result::Result<(), String> {
    for (k, v) in file {
        let name = format!("{prefix}{k}");
        match (base.get_mut(&k), v) {
            (None, _) => return Err(format!("unknown setting `{name}`")),
            (Some(toml::Value::Table(b)), toml::Value::Table(f)) => merge(b, f, &format!("{name}."))?,
            (Some(toml::Value::Table(_)), _) => return Err(format!("`{name}` is a section, not a value")),
            (Some(slot), v) => *slot = v,
        }
    }
    Ok(())
}

/// Applies one `section.key=value`.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| Error::usage(format!("--set {set}: expected KEY=VALUE")))?;
    let (key, raw) = (key.trim(), raw.trim());
    // A TOML value; a bare word (hinge, resnet_cifar) is taken as a string.
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut at = table;
    for p in &parts {
        at = match at.get_mut(*p) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(Error::usage(format!("--set {set}: unknown setting `{key}`"))),
        };
    }
    match at.get_mut(last) {
        Some(toml::Value::Table(_)) => Err(Error::usage(format!("--set {set}: `{key}` is a section, not a value"))),
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => Err(Error::usage(format!("--set {set}: unknown setting `{key}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("labelgan-gan-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_and_sets_override_the_defaults_and_round_trip() {
        let p = write(
            "a.toml",
            "seed = 3\n[model]\narchitecture = \"sndcgan\"\n[train]\nloss = \"wasserstein\"\npenalty = \"wgan_gp\"\n",
        );
        let sets = vec![
            "train.d_steps=5".to_string(),
            "train.loss=non_saturating".into(),
            "model.conditional=false".into(),
        ];
        let c = TrainingConfig::load(Some(&p), &sets).unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(c.model.architecture, Architecture::Sndcgan);
        assert_eq!(
            (c.train.loss, c.train.penalty, c.train.d_steps),
            (Loss::NonSaturating, Penalty::WganGp, 5)
        );
        assert!(!c.model.conditional);
        assert_eq!(c.train.g_lr, 2e-4, "untouched keys keep their defaults");
        let back = write("b.toml", &c.to_toml().unwrap());
        assert_eq!(TrainingConfig::load(Some(&back), &[]).unwrap(), c);
        assert_eq!(TrainingConfig::load(None, &[]).unwrap(), TrainingConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = |file: Option<&str>, sets: &[&str]| -> String {
            let p = file.map(|t| write("bad.toml", t));
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            TrainingConfig::load(p.as_deref(), &sets).unwrap_err().to_string()
        };
        assert!(err(Some("[model]\nwidht = 3\n"), &[]).contains("unknown setting `model.widht`"));
        assert!(err(None, &["train.lr=0.1"]).contains("unknown setting `train.lr`"));
        assert!(err(None, &["train=3"]).contains("is a section"));
        assert!(err(None, &["train.loss"]).contains("expected KEY=VALUE"));
        assert!(err(None, &["train.loss=hing"]).contains("hing"));
        assert!(err(None, &["train.g_lr=nan"]).contains("train.g_lr is NaN"));
        assert!(err(None, &["train.batch=0"]).contains("train.batch is 0"));
        assert!(err(None, &["model.resolution=64"]).contains("32 for resnet_cifar"));
        assert!(err(None, &["model.architecture=stylegan9"]).contains("stylegan9"));
        assert!(err(None, &["train.g_betas=[0.5, 1.5]"]).contains("train.g_betas"));
        assert!(err(Some("seed = \"x\""), &[]).contains("bad.toml"));
        assert!(err(Some("[model\n"), &[]).contains("bad.toml"));
    }
}
