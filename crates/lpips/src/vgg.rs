//! The VGG family: VGG16 (the `lpips` package's loss backbone) and the narrower
//! VGG-style nets that [`crate::rotation`] trains, all under torchvision's `features`
//! numbering. The same layer list drives candle's ops here and the fused CPU trunk.

use candle_core::Tensor;

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result};

use crate::backbone::{conv_bias, conv_shapes};
use crate::pool::max_pool2d;
use crate::trunk::Layer;

/// `(slice, index)` of each conv of a VGG-family backbone.
pub(crate) type VggConvs = Vec<(usize, usize)>;

/// The convs of a VGG-family backbone under torchvision's `features` numbering, and
/// the channels of its five taps: slice `s` holds 3x3 convs at indices `k, k+2, ...`
/// (each followed by its ReLU), and a 2x2 max-pool opens every slice after the first.
/// VGG16 has 2, 2, 3, 3, 3 convs per slice (indices 0, 2 | 5, 7 | 10, 12, 14 | ...);
/// narrower or shallower nets written by [`crate::rotation`] follow the same rule.
pub(crate) fn layout(file: &TensorFile) -> Result<(VggConvs, Vec<usize>)> {
    let (mut convs, mut channels, mut idx) = (vec![], vec![], 0);
    for slice in 1..=5 {
        if slice > 1 {
            idx += 1; // the max-pool
        }
        let mut out = None;
        while let Some(shape) = file.shape(&format!("net.slice{slice}.{idx}.weight")) {
            out = shape.first().copied();
            convs.push((slice, idx));
            idx += 2;
        }
        match out {
            Some(c) => channels.push(c),
            None => {
                return Err(Error::format(
                    &file.path,
                    format!("VGG backbone: no conv `net.slice{slice}.{idx}.weight` opens slice {slice}"),
                ));
            }
        }
    }
    Ok((convs, channels))
}

/// Every weight with its shape: each conv's output channels as the file has them,
/// its input channels chained from the one before (3 for the first).
pub(crate) fn shapes(file: &TensorFile, convs: &[(usize, usize)]) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![];
    let mut i = 3;
    for &(s, idx) in convs {
        let o = file.shape(&format!("net.slice{s}.{idx}.weight")).map_or(0, |d| d[0]);
        v.extend(conv_shapes(s, &idx.to_string(), o, i, 3));
        i = o;
    }
    v
}

/// The backbone as a list of layers: each slice's 3x3 convs (padding 1, ReLU), a tap
/// at the end of every slice, and a 2x2 max-pool opening every slice after the first.
/// Both the fused trunk and the candle-op path walk this list.
pub(crate) fn layers(file: &TensorFile, convs: &[(usize, usize)]) -> Result<Vec<Layer>> {
    let mut layers = vec![];
    let mut slice = 1;
    for (s, idx) in convs {
        if *s != slice {
            layers.push(Layer::Tap);
            layers.push(Layer::Pool);
            slice = *s;
        }
        let name = format!("net.slice{s}.{idx}");
        let w = file.get(&format!("{name}.weight"))?;
        let b = file.get(&format!("{name}.bias"))?;
        layers.push(Layer::Conv(w.clone(), b.clone(), 1));
    }
    layers.push(Layer::Tap);
    Ok(layers)
}

/// The five taps of scaled images through candle's ops.
pub(crate) fn taps(file: &TensorFile, convs: &[(usize, usize)], x: Tensor) -> Result<Vec<Tensor>> {
    let mut taps = vec![];
    let mut h = x;
    for layer in layers(file, convs)? {
        match layer {
            Layer::Conv(w, b, pad) => h = conv_bias(&h, &w, &b, 1, pad, true)?,
            Layer::Pool => h = max_pool2d(&h, 2, 2, false)?,
            Layer::Tap => taps.push(h.clone()),
        }
    }
    Ok(taps)
}
