//! Upsampling by 2 with a FIR filter, done as one ordinary convolution per output phase.
//!
//! The official code upsamples in two steps: a stride-2 transposed convolution
//! (output `2H+1`), then `upfirdn2d` with the 4x4 filter `f` (pad 1, gain 4), which
//! gives `2H x 2W`. Both steps are linear, so they compose into one 6x6 kernel
//! `K = W (*) 4f` acting on the zero-inserted input; splitting `K` by output phase
//! (even/odd row, even/odd column) leaves four 3x3 kernels on the *original* input,
//! all at padding 1. We stack them as `4*O` output channels of one `conv2d` and
//! interleave the result: the same numbers as the official two steps, without the
//! transposed convolution (candle's is a slow direct loop) and without the 3/4 of
//! multiplications by inserted zeros.
//!
//! Derivation, per axis, for the conv0 path: `z[p] = sum_t y[p+t-1] g[t]` with
//! `y = convT(x, w)` gives `z[2q+r] = sum_a x[q-1+a] K[2a+1-r]`, where
//! `K[t] = sum_k g[t+k-2] w[k]` (t = 0..5) and `g` is `4f` flipped (upfirdn2d
//! convolves). The image path (`upsample2d`: zero-insert, pad `[2,1]`, filter) is the
//! same with `w` a centred delta.
//!
//! Reference: official `torch_utils/ops/conv2d_resample.py` and `upfirdn2d.py`.

use candle_core::{DType, Tensor};

use labelgan_core::{Error, Result};

/// `4 * flip(f)`: the correlation kernel equal to upfirdn2d's gain-4 convolution.
pub(crate) fn filter_kernel(filter: &Tensor) -> Result<Tensor> {
    if filter.dims() != [4, 4] {
        return Err(Error::invalid(format!(
            "resample filter must be [4, 4], got {:?}",
            filter.dims()
        )));
    }
    Ok(filter.flip(&[0, 1])?.affine(4.0, 0.0)?)
}

