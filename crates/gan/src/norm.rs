//! The generator's normalisation layer, whichever the config names: none, batch norm
//! (class-conditional for a conditional model) or self-modulated batch norm.

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result};

use crate::{BatchNorm, BnMode, ConditionalBatchNorm, GeneratorNorm, SelfModulatedBatchNorm};

/// One normalisation of a generator's activations.
#[derive(Debug)]
pub enum NormLayer {
    /// Identity.
    None,
    /// Batch norm with a learned per-channel scale and shift.
    Batch(BatchNorm, Tensor, Tensor),
    /// Class-conditional batch norm.
    Conditional(ConditionalBatchNorm),
    /// Self-modulated batch norm (on z, with the class appended when conditional).
    SelfModulated(SelfModulatedBatchNorm),
}

impl NormLayer {
    /// The layer `kind` for `channels` channels of a generator with latent size
    /// `z_dim` and `classes` classes (`None`: unconditional).
    pub fn new(
        kind: GeneratorNorm,
        channels: usize,
        z_dim: usize,
        classes: Option<usize>,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(match (kind, classes) {
            (GeneratorNorm::None, _) => NormLayer::None,
            (GeneratorNorm::BatchNorm, None) => NormLayer::Batch(
                BatchNorm::new(channels, vb.dtype(), vb.device())?,
                vb.get_with_hints(channels, "gamma", candle_nn::Init::Const(1.0))?,
                vb.get_with_hints(channels, "beta", candle_nn::Init::Const(0.0))?,
            ),
            (GeneratorNorm::BatchNorm, Some(c)) => NormLayer::Conditional(ConditionalBatchNorm::new(channels, c, vb)?),
            (GeneratorNorm::SelfModulated, c) => {
                NormLayer::SelfModulated(SelfModulatedBatchNorm::new(channels, z_dim + c.unwrap_or(0), vb)?)
            }
        })
    }

    /// Normalises `x` `[N, C, H, W]`; `z` and `y` are the sample's latent and one-hot
    /// class (needed by the conditional and self-modulated forms).
    pub fn forward(&self, x: &Tensor, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor> {
        let missing = || Error::invalid("a class-conditional layer needs the classes");
        Ok(match self {
            NormLayer::None => x.clone(),
            NormLayer::Batch(bn, g, b) => bn
                .normalise(x, mode)?
                .broadcast_mul(&g.reshape((1, (), 1, 1))?)?
                .broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            NormLayer::Conditional(c) => c.forward(x, y.ok_or_else(missing)?, mode)?,
            NormLayer::SelfModulated(s) => {
                let input = match y {
                    Some(y) => Tensor::cat(&[z, y], 1)?,
                    None => z.clone(),
                };
                s.forward(x, &input, mode)?
            }
        })
    }

    /// Restores what [`NormLayer::buffers`] wrote under `prefix`.
    pub fn set_buffers(&self, prefix: &str, from: &BTreeMap<String, Tensor>) -> Result<()> {
        match self {
            NormLayer::None => Ok(()),
            NormLayer::Batch(bn, ..) => bn.set_buffers(prefix, from),
            NormLayer::Conditional(c) => c.batch_norm().set_buffers(prefix, from),
            NormLayer::SelfModulated(s) => s.batch_norm().set_buffers(prefix, from),
        }
    }

    /// Its statistics under `prefix`.
    pub fn buffers(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        match self {
            NormLayer::None => {}
            NormLayer::Batch(bn, ..) => bn.buffers(prefix, out),
            NormLayer::Conditional(c) => c.batch_norm().buffers(prefix, out),
            NormLayer::SelfModulated(s) => s.batch_norm().buffers(prefix, out),
        }
    }
}
