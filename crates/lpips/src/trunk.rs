//! The VGG trunk as one differentiable op, for LPIPS with fixed weights on the CPU.
//!
//! Built from candle ops, every conv + bias + ReLU costs about ten passes over its
//! activation in the backward (the ReLU mask, the bias gradient, gradient
//! accumulation into fresh zero tensors), each with its own allocation. Here the whole
//! trunk (3x3 convs with bias and ReLU, 2x2 max-pools) is one [`CustomOp1`] on the
//! image: the forward fuses bias and ReLU into the convolution's output pass and keeps
//! the activations, and the backward walks them in reverse with one in-place mask per
//! conv, the flipped-kernel convolution for the input gradient, and a scatter per pool
//! (to the first maximum of each window, as PyTorch does). Its output is every tap,
//! flattened and concatenated tap by tap (`[N, C, H, W]` each), which [`Trunk::taps`]
//! splits back with views.
//!
//! Only the gradient with respect to the image is computed: the trunk is used when no
//! weight is a variable (training the backbone goes through candle's ops instead).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use labelgan_core::{Error, Result};
use labelgan_kernels::bias_act::BiasAct;
use labelgan_kernels::element::{Element, cpu_slice, with_cpu_slice as with_slice};
use labelgan_kernels::implicit_gemm::{Kernel, conv_cpu_kernel, flip_transpose_cpu};
use labelgan_kernels::winograd::{Orientation, transform_kernel};

use crate::conv::Conv;

#[derive(Debug)]
enum Step {
    /// 3x3 (or any k) stride-1 conv with bias, then ReLU.
    Conv {
        w: Tensor,
        flipped: Tensor,
        b: Tensor,
        o: usize,
        i: usize,
        k: usize,
        pad: usize,
        /// 3x3 kernels: `w` in Winograd's domain, transformed once (the backward reads
        /// it flipped and transposed).
        winograd: Option<Tensor>,
    },
    /// 2x2 max-pool, stride 2, floor mode.
    Pool,
    /// The current activation is a tap.
    Tap,
}

/// A tap's `(C, H, W)`.
pub(crate) type TapShape = (usize, usize, usize);

/// Views `[N, C, H, W]` of a flat tensor that holds them one after another.
pub(crate) fn split_flat(flat: &Tensor, n: usize, shapes: impl IntoIterator<Item = TapShape>) -> Result<Vec<Tensor>> {
    let mut out = vec![];
    let mut offset = 0;
    for (c, h, w) in shapes {
        let len = n * c * h * w;
        out.push(flat.narrow(0, offset, len)?.reshape((n, c, h, w))?);
        offset += len;
    }
    Ok(out)
}

/// A VGG-family trunk with fixed weights, on the CPU, in one dtype.
#[derive(Debug)]
pub(crate) struct Trunk {
    steps: Vec<Step>,
    dtype: DType,
}

/// The layers of the trunk: a stride-1 conv with ReLU, max-pool or tap.
#[derive(Debug, Clone)]
pub(crate) enum Layer {
    Conv(Conv),
    Pool,
    Tap,
}

impl Trunk {
    /// `None` when the weights cannot take this path (not on the CPU, not f32/f64, or
    /// some weight is a variable whose gradient is wanted).
    pub(crate) fn new(layers: Vec<Layer>) -> Result<Option<Self>> {
        let mut steps = vec![];
        let mut dtype = None;
        for l in layers {
            steps.push(match l {
                Layer::Conv(Conv {
                    weight: w,
                    bias: b,
                    pad,
                    stride: 1,
                }) => {
                    if !labelgan_kernels::native_on(w.device()) || w.track_op() || b.track_op() {
                        return Ok(None);
                    }
                    if !matches!(w.dtype(), DType::F32 | DType::F64) || *dtype.get_or_insert(w.dtype()) != w.dtype() {
                        return Ok(None);
                    }
                    let (o, i, k, k2) = w.dims4()?;
                    if k != k2 || pad >= k || b.dims() != [o] {
                        return Ok(None);
                    }
                    let w = w.contiguous()?;
                    let (flipped, winograd) = match w.dtype() {
                        DType::F32 => fixed_kernels::<f32>(&w, (o, i, k))?,
                        _ => fixed_kernels::<f64>(&w, (o, i, k))?,
                    };
                    Step::Conv {
                        b: b.to_dtype(w.dtype())?.contiguous()?,
                        w,
                        flipped,
                        o,
                        i,
                        k,
                        pad,
                        winograd,
                    }
                }
                Layer::Conv(_) => return Ok(None), // strided: not a trunk conv
                Layer::Pool => Step::Pool,
                Layer::Tap => Step::Tap,
            });
        }
        Ok(dtype.map(|dtype| Self { steps, dtype }))
    }

