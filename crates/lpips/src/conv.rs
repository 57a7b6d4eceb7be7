//! The convolution layer of the `lpips` package's backbones.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

/// A convolution with bias (`weight [out, in, k, k]`, `bias [out]`), its stride and
/// zero padding, followed by ReLU: every conv of the three backbones.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    /// `vb`'s `weight` and `bias` (a missing name or another shape is an error naming it).
    pub fn new(vb: VarBuilder, (o, i, k): (usize, usize, usize), stride: usize, pad: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((o, i, k, k), "weight")?,
            bias: vb.get(o, "bias")?,
            stride,
            pad,
        })
    }

    /// `relu(conv(x) + bias)` through candle ops (weights cast to `x`'s dtype).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (self.weight.to_dtype(x.dtype())?, self.bias.to_dtype(x.dtype())?);
        // Stride-1 convs take the convolution whose input gradient is a forward conv
        // (candle's own backward is a direct-loop transposed conv, ~5x slower).
        let y = if self.stride == 1 {
            labelgan_kernels::conv::conv2d(x, &w, self.pad)?
        } else {
            x.conv2d(&w, self.pad, self.stride, 1, 1)?
        };
        Ok(y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?.relu()?)
    }
}
