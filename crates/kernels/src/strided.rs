//! Strided and transposed convolutions rewritten as stride-1 ones, so that they run on
//! [`crate::conv::conv2d`] (fast forward, fast backward, differentiable again) instead
//! of candle's direct-loop `conv_transpose2d` and its slow conv2d backward.
//!
//! - A stride-2 convolution is a stride-1 one over the four polyphase components of
//!   the (padded) input, the kernel split the same way: the same multiply-adds.
//! - A 4x4 stride-2 transposed convolution with padding 1 (DCGAN's upsampling layer)
//!   is a 3x3 stride-1 convolution with four output channels per channel, one per
//!   output pixel phase, then a pixel shuffle (sub-pixel convolution).
//!
//! Both build their kernels from the weight with differentiable ops, so gradients
//! reach the weight as they would through candle's ops.

use candle_core::Tensor;

use labelgan_core::{Error, Result};

use crate::conv::conv2d;

/// `x [N, C, H, W]` convolved with `w [O, C, k, k]`, stride 2, zero padding `pad`:
/// `[N, O, (H + 2 pad - k) / 2 + 1, ...]`, equal to candle's `conv2d(x, w, pad, 2, 1, 1)`.
pub fn conv2d_stride2(x: &Tensor, w: &Tensor, pad: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, ci, kh, kw) = w.dims4()?;
    if ci != c || kh != kw || h + 2 * pad < kh || wd + 2 * pad < kw {
        return Err(Error::invalid(format!(
            "conv2d_stride2: input {:?} and kernel {:?} (padding {pad}) do not fit",
            x.dims(),
            w.dims()
        )));
    }
    let k = kh;
    let ke = k + k % 2;
    // Pad, then up to an even size (the extra row and column meet only zero taps).
    let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
    let x = x
        .pad_with_zeros(2, pad, pad + hp % 2)?
        .pad_with_zeros(3, pad, pad + wp % 2)?;
    let (h2, w2) = (hp.div_ceil(2), wp.div_ceil(2));
    // Channel (c, p, q) holds x[c, 2i + p, 2j + q].
    let xs = x
        .reshape((n, c, h2, 2, w2, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((n, 4 * c, h2, w2))?;
    // Tap (a, b) = (2 da + p, 2 db + q) moves to channel (c, p, q), tap (da, db).
    let ks = w
        .pad_with_zeros(2, 0, ke - k)?
        .pad_with_zeros(3, 0, ke - k)?
        .reshape((o, c, ke / 2, 2, ke / 2, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((o, 4 * c, ke / 2, ke / 2))?;
    let y = conv2d(&xs, &ks, 0)?;
    // An odd kernel's padded tap can add one output beyond (hp - k) / 2 + 1.
    let (ho, wo) = ((hp - k) / 2 + 1, (wp - k) / 2 + 1);
    Ok(y.narrow(2, 0, ho)?.narrow(3, 0, wo)?)
}

/// Tap of the 4x4 kernel each output phase uses at each of the three input offsets
/// (-1, 0, +1); 4 marks none (a zero tap).
const PHASE_TAPS: [[u32; 3]; 2] = [[3, 1, 4], [4, 2, 0]];

/// `x [N, I, H, W]` through a transposed convolution with `w [I, O, 4, 4]`, stride 2,
/// padding 1: `[N, O, 2H, 2W]`, equal to candle's `conv_transpose2d(x, w, 1, 0, 2, 1)`.
pub fn conv_transpose4x4_stride2(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, i, h, wd) = x.dims4()?;
    let (wi, o, kh, kw) = w.dims4()?;
    if wi != i || (kh, kw) != (4, 4) {
        return Err(Error::invalid(format!(
            "conv_transpose4x4_stride2 needs [N, I, H, W] and [I, O, 4, 4], got {:?} and {:?}",
            x.dims(),
            w.dims()
        )));
    }
    // Output row 2m + p = sum over offsets d of x[m + d] w[tap(p, d)]: phase 0 takes
    // taps 3, 1 at offsets -1, 0; phase 1 taps 2, 0 at offsets 0, +1.
    let device = w.device();
    let wz = w.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?; // tap 4 is zero
    let mut phases = Vec::with_capacity(4);
    for rows in PHASE_TAPS {
        let rows = Tensor::new(&rows, device)?;
        let by_row = wz.index_select(&rows, 2)?;
        for cols in PHASE_TAPS {
            let cols = Tensor::new(&cols, device)?;
            phases.push(by_row.index_select(&cols, 3)?); // [I, O, 3, 3]
        }
    }
    // [I, O, 4, 3, 3] -> [O, 4, I, 3, 3] -> [4 O, I, 3, 3], channel (o, p, q).
    let k = Tensor::stack(&phases, 2)?
        .permute((1, 2, 0, 3, 4))?
        .reshape((4 * o, i, 3, 3))?;
    let y = conv2d(x, &k, 1)?; // [N, 4 O, H, W]
    Ok(y.reshape((n, o, 2, 2, h, wd))?
        .permute((0, 1, 4, 2, 5, 3))?
        .reshape((n, o, 2 * h, 2 * wd))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed;
        let v: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        d.iter()
            .fold(0f32, |m, &v| if v.is_nan() { f32::NAN } else { m.max(v) })
    }

    /// Forward and both gradients (of a weighted sum) equal candle's op's.
    fn check(
        ours: impl Fn(&Tensor, &Tensor) -> Tensor,
        theirs: impl Fn(&Tensor, &Tensor) -> Tensor,
        xs: &[usize],
        ws: &[usize],
    ) {
        let x = Var::from_tensor(&randn(xs, 1)).unwrap();
        let w = Var::from_tensor(&randn(ws, 2)).unwrap();
        let (a, b) = (ours(&x, &w), theirs(&x, &w));
        assert!(max_diff(&a, &b) < 1e-4, "forward {:?}: {}", a.dims(), max_diff(&a, &b));
        let r = randn(a.dims(), 3);
        let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let d = max_diff(ga.get(v).unwrap(), gb.get(v).unwrap());
            assert!(d < 1e-3, "gradient {:?}: {d}", v.dims());
        }
    }

    /// Every other output of candle's stride-1 convolution (candle's own stride-2
    /// backward drops the last input row when `H + 2 pad - k` is odd).
    fn subsampled(x: &Tensor, w: &Tensor, pad: usize) -> Tensor {
        let y = x.conv2d(w, pad, 1, 1, 1).unwrap();
        let even = |n: usize| Tensor::new((0..n as u32).step_by(2).collect::<Vec<_>>(), &Device::Cpu).unwrap();
        let (h, wd) = (y.dim(2).unwrap(), y.dim(3).unwrap());
        y.index_select(&even(h), 2).unwrap().index_select(&even(wd), 3).unwrap()
    }

    #[test]
    fn stride2_equals_a_subsampled_stride1_conv_and_its_gradients() {
        for (k, pad, h) in [
            (4, 1, 8),
            (3, 1, 8),
            (3, 0, 8),
            (4, 1, 7),
            (3, 1, 9),
            (1, 0, 6),
            (5, 2, 10),
        ] {
            check(
                |x, w| conv2d_stride2(x, w, pad).unwrap(),
                |x, w| subsampled(x, w, pad),
                &[2, 3, h, h + 1],
                &[5, 3, k, k],
            );
        }
    }

    #[test]
    fn transposed_equals_candles_and_its_gradients() {
        for h in [1, 4, 5] {
            check(
                |x, w| conv_transpose4x4_stride2(x, w).unwrap(),
                |x, w| x.conv_transpose2d(w, 1, 0, 2, 1).unwrap(),
                &[2, 3, h, h + 2],
                &[3, 5, 4, 4],
            );
        }
    }

    #[test]
    fn shapes_that_cannot_fit_are_errors() {
        assert!(conv2d_stride2(&randn(&[1, 2, 4, 4], 0), &randn(&[3, 1, 3, 3], 0), 1).is_err());
        assert!(conv_transpose4x4_stride2(&randn(&[1, 2, 4, 4], 0), &randn(&[2, 3, 3, 3], 0)).is_err());
    }
}
