//! The 3x3 stride-1 convolution as Winograd's minimal filtering F(2x2, 3x3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of
//! output pixels costs 16 multiplies per input and output channel pair instead of 36.
//!
//! With `d` a 4x4 input tile, `g` a 3x3 kernel and `Y` the 2x2 output,
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the elementwise
//! product becomes 16 GEMMs: for each of the 16 positions ξ of a transformed tile,
//! `M_ξ [O, T] = U_ξ [O, C] · V_ξ [C, T]` over the `T` tiles of a block. Blocks of tile
//! rows run in parallel, each transforming its input, multiplying and transforming its
//! output while the block's 16 matrices are in cache, then applying [`BiasAct`] as the
//! rows are written.

use rayon::prelude::*;

use crate::bias_act::BiasAct;
use crate::element::Element;

/// Bytes of transformed input and output one block aims at (both together).
const BLOCK_BYTES: usize = 1 << 20;

/// The fewest tiles a block spans: narrower GEMMs leave the microkernels idle.
const MIN_BLOCK_TILES: usize = 64;

/// Whether [`conv3x3`] serves a convolution: 3x3 kernels, enough channels on both sides
/// for its 16 GEMMs to pay (the first layer of an RGB network has 3), and a map of at
/// least one tile row's worth of blocks.
pub fn suits(k: usize, (c, o): (usize, usize), (ho, wo): (usize, usize)) -> bool {
    k == 3 && c >= 16 && o >= 16 && ho >= 4 && wo >= 4
}

/// The kernel `w [O, C, 3, 3]` transformed: `U [16, O, C]`, `U_ξ = (G g Gᵀ)_ξ`. A
/// network with fixed weights transforms them once and calls [`conv3x3_transformed`].
pub fn transform_kernel<T: Element>(w: &[T], o: usize, c: usize) -> Vec<T> {
    assert_eq!(w.len(), o * c * 9, "winograd: the kernel is not [O, C, 3, 3]");
    let half = T::from_f64(0.5);
    let len = 16 * o * c;
    let mut u: Vec<T> = Vec::with_capacity(len);
    let spare = &mut u.spare_capacity_mut()[..len];
    let g3 = |a: T, b: T, d: T| [a, (a + b + d) * half, (a - b + d) * half, d];
    for oc in 0..o * c {
        let g = &w[oc * 9..oc * 9 + 9];
        // Rows: G g (4x3), then columns: (G g) Gᵀ (4x4).
        let cols: [[T; 4]; 3] = std::array::from_fn(|j| g3(g[j], g[3 + j], g[6 + j]));
        for i in 0..4 {
            let r = g3(cols[0][i], cols[1][i], cols[2][i]);
            for (j, &v) in r.iter().enumerate() {
                spare[(i * 4 + j) * o * c + oc].write(v);
            }
        }
    }
    // SAFETY: the loops wrote every (ξ, oc) of the 16 * o * c elements.
    unsafe { u.set_len(len) };
    u
}

/// The stride-1 3x3 convolution of `x [N, C, H, W]` with `w [O, C, 3, 3]`, zero padding
/// `p < 3`, input channels scaled by `in_scale [N * C]` where given and `out` applied as
/// rows are written: what [`crate::implicit_gemm::conv_cpu_fused`] computes, in 16/36
/// of its multiplies. Returns `[N, O, Ho, Wo]`.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn conv3x3<T: Element>(
    x: &[T],
    w: &[T],
    dims: (usize, usize, usize, usize),
    o: usize,
    p: usize,
    in_scale: Option<&[T]>,
    out: &BiasAct<T>,
) -> Vec<T> {
    let u = transform_kernel(w, o, dims.1);
    conv3x3_transformed(x, (&u, Orientation::AsIs), dims, o, p, in_scale, out)
}

/// How [`conv3x3_transformed`] reads a transformed kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// `u` is the transform of this convolution's kernel `[O, C, 3, 3]`.
    AsIs,
    /// `u` is the transform of a kernel `[C, O, 3, 3]` whose flipped transpose this
    /// convolution applies: a convolution's input gradient, from the forward's transform.
    /// Flipping a kernel swaps positions 0 and 3 of its transform along each axis, so
    /// nothing new is stored.
    FlippedTransposed,
}

