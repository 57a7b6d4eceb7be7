//! A perceptual backbone for domains without ImageNet weights, trained without labels.
//!
//! A narrow VGG-style network (five slices of 3x3 convs + ReLU, 2x2 max-pools between
//! them, torchvision's layer numbering) learns to tell by how much an image was rotated
//! (0, 90, 180 or 270 degrees): the self-supervised task of Chen et al., "Self-Supervised
//! GANs via Auxiliary Rotation Loss" (CVPR 2019), used in Lucic et al., "High-Fidelity
//! Image Generation With Fewer Labels" (ICML 2019). To answer it the net must find the
//! domain's parts and their orientation, which is what a perceptual distance should
//! weigh. Its five taps then serve LPIPS with uniform lin weights: the saved file loads
//! with [`Lpips::load`] like a converted VGG16, plus a `rotation.fc` head that LPIPS
//! ignores.
//!
//! ```no_run
//! use candle_core::Device;
//! use labelgan_core::image_io::ImageSource;
//! use labelgan_lpips::rotation::{RotationConfig, train_rotation};
//!
//! # fn images() -> labelgan_core::Result<(candle_core::Tensor, candle_core::Tensor)> { unimplemented!() }
//! let (train, holdout) = images()?; // [N, 3, 64, 64] in [-1, 1]
//! let config = RotationConfig { steps: 200, ..RotationConfig::default() };
//! let net = train_rotation(&config, &ImageSource::Images(train), &holdout, &Device::Cpu, &mut |p| {
//!     eprintln!("step {} loss {:.3}", p.step, p.loss)
//! })?;
//! println!("held-out rotation accuracy {:.3}", net.accuracy(&holdout)?);
//! net.save("perceptual.safetensors")?;
//! let lpips = net.lpips(); // or Lpips::load("perceptual.safetensors", &Device::Cpu)
//! # Ok::<(), labelgan_core::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use labelgan_core::cross_entropy::cross_entropy;
use labelgan_core::image_io::ImageSource;
use labelgan_core::io::{TensorFile, save_safetensors};
pub use labelgan_core::rotation::{rotate90, rotation_batch};
use labelgan_core::{Error, Result, SplitMix64};
use labelgan_kernels::layer::init_he_normal;
use labelgan_optim::{Adam, named_vars};

use crate::Lpips;

/// What the net's head is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// By how much an image was turned (four classes), learned without labels.
    #[default]
    Rotation,
    /// The image's class among this many, learned from labels: a classifier
    /// ([`crate::classifier`]).
    Classes(usize),
}

impl Task {
    /// The head's outputs.
    pub fn outputs(self) -> usize {
        match self {
            Task::Rotation => 4,
            Task::Classes(k) => k,
        }
    }

    /// The head's name in the file.
    pub fn head_name(self) -> &'static str {
        match self {
            Task::Rotation => "rotation.fc",
            Task::Classes(_) => "classes.fc",
        }
    }
}

/// Architecture and training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationConfig {
    /// What the head predicts (files written before classifiers existed: rotations).
    #[serde(default)]
    pub task: Task,
    /// Channels of the five slices (taps).
    pub widths: Vec<usize>,
    /// 3x3 convs per slice.
    pub convs_per_slice: usize,
    /// Square image size the net is trained on (any size at least 16 works in LPIPS).
    pub resolution: usize,
    /// Images per step; each is shown in all four rotations.
    pub batch: usize,
    /// Training steps.
    pub steps: usize,
    /// Adam's learning rate (betas 0.9, 0.999).
    pub lr: f64,
    /// Seed of the initialisation and the batches.
    pub seed: u64,
    /// Evaluate held-out accuracy every this many steps (0: only at the end).
    pub eval_every: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            task: Task::Rotation,
            widths: vec![16, 32, 64, 128, 128],
            convs_per_slice: 2,
            resolution: 64,
            batch: 16,
            steps: 1500,
            lr: 1e-3,
            seed: 0,
            eval_every: 250,
        }
    }
}

