//! The stride-1 convolution and its weight gradient on raw CPU buffers, as implicit
//! GEMMs over shifted views of zero-padded images (no im2col), groups of images side by
//! side in each GEMM's columns. [`crate::conv`] wraps them as differentiable ops.

use crate::element::Element;

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
    /// padded buffer `xp` (borders stay as they are: zero).
    fn fill<T: Element>(
        &self,
        xp: &mut [T],
        x: &[T],
        (c, h, wd): (usize, usize, usize),
        p: usize,
        first: usize,
        nb: usize,
    ) {
        debug_assert_eq!(self.hp, h + 2 * p);
        for i in 0..nb {
            for ch in 0..c {
                for y in 0..h {
                    let s = (((first + i) * c + ch) * h + y) * wd;
                    let d = ch * self.row + i * self.plane + (y + p) * self.wp + p;
                    xp[d..d + wd].copy_from_slice(&x[s..s + wd]);
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
    let (n, _, h, wd) = dims;
    let nb = if std::env::var("XGROUP1").is_ok() {
        1
    } else {
        images_per_gemm((h + 2 * p) * (wd + 2 * p), n, FORWARD_COLUMNS)
    };
    conv_cpu_grouped(x, w, dims, ok, p, bias, relu, nb)
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
    assert!(p < k && x.len() == n * c * h * wd && w.len() == o * c * k * k);
    assert!(bias.is_none_or(|b| b.len() == o));
    let nb = group.clamp(1, n.max(1));
    let f = Fold::new((h, wd), k, p, nb);
    let (ho, wo, wp) = (f.ho, f.wo, f.wp);
    let mut xp = vec![T::ZERO; c * f.row];
    let mut ypw: Vec<T> = Vec::with_capacity(o * f.cols(nb));
    let mut out: Vec<T> = Vec::with_capacity(n * o * ho * wo);
    let threads = crate::threads::cpu_threads();
    for first in (0..n).step_by(nb) {
        let nb = nb.min(n - first);
        f.fill(&mut xp, x, (c, h, wd), p, first, nb);
        let cols = f.cols(nb);
        let par = if threads > 1 && o * cols * c >= 1 << 16 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        for dy in 0..k {
            for dx in 0..k {
                let first_tap = dy == 0 && dx == 0;
                // SAFETY: dst [o, cols] is ypw (capacity o * f.cols(group) >= o * cols);
                // lhs element (oo, cc) is w[oo*c*k*k + cc*k*k + dy*k + dx] < w.len(); rhs
                // element (cc, j) is xp[dy*wp + dx + cc*row + j] with j < cols, at most
                // (k-1)*wp + (k-1) + (c-1)*row + (nb-1)*plane + ho*wp - 1
                // = (c-1)*row + nb*plane + k - 2 < c*row = xp.len().
                unsafe {
                    gemm::gemm(
                        o,
                        cols,
                        c,
                        ypw.spare_capacity_mut().as_mut_ptr().cast::<T>(),
                        1,
                        cols as isize,
                        !first_tap,
                        w.as_ptr().add(dy * k + dx),
                        (k * k) as isize,
                        (c * k * k) as isize,
                        xp.as_ptr().add(dy * wp + dx),
                        1,
                        f.row as isize,
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
        // SAFETY: the first tap's GEMM above wrote all `o * cols` elements.
        unsafe { ypw.set_len(o * cols) };
        for i in 0..nb {
            for oo in 0..o {
                let b = bias.map_or(T::ZERO, |b| b[oo]);
                for y in 0..ho {
                    let s = oo * cols + i * f.plane + y * wp;
                    let src = &ypw[s..s + wo];
                    // Appended in output order: image, channel, row.
                    match (bias.is_some(), relu) {
                        (false, false) => out.extend_from_slice(src),
                        (_, false) => out.extend(src.iter().map(|&s| s + b)),
                        (_, true) => out.extend(src.iter().map(|&s| {
                            let v = s + b;
                            if v > T::ZERO { v } else { T::ZERO }
                        })),
                    }
                }
            }
        }
        // The next group's first GEMM rewrites it.
        ypw.clear();
    }
    out
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
    let nb = if std::env::var("XGROUP1").is_ok() {
        1
    } else {
        images_per_gemm((h + 2 * p) * (wd + 2 * p), share, WEIGHT_GRAD_COLUMNS)
    };
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
            f.fill(&mut xp, x, (c, h, wd), p, first, nb);
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
