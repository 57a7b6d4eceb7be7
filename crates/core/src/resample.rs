//! Separable linear resampling as two matrix products, which candle differentiates to
//! any order (its `upsample_bilinear2d` has no backward, and grouped or `[N*C, 1]`
//! convolutions are ~10x slower here).

use candle_core::Tensor;

use crate::Result;

/// `a_h · x · a_wᵀ` over the last two dimensions of `x [N, C, H, W]`, with
/// `a_h [Ho, H]` and `a_w [Wo, W]`: `[N, C, Ho, Wo]`.
pub fn separable2d(x: &Tensor, a_h: &Tensor, a_w: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (a_h.dim(0)?, a_w.dim(0)?);
    let y = x.reshape((n * c * h, w))?.matmul(&a_w.t()?)?; // [N*C*H, Wo]
    let y = y
        .reshape((n * c, h, wo))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n * c * wo, h))?;
    let y = y.matmul(&a_h.t()?)?; // [N*C*Wo, Ho]
    Ok(y.reshape((n * c, wo, ho))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, c, ho, wo))?)
}

/// PyTorch's bilinear interpolation matrix `[out, inp]` (align_corners=False).
pub fn bilinear_matrix(out: usize, inp: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mut m = vec![0f32; out * inp];
    let scale = inp as f64 / out as f64;
    for o in 0..out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let l = (src - i0 as f64) as f32;
        m[o * inp + i0] += 1.0 - l;
        m[o * inp + i1] += l;
    }
    Ok(Tensor::from_vec(m, (out, inp), device)?)
}
