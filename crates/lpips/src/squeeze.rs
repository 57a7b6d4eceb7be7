//! SqueezeNet 1.1: a stem conv and eight fire modules (squeeze 1x1, then expand 1x1 and
//! 3x3 side by side), seven taps.

use candle_core::Tensor;

use labelgan_core::Result;
use labelgan_core::io::TensorFile;

use crate::backbone::{conv, conv_shapes};
use crate::pool::max_pool2d;

/// SqueezeNet 1.1 fire modules: (slice, index, in, squeeze, expand).
const FIRES: &[(usize, usize, usize, usize, usize)] = &[
    (2, 3, 64, 16, 64),
    (2, 4, 128, 16, 64),
    (3, 6, 128, 32, 128),
    (3, 7, 256, 32, 128),
    (4, 9, 256, 48, 192),
    (5, 10, 384, 48, 192),
    (6, 11, 384, 64, 256),
    (7, 12, 512, 64, 256),
];

/// Every weight with its shape.
pub(crate) fn shapes() -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = conv_shapes(1, "0", 64, 3, 3).into();
    for &(s, idx, i, sq, e) in FIRES {
        v.extend(conv_shapes(s, &format!("{idx}.squeeze"), sq, i, 1));
        v.extend(conv_shapes(s, &format!("{idx}.expand1x1"), e, sq, 1));
        v.extend(conv_shapes(s, &format!("{idx}.expand3x3"), e, sq, 3));
    }
    v
}

/// A fire module: squeeze, then both expands concatenated.
fn fire(file: &TensorFile, x: &Tensor, name: &str) -> Result<Tensor> {
    let s = conv(file, x, &format!("{name}.squeeze"), 1, 0, true)?;
    let e1 = conv(file, &s, &format!("{name}.expand1x1"), 1, 0, true)?;
    let e3 = conv(file, &s, &format!("{name}.expand3x3"), 1, 1, true)?;
    Ok(Tensor::cat(&[e1, e3], 1)?)
}

/// The seven taps of scaled images.
pub(crate) fn taps(file: &TensorFile, x: Tensor) -> Result<Vec<Tensor>> {
    let mut taps = vec![];
    let h = conv(file, &x, "net.slice1.0", 2, 0, true)?;
    taps.push(h.clone());
    let mut h = max_pool2d(&h, 3, 2, true)?;
    h = fire(file, &h, "net.slice2.3")?;
    h = fire(file, &h, "net.slice2.4")?;
    taps.push(h.clone());
    h = max_pool2d(&h, 3, 2, true)?;
    h = fire(file, &h, "net.slice3.6")?;
    h = fire(file, &h, "net.slice3.7")?;
    taps.push(h.clone());
    h = max_pool2d(&h, 3, 2, true)?;
    h = fire(file, &h, "net.slice4.9")?;
    taps.push(h.clone());
    h = fire(file, &h, "net.slice5.10")?;
    taps.push(h.clone());
    h = fire(file, &h, "net.slice6.11")?;
    taps.push(h.clone());
    h = fire(file, &h, "net.slice7.12")?;
    taps.push(h);
    Ok(taps)
}