/// [`conv3x3`] with the kernel already transformed by [`transform_kernel`] (`u [16, O,
/// C]`, or `[16, C, O]` read as `orientation` says).
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_transformed<T: Element>(
    x: &[T],
    (u, orientation): (&[T], Orientation),
    (n, c, h, wd): (usize, usize, usize, usize),
    o: usize,
    p: usize,
    in_scale: Option<&[T]>,
    out: &BiasAct<T>,
) -> Vec<T> {
    assert!(p < 3 && x.len() == n * c * h * wd && u.len() == 16 * o * c);
    assert!(
        h + 2 * p >= 3 && wd + 2 * p >= 3,
        "winograd: a {h}x{wd} map padded by {p} is smaller than the kernel"
    );
    assert!(in_scale.is_none_or(|s| s.len() == n * c));
    let (ho, wo) = (h + 2 * p - 2, wd + 2 * p - 2);
    out.check(n, o, ho * wo);
    let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
    // Tile rows per block: the block's V [16, C, T] and M [16, O, T] within BLOCK_BYTES,
    // at least MIN_BLOCK_TILES tiles, and enough blocks for every thread.
    let per_tile = 16 * (c + o) * size_of::<T>();
    let tiles = (BLOCK_BYTES / per_tile).max(MIN_BLOCK_TILES);
    let threads = crate::threads::cpu_threads();
    let rows_per_block = tiles.div_ceil(tw).min(th.div_ceil(threads.max(1)).max(1)).max(1);
    let len = n * o * ho * wo;
    let mut y: Vec<T> = Vec::with_capacity(len);
    let out_rows = crate::shared_rows::SharedRows(y.as_mut_ptr());
    let blocks: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..th).step_by(rows_per_block).map(move |r| (i, r)))
        .collect();
    let block = |scratch: &mut Scratch<T>, &(img, r0): &(usize, usize)| {
        let r1 = (r0 + rows_per_block).min(th);
        let t = (r1 - r0) * tw;
        scratch.v.resize(16 * c * t, T::ZERO);
        scratch.m.resize(16 * o * t, T::ZERO);
        for r in scratch.rows.iter_mut() {
            r.resize(wo.max(tw), T::ZERO);
        }
        transform_input(x, &mut scratch.v, (c, h, wd), p, (img, r0, r1, tw), in_scale);
        for xi in 0..16 {
            // U_ξ [o, c]: row-major, or the transpose of U_σ(ξ) [c, o] with σ swapping
            // positions 0 and 3 along each axis.
            let (src, lhs_cs, lhs_rs) = match orientation {
                Orientation::AsIs => (xi, 1, c as isize),
                Orientation::FlippedTransposed => {
                    let s = |a: usize| [3, 1, 2, 0][a];
                    (s(xi / 4) * 4 + s(xi % 4), o as isize, 1)
                }
            };
            // SAFETY: M_ξ is [o, t] and V_ξ is [c, t], row-major inside their buffers;
            // U_src is o * c elements read with the strides above.
            unsafe {
                gemm::gemm(
                    o,
                    t,
                    c,
                    scratch.m.as_mut_ptr().add(xi * o * t),
                    1,
                    t as isize,
                    false,
                    u.as_ptr().add(src * o * c),
                    lhs_cs,
                    lhs_rs,
                    scratch.v.as_ptr().add(xi * c * t),
                    1,
                    t as isize,
                    T::ZERO,
                    T::ONE,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        let m = &scratch.m;
        let [row0, row1, y00, y01, y10, y11, done] = &mut scratch.rows;
        let done = &mut done[..wo];
        for oo in 0..o {
            for ty in r0..r1 {
                let base = oo * t + (ty - r0) * tw;
                let mx: [&[T]; 16] = std::array::from_fn(|xi| &m[xi * o * t + base..][..tw]);
                transform_output(&mx, [&mut y00[..tw], &mut y01[..tw], &mut y10[..tw], &mut y11[..tw]]);
                interleave(&y00[..tw], &y01[..tw], &mut row0[..wo]);
                interleave(&y10[..tw], &y11[..tw], &mut row1[..wo]);
                for (dy, src) in [&row0[..wo], &row1[..wo]].into_iter().enumerate() {
                    let yy = 2 * ty + dy;
                    if yy < ho {
                        out.row((img, oo, o), yy * wo, src, done);
                        let d = ((img * o + oo) * ho + yy) * wo;
                        // SAFETY: row yy of channel oo of image img lies inside y's
                        // capacity, and only this block writes it (blocks own disjoint
                        // tile rows).
                        unsafe { out_rows.write(d, done) };
                    }
                }
            }
        }
    };
    if threads > 1 && blocks.len() > 1 {
        blocks.par_iter().for_each_init(Scratch::default, block);
    } else {
        let mut scratch = Scratch::default();
        for b in &blocks {
            block(&mut scratch, b);
        }
    }
    // SAFETY: the blocks cover every tile row of every image, and each wrote all `o`
    // channels' output rows of its tile rows: all `len` elements.
    unsafe { y.set_len(len) };
    y
}

/// A block's transformed input `V [16, C, T]`, products `M [16, O, T]`, two output
/// rows, their even and odd halves and a finished row, reused across the blocks a
/// thread runs.
struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    rows: [Vec<T>; 7],
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Self {
            v: vec![],
            m: vec![],
            rows: Default::default(),
        }
    }
}

