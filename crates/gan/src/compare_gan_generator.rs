//! A generator of a Compare GAN architecture (SNDCGAN, the CIFAR ResNet, BigGAN) that
//! labelgan trained, as one model file and as a [`labelgan_core::Generator`] like any
//! other: latents and classes in, the image and its blocks' feature maps out, so that
//! the factory, `labelgan generate` and the metrics take it as they take StyleGAN2.
//!
//! These generators have no mapping network: w is z with the one-hot class appended
//! (`num_ws` 1), and truncation scales z towards its mean 0.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, FeatureTaps, Generator, GeneratorSpec, NoiseMode, Result, Synthesis, Tap, Truncation};

use crate::architectures::{BoxedGenerator, compare_gan_generator};
use crate::{BnMode, ModelConfig};

/// The `format` metadata value of the file.
pub const FORMAT: &str = "labelgan.compare_gan_generator.v1";

/// A trained Compare GAN generator in evaluation mode (batch norm with the statistics
/// saved beside the weights).
pub struct CompareGanGenerator {
    g: BoxedGenerator,
    model: ModelConfig,
    spec: GeneratorSpec,
    device: Device,
}

impl std::fmt::Debug for CompareGanGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompareGanGenerator")
            .field("model", &self.model)
            .finish()
    }
}

/// Whether `file` is a generator this module wrote.
pub fn is_compare_gan_generator(file: &TensorFile) -> bool {
    file.metadata.get("format").map(String::as_str) == Some(FORMAT)
}

impl CompareGanGenerator {
    /// Writes `weights` and the evaluation `buffers` (batch-norm statistics) of a
    /// generator of `model` to `path` (atomically).
    pub fn save(
        path: &Path,
        model: &ModelConfig,
        weights: &BTreeMap<String, Tensor>,
        buffers: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let mut out = BTreeMap::new();
        for (k, t) in weights {
            out.insert(format!("weight.{k}"), t.clone());
        }
        for (k, t) in buffers {
            out.insert(format!("buffer.{k}"), t.clone());
        }
        let model_toml = toml::to_string(model).map_err(|e| Error::invalid(format!("model config: {e}")))?;
        let meta = BTreeMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("model".to_string(), model_toml),
        ]);
        save_safetensors(path, &out, &meta)
    }

    /// Reads a file [`CompareGanGenerator::save`] wrote onto `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_file(&TensorFile::load(path, device)?)
    }

    /// Builds the generator from a file already read; a missing or misshapen tensor is
    /// an error naming it and the file.
    pub fn from_file(file: &TensorFile) -> Result<Self> {
        let bad = |msg: String| Error::format(&file.path, msg);
        if !is_compare_gan_generator(file) {
            return Err(bad(format!(
                "not a labelgan Compare GAN generator (no `format = {FORMAT}`)"
            )));
        }
        let text = file
            .metadata
            .get("model")
            .ok_or_else(|| bad("the `model` metadata is missing".into()))?;
        let model: ModelConfig = toml::from_str(text).map_err(|e| bad(format!("the `model` metadata: {e}")))?;
        let device = file
            .tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .ok_or_else(|| bad("the file holds no tensors".into()))?;
        let mut weights = std::collections::HashMap::new();
        let mut buffers = BTreeMap::new();
        for (k, t) in &file.tensors {
            if let Some(name) = k.strip_prefix("weight.") {
                weights.insert(name.to_string(), file.get_shaped(k, t.dims())?);
            } else if let Some(name) = k.strip_prefix("buffer.") {
                buffers.insert(name.to_string(), file.get_shaped(k, t.dims())?);
            } else {
                return Err(bad(format!("unexpected tensor `{k}`")));
            }
        }
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let g = compare_gan_generator(&model, vb).map_err(|e| bad(e.to_string()))?;
        g.set_buffers(&buffers).map_err(|e| bad(e.to_string()))?;
        let c_dim = if model.conditional { model.classes } else { 0 };
        let spec = GeneratorSpec {
            z_dim: model.z_dim,
            c_dim,
            w_dim: model.z_dim + c_dim,
            num_ws: 1,
            resolution: model.resolution,
            img_channels: 3,
            taps: g.tap_specs(),
        };
        Ok(Self { g, model, spec, device })
    }

    /// The architecture and sizes the generator was trained with.
    pub fn model(&self) -> &ModelConfig {
        &self.model
    }

    /// Splits ws `[N, 1, z_dim + c_dim]` into z and the classes.
    fn split(&self, ws: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let s = &self.spec;
        if ws.dims().len() != 3 || ws.dims()[1..] != [1, s.w_dim] {
            return Err(Error::invalid(format!(
                "ws must be [N, 1, {}] (z then the one-hot class), got {:?}",
                s.w_dim,
                ws.dims()
            )));
        }
        let w = ws.squeeze(1)?;
        let z = w.narrow(1, 0, s.z_dim)?;
        let y = (s.c_dim > 0).then(|| w.narrow(1, s.z_dim, s.c_dim)).transpose()?;
        Ok((z, y))
    }
}

impl Generator for CompareGanGenerator {
    fn spec(&self) -> &GeneratorSpec {
        &self.spec
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn map(&self, z: &Tensor, c: Option<&Tensor>, truncation: Truncation) -> Result<Tensor> {
        let s = &self.spec;
        let n = z.dim(0)?;
        if z.dims() != [n, s.z_dim] {
            return Err(Error::invalid(format!(
                "z must be [N, {}], got {:?}",
                s.z_dim,
                z.dims()
            )));
        }
        // Truncation towards the mean of z (0) on z only: the classes stay one-hot.
        let z = truncation.apply(&z.unsqueeze(1)?, &Tensor::zeros(s.z_dim, z.dtype(), z.device())?)?;
        let w = match (c, s.c_dim) {
            (None, 0) => z,
            (Some(c), k) if k > 0 && c.dims() == [n, k] => {
                Tensor::cat(&[&z, &c.to_dtype(z.dtype())?.unsqueeze(1)?], 2)?
            }
            (None, k) => {
                return Err(Error::invalid(format!(
                    "this generator is conditional on {k} classes: give c [N, {k}]"
                )));
            }
            (Some(c), k) => {
                return Err(Error::invalid(format!(
                    "c must be [{n}, {k}] for this generator, got {:?}",
                    c.dims()
                )));
            }
        };
        Ok(w)
    }

    fn synthesize(&self, ws: &Tensor, _noise: NoiseMode) -> Result<Synthesis> {
        let (z, y) = self.split(ws)?;
        let (image, maps) = self.g.forward_taps(&z, y.as_ref(), BnMode::Eval)?;
        let mut taps = FeatureTaps::new();
        for (spec, t) in self.spec.taps.iter().zip(maps) {
            taps.push(Tap::with_role(spec.name.clone(), t, spec.role)?)?;
        }
        Ok(Synthesis { image, taps })
    }

    fn image(&self, ws: &Tensor, _noise: NoiseMode) -> Result<Tensor> {
        let (z, y) = self.split(ws)?;
        self.g.forward(&z, y.as_ref(), BnMode::Eval)
    }
}
