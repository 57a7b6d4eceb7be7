//! The full hypercolumn `[N, H*W, D]`: the reference the other paths are tested
//! against, and the method of the published code. Only for small images: at 512 px
//! with 5,504 channels it is 5.8 GB per image.

use candle_core::{DType, Tensor};

use labelgan_core::{FeatureTaps, Result};
use labelgan_kernels::resample::separable2d;

use crate::interp::{AxisInterp, Upsample};

/// Every tap upsampled to `target x target` and concatenated per pixel, in tap order:
/// `[N, target*target, D]`, f32, row-major pixels (`y * target + x`).
pub fn dense(taps: &FeatureTaps, target: usize, mode: Upsample) -> Result<Tensor> {
    let mut cols = Vec::with_capacity(taps.len());
    for tap in taps {
        let (n, c, r, _) = tap.tensor.dims4()?;
        let dev = tap.tensor.device();
        let a = AxisInterp::new(r, target, mode).matrix(r, dev)?; // [T, r]
        let up = separable2d(&tap.tensor.to_dtype(DType::F32)?, &a, &a)?; // [N, C, T, T]
        cols.push(up.reshape((n, c, target * target))?);
    }
    Ok(Tensor::cat(&cols, 1)?.transpose(1, 2)?.contiguous()?)
}
