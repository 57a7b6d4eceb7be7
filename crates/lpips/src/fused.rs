//! One tap's LPIPS term as one op on the CPU: `d = sum_c w_c (a_c / s_a - b_c / s_b)^2`
//! per pixel, with `s = sqrt(sum_c f_c^2 + 1e-20) + 1e-10`, and its gradients with
//! respect to both feature maps. As candle ops this is about fifteen passes over each
//! tap forward and more backward, each with a fresh allocation; here it is two passes
//! each way.
//!
//! With `u = a / s_a`, `n_a = sqrt(sum a^2 + 1e-20)` and `q_c = 2 w_c g (u_c - v_c)`:
//! `dd/da_j = q_j / s_a - a_j / (n_a s_a^2) * sum_c q_c a_c` (and the same for `b`, with
//! the sign of `q` flipped).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use labelgan_core::Result;
use labelgan_kernels::element::{Element, cpu_slice, with_cpu_slice};

/// The map `[N, 1, H, W]` of one tap, or `None` when the inputs are not for this path
/// (not on the CPU, not f32/f64, mismatched, or weights that want a gradient).
pub(crate) fn tap_distance(a: &Tensor, b: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let Ok((n, c, h, wd)) = a.dims4() else {
        return Ok(None);
    };
    let op = TapDistance {
        n,
        segments: vec![(c, h * wd)],
        out_shape: Shape::from((n, 1, h, wd)),
    };
    op.apply(a, b, w)
}

/// The maps of several taps at once, from `a` and `b` that hold the taps flattened and
/// concatenated tap by tap (`[N, C_k, H_k, W_k]` each, as the fused trunk outputs
/// them), with `w` the taps' channel weights concatenated. Returns the maps flattened
/// and concatenated the same way (`[N, 1, H_k, W_k]` each). One op instead of a view
/// per tap: candle's backward of a view allocates and adds a gradient the size of the
/// whole concatenation, once per tap.
pub(crate) fn taps_distance(
    a: &Tensor,
    b: &Tensor,
    w: &Tensor,
    n: usize,
    shapes: &[(usize, usize, usize)],
) -> Result<Option<Tensor>> {
    let segments: Vec<(usize, usize)> = shapes.iter().map(|&(c, h, w)| (c, h * w)).collect();
    let len: usize = segments.iter().map(|&(c, p)| n * c * p).sum();
    // `apply` checks `b` and `w` against `a`.
    if a.dims() != [len] {
        return Ok(None);
    }
    let out_len: usize = segments.iter().map(|&(_, p)| n * p).sum();
    let op = TapDistance {
        n,
        segments,
        out_shape: Shape::from(out_len),
    };
    op.apply(a, b, w)
}

/// `segments` are `(channels, pixels)` of each tap, laid out one after another, each
/// `[n, channels, pixels]`; the weights are concatenated in the same order.
struct TapDistance {
    n: usize,
    segments: Vec<(usize, usize)>,
    out_shape: Shape,
}

impl TapDistance {
    fn apply(self, a: &Tensor, b: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
        let ok = labelgan_kernels::native_on(a.device())
            && matches!(a.dtype(), DType::F32 | DType::F64)
            && a.dtype() == b.dtype()
            && a.dtype() == w.dtype()
            && a.dims() == b.dims()
            && w.rank() == 1
            && w.dim(0)? == self.segments.iter().map(|&(c, _)| c).sum::<usize>()
            && !w.track_op();
        if !ok {
            return Ok(None);
        }
        let (a, b, w) = (a.contiguous()?, b.contiguous()?, w.contiguous()?);
        Ok(Some(if a.track_op() || b.track_op() {
            a.apply_op3(&b, &w, self)?
        } else {
            a.apply_op3_no_bwd(&b, &w, &self)?
        }))
    }

    /// `(feature offset, weight offset, output offset, channels, pixels)` per tap.
    fn layout(&self) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> + '_ {
        let (mut f, mut wo, mut o) = (0, 0, 0);
        self.segments.iter().map(move |&(c, p)| {
            let r = (f, wo, o, c, p);
            f += self.n * c * p;
            wo += c;
            o += self.n * p;
            r
        })
    }

    fn forward<T: Element>(&self, a: &[T], b: &[T], w: &[T]) -> Vec<T> {
        let n = self.n;
        let mut out = Vec::with_capacity(self.out_shape.elem_count());
        for (f, wo, _, c, p) in self.layout() {
            let r = f..f + n * c * p;
            out.extend(forward(&a[r.clone()], &b[r], &w[wo..wo + c], (n, c, p)));
        }
        out
    }

    fn backward<T: Element>(&self, (a, b, w, g): (&[T], &[T], &[T], &[T]), want: (bool, bool)) -> (Vec<T>, Vec<T>) {
        let n = self.n;
        let mut ga = Vec::with_capacity(if want.0 { a.len() } else { 0 });
        let mut gb = Vec::with_capacity(if want.1 { b.len() } else { 0 });
        for (f, wo, o, c, p) in self.layout() {
            let r = f..f + n * c * p;
            let (sa, sb) = backward(
                (&a[r.clone()], &b[r], &w[wo..wo + c], &g[o..o + n * p]),
                (n, c, p),
                want,
            );
            ga.extend(sa);
            gb.extend(sb);
        }
        (ga, gb)
    }
}

