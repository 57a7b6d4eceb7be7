//! A stride-1 convolution whose derivatives run on candle's fast paths (training, and
//! losses differentiated with respect to their input such as LPIPS).
//!
//! candle 0.11 differentiates `conv2d` on the CPU with a direct-loop
//! `conv_transpose2d` (input gradient) and a `conv2d` whose kernel is the whole
//! gradient map (weight gradient); together 4-6x the forward time. Here the backward is
//! - input: the same op on the gradient with the kernel transposed and flipped, padded
//!   by `k - 1 - pad` (so it is itself differentiable: R1's second-order gradients go
//!   through it again);
//! - weight: shifted views of the padded input and one matrix product,
//!   `dW = dY [O, N*H*W] · cols [N*H*W, I*k*k]`.
//!
//! The forward is our own implicit GEMM (see [`conv_cpu`]), equal to `conv2d`
//! up to summation order, also used when no gradient is needed. Devices other than the
//! CPU go straight to candle's `conv2d`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::bias_act::{Activation, BiasAct};
use crate::element::{Element, cpu_slice, with_cpu_slice, with_cpu_slices};
use crate::implicit_gemm::{conv_cpu, conv_cpu_fused, weight_grad_cpu};

use labelgan_core::Result;

/// `x [N, I, H, W]` convolved with `w [O, I, k, k]`, stride 1, zero padding `pad`
/// (`pad < k`).
pub fn conv2d(x: &Tensor, w: &Tensor, pad: usize) -> Result<Tensor> {
    Ok(conv2d_raw(x, w, pad)?)
}

