//! The backbones of the `lpips` package, one file each (`vgg.rs`, `alex.rs`,
//! `squeeze.rs`), built as candle's models are: layers as struct fields read from a
//! [`VarBuilder`] under the package's names (`net.slice1.0.weight`, ...). The VGG family
//! also runs as one fused op on the CPU (`trunk.rs`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::Result;

use crate::alex::Alex;
use crate::squeeze::Squeeze;
use crate::vgg::Vgg;

/// The backbones of the `lpips` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// VGG16 (the `lpips` package's default for losses).
    Vgg,
    /// AlexNet (the package's default metric).
    Alex,
    /// SqueezeNet 1.1.
    Squeeze,
}

impl Net {
    /// Channels of each tap.
    pub fn channels(self) -> &'static [usize] {
        match self {
            Net::Vgg => &[64, 128, 256, 512, 512],
            Net::Alex => &[64, 192, 384, 256, 256],
            Net::Squeeze => &[64, 128, 256, 384, 384, 512, 512],
        }
    }

    /// The package's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Net::Vgg => "vgg",
            Net::Alex => "alex",
            Net::Squeeze => "squeeze",
        }
    }

    /// The net a name (the package's, or torchvision's) stands for.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "vgg" | "vgg16" => Some(Net::Vgg),
            "alex" | "alexnet" => Some(Net::Alex),
            "squeeze" | "squeezenet" | "squeezenet1_1" => Some(Net::Squeeze),
            _ => None,
        }
    }
}

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

/// A built backbone: its layers and, per image batch, its taps.
#[derive(Debug, Clone)]
pub(crate) enum Backbone {
    Vgg(Vgg),
    Alex(Alex),
    Squeeze(Squeeze),
}

impl Backbone {
    /// The taps of scaled images through candle's ops.
    pub fn taps(&self, x: Tensor) -> Result<Vec<Tensor>> {
        match self {
            Backbone::Vgg(n) => n.taps(x),
            Backbone::Alex(n) => n.taps(x),
            Backbone::Squeeze(n) => n.taps(x),
        }
    }
}
