//! Per-channel sums and affine maps of `[N, C, ...]` activations: the bias of a
//! convolution and batch normalisation; and per-plane scales (one factor per image and
//! channel), StyleGAN2's modulation and demodulation.
//!
//! Written with candle's broadcast ops, each backward pass sums the gradient over
//! batch and space with candle's strided reduction, a tenth of a GAN training step on
//! the CPU (`docs/compare_gan.md`). Here the forward is one pass and the backward is
//! made of [`channel_sum`] (one contiguous pass over each plane) and these same ops,
//! so it differentiates again (penalties take gradients of gradients). Other devices
//! and dtypes compose candle's ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};

use crate::element::{Element, cpu_slice};
use labelgan_core::{Error, Result};

/// Planes at or above this many elements in all are split across threads.
const PARALLEL_ELEMENTS: usize = 1 << 18;

/// `x [N, C, ...]` summed over every axis but the channel: `[C]`.
pub fn channel_sum(x: &Tensor) -> Result<Tensor> {
    let (_, c) = batch_and_channels(x)?;
    if !fast(x) {
        let dims: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).collect();
        return Ok(x.sum_keepdim(dims)?.reshape(c)?);
    }
    Ok(x.contiguous()?.apply_op1(ChannelSum)?)
}

/// `x [N, C, ...] * a[c] + b[c]` for `a`, `b` of shape `[C]` (`None`: 1 and 0).
pub fn channel_affine(x: &Tensor, a: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let (_, c) = batch_and_channels(x)?;
    for (name, t) in [("scale", a), ("shift", b)] {
        if let Some(t) = t
            && (t.dims() != [c] || t.dtype() != x.dtype())
        {
            return Err(Error::invalid(format!(
                "channel_affine: {name} of shape {:?} and {:?} for activations {:?} of {:?}",
                t.dims(),
                t.dtype(),
                x.dims(),
                x.dtype()
            )));
        }
    }
    if !fast(x) {
        let shape: Vec<usize> = (0..x.rank()).map(|i| if i == 1 { c } else { 1 }).collect();
        let mut y = x.clone();
        if let Some(a) = a {
            y = y.broadcast_mul(&a.reshape(shape.as_slice())?)?;
        }
        if let Some(b) = b {
            y = y.broadcast_add(&b.reshape(shape.as_slice())?)?;
        }
        return Ok(y);
    }
    let a = match a {
        Some(a) => a.contiguous()?,
        None => Tensor::ones(c, x.dtype(), x.device())?,
    };
    let b = match b {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(c, x.dtype(), x.device())?,
    };
    Ok(x.contiguous()?.apply_op3(&a, &b, ChannelAffine)?)
}

/// `x [N, C, ...]` times `s[n, c]` over each plane, for `s` of shape `[N, C]`.
///
/// Its backward is this op again (`g` scaled by `s`) and [`plane_dot`] (`sum g * x`
/// per plane, `[N, C]`), each one pass and each differentiable, where candle's
/// `broadcast_mul` would expand `s` to the full shape, multiply, and reduce it back.
pub fn plane_scale(x: &Tensor, s: &Tensor) -> Result<Tensor> {
    let (n, c) = batch_and_channels(x)?;
    if s.dims() != [n, c] || s.dtype() != x.dtype() {
        return Err(Error::invalid(format!(
            "plane_scale: scales of shape {:?} and {:?} for activations {:?} of {:?}",
            s.dims(),
            s.dtype(),
            x.dims(),
            x.dtype()
        )));
    }
    if !fast(x) {
        let shape: Vec<usize> = (0..x.rank()).map(|i| if i < 2 { x.dims()[i] } else { 1 }).collect();
        return Ok(x.broadcast_mul(&s.reshape(shape.as_slice())?)?);
    }
    Ok(x.contiguous()?.apply_op2(&s.contiguous()?, PlaneOp::Scale)?)
}

