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

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::element::{Element, cpu_slice};
use labelgan_core::Result;

/// 2x2 average pooling with stride 2 of `x [N, C, H, W]` (even H and W):
/// `[N, C, H/2, W/2]`. On the CPU one pass each way; its gradient is
/// [`upsample_nearest2`] of the output gradient divided by 4 (so it differentiates to
/// any order). Elsewhere candle's reshape and mean.
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if h % 2 != 0 || w % 2 != 0 {
        return Err(labelgan_core::Error::invalid(format!(
            "avg_pool2 needs even height and width, got {:?}",
            x.dims()
        )));
    }
    if !crate::native_on(x.device()) || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.reshape((n, c, h / 2, 2, w / 2, 2))?.mean(5)?.mean(3)?);
    }
    Ok(x.contiguous()?.apply_op1(Resample2 { up: false })?)
}

/// Nearest-neighbour 2x upsampling of `x [N, C, H, W]`: `[N, C, 2H, 2W]`. On the CPU
/// one pass each way; its gradient is 4 [`avg_pool2`] of the output gradient. Elsewhere
/// a broadcast (whose gradient candle gets right).
pub fn upsample_nearest2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if !crate::native_on(x.device()) || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x
            .reshape((n, c, h, 1, w, 1))?
            .broadcast_as((n, c, h, 2, w, 2))?
            .reshape((n, c, 2 * h, 2 * w))?);
    }
    Ok(x.contiguous()?.apply_op1(Resample2 { up: true })?)
}

struct Resample2 {
    up: bool,
}

fn resample2<T: Element>(x: &[T], planes: usize, h: usize, w: usize, up: bool) -> Vec<T> {
    if up {
        let mut out = Vec::with_capacity(planes * 4 * h * w);
        for p in 0..planes {
            for y in 0..h {
                let row = &x[(p * h + y) * w..(p * h + y + 1) * w];
                for _ in 0..2 {
                    out.extend(row.iter().flat_map(|&v| [v, v]));
                }
            }
        }
        out
    } else {
        let (ho, wo) = (h / 2, w / 2);
        let quarter = T::from_f64(0.25);
        let mut out = Vec::with_capacity(planes * ho * wo);
        for p in 0..planes {
            for y in 0..ho {
                let r0 = &x[(p * h + 2 * y) * w..(p * h + 2 * y + 1) * w];
                let r1 = &x[(p * h + 2 * y + 1) * w..(p * h + 2 * y + 2) * w];
                out.extend((0..wo).map(|j| (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * quarter));
            }
        }
        out
    }
}

impl CustomOp1 for Resample2 {
    fn name(&self) -> &'static str {
        if self.up {
            "labelgan-upsample-nearest2"
        } else {
            "labelgan-avg-pool2"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let out = match s.dtype() {
            DType::F32 => f32::storage(resample2::<f32>(cpu_slice(s, l)?, n * c, h, w, self.up)),
            _ => f64::storage(resample2::<f64>(cpu_slice(s, l)?, n * c, h, w, self.up)),
        };
        let shape = if self.up {
            (n, c, 2 * h, 2 * w)
        } else {
            (n, c, h / 2, w / 2)
        };
        Ok((out, Shape::from(shape)))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let err = |e: labelgan_core::Error| candle_core::Error::Msg(e.to_string());
        Ok(Some(if self.up {
            (avg_pool2(g).map_err(err)? * 4.0)?
        } else {
            (upsample_nearest2(g).map_err(err)? * 0.25)?
        }))
    }
}

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
    use candle_core::Var;
    use labelgan_core::{SplitMix64, max_abs_diff};

    #[test]
    fn pool_and_upsample_match_candle_ops_with_gradients() {
        let mut rng = SplitMix64::new(3);
        let dev = Device::Cpu;
        let x = Var::from_tensor(&rng.normal_tensor(&[2, 3, 6, 4], &dev).unwrap()).unwrap();
        let (n, c, h, w) = (2, 3, 6, 4);
        let pooled = avg_pool2(x.as_tensor()).unwrap();
        let want = x
            .as_tensor()
            .reshape((n, c, h / 2, 2, w / 2, 2))
            .unwrap()
            .mean(5)
            .unwrap()
            .mean(3)
            .unwrap();
        assert!(max_abs_diff(&pooled, &want).unwrap() < 1e-6);
        let up = upsample_nearest2(x.as_tensor()).unwrap();
        let want_up = x
            .as_tensor()
            .reshape((n, c, h, 1, w, 1))
            .unwrap()
            .broadcast_as((n, c, h, 2, w, 2))
            .unwrap()
            .reshape((n, c, 2 * h, 2 * w))
            .unwrap();
        assert_eq!(max_abs_diff(&up, &want_up).unwrap(), 0.0);
        // Gradients of squared weighted sums through both paths.
        for (got, want) in [(pooled, want), (up, want_up)] {
            let r = rng.normal_tensor(got.dims(), &dev).unwrap();
            let g1 = (got * &r)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (want * &r)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            assert!(max_abs_diff(a, b).unwrap() < 1e-5);
        }
        let odd = Tensor::zeros((1, 1, 3, 4), DType::F32, &dev).unwrap();
        assert!(avg_pool2(&odd).is_err());
    }

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
