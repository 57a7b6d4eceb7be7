//! [`Conv2d`]: the stride-1 convolution of [`conv`](crate::conv) as a layer, its
//! weights read from a candle-nn [`VarBuilder`] as candle's own layers are (the UNet and
//! the encoder are built from it).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

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

    /// `conv(x) + bias` from candle ops on the convolution's output: differentiable to
    /// any order (what second-order gradients and leaky activations compose with).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d(x, &self.weight, self.pad()?)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, self.bias.dim(0)?, 1, 1))?)?)
    }

    /// `conv(x) + bias`, then a ReLU if `relu`, as one op on the CPU
    /// ([`conv2d_bias`]; first-order gradients only).
    pub fn forward_fused(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        conv2d_bias(x, &self.weight, &self.bias, self.pad()?, relu)
    }
}