/// `sum_p a[n, c, p] * b[n, c, p]`: `[N, C]` from two `[N, C, ...]` tensors of one shape
/// (the scale gradient of [`plane_scale`]).
pub fn plane_dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (n, c) = batch_and_channels(a)?;
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return Err(Error::invalid(format!(
            "plane_dot: {:?} of {:?} against {:?} of {:?}",
            a.dims(),
            a.dtype(),
            b.dims(),
            b.dtype()
        )));
    }
    if !fast(a) {
        return Ok((a * b)?.reshape((n, c, ()))?.sum(2)?);
    }
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, PlaneOp::Dot)?)
}

fn batch_and_channels(x: &Tensor) -> Result<(usize, usize)> {
    if x.rank() < 2 {
        return Err(Error::invalid(format!(
            "per-channel ops need [N, C, ...] activations, got {:?}",
            x.dims()
        )));
    }
    Ok((x.dim(0)?, x.dim(1)?))
}

fn fast(x: &Tensor) -> bool {
    crate::native_on(x.device()) && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `(N, C, plane)` of a `[N, C, ...]` layout.
fn planes(l: &Layout) -> (usize, usize, usize) {
    let d = l.shape().dims();
    (d[0], d[1], d[2..].iter().product())
}

/// Sum of each channel's planes over the batch: the backward of a per-channel bias.
pub(crate) fn sum_planes<T: Element>(x: &[T], (n, c, hw): (usize, usize, usize)) -> Vec<T> {
    let one = |ch: usize| -> T {
        (0..n).fold(T::ZERO, |acc, i| {
            let p = &x[(i * c + ch) * hw..(i * c + ch + 1) * hw];
            acc + p.iter().fold(T::ZERO, |s, &v| s + v)
        })
    };
    if x.len() >= PARALLEL_ELEMENTS && crate::cpu_threads() > 1 {
        use rayon::prelude::*;
        (0..c).into_par_iter().map(one).collect()
    } else {
        (0..c).map(one).collect()
    }
}

fn affine_planes<T: Element>(x: &[T], a: &[T], b: &[T], (_, c, hw): (usize, usize, usize)) -> Vec<T> {
    let map = |k: usize, i: &[T], o: &mut [std::mem::MaybeUninit<T>]| {
        let (s, t) = (a[k % c], b[k % c]);
        for (o, &v) in o.iter_mut().zip(i) {
            o.write(v * s + t);
        }
    };
    let mut out: Vec<T> = Vec::with_capacity(x.len());
    if hw > 0 {
        let spare = &mut out.spare_capacity_mut()[..x.len()];
        if x.len() >= PARALLEL_ELEMENTS && crate::cpu_threads() > 1 {
            use rayon::prelude::*;
            spare
                .par_chunks_mut(hw)
                .zip(x.par_chunks(hw))
                .enumerate()
                .for_each(|(k, (o, i))| map(k, i, o));
        } else {
            for (k, (o, i)) in spare.chunks_mut(hw).zip(x.chunks(hw)).enumerate() {
                map(k, i, o);
            }
        }
    }
    // SAFETY: every plane of `hw` elements above was written, `x.len()` in all (none
    // when `x` is empty).
    unsafe { out.set_len(x.len()) };
    out
}

struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "labelgan-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = planes(l);
        let out = match s {
            CpuStorage::F32(_) => f32::storage(sum_planes::<f32>(cpu_slice(s, l)?, dims)),
            _ => f64::storage(sum_planes::<f64>(cpu_slice(s, l)?, dims)),
        };
        Ok((out, Shape::from(dims.1)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let shape: Vec<usize> = (0..x.rank())
            .map(|i| if i == 1 { x.dim(1).unwrap_or(1) } else { 1 })
            .collect();
        Ok(Some(g.reshape(shape.as_slice())?.broadcast_as(x.shape())?))
    }
}

struct ChannelAffine;

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "labelgan-channel-affine"
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
        let dims = planes(l1);
        let out = match s1 {
            CpuStorage::F32(_) => f32::storage(affine_planes::<f32>(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                cpu_slice(s3, l3)?,
                dims,
            )),
            _ => f64::storage(affine_planes::<f64>(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                cpu_slice(s3, l3)?,
                dims,
            )),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let err = |e: Error| candle_core::Error::Msg(e.to_string());
        let gx = match x.track_op() {
            true => Some(channel_affine(g, Some(a), None).map_err(err)?),
            false => None,
        };
        let ga = match a.track_op() {
            true => Some(channel_sum(&(g * x)?).map_err(err)?),
            false => None,
        };
        let gb = match b.track_op() {
            true => Some(channel_sum(g).map_err(err)?),
            false => None,
        };
        Ok((gx, ga, gb))
    }
}