/// A 3x3 convolution with stride 2 and no padding on maps of even height and width:
/// `[N, C, H, W]`, `[O, C, 3, 3]` -> `[N, O, H/2 - 1, W/2 - 1]`, the same as candle's
/// `conv2d(x, w, 0, 2, 1, 1)`. Computed as a stride-1 2x2 convolution of the four
/// polyphase components (`[N, 4C, H/2, W/2]`) with the kernel split likewise (padded to
/// 4x4): 16 C multiply-adds per output instead of the 36 C of a stride-1 conv followed by
/// subsampling, and its gradients are [`conv2d`]'s fast ones. With `bias`, the bias and
/// `act` are applied in the convolution's output pass ([`conv2d_bias`]).
pub fn conv3x3_stride2(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, ci, kh, kw) = w.dims4()?;
    if (kh, kw) != (3, 3) || ci != c || h % 2 != 0 || wd % 2 != 0 || h < 4 || wd < 4 {
        return Err(labelgan_core::Error::invalid(format!(
            "conv3x3_stride2 needs [N, C, H, W] with even H, W >= 4 and a [O, C, 3, 3] kernel, got {:?} and {:?}",
            x.dims(),
            w.dims()
        )));
    }
    let (h2, w2) = (h / 2, wd / 2);
    // Channel (c, p, q) holds x[c, 2i + p, 2j + q].
    let xs = x
        .reshape((n, c, h2, 2, w2, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((n, 4 * c, h2, w2))?;
    // Kernel tap (a, b) = (2 da + p, 2 db + q) moves to channel (c, p, q), tap (da, db).
    let k = w
        .pad_with_zeros(2, 0, 1)?
        .pad_with_zeros(3, 0, 1)?
        .reshape((o, c, 2, 2, 2, 2))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((o, 4 * c, 2, 2))?;
    match bias {
        Some(b) => conv2d_bias(&xs, &k, b, 0, act),
        None => act.apply(&conv2d(&xs, &k, 0)?),
    }
}

/// `act(conv2d(x, w, pad) + b)` with `b` per output channel (`[O]`): one op on the CPU,
/// with bias and activation applied in the conv's output pass, and a backward that
/// scales the gradient by the activation's slope, sums the bias gradient per plane and
/// runs the two convolution gradients directly (no broadcast, activation or strided
/// reduction ops in the graph). Where the incoming gradient is itself tracked (a
/// penalty on an input gradient), the backward is made of differentiable ops, so it
/// differentiates again; the slope map's own derivative is zero almost everywhere.
/// Other devices and dtypes compose candle's ops.
pub fn conv2d_bias(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, act: Activation) -> Result<Tensor> {
    let o = w.dim(0)?;
    if b.dims() != [o] {
        return Err(labelgan_core::Error::invalid(format!(
            "conv2d_bias: bias of shape {:?} for {o} output channels",
            b.dims()
        )));
    }
    let k = w.dim(2)?;
    let float = matches!(x.dtype(), DType::F32 | DType::F64) && x.dtype() == w.dtype() && b.dtype() == w.dtype();
    let fits = x.rank() == 4
        && w.rank() == 4
        && x.dim(1)? == w.dim(1)?
        && w.dim(2)? == w.dim(3)?
        && pad < k
        && x.dim(2)? + 2 * pad >= k
        && x.dim(3)? + 2 * pad >= k;
    if !crate::native_on(x.device()) || !float || !fits {
        let y = conv2d_raw(x, w, pad)?.broadcast_add(&b.reshape((1, o, 1, 1))?)?;
        return act.apply(&y);
    }
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    let op = ConvBias { pad, act };
    Ok(if x.track_op() || w.track_op() || b.track_op() {
        x.apply_op3(&w, &b, op)?
    } else {
        x.apply_op3_no_bwd(&w, &b, &op)?
    })
}

struct ConvBias {
    pad: usize,
    act: Activation,
}

impl CustomOp3 for ConvBias {
    fn name(&self) -> &'static str {
        "labelgan-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, wd) = l1.shape().dims4()?;
        let (o, _, k, _) = l2.shape().dims4()?;
        let p = self.pad;
        let (ho, wo) = (h + 2 * p + 1 - k, wd + 2 * p + 1 - k);
        fn run<T: Element>(
            op: &ConvBias,
            (s1, l1, s2, l2, s3, l3): (&CpuStorage, &Layout, &CpuStorage, &Layout, &CpuStorage, &Layout),
            dims: (usize, usize, usize, usize),
            ok: (usize, usize),
        ) -> candle_core::Result<CpuStorage> {
            let out = BiasAct {
                bias: Some(cpu_slice::<T>(s3, l3)?),
                act: op.act,
                ..BiasAct::default()
            };
            Ok(T::storage(conv_cpu_fused::<T>(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                dims,
                ok,
                op.pad,
                None,
                &out,
            )))
        }
        let args = (s1, l1, s2, l2, s3, l3);
        let storage = match s1 {
            CpuStorage::F32(_) => run::<f32>(self, args, (n, c, h, wd), (o, k))?,
            _ => run::<f64>(self, args, (n, c, h, wd), (o, k))?,
        };
        Ok((storage, Shape::from((n, o, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let k = w.dim(2)?;
        let o = w.dim(0)?;
        // The pre-activation's gradient and the bias gradient, in one pass.
        let (gz, gb) = if g.track_op() {
            let gz = match self.act {
                Activation::Linear => g.clone(),
                act => g.mul(&crate::activation::slope_map(y, act).map_err(candle_core::Error::wrap)?)?,
            };
            let gb = crate::channel::channel_sum(&gz).map_err(candle_core::Error::wrap)?;
            (gz, gb)
        } else {
            let g = g.contiguous()?;
            match g.dtype() {
                DType::F32 => slope_and_sum::<f32>(&g, y, o, self.act)?,
                _ => slope_and_sum::<f64>(&g, y, o, self.act)?,
            }
        };
        let gx = if x.track_op() {
            Some(conv2d_raw(&gz, &flip_transpose(w)?, k - 1 - self.pad)?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(weight_grad(x, &gz, k, self.pad)?)
        } else {
            None
        };
        Ok((gx, gw, b.track_op().then_some(gb)))
    }
}

/// `g` times the slope of `act` at its output `y`, and its sum per channel (`[N, O, H,
/// W]` -> `[O]`), on contiguous CPU tensors.
fn slope_and_sum<T: Element>(
    g: &Tensor,
    y: &Tensor,
    o: usize,
    act: Activation,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, _, h, w) = g.dims4()?;
    let hw = h * w;
    let mut gz: Vec<T> = with_cpu_slice::<T, _>(g, |gs| gs.to_vec())?;
    if act != Activation::Linear {
        let y = y.contiguous()?;
        with_cpu_slice::<T, _>(&y, |ys| {
            for (a, &v) in gz.iter_mut().zip(ys) {
                *a *= act.slope_at_output(v);
            }
        })?;
    }
    debug_assert_eq!(gz.len(), n * o * hw);
    let gb = crate::channel::sum_planes(&gz, (n, o, hw));
    Ok((
        Tensor::from_vec(gz, (n, o, h, w), g.device())?,
        Tensor::from_vec(gb, o, g.device())?,
    ))
}

fn conv2d_raw(x: &Tensor, w: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    let k = w.dim(2)?;
    let float = matches!(x.dtype(), DType::F32 | DType::F64) && x.dtype() == w.dtype();
    if !crate::native_on(x.device()) || pad >= k || !float || x.rank() != 4 || w.rank() != 4 {
        return x.conv2d(w, pad, 1, 1, 1);
    }
    if x.dim(1)? != w.dim(1)? || w.dim(2)? != w.dim(3)? || x.dim(2)? + 2 * pad < k || x.dim(3)? + 2 * pad < k {
        // Let candle name the mismatch.
        return x.conv2d(w, pad, 1, 1, 1);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, Conv { pad })
    } else {
        x.apply_op2_no_bwd(&w, &Conv { pad })
    }
}

struct Conv {
    pad: usize,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "labelgan-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (l1.shape().dims(), l2.shape().dims());
        let (n, c, h, wd) = (x[0], x[1], x[2], x[3]);
        let (o, k) = (w[0], w[2]);
        let p = self.pad;
        let (ho, wo) = (h + 2 * p + 1 - k, wd + 2 * p + 1 - k);
        let storage = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(conv_cpu::<f32>(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                (n, c, h, wd),
                (o, k),
                p,
                None,
                false,
            )),
            _ => CpuStorage::F64(conv_cpu::<f64>(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                (n, c, h, wd),
                (o, k),
                p,
                None,
                false,
            )),
        };
        Ok((storage, Shape::from((n, o, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let k = w.dim(2)?;
        // Only what some variable depends on (LPIPS needs the image's gradient only).
        let gx = if x.track_op() {
            Some(conv2d_raw(g, &flip_transpose(w)?, k - 1 - self.pad)?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(weight_grad(x, g, k, self.pad)?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// `w [O, I, k, k]` -> `[I, O, k, k]` with both spatial axes reversed.
fn flip_transpose(w: &Tensor) -> candle_core::Result<Tensor> {
    let k = w.dim(2)?;
    let rev = Tensor::new((0..k as u32).rev().collect::<Vec<_>>(), w.device())?;
    w.transpose(0, 1)?
        .contiguous()?
        .index_select(&rev, 2)?
        .index_select(&rev, 3)
}

/// [`weight_grad_cpu`] on contiguous CPU tensors.
fn weight_grad_tensor<T: Element>(
    x: &Tensor,
    g: &Tensor,
    dims: (usize, usize, usize, usize),
    (o, k): (usize, usize),
    pad: usize,
) -> candle_core::Result<Tensor> {
    let dw = with_cpu_slices::<T, _>(x, g, |xs, gs| weight_grad_cpu(xs, gs, dims, (o, k), pad))?;
    Tensor::from_vec(dw, (o, dims.1, k, k), x.device())
}

/// `dW[o, i, ky, kx] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, i, y + ky, x + kx]`: on the
/// CPU by [`weight_grad_cpu`], elsewhere from shifted views and one matrix product.
fn weight_grad(x: &Tensor, g: &Tensor, k: usize, pad: usize) -> candle_core::Result<Tensor> {
    let (n, i, h, wd) = x.dims4()?;
    let (_, o, ho, wo) = g.dims4()?;
    if crate::native_on(x.device()) && x.dtype() == g.dtype() && matches!(x.dtype(), DType::F32 | DType::F64) {
        let (x, g) = (x.contiguous()?, g.contiguous()?);
        return match x.dtype() {
            DType::F32 => weight_grad_tensor::<f32>(&x, &g, (n, i, h, wd), (o, k), pad),
            _ => weight_grad_tensor::<f64>(&x, &g, (n, i, h, wd), (o, k), pad),
        };
    }
    let xp = if pad > 0 {
        x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?
    } else {
        x.clone()
    };
    let mut views = Vec::with_capacity(k * k);
    for dy in 0..k {
        for dx in 0..k {
            views.push(xp.narrow(2, dy, ho)?.narrow(3, dx, wo)?);
        }
    }
    // [N, I, k*k, Ho, Wo] -> [I*k*k, N*Ho*Wo].
    let cols = Tensor::stack(&views, 2)?
        .reshape((n, i * k * k, ho * wo))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((i * k * k, n * ho * wo))?;
    let g2 = g
        .reshape((n, o, ho * wo))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((o, n * ho * wo))?;
    let dtype = g2.dtype();
    let gw = g2.matmul(&cols.to_dtype(dtype)?.t()?)?;
    debug_assert!(matches!(dtype, DType::F32 | DType::F64));
    gw.reshape((o, i, k, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::implicit_gemm::*;
    use candle_core::{Device, Var};
    use labelgan_core::{SplitMix64, max_abs_diff};

    #[test]
    fn raw_kernels_match_tensor_ops() {
        let mut rng = SplitMix64::new(9);
        let dev = Device::Cpu;
        let w = rng.normal_tensor(&[4, 3, 3, 3], &dev).unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = flip_transpose(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(flip_transpose_cpu(&wv, (4, 3, 3)), want);
        // Bias and ReLU fused into the output pass.
        let x = rng.normal_tensor(&[2, 3, 6, 5], &dev).unwrap();
        let b = rng.normal_tensor(&[4], &dev).unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        let got = conv_cpu(&xv, &wv, (2, 3, 6, 5), (4, 3), 1, Some(&bv), true);
        let want = x
            .conv2d(&w, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, 4, 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap();
        let got = Tensor::from_vec(got, want.shape(), &dev).unwrap();
        assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
    }

    #[test]
    fn weight_gradient_matches_candle_on_odd_shapes() {
        // Pads 0..k, kernels 1, 3 and 5, non-square maps, images split across threads.
        let mut rng = SplitMix64::new(21);
        let dev = Device::Cpu;
        for (n, c, o, h, w, k, p) in [
            (3, 2, 5, 7, 5, 3, 1),
            (1, 4, 3, 6, 9, 3, 0),
            (5, 3, 2, 8, 6, 5, 2),
            (2, 6, 4, 5, 5, 1, 0),
            (4, 3, 3, 9, 7, 5, 4),
        ] {
            let x = rng.normal_tensor(&[n, c, h, w], &dev).unwrap();
            let wt = Var::from_tensor(&rng.normal_tensor(&[o, c, k, k], &dev).unwrap()).unwrap();
            let y = x.conv2d(wt.as_tensor(), p, 1, 1, 1).unwrap();
            let r = rng.normal_tensor(y.dims(), &dev).unwrap();
            let want = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let want = want.get(wt.as_tensor()).unwrap();
            let got = weight_grad(&x, &r, k, p).unwrap();
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let err = max_abs_diff(&got, want).unwrap();
            assert!(err < 1e-5 * scale.max(1.0), "{:?}: error {err}", (n, c, o, h, w, k, p));
            // f64 agrees with f32 to f32 precision.
            let got64 = weight_grad(&x.to_dtype(DType::F64).unwrap(), &r.to_dtype(DType::F64).unwrap(), k, p).unwrap();
            assert!(max_abs_diff(&got64.to_dtype(DType::F32).unwrap(), want).unwrap() < 1e-5 * scale.max(1.0));
        }
    }

    #[test]
    fn image_groups_give_the_same_convolution_and_weight_gradient() {
        // One image per GEMM, uneven groups (the last one short) and all images in one.
        let mut rng = SplitMix64::new(77);
        let dev = Device::Cpu;
        for (n, c, o, h, w, k, p) in [(5, 3, 4, 6, 5, 3, 1), (7, 2, 3, 4, 4, 3, 0), (4, 2, 2, 5, 7, 5, 2)] {
            let x = rng.normal_tensor(&[n, c, h, w], &dev).unwrap();
            let wt = rng.normal_tensor(&[o, c, k, k], &dev).unwrap();
            let y = x.conv2d(&wt, p, 1, 1, 1).unwrap();
            let r = rng.normal_tensor(y.dims(), &dev).unwrap();
            let want_dw = weight_grad(&x, &r, k, p).unwrap();
            let (xv, wv, rv) = (
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                wt.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                r.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            for group in [1, 2, 3, n] {
                let got = conv_cpu_grouped(&xv, &wv, (n, c, h, w), (o, k), p, None, false, group);
                let got = Tensor::from_vec(got, y.shape(), &dev).unwrap();
                assert!(max_abs_diff(&got, &y).unwrap() < 1e-4, "forward, group {group}");
                let dw = weight_grad_cpu_grouped(&xv, &rv, (n, c, h, w), (o, k), p, group);
                let dw = Tensor::from_vec(dw, want_dw.shape(), &dev).unwrap();
                assert!(
                    max_abs_diff(&dw, &want_dw).unwrap() < 1e-4,
                    "weight gradient, group {group}"
                );
            }
        }
        assert_eq!(
            images_per_gemm(100, 64, 2048),
            16,
            "8x8 maps padded to 10x10: 4 even groups of 16"
        );
        assert_eq!(images_per_gemm(100, 32, 400), 4);
        assert_eq!(images_per_gemm(34 * 34, 64, 2048), 1);
        assert_eq!(images_per_gemm(36, 3, 2048), 3);
        assert_eq!(images_per_gemm(36, 0, 2048), 1);
    }

    #[test]
    fn fused_bias_activation_matches_candle_ops() {
        let mut rng = SplitMix64::new(33);
        let dev = Device::Cpu;
        let leaky = Activation::LeakyRelu { slope: 0.2, gain: 1.3 };
        for (act, pad, k) in [
            (Activation::Relu, 1, 3),
            (Activation::Linear, 1, 3),
            (Activation::Relu, 0, 1),
            (Activation::Relu, 2, 3),
            (leaky, 1, 3),
            (leaky, 0, 1),
        ] {
            let x = Var::from_tensor(&rng.normal_tensor(&[3, 4, 7, 6], &dev).unwrap()).unwrap();
            let w = Var::from_tensor(&rng.normal_tensor(&[5, 4, k, k], &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&rng.normal_tensor(&[5], &dev).unwrap()).unwrap();
            let got = conv2d_bias(x.as_tensor(), w.as_tensor(), b.as_tensor(), pad, act).unwrap();
            let want = x
                .as_tensor()
                .conv2d(w.as_tensor(), pad, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, 5, 1, 1)).unwrap())
                .unwrap();
            let want = match act {
                Activation::Linear => want,
                Activation::Relu => want.relu().unwrap(),
                Activation::LeakyRelu { slope, gain } => want
                    .affine(gain, 0.0)
                    .unwrap()
                    .maximum(&want.affine(slope * gain, 0.0).unwrap())
                    .unwrap(),
            };
            assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
            let r = rng.normal_tensor(got.dims(), &dev).unwrap();
            let g1 = (got * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (want * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &b] {
                let (a, e) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(max_abs_diff(a, e).unwrap() < 1e-4, "{act:?} pad {pad} k {k}");
            }
        }
        let x = Tensor::zeros((1, 4, 5, 5), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((5, 4, 3, 3), DType::F32, &dev).unwrap();
        let bad = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(conv2d_bias(&x, &w, &bad, 1, Activation::Relu).is_err());
    }

    #[test]
    fn stride2_matches_candle_forward_and_gradients() {
        let mut rng = SplitMix64::new(5);
        let x = Var::from_tensor(&rng.normal_tensor(&[2, 3, 10, 8], &Device::Cpu).unwrap()).unwrap();
        let w = Var::from_tensor(&rng.normal_tensor(&[4, 3, 3, 3], &Device::Cpu).unwrap()).unwrap();
        let got = conv3x3_stride2(x.as_tensor(), w.as_tensor(), None, Activation::Linear).unwrap();
        let want = x.as_tensor().conv2d(w.as_tensor(), 0, 2, 1, 1).unwrap();
        assert_eq!(got.dims(), [2, 4, 4, 3]);
        assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
        // Gradients of a weighted sum, through both paths.
        let r = rng.normal_tensor(&[2, 4, 4, 3], &Device::Cpu).unwrap();
        let g1 = (got * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (want * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(max_abs_diff(a, b).unwrap() < 1e-4);
        }
        let odd = Tensor::zeros((1, 3, 9, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(conv3x3_stride2(&odd, w.as_tensor(), None, Activation::Linear).is_err());
    }
}
