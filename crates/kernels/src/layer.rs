//! [`Conv2d`]: the stride-1 convolution of [`conv`](crate::conv) as a layer, its
//! weights read from a candle-nn [`VarBuilder`] as candle's own layers are (the UNet and
//! the encoder are built from it).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use labelgan_core::{Result, SplitMix64};

use crate::bias_act::Activation;
use crate::conv::{conv2d, conv2d_bias};

/// A `k x k` convolution with bias, stride 1, zero padding `k / 2` (sizes kept for odd
/// `k`): `weight` `[out, in, k, k]`, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[out, in, k, k]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Conv2d {
    /// `vb`'s `weight` `[out, inp, k, k]` and `bias` `[out]` (a shape that differs from
    /// one already in the builder's map is an error naming it).
    pub fn new(vb: VarBuilder, out: usize, inp: usize, k: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, inp, k, k), "weight")?,
            bias: vb.get(out, "bias")?,
        })
    }

    fn pad(&self) -> Result<usize> {
        Ok(self.weight.dim(2)? / 2)
    }

    /// `conv(x) + bias`, the bias as a per-channel op ([`crate::channel::channel_affine`]):
    /// differentiable to any order (what second-order gradients and leaky activations
    /// compose with).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d(x, &self.weight, self.pad()?)?;
        crate::channel::channel_affine(&y, None, Some(&self.bias))
    }

    /// `conv(x) + bias`, then a ReLU if `relu`, as one op on the CPU ([`conv2d_bias`]).
    pub fn forward_fused(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let act = if relu { Activation::Relu } else { Activation::Linear };
        conv2d_bias(x, &self.weight, &self.bias, self.pad()?, act)
    }
}

/// Adds `{name}.weight` `[out, inp, k, k]` drawn He-normal (std `sqrt(2 / (inp k k))`)
/// from `rng`, and a zero `{name}.bias`, to `vars`: how every convolution labelgan
/// trains from scratch starts (UNet, encoder, rotation backbone).
pub fn init_he_normal(
    vars: &VarMap,
    name: &str,
    (out, inp, k): (usize, usize, usize),
    rng: &mut SplitMix64,
    device: &Device,
) -> Result<()> {
    let std = (2.0 / (inp * k * k) as f64).sqrt();
    let w = (rng.normal_tensor(&[out, inp, k, k], device)? * std)?;
    let mut data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
    data.insert(format!("{name}.weight"), Var::from_tensor(&w)?);
    data.insert(format!("{name}.bias"), Var::zeros(out, DType::F32, device)?);
    Ok(())
}