/// Per pixel of each image: `n = sqrt(sum_c f^2 + 1e-20)` over `f [C, P]`.
fn norms<T: Element>(f: &[T], c: usize, p: usize) -> Vec<T> {
    let mut acc = vec![T::ZERO; p];
    for ch in 0..c {
        for (s, &v) in acc.iter_mut().zip(&f[ch * p..(ch + 1) * p]) {
            *s += v * v;
        }
    }
    for s in &mut acc {
        *s = (*s + T::from_f64(1e-20)).sqrt();
    }
    acc
}

fn forward<T: Element>(a: &[T], b: &[T], w: &[T], (n, c, p): (usize, usize, usize)) -> Vec<T> {
    let eps = T::from_f64(1e-10);
    let mut out = vec![T::ZERO; n * p];
    for img in 0..n {
        let (a, b) = (&a[img * c * p..(img + 1) * c * p], &b[img * c * p..(img + 1) * c * p]);
        let (na, nb) = (norms(a, c, p), norms(b, c, p));
        let ia: Vec<T> = na.iter().map(|&v| T::ONE / (v + eps)).collect();
        let ib: Vec<T> = nb.iter().map(|&v| T::ONE / (v + eps)).collect();
        let d = &mut out[img * p..(img + 1) * p];
        for ch in 0..c {
            let (ac, bc, wc) = (&a[ch * p..(ch + 1) * p], &b[ch * p..(ch + 1) * p], w[ch]);
            for i in 0..p {
                let diff = ac[i] * ia[i] - bc[i] * ib[i];
                d[i] += wc * diff * diff;
            }
        }
    }
    out
}

/// Gradients with respect to `a` and `b` of `sum g * d` (empty when not `want`ed).
fn backward<T: Element>(
    (a, b, w, g): (&[T], &[T], &[T], &[T]),
    (n, c, p): (usize, usize, usize),
    want: (bool, bool),
) -> (Vec<T>, Vec<T>) {
    let eps = T::from_f64(1e-10);
    let two = T::from_f64(2.0);
    let mut ga = vec![T::ZERO; if want.0 { a.len() } else { 0 }];
    let mut gb = vec![T::ZERO; if want.1 { b.len() } else { 0 }];
    for img in 0..n {
        let r = img * c * p..(img + 1) * c * p;
        let (a, b, g) = (&a[r.clone()], &b[r], &g[img * p..(img + 1) * p]);
        let (na, nb) = (norms(a, c, p), norms(b, c, p));
        let sa: Vec<T> = na.iter().map(|&v| v + eps).collect();
        let sb: Vec<T> = nb.iter().map(|&v| v + eps).collect();
        // t = sum_c q_c f_c with q_c = 2 w_c g (u_c - v_c).
        let (mut ta, mut tb) = (vec![T::ZERO; p], vec![T::ZERO; p]);
        for ch in 0..c {
            let (ac, bc, wc) = (&a[ch * p..(ch + 1) * p], &b[ch * p..(ch + 1) * p], w[ch]);
            for i in 0..p {
                let q = two * wc * g[i] * (ac[i] / sa[i] - bc[i] / sb[i]);
                ta[i] += q * ac[i];
                tb[i] += q * bc[i];
            }
        }
        let ka: Vec<T> = (0..p).map(|i| ta[i] / (na[i] * sa[i] * sa[i])).collect();
        let kb: Vec<T> = (0..p).map(|i| tb[i] / (nb[i] * sb[i] * sb[i])).collect();
        for ch in 0..c {
            let (ac, bc, wc) = (&a[ch * p..(ch + 1) * p], &b[ch * p..(ch + 1) * p], w[ch]);
            let plane = img * c * p + ch * p..img * c * p + (ch + 1) * p;
            let q = |i: usize| two * wc * g[i] * (ac[i] / sa[i] - bc[i] / sb[i]);
            if want.0 {
                for (i, o) in ga[plane.clone()].iter_mut().enumerate() {
                    *o = q(i) / sa[i] - ac[i] * ka[i];
                }
            }
            if want.1 {
                for (i, o) in gb[plane].iter_mut().enumerate() {
                    *o = bc[i] * kb[i] - q(i) / sb[i];
                }
            }
        }
    }
    (ga, gb)
}

impl CustomOp3 for TapDistance {
    fn name(&self) -> &'static str {
        "labelgan-lpips-tap-distance"
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
        let out = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(self.forward(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?))
            }
            _ => CpuStorage::F64(self.forward(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?)),
        };
        Ok((out, self.out_shape.clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let want = (a.track_op(), b.track_op());
        macro_rules! run {
            ($t:ty) => {{
                let (ga, gb) = with_cpu_slice::<$t, _>(a, |av| {
                    with_cpu_slice(b, |bv| {
                        with_cpu_slice(w, |wv| {
                            with_cpu_slice(&g, |gv| self.backward((av, bv, wv, gv), want))
                        })
                    })
                })????;
                let wrap = |v: Vec<$t>, t: &Tensor| -> candle_core::Result<Option<Tensor>> {
                    Ok(if v.is_empty() {
                        None
                    } else {
                        Some(Tensor::from_vec(v, t.shape(), t.device())?)
                    })
                };
                (wrap(ga, a)?, wrap(gb, b)?)
            }};
        }
        let (ga, gb) = match a.dtype() {
            DType::F32 => run!(f32),
            _ => run!(f64),
        };
        Ok((ga, gb, None))
    }
}
