//! The fused upsample-and-accumulate kernels of the CPU engine: separable 2-tap
//! interpolation of projected rows as vectorised AXPYs, with AVX-512 / AVX2+FMA
//! variants chosen at run time and a portable body they share.

use std::ops::Range;

use super::rows::Group;

/// Outputs per chunk of the fused pass: one pixel's chunk stays in L1 across groups.
pub const KC: usize = 256;

/// The fused upsample-sum-bias-activation pass for output rows `y_start..` (one
/// `[t, k]` row per `t * k` of `out`), on the calling thread, with AVX2+FMA where the
/// CPU has it.
pub fn fuse_rows(groups: &[Group], bias: &[f32], relu: bool, t: usize, k: usize, y_start: usize, out: &mut [f32]) {
    fuse_cols(groups, bias, relu, t, k, 0..k, y_start, out)
}

/// What a fused pass writes: output columns `cols` of each pixel, pixel p's column j at
/// `out[p * cols.len() + j - cols.start]`.
#[allow(clippy::too_many_arguments)]
pub fn fuse_cols(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use labelgan_kernels::{Simd, simd};
        if simd() == Simd::Avx512 {
            // SAFETY: the CPU supports the enabled features (`simd` detected them).
            unsafe { fuse_rows_avx512(groups, bias, relu, t, k, cols, y_start, out) };
            return;
        }
        if simd() == Simd::Avx2Fma {
            // SAFETY: the CPU supports the enabled features (`simd` detected them).
            unsafe { fuse_rows_avx2(groups, bias, relu, t, k, cols, y_start, out) };
            return;
        }
    }
    // aarch64's baseline has fused multiply-add; elsewhere plain mul + add.
    fuse_rows_body::<{ cfg!(target_arch = "aarch64") }>(groups, bias, relu, t, k, cols, y_start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fuse_rows_avx2(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    fuse_rows_body::<true>(groups, bias, relu, t, k, cols, y_start, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fuse_rows_avx512(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    fuse_rows_body::<true>(groups, bias, relu, t, k, cols, y_start, out)
}

/// `a * b + c`, fused when `F` (only where that is a single instruction).
#[inline(always)]
fn fmadd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Per output row and chunk of KC outputs: vertical interpolation of every group into
/// a row buffer (`[r, KC]`, L2-resident), then per pixel the sum of all groups'
/// horizontal interpolations, the bias and the activation, 16 lanes at a time held in
/// registers across all groups.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fuse_rows_body<const F: bool>(
    groups: &[Group],
    bias: &[f32],
    relu: bool,
    t: usize,
    k: usize,
    cols: Range<usize>,
    y_start: usize,
    out: &mut [f32],
) {
    let width = cols.len();
    const L: usize = 16;
    let mut rowbufs: Vec<Vec<f32>> = groups.iter().map(|g| vec![0f32; g.r() * KC]).collect();
    for (dy, out_row) in out.chunks_mut(t * width).enumerate() {
        let y = y_start + dy;
        for k0 in cols.clone().step_by(KC) {
            let kc = KC.min(cols.end - k0);
            for (g, rowbuf) in groups.iter().zip(rowbufs.iter_mut()) {
                let rowlen = g.r() * k;
                let (i0, i1, w0, w1) = (g.interp.i0[y], g.interp.i1[y], g.interp.w0[y], g.interp.w1[y]);
                let r0 = &g.rows[(i0 - g.lo) * rowlen..(i0 - g.lo + 1) * rowlen];
                let r1 = &g.rows[(i1 - g.lo) * rowlen..(i1 - g.lo + 1) * rowlen];
                for j in 0..g.r() {
                    let d = &mut rowbuf[j * kc..(j + 1) * kc];
                    let a0 = &r0[j * k + k0..j * k + k0 + kc];
                    let a1 = &r1[j * k + k0..j * k + k0 + kc];
                    d.iter_mut()
                        .zip(a0.iter().zip(a1))
                        .for_each(|(d, (&a, &b))| *d = fmadd::<F>(w0, a, w1 * b));
                }
            }
            let bias = &bias[k0..k0 + kc];
            let body = kc - kc % L;
            let mut srcs = Vec::with_capacity(groups.len());
            for x in 0..t {
                srcs.clear();
                srcs.extend(rowbufs.iter().zip(groups).map(|(rowbuf, g)| {
                    let c = &g.interp;
                    let (j0, j1) = (c.i0[x], c.i1[x]);
                    (
                        &rowbuf[j0 * kc..(j0 + 1) * kc],
                        &rowbuf[j1 * kc..(j1 + 1) * kc],
                        c.w0[x],
                        c.w1[x],
                    )
                }));
                let at = x * width + k0 - cols.start;
                let dst = &mut out_row[at..at + kc];
                // Four 16-lane accumulators at a time: independent FMA chains.
                let wide = kc - kc % (8 * L);
                for c in (0..wide).step_by(8 * L) {
                    lane_block::<F, { 8 * L }>(dst, &srcs, bias, relu, c);
                }
                for c in (wide..body).step_by(L) {
                    lane_block::<F, L>(dst, &srcs, bias, relu, c);
                }
                for c in body..kc {
                    let mut v = dst[c];
                    for &(s0, s1, v0, v1) in &srcs {
                        v = fmadd::<F>(v0, s0[c], fmadd::<F>(v1, s1[c], v));
                    }
                    v += bias[c];
                    dst[c] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// `dst[c..c+W]` plus every group's two weighted sources, bias and activation, with
/// the W lanes held in registers across groups.
#[inline(always)]
fn lane_block<const F: bool, const W: usize>(
    dst: &mut [f32],
    srcs: &[(&[f32], &[f32], f32, f32)],
    bias: &[f32],
    relu: bool,
    c: usize,
) {
    let d: &mut [f32; W] = (&mut dst[c..c + W]).try_into().expect("W lanes");
    let mut acc = *d;
    for &(s0, s1, v0, v1) in srcs {
        let s0: &[f32; W] = s0[c..c + W].try_into().expect("W lanes");
        let s1: &[f32; W] = s1[c..c + W].try_into().expect("W lanes");
        for l in 0..W {
            acc[l] = fmadd::<F>(v0, s0[l], fmadd::<F>(v1, s1[l], acc[l]));
        }
    }
    let b: &[f32; W] = bias[c..c + W].try_into().expect("W lanes");
    for l in 0..W {
        acc[l] += b[l];
        if relu {
            acc[l] = acc[l].max(0.0);
        }
    }
    *d = acc;
}
