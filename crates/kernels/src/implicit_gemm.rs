//! The stride-1 convolution and its weight gradient on raw CPU buffers, as implicit
//! GEMMs over shifted views of zero-padded images (no im2col), groups of images side by
//! side in each GEMM's columns. [`crate::conv`] wraps them as differentiable ops.

use rayon::prelude::*;

use crate::bias_act::BiasAct;
use crate::element::Element;
use crate::shared_rows::SharedRows;
use crate::winograd::Orientation;

/// How many images one GEMM of [`conv_cpu`] or [`weight_grad_cpu`] spans: enough that
/// its columns (`plane` per image) reach about `columns`, spread evenly over the `n`
/// images. Small maps need it: one 8x8 image alone gives a GEMM of 80 columns, too
/// narrow for the microkernels; large maps stay one image per GEMM, cache-sized.
pub fn images_per_gemm(plane: usize, n: usize, columns: usize) -> usize {
    let n = n.max(1);
    let want = (columns / plane.max(1)).clamp(1, n);
    n.div_ceil(n.div_ceil(want))
}

/// The columns [`conv_cpu`] aims each GEMM at (`[O, C] x [C, columns]`): measured
/// best from 8x8 to 32x32 maps (`examples/conv_speed.rs`).
pub const FORWARD_COLUMNS: usize = 2048;

/// The columns [`weight_grad_cpu`] aims each GEMM at (`[O, cols] x [cols, C]`): the
/// weight gradient gains less from grouping and loses beyond a few hundred.
pub const WEIGHT_GRAD_COLUMNS: usize = 400;

/// A group of `nb` zero-padded images laid side by side per channel: channel `ch`'s row
/// starts at `ch * row` and holds image `i`'s padded plane at `i * plane`, then `k`
/// slack elements so that the last shifted view stays in bounds. Seen from tap
/// (dy, dx), the `[C, cols]` matrix starting at `dy * wp + dx` holds, in column
/// `i * plane + y * wp + x`, the input under output pixel (y, x) of image `i`; the
/// columns with `x >= wo` or past an image's `ho` rows fall between images and are
/// cropped (forward) or meet zeros (weight gradient).
struct Fold {
    hp: usize,
    wp: usize,
    ho: usize,
    wo: usize,
    plane: usize,
    row: usize,
}

impl Fold {
    fn new((h, wd): (usize, usize), k: usize, p: usize, nb: usize) -> Self {
        let (hp, wp) = (h + 2 * p, wd + 2 * p);
        let plane = hp * wp;
        Self {
            hp,
            wp,
            ho: hp + 1 - k,
            wo: wp + 1 - k,
            plane,
            row: nb * plane + k,
        }
    }

    /// The GEMM's column count for a group of `nb` images.
    fn cols(&self, nb: usize) -> usize {
        (nb - 1) * self.plane + self.ho * self.wp
    }

