//! Hypercolumn rows for chosen pixels, gathered from the native-resolution taps.
//!
//! Row `p` equals row `p` of [`crate::dense`]: for bilinear upsampling each tap
//! contributes `Σ w_y w_x tap[:, i_y, i_x]` over its (at most) four source pixels. Cost
//! and memory are proportional to the number of pixels asked for, not to the image.

use candle_core::{DType, Tensor};

use labelgan_core::{Error, FeatureTaps, Result};

use crate::interp::{AxisInterp, Upsample};

/// Rows `[P, D]` (f32) of image `image`'s hypercolumn at `target` resolution, for the
/// flat pixel indices `pixels` (`y * target + x`).
pub fn sparse(taps: &FeatureTaps, image: usize, pixels: &[u32], target: usize, mode: Upsample) -> Result<Tensor> {
    let n = taps.batch();
    if image >= n {
        return Err(Error::invalid(format!(
            "image {image} out of range: the taps hold {n} images"
        )));
    }
    if let Some(&p) = pixels.iter().find(|&&p| p as usize >= target * target) {
        return Err(Error::invalid(format!(
            "pixel {p} out of range for a {target}x{target} image"
        )));
    }
    let np = pixels.len();
    let mut cols = Vec::with_capacity(taps.len());
    for tap in taps {
        let r = tap.resolution;
        let dev = tap.tensor.device();
        let x = tap.tensor.get(image)?.reshape((tap.channels, r * r))?;
        // Square maps: one set of weights serves both axes.
        let a = AxisInterp::new(r, target, mode);
        let corners: &[(bool, bool)] = match mode {
            Upsample::Nearest => &[(false, false)],
            Upsample::Bilinear => &[(false, false), (false, true), (true, false), (true, true)],
        };
        let mut acc: Option<Tensor> = None;
        for &(sy, sx) in corners {
            let mut idx = Vec::with_capacity(np);
            let mut w = Vec::with_capacity(np);
            for &p in pixels {
                let (y, xx) = (p as usize / target, p as usize % target);
                let (iy, wy) = if sy { (a.i1[y], a.w1[y]) } else { (a.i0[y], a.w0[y]) };
                let (ix, wx) = if sx { (a.i1[xx], a.w1[xx]) } else { (a.i0[xx], a.w0[xx]) };
                idx.push((iy * r + ix) as u32);
                w.push(wy * wx);
            }
            let idx = Tensor::from_vec(idx, np, dev)?;
            let w = Tensor::from_vec(w, (1, np), dev)?;
            let g = x.index_select(&idx, 1)?.to_dtype(DType::F32)?.broadcast_mul(&w)?; // [C, P]
            acc = Some(match acc {
                Some(a) => (a + g)?,
                None => g,
            });
        }
        cols.push(acc.ok_or_else(|| Error::invalid("no interpolation corners"))?);
    }
    Ok(Tensor::cat(&cols, 0)?.t()?.contiguous()?)
}