/// The matrix `M [9, 36]` with `M[(ky,kx), (phase, a, b)] = g[ty+ky-2, tx+kx-2]` for
/// the taps `t = 2a + 1 - r` of each output phase `(ry, rx)`: a 3x3 weight `W[o,i]`
/// flattened to 9 values times `M` gives the four phase kernels of `W (*) g`.
fn phase_matrix(g: &Tensor) -> Result<Tensor> {
    let gv = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?; // [4*4]
    let gat = |y: isize, x: isize| {
        if (0..4).contains(&y) && (0..4).contains(&x) {
            gv[(y * 4 + x) as usize]
        } else {
            0.0
        }
    };
    let mut m = vec![0f32; 9 * 36];
    for ry in 0..2 {
        for rx in 0..2 {
            for a in 0..3 {
                for b in 0..3 {
                    let (ty, tx) = ((2 * a + 1 - ry) as isize, (2 * b + 1 - rx) as isize);
                    let col = ((ry * 2 + rx) * 3 + a) * 3 + b;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            m[(ky * 3 + kx) * 36 + col] = gat(ty + ky as isize - 2, tx + kx as isize - 2);
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (9, 36), g.device())?)
}

/// The four phase kernels of `weight [O, I, 3, 3]` composed with the filter kernel
/// `g [4, 4]`, stacked as `[4*O, I, 3, 3]` in (row phase, column phase, o) order. One
/// `[O*I, 9] x [9, 36]` matmul: cheap, and differentiable in `weight`.
fn phase_kernels(weight: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (o, i, _, _) = weight.dims4()?;
    let k = weight.reshape((o * i, 9))?.matmul(&phase_matrix(g)?)?; // [O*I, 36]
    Ok(k.reshape((o, i, 4, 3, 3))?
        .permute((2, 0, 1, 3, 4))?
        .reshape((4 * o, i, 3, 3))?)
}

/// Interleaves `[N, 4*O, H, W]` in (ry, rx, o) channel order into `[N, O, 2H, 2W]`.
fn interleave(y: &Tensor, o: usize) -> Result<Tensor> {
    let (n, _, h, w) = y.dims4()?;
    Ok(y.reshape((n, 2, 2, o, h, w))?
        .permute((0, 3, 4, 1, 5, 2))?
        .reshape((n, o, 2 * h, 2 * w))?)
}

/// The official conv0 upsampling: `upfirdn2d(conv_transpose2d(x, W^T, stride 2), f,
/// pad 1, gain 4)`, for `x [N, I, H, W]`, `weight [O, I, 3, 3]`, `filter [4, 4]`.
pub fn upsample_conv2d(x: &Tensor, weight: &Tensor, filter: &Tensor) -> Result<Tensor> {
    upsample_conv2d_with(x, &upsample_kernels(weight, filter)?)
}

/// The `[4*O, I, 3, 3]` phase kernels of [`upsample_conv2d`] for `weight` and
/// `filter`; compute once and reuse with [`upsample_conv2d_with`] while the weight is
/// fixed (inference).
pub fn upsample_kernels(weight: &Tensor, filter: &Tensor) -> Result<Tensor> {
    let (_, _, kh, kw) = weight.dims4()?;
    if (kh, kw) != (3, 3) {
        return Err(Error::invalid(format!(
            "upsampling conv needs a 3x3 weight, got {:?}",
            weight.dims()
        )));
    }
    phase_kernels(weight, &filter_kernel(filter)?)
}

/// [`upsample_conv2d`] with precomputed phase kernels `[4*O, I, 3, 3]`.
pub fn upsample_conv2d_with(x: &Tensor, kernels: &Tensor) -> Result<Tensor> {
    let (o4, i, _, _) = kernels.dims4()?;
    if x.dim(1)? != i {
        return Err(Error::invalid(format!(
            "upsampling conv expects {i} input channels, got input {:?}",
            x.dims()
        )));
    }
    interleave(&labelgan_kernels::conv::conv2d(x, kernels, 1)?, o4 / 4)
}

/// The official `upsample2d` of the image path: zero-insert x2, pad `[2,1,2,1]`,
/// depthwise filter `4f`. `x [N, C, H, W] -> [N, C, 2H, 2W]`.
pub fn upsample2d(x: &Tensor, filter: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    // The image path is the conv path with a centred 3x3 delta as the weight.
    let delta = Tensor::from_vec(vec![0f32, 0., 0., 0., 1., 0., 0., 0., 0.], (1, 1, 3, 3), x.device())?;
    let k = phase_kernels(&delta, &filter_kernel(filter)?)?; // [4, 1, 3, 3]
    let y = labelgan_kernels::conv::conv2d(&x.reshape((n * c, 1, h, w))?, &k, 1)?;
    interleave(&y, 1)?.reshape((n, c, 2 * h, 2 * w)).map_err(Into::into)
}

/// The FIR filter of the official code: `outer([1,3,3,1], [1,3,3,1]) / 64`.
pub fn default_filter(device: &candle_core::Device) -> Result<Tensor> {
    let f = Tensor::new(&[1f32, 3., 3., 1.], device)?;
    Ok(f.reshape((4, 1))?
        .matmul(&f.reshape((1, 4))?)?
        .affine(1.0 / 64.0, 0.0)?
        .to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use labelgan_core::SplitMix64;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        labelgan_core::max_abs_diff(a, b).unwrap()
    }

    /// The official two steps, literally: zero-padded transposed conv, then an explicit
    /// depthwise upfirdn2d (pad, convolve with the flipped filter, gain).
    fn reference_upsample_conv(x: &Tensor, w: &Tensor, f: &Tensor) -> Tensor {
        let y = x
            .conv_transpose2d(&w.transpose(0, 1).unwrap().contiguous().unwrap(), 0, 0, 2, 1)
            .unwrap();
        fir(&y, f, 1, 1)
    }

    fn fir(y: &Tensor, f: &Tensor, p0: usize, p1: usize) -> Tensor {
        let (n, c, h, w) = y.dims4().unwrap();
        let g = f
            .flip(&[0, 1])
            .unwrap()
            .affine(4.0, 0.0)
            .unwrap()
            .reshape((1, 1, 4, 4))
            .unwrap();
        let yp = y.reshape((n * c, 1, h, w)).unwrap();
        let yp = yp.pad_with_zeros(2, p0, p1).unwrap().pad_with_zeros(3, p0, p1).unwrap();
        let z = yp.conv2d(&g, 0, 1, 1, 1).unwrap();
        let (_, _, zh, zw) = z.dims4().unwrap();
        z.reshape((n, c, zh, zw)).unwrap()
    }

    fn zero_insert(x: &Tensor) -> Tensor {
        let (n, c, h, w) = x.dims4().unwrap();
        let z = x.zeros_like().unwrap();
        let a = Tensor::stack(&[x, &z], 4).unwrap().reshape((n, c, h, 2 * w)).unwrap();
        let za = a.zeros_like().unwrap();
        Tensor::stack(&[&a, &za], 3)
            .unwrap()
            .reshape((n, c, 2 * h, 2 * w))
            .unwrap()
    }

    fn randn(r: &mut SplitMix64, s: &[usize]) -> Tensor {
        r.normal_tensor(s, &Device::Cpu).unwrap()
    }

    #[test]
    fn polyphase_equals_transposed_conv_then_fir() {
        let mut r = SplitMix64::new(11);
        // An asymmetric filter catches any flip mistake; the default one must work too.
        for f in [default_filter(&Device::Cpu).unwrap(), randn(&mut r, &[4, 4])] {
            for (h, w) in [(4, 4), (5, 7)] {
                let x = randn(&mut r, &[2, 3, h, w]);
                let wt = randn(&mut r, &[5, 3, 3, 3]);
                let got = upsample_conv2d(&x, &wt, &f).unwrap();
                let want = reference_upsample_conv(&x, &wt, &f);
                assert_eq!(got.dims(), &[2, 5, 2 * h, 2 * w]);
                assert!(max_abs_diff(&got, &want) < 1e-4, "{}", max_abs_diff(&got, &want));
            }
        }
    }

    #[test]
    fn upsample2d_equals_zero_insert_pad_filter() {
        let mut r = SplitMix64::new(12);
        for f in [default_filter(&Device::Cpu).unwrap(), randn(&mut r, &[4, 4])] {
            let x = randn(&mut r, &[2, 3, 4, 6]);
            let got = upsample2d(&x, &f).unwrap();
            let want = fir(&zero_insert(&x), &f, 2, 1);
            assert_eq!(got.dims(), want.dims());
            assert!(max_abs_diff(&got, &want) < 1e-5, "{}", max_abs_diff(&got, &want));
        }
    }
}
