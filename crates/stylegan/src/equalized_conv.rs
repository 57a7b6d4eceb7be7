//! The equalized-learning-rate convolution of StyleGAN2's discriminator (`Conv2dLayer`
//! without up/down sampling of its own).
//!
//! Stored `weight [out, in, k, k]` (N(0, 1) at initialisation) and optional `bias [out]`;
//! at run time the weight is scaled by `1 / sqrt(in * k * k)`, so that the stored
//! parameters are the ones the optimiser updates. Optionally followed by
//! `lrelu(., 0.2) * sqrt(2)` and an output gain.
//!
//! Reference: Karras et al., "Progressive Growing of GANs", ICLR 2018 (equalized lr).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

use labelgan_kernels::bias_act::Activation;
use labelgan_kernels::conv::{conv2d, conv2d_bias, conv3x3_stride2};

/// A convolution with equalized learning rate.
#[derive(Debug, Clone)]
pub struct EqualizedConv {
    /// Stored weight `[out, in, k, k]`.
    pub weight: Tensor,
    /// Stored bias `[out]`, if the layer has one.
    pub bias: Option<Tensor>,
}

impl EqualizedConv {
    /// `vb`'s `weight` `[out, inp, k, k]` and, with `bias`, `bias` `[out]`.
    pub fn new(vb: VarBuilder, out: usize, inp: usize, k: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, inp, k, k), "weight")?,
            bias: if bias { Some(vb.get(out, "bias")?) } else { None },
        })
    }

    /// The weight as applied: stored weight `/ sqrt(fan_in)`.
    fn scaled_weight(&self) -> Result<Tensor> {
        let (_, i, kh, kw) = self.weight.dims4()?;
        Ok(self.weight.affine(1.0 / ((i * kh * kw) as f64).sqrt(), 0.0)?)
    }

    /// `lrelu * sqrt(2) * gain` if `act`, else the identity.
    fn activation(act: bool, gain: f64) -> Activation {
        if act {
            Activation::LeakyRelu {
                slope: 0.2,
                gain: std::f64::consts::SQRT_2 * gain,
            }
        } else {
            Activation::Linear
        }
    }

    /// Stride-1 convolution with zero padding `pad`, bias, optional `lrelu * sqrt(2)`,
    /// then times `gain`. Bias and activation run in the convolution's output pass.
    pub fn forward(&self, x: &Tensor, pad: usize, act: bool, gain: f64) -> Result<Tensor> {
        let w = self.scaled_weight()?;
        let y = match &self.bias {
            Some(b) => conv2d_bias(x, &w, b, pad, Self::activation(act, gain))?,
            None => Self::activation(act, gain).apply(&conv2d(x, &w, pad)?)?,
        };
        Ok(if !act && gain != 1.0 { y.affine(gain, 0.0)? } else { y })
    }

    /// 3x3 convolution with stride 2 on an even-sized map (no padding), bias, then
    /// `lrelu * sqrt(2) * gain`, in one op.
    pub fn forward_stride2(&self, x: &Tensor, gain: f64) -> Result<Tensor> {
        conv3x3_stride2(
            x,
            &self.scaled_weight()?,
            self.bias.as_ref(),
            Self::activation(true, gain),
        )
    }
}