impl RotationConfig {
    /// Checks the settings before training.
    pub fn validate(&self) -> Result<()> {
        if self.widths.len() != 5 || self.widths.contains(&0) {
            return Err(Error::invalid(format!(
                "widths must be five positive channel counts, got {:?}",
                self.widths
            )));
        }
        if let Task::Classes(k) = self.task
            && !(2..=100_000).contains(&k)
        {
            return Err(Error::invalid(format!(
                "a classifier needs 2..=100000 classes, got {k}"
            )));
        }
        if self.convs_per_slice == 0 || self.batch == 0 || self.steps == 0 || self.lr.is_nan() || self.lr <= 0.0 {
            return Err(Error::invalid("convs_per_slice, batch, steps and lr must be positive"));
        }
        if !(16..=4096).contains(&self.resolution) {
            return Err(Error::invalid(format!(
                "resolution must be in 16..=4096 (at least four 2x2 pools), got {}",
                self.resolution
            )));
        }
        if self.widths.iter().any(|&w| w > 4096) || self.convs_per_slice > 64 || self.batch > 4096 {
            return Err(Error::invalid(format!(
                "widths {:?} (each at most 4096), convs_per_slice {} (at most 64) or batch {} (at most 4096) too large",
                self.widths, self.convs_per_slice, self.batch
            )));
        }
        // One batch's activations at the first slice (4 rotations, f32, about 4 maps
        // kept for the backward pass).
        let bytes = (4 * self.batch * self.widths[0] * self.resolution * self.resolution) as f64 * 4.0 * 4.0;
        if bytes > 16e9 {
            return Err(Error::invalid(format!(
                "batch {} at {} px with {} channels needs about {:.0} GB; use a smaller batch or width",
                self.batch,
                self.resolution,
                self.widths[0],
                bytes / 1e9
            )));
        }
        Ok(())
    }
}

/// What [`train_rotation`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub struct RotationProgress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Cross-entropy of this step's batch.
    pub loss: f32,
    /// Accuracy on this step's batch.
    pub train_accuracy: f32,
    /// Held-out accuracy, on steps where it was measured.
    pub holdout_accuracy: Option<f32>,
    /// Training images per second.
    pub images_per_second: f64,
    /// Images per step.
    pub batch: usize,
}

impl RotationProgress {
    /// Seconds per step so far.
    pub fn batch_seconds(&self) -> f64 {
        self.batch as f64 / self.images_per_second.max(1e-9)
    }
}

/// A backbone trained with a head (on rotations, or on classes): its LPIPS view and the
/// head.
#[derive(Clone)]
pub struct RotationNet {
    /// The settings it is trained with.
    pub config: RotationConfig,
    /// The backbone as LPIPS sees it (its weights are [`RotationNet::vars`]).
    lpips: Lpips,
    /// The head (`rotation.fc` or `classes.fc`): pooled last tap to the task's logits.
    head: Linear,
    /// Every trainable variable by name: the backbone under LPIPS's VGG names, and the
    /// head.
    vars: VarMap,
    /// Held-out accuracy at the end of training, when trained here.
    pub holdout_accuracy: Option<f32>,
}

impl std::fmt::Debug for RotationNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationNet")
            .field("config", &self.config)
            .field("variables", &self.vars.all_vars().len())
            .field("holdout_accuracy", &self.holdout_accuracy)
            .finish()
    }
}

/// Name of conv `j` of slice `s` (1-based) under torchvision's numbering.
fn conv_name(s: usize, j: usize, per_slice: usize) -> String {
    // Slice 1 starts at 0; each conv takes two indices (conv, ReLU); a pool opens every
    // later slice.
    let start = (s - 1) * (2 * per_slice + 1);
    format!("net.slice{s}.{}", start + 2 * j)
}

impl RotationNet {
    /// A freshly initialised net (He-normal convs, zero biases), drawn from
    /// `config.seed` conv by conv, then the head.
    pub fn new(config: RotationConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let vars = VarMap::new();
        {
            let mut rng = SplitMix64::new(config.seed);
            let mut cin = 3;
            for (s, &c) in config.widths.iter().enumerate() {
                for j in 0..config.convs_per_slice {
                    let name = conv_name(s + 1, j, config.convs_per_slice);
                    init_he_normal(&vars, &name, (c, cin, 3), &mut rng, device)?;
                    cin = c;
                }
            }
            let mut data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
            let (k, head) = (config.task.outputs(), config.task.head_name());
            let w = (rng.normal_tensor(&[k, cin], device)? * (1.0 / cin as f64).sqrt())?;
            data.insert(format!("{head}.weight"), Var::from_tensor(&w)?);
            data.insert(format!("{head}.bias"), Var::zeros(k, DType::F32, device)?);
        }
        Self::assemble(config, vars, None, device)
    }

