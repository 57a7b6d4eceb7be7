//! A stride-1 convolution whose derivatives run on candle's fast paths, for training.
//!
//! candle 0.11 differentiates `conv2d` on the CPU with a direct-loop
//! `conv_transpose2d` (input gradient) and a `conv2d` whose kernel is the whole
//! gradient map (weight gradient); together 4-6x the forward time. Here the forward is
//! candle's own (tiled im2col) `conv2d`, and the backward is
//! - input: the same op on the gradient with the kernel transposed and flipped, padded
//!   by `k - 1 - pad` (so it is itself differentiable: R1's second-order gradients go
//!   through it again);
//! - weight: shifted views of the padded input and one matrix product,
//!   `dW = dY [O, N*H*W] · cols [N*H*W, I*k*k]`.
//!
//! Outputs are bit-identical to `conv2d` (it *is* `conv2d` forward). Tensors that need
//! no gradient, and devices other than the CPU, go straight to `conv2d`.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Storage, Tensor};

use labelgan_core::Result;

/// `x [N, I, H, W]` convolved with `w [O, I, k, k]`, stride 1, zero padding `pad`
/// (`pad < k`).
pub fn conv2d(x: &Tensor, w: &Tensor, pad: usize) -> Result<Tensor> {
    Ok(conv2d_raw(x, w, pad)?)
}

fn conv2d_raw(x: &Tensor, w: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    let k = w.dim(2)?;
    if !x.device().is_cpu() || !(x.track_op() || w.track_op()) || pad >= k {
        return x.conv2d(w, pad, 1, 1, 1);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv { pad })
}

struct Conv {
    pad: usize,
}

fn tensor_of(s: &CpuStorage, l: &Layout) -> candle_core::Result<Tensor> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("labelgan conv: non-contiguous input".into()))?;
    let dev = candle_core::Device::Cpu;
    match s {
        CpuStorage::F32(v) => Tensor::from_slice(&v[a..b], l.shape(), &dev),
        CpuStorage::F64(v) => Tensor::from_slice(&v[a..b], l.shape(), &dev),
        _ => Err(candle_core::Error::Msg("labelgan conv: f32 or f64 only".into())),
    }
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
        let y = tensor_of(s1, l1)?.conv2d(&tensor_of(s2, l2)?, self.pad, 1, 1, 1)?;
        let shape = y.shape().clone();
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(c) if layout.is_contiguous() && layout.start_offset() == 0 => Ok((c.clone(), shape)),
            _ => Err(candle_core::Error::Msg(
                "labelgan conv: unexpected conv2d output".into(),
            )),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let k = w.dim(2)?;
        let gx = conv2d_raw(g, &flip_transpose(w)?, k - 1 - self.pad)?;
        let gw = weight_grad(x, g, k, self.pad)?;
        Ok((Some(gx), Some(gw)))
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

/// `dW[o, i, ky, kx] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, i, y + ky, x + kx]`.
fn weight_grad(x: &Tensor, g: &Tensor, k: usize, pad: usize) -> candle_core::Result<Tensor> {
    let (n, i, _, _) = x.dims4()?;
    let (_, o, ho, wo) = g.dims4()?;
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