fn scale_planes<T: Element>(x: &[T], s: &[T], hw: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    if hw == 0 {
        return out;
    }
    let map = |(k, (o, i)): (usize, (&mut [T], &[T]))| {
        let f = s[k];
        for (o, &v) in o.iter_mut().zip(i) {
            *o = v * f;
        }
    };
    if x.len() >= PARALLEL_ELEMENTS && crate::cpu_threads() > 1 {
        use rayon::prelude::*;
        out.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(map);
    } else {
        out.chunks_mut(hw).zip(x.chunks(hw)).enumerate().for_each(map);
    }
    out
}

fn dot_planes<T: Element>(a: &[T], b: &[T], hw: usize) -> Vec<T> {
    if hw == 0 {
        return vec![T::ZERO; a.len()];
    }
    let dot = |(p, q): (&[T], &[T])| p.iter().zip(q).fold(T::ZERO, |acc, (&u, &v)| acc + u * v);
    if a.len() >= PARALLEL_ELEMENTS && crate::cpu_threads() > 1 {
        use rayon::prelude::*;
        a.par_chunks(hw).zip(b.par_chunks(hw)).map(dot).collect()
    } else {
        a.chunks(hw).zip(b.chunks(hw)).map(dot).collect()
    }
}

/// [`plane_scale`] and [`plane_dot`]: each is the other's backward.
#[derive(Clone, Copy)]
enum PlaneOp {
    Scale,
    Dot,
}