    /// The LPIPS view and the head over `vars`.
    fn assemble(config: RotationConfig, vars: VarMap, holdout_accuracy: Option<f32>, device: &Device) -> Result<Self> {
        let mut tensors: HashMap<String, Tensor> = named_vars(&vars)
            .into_iter()
            .filter(|(k, _)| k.starts_with("net."))
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        // Images in [-1, 1] go in as they are.
        tensors.insert(
            "scaling_layer.shift".into(),
            Tensor::zeros((1, 3, 1, 1), DType::F32, device)?,
        );
        tensors.insert(
            "scaling_layer.scale".into(),
            Tensor::ones((1, 3, 1, 1), DType::F32, device)?,
        );
        let file = TensorFile {
            path: PathBuf::from("<rotation-trained backbone>"),
            tensors,
            metadata: HashMap::from([("net".to_string(), "vgg".to_string())]),
        };
        let lpips = Lpips::from_file(file)?;
        let width = *config.widths.last().ok_or_else(|| Error::invalid("no widths"))?;
        let head = candle_nn::linear(
            width,
            config.task.outputs(),
            VarBuilder::from_varmap(&vars, DType::F32, device).pp(config.task.head_name()),
        )?;
        Ok(Self {
            config,
            lpips,
            head,
            vars,
            holdout_accuracy,
        })
    }

    /// Loads a file written by [`RotationNet::save`] (with its head, for accuracy).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let file = TensorFile::load(path, device)?;
        let config: RotationConfig = file
            .metadata
            .get("rotation_config")
            .ok_or_else(|| Error::format(path, "no `rotation_config` metadata: not written by train-perceptual"))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| Error::format(path, format!("bad `rotation_config`: {e}")))
            })?;
        config.validate().map_err(|e| Error::format(path, e.to_string()))?;
        let vars = VarMap::new();
        {
            let fresh = Self::new(config.clone(), device)?;
            let mut data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in named_vars(&fresh.vars) {
                let t = file.get_shaped(&k, v.dims())?;
                data.insert(k, Var::from_tensor(&t)?);
            }
        }
        let acc = file.metadata.get("holdout_accuracy").and_then(|s| s.parse().ok());
        Self::assemble(config, vars, acc, device)
    }

    /// The LPIPS model on this backbone (uniform weights over each tap's channels).
    pub fn lpips(&self) -> Lpips {
        self.lpips.clone()
    }

    /// The head's logits `[N, K]`: rotations 0, 90, 180, 270 degrees counter-clockwise,
    /// or the classes.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let taps = self.lpips.taps(x)?;
        let last = taps.last().ok_or_else(|| Error::invalid("backbone has no taps"))?;
        let pooled = last.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok(self.head.forward(&pooled)?)
    }

    /// Fraction of the four rotations of each image that the net names right (a
    /// rotation net; a classifier's is [`crate::classifier::class_accuracy`]).
    pub fn accuracy(&self, images: &Tensor) -> Result<f32> {
        if self.config.task != Task::Rotation {
            return Err(Error::invalid("rotation accuracy of a net not trained on rotations"));
        }
        let n = images.dim(0)?;
        if n == 0 {
            return Err(Error::invalid("accuracy needs at least one image"));
        }
        let mut correct = 0usize;
        for start in (0..n).step_by(32) {
            let chunk = images.narrow(0, start, 32.min(n - start))?;
            let (x, labels) = rotation_batch(&chunk)?;
            let pred = self.logits(&x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        }
        Ok(correct as f32 / (4 * n) as f32)
    }

    /// Writes the backbone under LPIPS's VGG names plus the head, with the config and
    /// held-out accuracy as metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut tensors: BTreeMap<String, Tensor> = named_vars(&self.vars)
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        for k in ["scaling_layer.shift", "scaling_layer.scale"] {
            tensors.insert(k.into(), self.lpips.file.get(k)?.clone());
        }
        let mut meta = BTreeMap::from([
            ("net".to_string(), "vgg".to_string()),
            (
                "backbone".to_string(),
                "labelgan rotation-trained VGG-style".to_string(),
            ),
            (
                "rotation_config".to_string(),
                serde_json::to_string(&self.config).map_err(|e| Error::invalid(e.to_string()))?,
            ),
        ]);
        if let Some(a) = self.holdout_accuracy {
            meta.insert("holdout_accuracy".into(), format!("{a}"));
        }
        save_safetensors(path, &tensors, &meta)
    }
}