/// `Aᵀ M A` for a row of tiles: `m[ξ][k]` is position ξ of tile k; writes output pixel
/// (r, s) of tile k to `y[2 r + s][k]`. Each line is one pass over contiguous slices, so
/// it runs in SIMD lanes across tiles.
fn transform_output<T: Element>(m: &[&[T]; 16], y: [&mut [T]; 4]) {
    let tw = y[0].len();
    let [y00, y01, y10, y11] = y;
    for k in 0..tw {
        // Aᵀ along rows: a_j = row 0 of Aᵀ M at column j, b_j = row 1.
        let a: [T; 4] = std::array::from_fn(|j| m[j][k] + m[4 + j][k] + m[8 + j][k]);
        let b: [T; 4] = std::array::from_fn(|j| m[4 + j][k] - m[8 + j][k] - m[12 + j][k]);
        y00[k] = a[0] + a[1] + a[2];
        y01[k] = a[1] - a[2] - a[3];
        y10[k] = b[0] + b[1] + b[2];
        y11[k] = b[1] - b[2] - b[3];
    }
}

/// `out[2k] = even[k]`, `out[2k + 1] = odd[k]`, as far as `out` reaches.
fn interleave<T: Copy>(even: &[T], odd: &[T], out: &mut [T]) {
    for (pair, (&e, &o)) in out.chunks_mut(2).zip(even.iter().zip(odd)) {
        pair[0] = e;
        if let Some(x) = pair.get_mut(1) {
            *x = o;
        }
    }
}