impl CustomOp2 for PlaneOp {
    fn name(&self) -> &'static str {
        match self {
            PlaneOp::Scale => "labelgan-plane-scale",
            PlaneOp::Dot => "labelgan-plane-dot",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: Element>(op: PlaneOp, a: &[T], b: &[T], hw: usize) -> Vec<T> {
            match op {
                PlaneOp::Scale => scale_planes(a, b, hw),
                PlaneOp::Dot => dot_planes(a, b, hw),
            }
        }
        let (n, c, hw) = planes(l1);
        let out = match s1 {
            CpuStorage::F32(_) => f32::storage(run::<f32>(*self, cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, hw)),
            _ => f64::storage(run::<f64>(*self, cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, hw)),
        };
        let shape = match self {
            PlaneOp::Scale => l1.shape().clone(),
            PlaneOp::Dot => Shape::from((n, c)),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let err = |e: Error| candle_core::Error::Msg(e.to_string());
        let (ga, gb) = match self {
            // y = a * b[n, c]: ga = g * b, gb = sum g * a.
            PlaneOp::Scale => (
                a.track_op().then(|| plane_scale(g, b)),
                b.track_op().then(|| plane_dot(g, a)),
            ),
            // y[n, c] = sum a * b: ga = b * g, gb = a * g.
            PlaneOp::Dot => (
                a.track_op().then(|| plane_scale(b, g)),
                b.track_op().then(|| plane_scale(a, g)),
            ),
        };
        Ok((ga.transpose().map_err(err)?, gb.transpose().map_err(err)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use labelgan_core::{SplitMix64, max_abs_diff};

    /// The same function with candle's broadcast ops.
    fn reference(x: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        let c = a.dim(0).unwrap();
        x.broadcast_mul(&a.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
    }

    #[test]
    fn sums_and_affine_maps_match_broadcast_ops_with_gradients() {
        let mut rng = SplitMix64::new(3);
        let dev = Device::Cpu;
        // Small, and large enough to split across threads.
        for dims in [[3usize, 4, 5, 6], [8, 16, 48, 48]] {
            let x = Var::from_tensor(&rng.normal_tensor(&dims, &dev).unwrap()).unwrap();
            let a = Var::from_tensor(&rng.normal_tensor(&[dims[1]], &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&rng.normal_tensor(&[dims[1]], &dev).unwrap()).unwrap();
            let got = channel_affine(x.as_tensor(), Some(a.as_tensor()), Some(b.as_tensor())).unwrap();
            let want = reference(x.as_tensor(), a.as_tensor(), b.as_tensor());
            assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
            let s = channel_sum(x.as_tensor()).unwrap();
            let ws = x.as_tensor().sum_keepdim((0, 2, 3)).unwrap().flatten_all().unwrap();
            let scale = (dims[0] * dims[2] * dims[3]) as f32;
            assert!(max_abs_diff(&s, &ws).unwrap() < 1e-5 * scale.sqrt() * 4.0);
            // The gradients of a weighted sum of both, through both paths.
            let r = rng.normal_tensor(&dims, &dev).unwrap();
            let rs = rng.normal_tensor(&[dims[1]], &dev).unwrap();
            let loss = |y: &Tensor, s: &Tensor| {
                ((y * &r).unwrap().sum_all().unwrap() + (s * &rs).unwrap().sum_all().unwrap()).unwrap()
            };
            let g1 = loss(&got, &s).backward().unwrap();
            let g2 = loss(&want, &ws).backward().unwrap();
            for v in [&x, &a, &b] {
                let (p, q) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                let tol = 1e-4 * q.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
                assert!(max_abs_diff(p, q).unwrap() < tol, "{dims:?}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
        let bad = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(channel_affine(&x, Some(&bad), None).is_err());
        assert!(channel_affine(&x, None, Some(&bad)).is_err());
        assert!(channel_sum(&Tensor::zeros(3, DType::F32, &dev).unwrap()).is_err());
    }

    #[test]
    fn plane_scales_and_dots_match_broadcast_ops_to_second_order() {
        let mut rng = SplitMix64::new(8);
        let dev = Device::Cpu;
        for dims in [[2usize, 3, 4, 5], [4, 32, 48, 48]] {
            let x = Var::from_tensor(&rng.normal_tensor(&dims, &dev).unwrap()).unwrap();
            let s = Var::from_tensor(&rng.normal_tensor(&dims[..2], &dev).unwrap()).unwrap();
            let got = plane_scale(x.as_tensor(), s.as_tensor()).unwrap();
            let want = x
                .as_tensor()
                .broadcast_mul(&s.as_tensor().reshape((dims[0], dims[1], 1, 1)).unwrap())
                .unwrap();
            assert!(max_abs_diff(&got, &want).unwrap() < 1e-5);
            let r = rng.normal_tensor(&dims, &dev).unwrap();
            // First order, and second order: a penalty on the gradient with respect to x.
            let grads = |y: &Tensor| {
                let g1 = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let gx = g1.get(x.as_tensor()).unwrap().clone();
                let gs = g1.get(s.as_tensor()).unwrap().clone();
                let g2 = gx.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                (gx, gs, g2.get(s.as_tensor()).unwrap().clone())
            };
            let (a, b) = (grads(&got), grads(&want));
            for (p, q, what) in [(&a.0, &b.0, "x"), (&a.1, &b.1, "s"), (&a.2, &b.2, "s, second order")] {
                let tol = 1e-4 * q.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
                assert!(max_abs_diff(p, q).unwrap() < tol, "{dims:?}: {what}");
            }
        }
        let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
        assert!(plane_scale(&x, &Tensor::zeros((3, 2), DType::F32, &dev).unwrap()).is_err());
        assert!(plane_dot(&x, &Tensor::zeros((2, 3, 4, 5), DType::F32, &dev).unwrap()).is_err());
    }
}
