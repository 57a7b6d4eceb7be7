//! Resampling with PyTorch's `F.interpolate` rules, and separable linear resampling as
//! two matrix products, which candle differentiates to any order (its
//! `upsample_bilinear2d` has no backward, and grouped or `[N*C, 1]` convolutions are
//! ~10x slower here).
//!
//! Upsampling a square map `r x r` to `t x t` is separable: output `(y, x)` reads at
//! most two source rows and two source columns. [`AxisInterp`] holds, for every output
//! index, its two source indices and weights.
//!
//! - `Bilinear` (`align_corners=False`): `s = (d + 0.5) * r / t - 0.5`, clamped at 0;
//!   `i0 = floor(s)`, `i1 = min(i0 + 1, r - 1)`, weights `1 - (s - i0)` and `s - i0`.
//! - `Nearest` (PyTorch's legacy `nearest`): `i0 = min(floor(d * r / t), r - 1)`.
//!
//! Scales are computed in f32 as PyTorch does for f32 inputs.

use candle_core::{Device, Tensor};

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

/// How feature maps are brought to the output resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upsample {
    /// Nearest neighbour (PyTorch `mode='nearest'`).
    Nearest,
    /// Bilinear, `align_corners=False` (what DatasetGAN and HandsOff use).
    #[default]
    Bilinear,
}

/// Per-output-index source indices and weights along one axis.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisInterp {
    /// First source index.
    pub i0: Vec<usize>,
    /// Second source index (equal to `i0` where only one is used).
    pub i1: Vec<usize>,
    /// Weight of `i0`.
    pub w0: Vec<f32>,
    /// Weight of `i1`.
    pub w1: Vec<f32>,
}

impl AxisInterp {
    /// Weights for resizing `src` samples to `dst`.
    pub fn new(src: usize, dst: usize, mode: Upsample) -> Self {
        let scale = src as f32 / dst as f32;
        let mut a = AxisInterp {
            i0: vec![],
            i1: vec![],
            w0: vec![],
            w1: vec![],
        };
        for d in 0..dst {
            match mode {
                Upsample::Nearest => {
                    let i = ((d as f32 * scale).floor() as usize).min(src - 1);
                    a.push(i, i, 1.0, 0.0);
                }
                Upsample::Bilinear => {
                    let s = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                    let i0 = (s as usize).min(src - 1);
                    let i1 = if i0 < src - 1 { i0 + 1 } else { i0 };
                    let l1 = s - i0 as f32;
                    a.push(i0, i1, 1.0 - l1, l1);
                }
            }
        }
        a
    }

    fn push(&mut self, i0: usize, i1: usize, w0: f32, w1: f32) {
        self.i0.push(i0);
        self.i1.push(i1);
        self.w0.push(w0);
        self.w1.push(w1);
    }

    /// Output length.
    pub fn len(&self) -> usize {
        self.i0.len()
    }

    /// Whether the output is empty.
    pub fn is_empty(&self) -> bool {
        self.i0.is_empty()
    }

    /// The dense `[dst, src]` interpolation matrix (`up = A X A^T`).
    pub fn matrix(&self, src: usize, device: &Device) -> Result<Tensor> {
        let mut m = vec![0f32; self.len() * src];
        for d in 0..self.len() {
            m[d * src + self.i0[d]] += self.w0[d];
            m[d * src + self.i1[d]] += self.w1[d];
        }
        Ok(Tensor::from_vec(m, (self.len(), src), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_on_known_cases() {
        // F.interpolate(arange(4), size=8, mode='bilinear', align_corners=False)
        // = [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3].
        let a = AxisInterp::new(4, 8, Upsample::Bilinear);
        let v: Vec<f32> = (0..8)
            .map(|d| a.w0[d] * a.i0[d] as f32 + a.w1[d] * a.i1[d] as f32)
            .collect();
        assert_eq!(v, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        // Nearest 3 -> 7: floor(d * 3/7) = [0,0,0,1,1,2,2].
        let n = AxisInterp::new(3, 7, Upsample::Nearest);
        assert_eq!(n.i0, vec![0, 0, 0, 1, 1, 2, 2]);
        // Identity when sizes agree.
        let id = AxisInterp::new(5, 5, Upsample::Bilinear);
        assert_eq!(id.i0, vec![0, 1, 2, 3, 4]);
        assert!(id.w1.iter().all(|&w| w == 0.0));
    }
}