    /// The taps `[N, C, H, W]` of the scaled images `x [N, C, H, W]`, or `None` when `x`
    /// is not on this path (another dtype or device).
    pub(crate) fn taps(self: &Arc<Self>, x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let Some((flat, shapes)) = self.flat(x)? else {
            return Ok(None);
        };
        Ok(Some(split_flat(&flat, x.dim(0)?, shapes)?))
    }

    /// The trunk's output as it comes: every tap flattened and concatenated tap by tap
    /// (`[N, C, H, W]` each), with the taps' `(C, H, W)`; `None` as for [`Trunk::taps`].
    pub(crate) fn flat(self: &Arc<Self>, x: &Tensor) -> Result<Option<(Tensor, Vec<TapShape>)>> {
        if x.dtype() != self.dtype || !labelgan_kernels::native_on(x.device()) {
            return Ok(None);
        }
        let (n, c, h, w) = x.dims4()?;
        let dims = self.input_dims((n, c, h, w))?;
        let shapes = self
            .steps
            .iter()
            .zip(&dims)
            .filter(|(s, _)| matches!(s, Step::Tap))
            .map(|(_, &d)| d)
            .collect();
        let x = x.contiguous()?;
        let flat = if x.track_op() {
            x.apply_op1(TrunkOp {
                trunk: self.clone(),
                saved: Some(Mutex::new(vec![])),
            })?
        } else {
            x.apply_op1_no_bwd(&TrunkOp {
                trunk: self.clone(),
                saved: None,
            })?
        };
        Ok(Some((flat, shapes)))
    }

