//! The VGG family: VGG16 (the `lpips` package's loss backbone) and the narrower
//! VGG-style nets that [`crate::rotation`] trains, all under torchvision's `features`
//! numbering. The same layer list drives candle's ops here and the fused CPU trunk.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result};

use crate::conv::Conv;
use crate::pool::max_pool2d;
use crate::trunk::Layer;

/// `(slice, index, output channels)` of each conv of a VGG-family backbone.
pub(crate) type VggConvs = Vec<(usize, usize, usize)>;

/// The convs of a VGG-family backbone under torchvision's `features` numbering, read
/// from the names and shapes in `file`: slice `s` holds 3x3 convs at indices
/// `k, k+2, ...` (each followed by its ReLU), and a 2x2 max-pool opens every slice
/// after the first. VGG16 has 2, 2, 3, 3, 3 convs per slice (indices 0, 2 | 5, 7 |
/// 10, 12, 14 | ...); narrower or shallower nets written by [`crate::rotation`] follow
/// the same rule.
pub(crate) fn layout(file: &TensorFile) -> Result<VggConvs> {
    let (mut convs, mut idx) = (vec![], 0);
    for slice in 1..=5 {
        if slice > 1 {
            idx += 1; // the max-pool
        }
        let first = convs.len();
        while let Some(&o) = file
            .shape(&format!("net.slice{slice}.{idx}.weight"))
            .and_then(|s| s.first())
        {
            convs.push((slice, idx, o));
            idx += 2;
        }
        if convs.len() == first {
            return Err(Error::format(
                &file.path,
                format!("VGG backbone: no conv `net.slice{slice}.{idx}.weight` opens slice {slice}"),
            ));
        }
    }
    Ok(convs)
}

/// A VGG-family backbone as a list of layers: each slice's 3x3 convs (padding 1, ReLU),
/// a tap at the end of every slice, and a 2x2 max-pool opening every slice after the
/// first. Both the fused trunk and the candle-op path walk this list.
#[derive(Debug, Clone)]
pub(crate) struct Vgg {
    pub layers: Vec<Layer>,
    /// Channels of each tap.
    pub channels: Vec<usize>,
}

impl Vgg {
    /// The convs of `layout` from `vb` (`net.slice{s}.{index}`), input channels chained
    /// from 3.
    pub fn new(vb: VarBuilder, layout: &[(usize, usize, usize)]) -> Result<Self> {
        let (mut layers, mut channels) = (vec![], vec![]);
        let (mut slice, mut cin) = (1, 3);
        for &(s, idx, o) in layout {
            if s != slice {
                layers.push(Layer::Tap);
                layers.push(Layer::Pool);
                channels.push(cin);
                slice = s;
            }
            layers.push(Layer::Conv(Conv::new(
                vb.pp(format!("slice{s}.{idx}")),
                (o, cin, 3),
                1,
                1,
            )?));
            cin = o;
        }
        layers.push(Layer::Tap);
        channels.push(cin);
        Ok(Self { layers, channels })
    }

    /// The taps of scaled images through candle's ops.
    pub fn taps(&self, x: Tensor) -> Result<Vec<Tensor>> {
        let mut taps = vec![];
        let mut h = x;
        for layer in &self.layers {
            match layer {
                Layer::Conv(conv) => h = conv.forward(&h)?,
                Layer::Pool => h = max_pool2d(&h, 2, 2, false)?,
                Layer::Tap => taps.push(h.clone()),
            }
        }
        Ok(taps)
    }
}
