//! Hypercolumn rows for chosen pixels, gathered from the native-resolution taps.
//!
//! Row `p` equals row `p` of [`crate::dense()`]: for bilinear upsampling each tap
//! contributes `Σ w_y w_x tap[:, i_y, i_x]` over its (at most) four source pixels. Cost
//! and memory are proportional to the number of pixels asked for, not to the image.

use candle_core::{DType, Tensor};

use labelgan_core::{Error, FeatureTaps, Result};

use crate::interp::{AxisInterp, Upsample};

fn check(taps: &FeatureTaps, image: usize, pixels: &[u32], target: usize) -> Result<()> {
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
    Ok(())
}

/// Rows `[P, D]` (f32) of image `image`'s hypercolumn at `target` resolution, for the
/// flat pixel indices `pixels` (`y * target + x`).
pub fn sparse(taps: &FeatureTaps, image: usize, pixels: &[u32], target: usize, mode: Upsample) -> Result<Tensor> {
    check(taps, image, pixels, target)?;
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

/// A value type [`sparse_into`] writes rows in: `f32`, or `f16` for rows kept for a whole
/// training run at half the memory (values beyond f16's range become infinities, for the
/// caller to refuse).
pub trait RowValue: Copy {
    /// The value nearest `v`.
    fn from_f32(v: f32) -> Self;
}

impl RowValue for f32 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl RowValue for half::f16 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
}

/// [`sparse`]'s rows written into `out` (row-major `[P, D]`, `P * D` long) on the host,
/// one tap at a time: no `[D, P]` intermediate and no second copy of the rows, so a
/// caller gathering many images into one buffer holds them once. Any device's taps are
/// read (copied to the host a tap at a time).
pub fn sparse_into<O: RowValue>(
    taps: &FeatureTaps,
    image: usize,
    pixels: &[u32],
    target: usize,
    mode: Upsample,
    out: &mut [O],
) -> Result<()> {
    check(taps, image, pixels, target)?;
    let d: usize = taps.iter().map(|t| t.channels).sum();
    if out.len() != pixels.len() * d {
        return Err(Error::invalid(format!(
            "output buffer holds {} values, {} pixels x {d} channels need {}",
            out.len(),
            pixels.len(),
            pixels.len() * d
        )));
    }
    let mut offset = 0;
    for tap in taps {
        let (r, c) = (tap.resolution, tap.channels);
        // Channels last, so that each source pixel's channels are contiguous.
        let x = tap
            .tensor
            .get(image)?
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(DType::F32)?
            .reshape((c, r * r))?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let a = AxisInterp::new(r, target, mode);
        for (row, &p) in out.chunks_exact_mut(d).zip(pixels) {
            let (y, xx) = (p as usize / target, p as usize % target);
            let dst = &mut row[offset..offset + c];
            let src = |iy: usize, ix: usize| &x[(iy * r + ix) * c..(iy * r + ix + 1) * c];
            match mode {
                Upsample::Nearest => {
                    for (v, &s) in dst.iter_mut().zip(src(a.i0[y], a.i0[xx])) {
                        *v = O::from_f32(s);
                    }
                }
                Upsample::Bilinear => {
                    let corners = [
                        (src(a.i0[y], a.i0[xx]), a.w0[y] * a.w0[xx]),
                        (src(a.i0[y], a.i1[xx]), a.w0[y] * a.w1[xx]),
                        (src(a.i1[y], a.i0[xx]), a.w1[y] * a.w0[xx]),
                        (src(a.i1[y], a.i1[xx]), a.w1[y] * a.w1[xx]),
                    ];
                    for (j, v) in dst.iter_mut().enumerate() {
                        *v = O::from_f32(corners.iter().map(|(s, w)| w * s[j]).sum());
                    }
                }
            }
        }
        offset += c;
    }
    Ok(())
}