/// Writes `V_ξ[ch, t] = (Bᵀ d B)_ξ` for the tiles of tile rows `r0..r1` of image `img`,
/// `d` the 4x4 input patch (zero outside the image) at `(2 ty - p, 2 tx - p)`, times the
/// channel's `in_scale`.
///
/// A tile row's patch is held as its four rows split into even and odd columns: tile
/// `k`'s columns are then `even[k], odd[k], even[k + 1], odd[k + 1]`, and each step below
/// is one pass over contiguous slices across the row's tiles.
fn transform_input<T: Element>(
    x: &[T],
    v: &mut [T],
    (c, h, wd): (usize, usize, usize),
    p: usize,
    (img, r0, r1, tw): (usize, usize, usize, usize),
    in_scale: Option<&[T]>,
) {
    let t = (r1 - r0) * tw;
    let half = tw + 1;
    // [row][even, odd][half]: the patch, then Bᵀ applied down its columns.
    let mut patch = vec![T::ZERO; 4 * 2 * half];
    let mut rows = vec![T::ZERO; 4 * 2 * half];
    for ch in 0..c {
        let plane = &x[(img * c + ch) * h * wd..][..h * wd];
        let s = in_scale.map_or(T::ONE, |s| s[img * c + ch]);
        for ty in r0..r1 {
            for (i, prow) in patch.chunks_exact_mut(2 * half).enumerate() {
                prow.fill(T::ZERO);
                let yy = (2 * ty + i) as isize - p as isize;
                if yy >= 0 && (yy as usize) < h {
                    // Input column xx lands at patch column xx + p.
                    let (even, odd) = prow.split_at_mut(half);
                    let src = &plane[yy as usize * wd..][..wd];
                    // The input columns landing on even patch columns, then on odd ones.
                    let (first_even, first_odd) = (p % 2, 1 - p % 2);
                    let to_even = src.iter().skip(first_even).step_by(2);
                    for (d, &a) in even[(first_even + p) / 2..].iter_mut().zip(to_even) {
                        *d = a * s;
                    }
                    let to_odd = src.iter().skip(first_odd).step_by(2);
                    for (d, &a) in odd[(first_odd + p) / 2..].iter_mut().zip(to_odd) {
                        *d = a * s;
                    }
                }
            }
            // Bᵀ down the columns: rows 0-3 of Bᵀ d.
            {
                let (d0, rest) = patch.split_at(2 * half);
                let (d1, rest) = rest.split_at(2 * half);
                let (d2, d3) = rest.split_at(2 * half);
                let (b0, rest) = rows.split_at_mut(2 * half);
                let (b1, rest) = rest.split_at_mut(2 * half);
                let (b2, b3) = rest.split_at_mut(2 * half);
                for j in 0..2 * half {
                    b0[j] = d0[j] - d2[j];
                    b1[j] = d1[j] + d2[j];
                    b2[j] = d2[j] - d1[j];
                    b3[j] = d1[j] - d3[j];
                }
            }
            // Bᵀ along each row's tiles: four planes per row.
            let tbase = (ty - r0) * tw;
            for (i, row) in rows.chunks_exact(2 * half).enumerate() {
                let (e, od) = row.split_at(half);
                let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &od[..tw], &od[1..]);
                let plane = |j: usize| ((i * 4 + j) * c + ch) * t + tbase;
                let (p0, p1, p2, p3) = (plane(0), plane(1), plane(2), plane(3));
                for k in 0..tw {
                    v[p0 + k] = e0[k] - e1[k];
                    v[p1 + k] = o0[k] + e1[k];
                    v[p2 + k] = e1[k] - o0[k];
                    v[p3 + k] = o0[k] - o1[k];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::implicit_gemm::conv_cpu_grouped;

    fn lcg(seed: u64, len: usize) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// Against the direct implicit-GEMM convolution in f64, for every padding, odd and
    /// even maps, one block and many, with input scales, bias and activation.
    #[test]
    fn equals_the_direct_convolution() {
        for (case, &(n, c, o, h, wd, p)) in [
            (1, 16, 16, 8, 8, 1),
            (2, 17, 19, 9, 7, 1),
            (1, 16, 24, 11, 13, 0),
            (2, 20, 16, 6, 10, 2),
            (1, 32, 40, 37, 29, 1),
        ]
        .iter()
        .enumerate()
        {
            let x = lcg(case as u64, n * c * h * wd);
            let w = lcg(100 + case as u64, o * c * 9);
            let bias = lcg(200 + case as u64, o);
            let scale = lcg(300 + case as u64, n * c);
            // Direct: the input scaled by hand.
            let xs: Vec<f64> = x.iter().enumerate().map(|(k, &v)| v * scale[k / (h * wd)]).collect();
            let want = conv_cpu_grouped(&xs, &w, (n, c, h, wd), (o, 3), p, Some(&bias), true, 1);
            let act = BiasAct {
                bias: Some(&bias),
                act: Activation::Relu,
                ..BiasAct::default()
            };
            let got = conv3x3(&x, &w, (n, c, h, wd), o, p, Some(&scale), &act);
            assert_eq!(got.len(), want.len(), "case {case}");
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-12, "case {case}: max error {err}");
        }
    }

    /// The forward kernel's transform, read flipped and transposed, convolves as the
    /// transform of the flipped transpose does: the input gradient without a second
    /// transformed kernel.
    #[test]
    fn flipped_transposed_reads_the_forward_transform() {
        let (n, c, o, h, wd) = (2, 16, 20, 9, 8);
        // The forward kernel is [c, o, 3, 3]; this convolution takes c channels to o.
        let wf = lcg(7, c * o * 9);
        let flipped = crate::implicit_gemm::flip_transpose_cpu(&wf, (c, o, 3));
        let x = lcg(8, n * c * h * wd);
        let want = conv3x3(&x, &flipped, (n, c, h, wd), o, 1, None, &BiasAct::default());
        let u = transform_kernel(&wf, c, o);
        let got = conv3x3_transformed(
            &x,
            (&u, Orientation::FlippedTransposed),
            (n, c, h, wd),
            o,
            1,
            None,
            &BiasAct::default(),
        );
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "max error {err}");
    }

    /// f32 keeps the direct convolution's accuracy on a VGG-sized layer.
    #[test]
    fn f32_error_is_small() {
        let (n, c, o, h, wd) = (1, 64, 64, 24, 24);
        let x: Vec<f32> = lcg(1, n * c * h * wd).iter().map(|&v| v as f32).collect();
        let w: Vec<f32> = lcg(2, o * c * 9).iter().map(|&v| v as f32 * 0.1).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let want = conv_cpu_grouped(&x64, &w64, (n, c, h, wd), (o, 3), 1, None, false, 1);
        let got = conv3x3(&x, &w, (n, c, h, wd), o, 1, None, &BiasAct::default());
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let err = got
            .iter()
            .zip(&want)
            .map(|(&a, b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 1e-5 * scale,
            "max error {err} against a largest output of {scale}"
        );
    }
}