/// Trains a [`RotationNet`] on `source` (images `[N, 3, R, R]` in [-1, 1] at the
/// config's resolution), reporting held-out accuracy on `holdout`. Finite image sets
/// are augmented with horizontal flips (half of each batch).
pub fn train_rotation(
    config: &RotationConfig,
    source: &ImageSource,
    holdout: &Tensor,
    device: &Device,
    progress: &mut dyn FnMut(&RotationProgress),
) -> Result<RotationNet> {
    if config.task != Task::Rotation {
        return Err(Error::invalid("train_rotation needs task = rotation"));
    }
    let r = config.resolution;
    check_images("held-out images", holdout, r)?;
    let rev = Tensor::new((0..r as u32).rev().collect::<Vec<_>>(), device)?;
    let mut batches = |step: usize| -> Result<(Tensor, Vec<u32>)> {
        let mut rng = SplitMix64::derive(config.seed ^ 0x0005_EED0_F0A7, step as u64);
        let mut imgs = source.batch(step as u64, config.batch, &mut rng, device)?;
        check_images("training images", &imgs, r)?;
        if matches!(source, ImageSource::Images(_)) && config.batch > 1 {
            let h = config.batch / 2;
            let flipped = imgs.narrow(0, h, config.batch - h)?.index_select(&rev, 3)?;
            imgs = Tensor::cat(&[imgs.narrow(0, 0, h)?, flipped], 0)?;
        }
        rotation_batch(&imgs)
    };
    train_head(config, &mut batches, &mut |net| net.accuracy(holdout), device, progress)
}

/// Errors unless `images` is `[N, 3, r, r]`.
pub(crate) fn check_images(what: &str, images: &Tensor, r: usize) -> Result<()> {
    if images.dims().len() != 4 || images.dims()[1..] != [3, r, r] {
        return Err(Error::invalid(format!(
            "{what} must be [N, 3, {r}, {r}], got {:?}",
            images.dims()
        )));
    }
    Ok(())
}

/// The training loop every task shares: a fresh net from `config`, Adam on the
/// cross-entropy of each step's `batches(step)` (images and their targets), held-out
/// accuracy from `evaluate` every `eval_every` steps and at the end.
pub(crate) fn train_head(
    config: &RotationConfig,
    batches: &mut dyn FnMut(usize) -> Result<(Tensor, Vec<u32>)>,
    evaluate: &mut dyn FnMut(&RotationNet) -> Result<f32>,
    device: &Device,
    progress: &mut dyn FnMut(&RotationProgress),
) -> Result<RotationNet> {
    let mut net = RotationNet::new(config.clone(), device)?;
    let mut opt = Adam::new(config.lr, (0.9, 0.999));
    let started = Instant::now();
    for step in 0..config.steps {
        let (x, labels) = batches(step)?;
        let logits = net.logits(&x)?;
        let loss = cross_entropy(&logits, &labels)?;
        let loss_v = loss.to_scalar::<f32>()?;
        if !loss_v.is_finite() {
            return Err(Error::invalid(format!(
                "training diverged at step {step} (loss {loss_v}); lower lr"
            )));
        }
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let train_accuracy = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f32 / labels.len() as f32;
        opt.update_from(&named_vars(&net.vars), &loss.backward()?)?;
        let last = step + 1 == config.steps;
        let holdout_accuracy = if last || (config.eval_every > 0 && (step + 1) % config.eval_every == 0) {
            Some(evaluate(&net)?)
        } else {
            None
        };
        if last {
            net.holdout_accuracy = holdout_accuracy;
        }
        progress(&RotationProgress {
            step: step + 1,
            steps: config.steps,
            loss: loss_v,
            train_accuracy,
            holdout_accuracy,
            images_per_second: ((step + 1) * config.batch) as f64 / started.elapsed().as_secs_f64().max(1e-9),
            batch: config.batch,
        });
    }
    Ok(net)
}

/// Features are the LPIPS view's pooled taps; a classifier also gives class
/// probabilities (for the Inception Score and class consistency).
impl labelgan_core::FeatureExtractor for RotationNet {
    fn dim(&self) -> usize {
        self.config.widths.iter().sum()
    }

    fn features(&self, images: &Tensor) -> Result<Tensor> {
        self.lpips.pooled_features(images)
    }

    fn class_probabilities(&self, images: &Tensor) -> Result<Option<Tensor>> {
        match self.config.task {
            Task::Rotation => Ok(None),
            Task::Classes(_) => Ok(Some(candle_nn::ops::softmax(&self.logits(images)?, D::Minus1)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_loads_as_vgg_lpips() {
        let cfg = RotationConfig {
            widths: vec![4, 6, 8, 8, 10],
            convs_per_slice: 3,
            ..RotationConfig::default()
        };
        let net = RotationNet::new(cfg, &Device::Cpu).unwrap();
        let lp = net.lpips();
        assert_eq!(lp.channels(), &[4, 6, 8, 8, 10]);
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let taps = lp.taps(&x).unwrap();
        let sizes: Vec<_> = taps.iter().map(|t| t.dims().to_vec()).collect();
        assert_eq!(sizes[0], [2, 4, 32, 32]);
        assert_eq!(sizes[4], [2, 10, 2, 2]);
        assert_eq!(net.logits(&x).unwrap().dims(), [2, 4]);
    }
}
