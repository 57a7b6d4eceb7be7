//! The backbones of the `lpips` package, one file each (`vgg.rs`, `alex.rs`,
//! `squeeze.rs`): which weights each has, and its taps through candle's ops. The VGG
//! family also runs as one fused op on the CPU (`trunk.rs`).

use candle_core::Tensor;

use labelgan_core::Result;
use labelgan_core::io::TensorFile;

use crate::{alex, squeeze, vgg};

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

/// Every backbone weight of `net` with its shape (VGG: the convs `vgg` read from the
/// file, with their input channels chained).
pub(crate) fn shapes(net: Net, file: &TensorFile, vgg: &[(usize, usize)]) -> Vec<(String, Vec<usize>)> {
    match net {
        Net::Vgg => vgg::shapes(file, vgg),
        Net::Alex => alex::shapes(),
        Net::Squeeze => squeeze::shapes(),
    }
}

/// The weight and bias names of conv `net.slice{slice}.{idx}` with their shapes.
pub(crate) fn conv_shapes(slice: usize, idx: &str, o: usize, i: usize, k: usize) -> [(String, Vec<usize>); 2] {
    [
        (format!("net.slice{slice}.{idx}.weight"), vec![o, i, k, k]),
        (format!("net.slice{slice}.{idx}.bias"), vec![o]),
    ]
}

/// `x` convolved with `w` (stride, zero padding `pad`), plus `b` per channel, then ReLU
/// if asked, through candle ops.
pub(crate) fn conv_bias(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize, relu: bool) -> Result<Tensor> {
    let (w, b) = (w.to_dtype(x.dtype())?, b.to_dtype(x.dtype())?);
    // Stride-1 convs take the convolution whose input gradient is a forward conv
    // (candle's own backward is a direct-loop transposed conv, ~5x slower).
    let y = if stride == 1 {
        labelgan_kernels::conv::conv2d(x, &w, pad)?
    } else {
        x.conv2d(&w, pad, stride, 1, 1)?
    };
    let y = y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
    Ok(if relu { y.relu()? } else { y })
}

/// The conv `name` of `file` (`name.weight`, `name.bias`) applied to `x`.
pub(crate) fn conv(file: &TensorFile, x: &Tensor, name: &str, stride: usize, pad: usize, relu: bool) -> Result<Tensor> {
    let w = file.get(&format!("{name}.weight"))?;
    let b = file.get(&format!("{name}.bias"))?;
    conv_bias(x, w, b, stride, pad, relu)
}
