//! The backbones of the `lpips` package, one file each (`vgg.rs`, `alex.rs`,
//! `squeeze.rs`), built as candle's models are: layers as struct fields read from a
//! candle-nn `VarBuilder` under the package's names (`net.slice1.0.weight`, ...). The VGG family
//! also runs as one fused op on the CPU (`trunk.rs`).

use candle_core::Tensor;

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