    /// The `(C, H, W)` that enters every step for input `[N, C, H, W]`, and an error
    /// naming the first layer the input does not fit.
    fn input_dims(&self, (n, mut c, mut h, mut w): (usize, usize, usize, usize)) -> Result<Vec<(usize, usize, usize)>> {
        let mut out = Vec::with_capacity(self.steps.len());
        for (j, s) in self.steps.iter().enumerate() {
            out.push((c, h, w));
            match s {
                Step::Conv { o, i, k, pad, .. } => {
                    if c != *i || h + 2 * pad < *k || w + 2 * pad < *k {
                        return Err(Error::invalid(format!(
                            "LPIPS trunk layer {j} takes [N, {i}, H, W] with H, W >= {}, got [{n}, {c}, {h}, {w}]",
                            k - 2 * pad
                        )));
                    }
                    (c, h, w) = (*o, h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
                }
                Step::Pool => {
                    if h < 2 || w < 2 {
                        return Err(Error::invalid(format!(
                            "a {h}x{w} map is smaller than the 2x2 pool window (image too small for this backbone?)"
                        )));
                    }
                    (h, w) = (h / 2, w / 2);
                }
                Step::Tap => {}
            }
        }
        Ok(out)
    }
}

struct TrunkOp {
    trunk: Arc<Trunk>,
    /// The output of every conv and pool step, by step index (`None` at taps), kept for
    /// the backward; `None` when no gradient is wanted.
    saved: Option<Mutex<Vec<Option<CpuStorage>>>>,
}

/// 2x2 max-pool, stride 2, floor mode, over `[planes, h, w]`.
fn pool_fwd<T: Element>(x: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![T::ZERO; planes * oh * ow];
    for p in 0..planes {
        let src = &x[p * h * w..(p + 1) * h * w];
        let dst = &mut out[p * oh * ow..(p + 1) * oh * ow];
        for y in 0..oh {
            let (r0, r1) = (&src[2 * y * w..], &src[(2 * y + 1) * w..]);
            for xx in 0..ow {
                let mut m = r0[2 * xx];
                for v in [r0[2 * xx + 1], r1[2 * xx], r1[2 * xx + 1]] {
                    if v > m {
                        m = v;
                    }
                }
                dst[y * ow + xx] = m;
            }
        }
    }
    out
}

/// The pool's input gradient: each output's gradient goes to the first maximum of its
/// window (row-major), as PyTorch's CPU kernel does.
fn pool_bwd<T: Element>(x: &[T], g: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![T::ZERO; planes * h * w];
    for p in 0..planes {
        let src = &x[p * h * w..(p + 1) * h * w];
        let gp = &g[p * oh * ow..(p + 1) * oh * ow];
        let dst = &mut out[p * h * w..(p + 1) * h * w];
        for y in 0..oh {
            for xx in 0..ow {
                let cand = [
                    2 * y * w + 2 * xx,
                    2 * y * w + 2 * xx + 1,
                    (2 * y + 1) * w + 2 * xx,
                    (2 * y + 1) * w + 2 * xx + 1,
                ];
                let mut best = cand[0];
                for &c in &cand[1..] {
                    if src[c] > src[best] {
                        best = c;
                    }
                }
                dst[best] = gp[y * ow + xx];
            }
        }
    }
    out
}

/// What the backward and the forward read of a fixed kernel `w [o, i, k, k]`, made
/// once: its flipped transpose `[i, o, k, k]` and, for 3x3, its Winograd transform
/// `[16, o, i]` (the backward reads it flipped and transposed).
fn fixed_kernels<T: Element>(w: &Tensor, (o, i, k): (usize, usize, usize)) -> Result<(Tensor, Option<Tensor>)> {
    let dev = w.device();
    with_slice(w, |v: &[T]| -> Result<_> {
        let flipped = Tensor::from_vec(flip_transpose_cpu(v, (o, i, k)), (i, o, k, k), dev)?;
        let winograd = if k == 3 {
            Some(Tensor::from_vec(transform_kernel(v, o, i), (16, o, i), dev)?)
        } else {
            None
        };
        Ok((flipped, winograd))
    })?
}

/// `f` on a conv's kernel: `weights` and, where stored, its Winograd transform read in
/// `orientation`.
fn with_kernel<T: Element, R>(
    weights: &Tensor,
    transformed: Option<&Tensor>,
    orientation: Orientation,
    f: impl FnOnce(Kernel<'_, T>) -> R,
) -> candle_core::Result<R> {
    with_slice(weights, |wv| match transformed {
        Some(u) => with_slice(u, |uv| {
            f(Kernel {
                weights: wv,
                transformed: Some((uv, orientation)),
            })
        }),
        None => Ok(f(Kernel::of(wv))),
    })?
}

impl TrunkOp {
    fn forward<T: Element>(&self, x: &[T], x_dims: (usize, usize, usize, usize)) -> candle_core::Result<Vec<T>> {
        let n = x_dims.0;
        let dims = self
            .trunk
            .input_dims(x_dims)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let keep = self.saved.is_some();
        let mut saved: Vec<Option<CpuStorage>> = vec![];
        let mut out = vec![];
        // The current activation and the step that made it (`None`: the input).
        let mut cur: Option<(usize, Vec<T>)> = None;
        for (j, s) in self.trunk.steps.iter().enumerate() {
            let (c, h, w) = dims[j];
            let input: &[T] = cur.as_ref().map_or(x, |(_, v)| v);
            let next = match s {
                Step::Conv {
                    w: wt,
                    b,
                    o,
                    k,
                    pad,
                    winograd,
                    ..
                } => with_slice(b, |bv| {
                    with_kernel(wt, winograd.as_ref(), Orientation::AsIs, |kernel| {
                        let act = BiasAct::bias_relu(Some(bv), true);
                        conv_cpu_kernel(input, kernel, (n, c, h, w), (*o, *k), *pad, None, &act)
                    })
                })??,
                Step::Pool => pool_fwd(input, n * c, h, w),
                Step::Tap => {
                    out.extend_from_slice(input);
                    continue;
                }
            };
            if let Some((step, prev)) = cur.replace((j, next))
                && keep
            {
                saved.resize(step + 1, None);
                saved[step] = Some(T::storage(prev));
            }
        }
        if let (Some(m), Some((step, last))) = (&self.saved, cur) {
            saved.resize(step + 1, None);
            saved[step] = Some(T::storage(last));
            *m.lock()
                .map_err(|_| candle_core::Error::Msg("LPIPS trunk: poisoned lock".into()))? = saved;
        }
        Ok(out)
    }

    fn backward<T: Element>(
        &self,
        x_dims: (usize, usize, usize, usize),
        grad: &[T],
        saved: &[Option<CpuStorage>],
    ) -> candle_core::Result<Vec<T>> {
        let (n, c0, h0, w0) = x_dims;
        let dims = self
            .trunk
            .input_dims(x_dims)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        // The output of the last conv or pool step before step `j` (that step's input).
        let input_of = |j: usize| -> candle_core::Result<&[T]> {
            (0..j)
                .rev()
                .find_map(|i| saved.get(i).and_then(|s| s.as_ref()))
                .and_then(T::slice)
                .ok_or_else(|| candle_core::Error::Msg(format!("LPIPS trunk: no saved input for step {j}")))
        };
        let mut tap_end = grad.len();
        let mut g: Option<Vec<T>> = None;
        for (j, s) in self.trunk.steps.iter().enumerate().rev() {
            let (c, h, w) = dims[j];
            match s {
                Step::Tap => {
                    let part = &grad[tap_end - n * c * h * w..tap_end];
                    tap_end -= n * c * h * w;
                    match &mut g {
                        Some(g) => g.iter_mut().zip(part).for_each(|(a, &b)| *a += b),
                        None => g = Some(part.to_vec()),
                    }
                }
                Step::Conv {
                    flipped,
                    o,
                    i,
                    k,
                    pad,
                    winograd,
                    ..
                } => {
                    let Some(mut gy) = g.take() else { continue };
                    let y = input_of(j + 1)?;
                    gy.iter_mut()
                        .zip(y)
                        .for_each(|(g, &y)| *g = if y > T::ZERO { *g } else { T::ZERO });
                    let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
                    g = Some(with_kernel(
                        flipped,
                        winograd.as_ref(),
                        Orientation::FlippedTransposed,
                        |kernel| {
                            conv_cpu_kernel(
                                &gy,
                                kernel,
                                (n, *o, ho, wo),
                                (*i, *k),
                                k - 1 - pad,
                                None,
                                &BiasAct::default(),
                            )
                        },
                    )?);
                }
                Step::Pool => {
                    let Some(gy) = g.take() else { continue };
                    g = Some(pool_bwd(input_of(j)?, &gy, n * c, h, w));
                }
            }
        }
        Ok(g.unwrap_or_else(|| vec![T::ZERO; n * c0 * h0 * w0]))
    }
}

impl CustomOp1 for TrunkOp {
    fn name(&self) -> &'static str {
        "labelgan-lpips-vgg-trunk"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = l.shape().dims4()?;
        let (out, len) = match s {
            CpuStorage::F32(_) => {
                let v = self.forward::<f32>(cpu_slice(s, l)?, d)?;
                let len = v.len();
                (CpuStorage::F32(v), len)
            }
            _ => {
                let v = self.forward::<f64>(cpu_slice(s, l)?, d)?;
                let len = v.len();
                (CpuStorage::F64(v), len)
            }
        };
        Ok((out, Shape::from(len)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let Some(saved) = &self.saved else {
            return Ok(None);
        };
        let saved = saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("LPIPS trunk: poisoned lock".into()))?;
        let d = arg.dims4()?;
        let g = grad_res.contiguous()?;
        let gx = match arg.dtype() {
            DType::F32 => {
                let v = with_slice(&g, |gv: &[f32]| self.backward(d, gv, &saved))??;
                Tensor::from_vec(v, arg.shape(), arg.device())?
            }
            _ => {
                let v = with_slice(&g, |gv: &[f64]| self.backward(d, gv, &saved))??;
                Tensor::from_vec(v, arg.shape(), arg.device())?
            }
        };
        Ok(Some(gx))
    }
}