    /// Copies images `first..first + nb` of `x [N, C, h, wd]` into the interior of the
    /// padded buffer `xp` (borders stay as they are: zero), each channel times its
    /// `scale [N * C]` when one is given.
    #[allow(clippy::too_many_arguments)]
    fn fill<T: Element>(
        &self,
        xp: &mut [T],
        x: &[T],
        (c, h, wd): (usize, usize, usize),
        p: usize,
        first: usize,
        nb: usize,
        scale: Option<&[T]>,
    ) {
        debug_assert_eq!(self.hp, h + 2 * p);
        for i in 0..nb {
            for ch in 0..c {
                for y in 0..h {
                    let s = (((first + i) * c + ch) * h + y) * wd;
                    let d = ch * self.row + i * self.plane + (y + p) * self.wp + p;
                    let (dst, src) = (&mut xp[d..d + wd], &x[s..s + wd]);
                    match scale {
                        None => dst.copy_from_slice(src),
                        Some(sc) => {
                            let m = sc[(first + i) * c + ch];
                            for (a, &b) in dst.iter_mut().zip(src) {
                                *a = b * m;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A stride-1 convolution on raw CPU buffers: `x [N, C, H, W]` with `w [O, C, k, k]`,
/// zero padding `p < k`, optionally followed by a per-channel `bias [O]` and a ReLU
/// (applied in the same pass that writes the output), giving `[N, O, Ho, Wo]`.
///
/// It runs as k*k GEMMs over shifted views, without im2col: with a group of images
/// zero-padded and laid side by side per channel (see [`images_per_gemm`]), tap
/// (dy, dx) reads the `[C, cols]` matrix starting at `dy*Wp + dx`, so
/// `Y [O, cols] += W_tap [O, C] · X_tap`; the columns that fall between output pixels
/// are cropped at the end.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn conv_cpu<T: Element>(
    x: &[T],
    w: &[T],
    dims: (usize, usize, usize, usize),
    ok: (usize, usize),
    p: usize,
    bias: Option<&[T]>,
    relu: bool,
) -> Vec<T> {
    conv_cpu_fused(x, w, dims, ok, p, None, &BiasAct::bias_relu(bias, relu))
}

/// [`conv_cpu`] with each input channel scaled by `in_scale [N * C]` as it is copied
/// into the padded buffer, and `out` applied in the output pass: StyleGAN2's modulated
/// convolution (styles in, demodulation, noise, bias and activation out) costs the
/// convolution alone.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn conv_cpu_fused<T: Element>(
    x: &[T],
    w: &[T],
    dims: (usize, usize, usize, usize),
    ok: (usize, usize),
    p: usize,
    in_scale: Option<&[T]>,
    out: &BiasAct<T>,
) -> Vec<T> {
    conv_cpu_kernel(x, Kernel::of(w), dims, ok, p, in_scale, out)
}

/// A convolution's weights `[O, C, k, k]` and, for a fixed 3x3 kernel applied many
/// times, its Winograd transform made once ([`transform_kernel`](crate::winograd::transform_kernel)),
/// read in the orientation given.
#[derive(Debug, Clone, Copy)]
pub struct Kernel<'a, T> {
    /// `[O, C, k, k]`: the direct path's kernel.
    pub weights: &'a [T],
    /// `weights` in Winograd's domain (`[16, O, C]`, or `[16, C, O]` for
    /// [`Orientation::FlippedTransposed`]).
    pub transformed: Option<(&'a [T], Orientation)>,
}

impl<'a, T> Kernel<'a, T> {
    /// Weights alone: a Winograd transform, where one is taken, is made per call.
    pub fn of(weights: &'a [T]) -> Self {
        Self {
            weights,
            transformed: None,
        }
    }
}

/// [`conv_cpu_fused`] with `kernel`'s stored Winograd transform, where it has one. The
/// one place that chooses between Winograd's path and the direct one.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn conv_cpu_kernel<T: Element>(
    x: &[T],
    kernel: Kernel<'_, T>,
    dims: (usize, usize, usize, usize),
    ok: (usize, usize),
    p: usize,
    in_scale: Option<&[T]>,
    out: &BiasAct<T>,
) -> Vec<T> {
    let (n, c, h, wd) = dims;
    let (o, k) = ok;
    if p < k
        && crate::winograd::suits(
            k,
            (c, o),
            ((h + 2 * p + 1).saturating_sub(k), (wd + 2 * p + 1).saturating_sub(k)),
        )
    {
        return match kernel.transformed {
            Some(u) => crate::winograd::conv3x3_transformed(x, u, dims, o, p, in_scale, out),
            None => crate::winograd::conv3x3(x, kernel.weights, dims, o, p, in_scale, out),
        };
    }
    let nb = images_per_gemm((h + 2 * p) * (wd + 2 * p), n, FORWARD_COLUMNS);
    conv_cpu_group(x, kernel.weights, dims, ok, p, (in_scale, out), (nb, Blocks::Auto))
}

/// How [`conv_cpu_group`] splits a group's columns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Blocks {
    /// Blocks of rows in parallel when the map is large enough to give every thread
    /// several; otherwise the whole group in one GEMM per tap, split by gemm.
    Auto,
    /// Always blocks of this many padded rows (tests).
    #[cfg(test)]
    Rows(usize),
}

/// [`conv_cpu`] with `group` images per GEMM (at least 1) instead of the chosen number.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn conv_cpu_grouped<T: Element>(
    x: &[T],
    w: &[T],
    (n, c, h, wd): (usize, usize, usize, usize),
    (o, k): (usize, usize),
    p: usize,
    bias: Option<&[T]>,
    relu: bool,
    group: usize,
) -> Vec<T> {
    assert!(bias.is_none_or(|b| b.len() == o));
    conv_cpu_group(
        x,
        w,
        (n, c, h, wd),
        (o, k),
        p,
        (None, &BiasAct::bias_relu(bias, relu)),
        (group, Blocks::Auto),
    )
}

/// The body of [`conv_cpu_fused`] with `group` images per GEMM (at least 1).
fn conv_cpu_group<T: Element>(
    x: &[T],
    w: &[T],
    (n, c, h, wd): (usize, usize, usize, usize),
    (o, k): (usize, usize),
    p: usize,
    (in_scale, act): (Option<&[T]>, &BiasAct<T>),
    (group, blocks): (usize, Blocks),
) -> Vec<T> {
    assert!(p < k && x.len() == n * c * h * wd && w.len() == o * c * k * k);
    assert!(in_scale.is_none_or(|s| s.len() == n * c));
    let nb = group.clamp(1, n.max(1));
    let f = Fold::new((h, wd), k, p, nb);
    let (ho, wo, wp) = (f.ho, f.wo, f.wp);
    act.check(n, o, ho * wo);
    let mut xp = vec![T::ZERO; c * f.row];
    let mut ypw: Vec<T> = Vec::with_capacity(o * f.cols(nb));
    let mut out: Vec<T> = vec![T::ZERO; n * o * ho * wo];
    let threads = crate::threads::cpu_threads();
    for first in (0..n).step_by(nb) {
        let nb = nb.min(n - first);
        f.fill(&mut xp, x, (c, h, wd), p, first, nb, in_scale);
        let cols = f.cols(nb);
        // Whole padded rows per block, enough columns for the microkernels, few enough
        // that the block's [o, cols] accumulator stays in a core's L2 through all taps.
        let rows = cols / wp;
        let (rows_per_block, blocked) = match blocks {
            Blocks::Auto => {
                let r = (BLOCK_FLOATS / o).max(MIN_BLOCK_COLUMNS).div_ceil(wp);
                (r, threads > 1 && rows >= 4 * threads * r)
            }
            #[cfg(test)]
            Blocks::Rows(r) => (r, true),
        };
        if blocked {
            // Blocks of output rows in parallel, each through all k*k taps at once: the
            // accumulator is read and written in cache instead of k*k times in memory.
            let out_rows = SharedRows(out.as_mut_ptr());
            let blocks: Vec<usize> = (0..rows).step_by(rows_per_block).collect();
            blocks.into_par_iter().for_each_init(
                || vec![T::ZERO; o * rows_per_block * wp],
                |acc, r0| {
                    let r1 = (r0 + rows_per_block).min(rows);
                    let ld = rows_per_block * wp;
                    // SAFETY: acc holds o rows of ld >= (r1 - r0) * wp columns; the views
                    // of xp start at column r0 * wp < cols (bounds as in `tap_gemms`).
                    unsafe {
                        tap_gemms(
                            (o, (r1 - r0) * wp, c, k),
                            (acc.as_mut_ptr(), ld),
                            w,
                            (xp.as_ptr().add(r0 * wp), f.row, wp),
                            gemm::Parallelism::None,
                        )
                    };
                    for r in r0..r1 {
                        let (i, y) = (r / f.hp, r % f.hp);
                        if y >= ho {
                            continue; // between two images
                        }
                        for oo in 0..o {
                            let d = (((first + i) * o + oo) * ho + y) * wo;
                            // SAFETY: row y of channel oo of image first + i: inside out,
                            // and written by this block alone (blocks own disjoint rows).
                            let dst = unsafe { out_rows.row(d, wo) };
                            act.row((first + i, oo, o), y * wo, &acc[oo * ld + (r - r0) * wp..][..wo], dst);
                        }
                    }
                },
            );
            continue;
        }
        let par = if threads > 1 && o * cols * c >= 1 << 16 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: ypw has capacity o * f.cols(group) >= o * cols; the views of xp are
        // bounded as `tap_gemms` requires.
        unsafe {
            tap_gemms(
                (o, cols, c, k),
                (ypw.spare_capacity_mut().as_mut_ptr().cast::<T>(), cols),
                w,
                (xp.as_ptr(), f.row, wp),
                par,
            );
            // The first tap's GEMM wrote all `o * cols` elements.
            ypw.set_len(o * cols);
        }
        for i in 0..nb {
            for oo in 0..o {
                for y in 0..ho {
                    let s = oo * cols + i * f.plane + y * wp;
                    let d = (((first + i) * o + oo) * ho + y) * wo;
                    act.row((first + i, oo, o), y * wo, &ypw[s..s + wo], &mut out[d..d + wo]);
                }
            }
        }
        // The next group's first GEMM rewrites it.
        ypw.clear();
    }
    out
}

/// Floats of accumulator a block of the forward aims at (256 KiB: a core's L2 share).
const BLOCK_FLOATS: usize = 64 << 10;

/// The fewest columns a block of the forward spans.
const MIN_BLOCK_COLUMNS: usize = 512;

/// `dst [o, cols] (row stride ld) = Σ_{dy, dx} W_tap [o, c] · X_tap [c, cols]`, where
/// `X_tap` is the view of the padded buffer starting `dy * wp + dx` after `xp` (rows
/// `row` apart): the k*k GEMMs of the implicit convolution, the first overwriting.
///
/// # Safety
/// `dst` must hold `(o - 1) * ld + cols` elements; every `xp[cc * row + dy * wp + dx +
/// j]` with `cc < c`, `dy, dx < k`, `j < cols` must be readable; `w` is `[o, c, k, k]`.
unsafe fn tap_gemms<T: Element>(
    (o, cols, c, k): (usize, usize, usize, usize),
    (dst, ld): (*mut T, usize),
    w: &[T],
    (xp, row, wp): (*const T, usize, usize),
    par: gemm::Parallelism,
) {
    debug_assert_eq!(w.len(), o * c * k * k);
    for dy in 0..k {
        for dx in 0..k {
            // SAFETY: lhs element (oo, cc) is w[oo*c*k*k + cc*k*k + dy*k + dx] < w.len();
            // dst and rhs as the caller guarantees.
            unsafe {
                gemm::gemm(
                    o,
                    cols,
                    c,
                    dst,
                    1,
                    ld as isize,
                    dy + dx > 0,
                    w.as_ptr().add(dy * k + dx),
                    (k * k) as isize,
                    (c * k * k) as isize,
                    xp.add(dy * wp + dx),
                    1,
                    row as isize,
                    T::ONE,
                    T::ONE,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
    }
}

/// The weight gradient of [`conv_cpu`] on raw CPU buffers:
/// `dW[o, c, dy, dx] = Σ_{n, y, x} g[n, o, y, x] · x_pad[n, c, y + dy, x + dx]`, for
/// `x [N, C, H, W]`, `g [N, O, Ho, Wo]`, padding `p < k`; returns `[O, C, k, k]`.
///
/// The same shifted views as the forward, without im2col: with `g` laid out on the
/// forward's columns (`[O, cols]`, zeros in the columns between output pixels), tap
/// (dy, dx) is one GEMM `dW_tap [O, C] += G [O, cols] · X_tap^T`, where `X_tap` is the
/// `[C, cols]` view of the padded group starting at `dy*Wp + dx`; the zero columns
/// cancel the values that wrap around rows and images. The images are split evenly
/// across threads, each grouping its share and summing its own `dW`.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn weight_grad_cpu<T: Element>(
    x: &[T],
    g: &[T],
    dims: (usize, usize, usize, usize),
    ok: (usize, usize),
    p: usize,
) -> Vec<T> {
    let (n, _, h, wd) = dims;
    let share = n.div_ceil(crate::threads::cpu_threads().clamp(1, n.max(1)));
    let nb = images_per_gemm((h + 2 * p) * (wd + 2 * p), share, WEIGHT_GRAD_COLUMNS);
    weight_grad_cpu_grouped(x, g, dims, ok, p, nb)
}

/// [`weight_grad_cpu`] with at most `group` images per GEMM (at least 1).
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn weight_grad_cpu_grouped<T: Element>(
    x: &[T],
    g: &[T],
    (n, c, h, wd): (usize, usize, usize, usize),
    (o, k): (usize, usize),
    p: usize,
    group: usize,
) -> Vec<T> {
    let nb = group.clamp(1, n.max(1));
    let f = Fold::new((h, wd), k, p, nb);
    let (ho, wo, wp) = (f.ho, f.wo, f.wp);
    assert!(p < k && x.len() == n * c * h * wd && g.len() == n * o * ho * wo);
    let size = o * c * k * k;
    let partial = |images: std::ops::Range<usize>| -> Vec<T> {
        let mut dw = vec![T::ZERO; size];
        let mut xp = vec![T::ZERO; c * f.row];
        let gcols = f.cols(nb);
        let mut gp = vec![T::ZERO; o * gcols];
        for first in images.clone().step_by(nb) {
            let nb = nb.min(images.end - first);
            f.fill(&mut xp, x, (c, h, wd), p, first, nb, None);
            let cols = f.cols(nb);
            for i in 0..nb {
                for oo in 0..o {
                    for y in 0..ho {
                        let s = (((first + i) * o + oo) * ho + y) * wo;
                        let d = oo * gcols + i * f.plane + y * wp;
                        gp[d..d + wo].copy_from_slice(&g[s..s + wo]);
                    }
                }
            }
            for dy in 0..k {
                for dx in 0..k {
                    // SAFETY: dst element (oo, cc) is dw[oo*c*k*k + cc*k*k + dy*k + dx]
                    // < size; lhs element (oo, j) is gp[oo*gcols + j] with j < cols <=
                    // gcols; rhs element (j, cc) is xp[dy*wp + dx + j + cc*row], at most
                    // (c-1)*row + nb*plane + k - 2 < c*row = xp.len() (as in the forward).
                    unsafe {
                        gemm::gemm(
                            o,
                            c,
                            cols,
                            dw.as_mut_ptr().add(dy * k + dx),
                            (k * k) as isize,
                            (c * k * k) as isize,
                            true,
                            gp.as_ptr(),
                            1,
                            gcols as isize,
                            xp.as_ptr().add(dy * wp + dx),
                            f.row as isize,
                            1,
                            T::ONE,
                            T::ONE,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            }
        }
        dw
    };
    let threads = crate::threads::cpu_threads().min(n);
    if threads <= 1 || size * n * ho * wp < 1 << 16 {
        return partial(0..n);
    }
    let per = n.div_ceil(threads);
    // On rayon's pool (the one gemm and candle use): from inside a pool worker, as when
    // training runs in `ThreadPool::install`, OS threads here would compete with the
    // pool's spinning workers for the same cores.
    let starts: Vec<usize> = (0..n).step_by(per).collect();
    let parts: Vec<Vec<T>> = {
        use rayon::prelude::*;
        starts.into_par_iter().map(|a| partial(a..(a + per).min(n))).collect()
    };
    let mut dw = parts[0].clone();
    for part in &parts[1..] {
        for (a, &b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    dw
}

/// `w [O, I, k, k]` -> `[I, O, k, k]` with both spatial axes reversed, on a raw buffer:
/// the kernel whose stride-1 convolution (padding `k - 1 - p`) is the input gradient of
/// a convolution with `w` (padding `p`).
pub fn flip_transpose_cpu<T: Element>(w: &[T], (o, i, k): (usize, usize, usize)) -> Vec<T> {
    assert_eq!(w.len(), o * i * k * k);
    let mut out = vec![T::ZERO; w.len()];
    for oo in 0..o {
        for ii in 0..i {
            for y in 0..k {
                for x in 0..k {
                    out[((ii * o + oo) * k + (k - 1 - y)) * k + (k - 1 - x)] = w[((oo * i + ii) * k + y) * k + x];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bias_act::{Activation, AddPlane};

    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 1000) as f64 / 500.0 - 1.0)
            .collect()
    }

    /// Blocks of 1, 2 and 3 rows (one not dividing the row count; image groups with the
    /// rows between images inside a block) give the same numbers as one GEMM per tap,
    /// with every part of the output pass and an input scale.
    #[test]
    fn row_blocks_equal_whole_gemms() {
        for (n, c, o, h, wd, k, p, group) in [
            (3, 4, 5, 6, 7, 3, 1, 3),
            (2, 3, 2, 9, 5, 3, 1, 1),
            (4, 2, 3, 5, 5, 1, 0, 2),
        ] {
            let (ho, wo) = (h + 2 * p + 1 - k, wd + 2 * p + 1 - k);
            let x = values(n * c * h * wd, 1);
            let w = values(o * c * k * k, 2);
            let scale_in = values(n * c, 3);
            let scale_out = values(n * o, 4);
            let plane = values(n * ho * wo, 5);
            let bias = values(o, 6);
            let act = BiasAct {
                scale: Some(&scale_out),
                add: Some(AddPlane {
                    values: &plane,
                    stride: ho * wo,
                }),
                bias: Some(&bias),
                act: Activation::LeakyRelu { slope: 0.2, gain: 1.5 },
                clamp: Some(2.0),
            };
            let dims = (n, c, h, wd);
            let whole = conv_cpu_group(&x, &w, dims, (o, k), p, (Some(&scale_in), &act), (group, Blocks::Auto));
            for r in 1..=3 {
                let blocked = conv_cpu_group(
                    &x,
                    &w,
                    dims,
                    (o, k),
                    p,
                    (Some(&scale_in), &act),
                    (group, Blocks::Rows(r)),
                );
                let e = whole
                    .iter()
                    .zip(&blocked)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    e < 1e-12,
                    "{n}x{c}x{h}x{wd} -> {o}, k {k}, group {group}, {r} rows: {e}"
                );
            }
            // The input scale is the convolution of the scaled input.
            let scaled: Vec<f64> = x.iter().enumerate().map(|(j, v)| v * scale_in[j / (h * wd)]).collect();
            let plain = conv_cpu_group(&scaled, &w, dims, (o, k), p, (None, &act), (group, Blocks::Auto));
            let e = whole.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(e < 1e-12, "input scale: {e}");
        }
    }
}
