//! AlexNet, the `lpips` package's default metric backbone: five convs, a tap after
//! each.

use candle_core::Tensor;

use labelgan_core::Result;
use labelgan_core::io::TensorFile;

use crate::backbone::{conv, conv_shapes};
use crate::pool::max_pool2d;

/// AlexNet convs: (slice, index, out, in, kernel).
const ALEX_CONVS: &[(usize, usize, usize, usize, usize)] = &[
    (1, 0, 64, 3, 11),
    (2, 3, 192, 64, 5),
    (3, 6, 384, 192, 3),
    (4, 8, 256, 384, 3),
    (5, 10, 256, 256, 3),
];

/// Every weight with its shape.
pub(crate) fn shapes() -> Vec<(String, Vec<usize>)> {
    ALEX_CONVS
        .iter()
        .flat_map(|&(s, idx, o, i, k)| conv_shapes(s, &idx.to_string(), o, i, k))
        .collect()
}

/// The five taps of scaled images.
pub(crate) fn taps(file: &TensorFile, x: Tensor) -> Result<Vec<Tensor>> {
    let mut taps = vec![];
    let h = conv(file, &x, "net.slice1.0", 4, 2, true)?;
    taps.push(h.clone());
    let h = conv(file, &max_pool2d(&h, 3, 2, false)?, "net.slice2.3", 1, 2, true)?;
    taps.push(h.clone());
    let h = conv(file, &max_pool2d(&h, 3, 2, false)?, "net.slice3.6", 1, 1, true)?;
    taps.push(h.clone());
    let h = conv(file, &h, "net.slice4.8", 1, 1, true)?;
    taps.push(h.clone());
    let h = conv(file, &h, "net.slice5.10", 1, 1, true)?;
    taps.push(h);
    Ok(taps)
}
