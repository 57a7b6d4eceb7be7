//! The upsampling convolution of a synthesis block's conv0 as the official
//! `conv2d_resample` computes it, on the CPU, for inference: a stride-2 transposed 3x3
//! convolution, then `upfirdn2d` with the 4x4 FIR filter (pad 1, gain 4), with the
//! styles applied as the input is read and demodulation, noise, bias and activation
//! ([`BiasAct`]) as the output is written.
//!
//! The transposed convolution is one GEMM per kernel tap, `Y_t [O, HW] = W_t [O, I] ·
//! X [I, HW]` (9 `O·I·HW` products per image), scattered into the `(2H+1)²` map and
//! filtered there (16 multiply-adds per output value and channel). The polyphase form
//! in [`crate::upfirdn`], which composes the two steps into four 3x3 kernels on the
//! input, is what the differentiable path runs; it costs `4 · 9 · O·I·HW`, four times
//! these GEMMs.

use labelgan_kernels::bias_act::BiasAct;
use labelgan_kernels::implicit_gemm::{FORWARD_COLUMNS, images_per_gemm};
use labelgan_kernels::linalg::sgemm_strided;
use rayon::prelude::*;

/// `x [N, I, H, W]`, each input channel times `in_scale [N * I]`, transposed-convolved
/// with `weight [O, I, 3, 3]` at stride 2 (`[N, O, 2H+1, 2W+1]`), padded by 1 and
/// correlated with `g` (the 4x4 filter kernel, row-major, gain included), then `out`:
/// `[N, O, 2H, 2W]`.
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
pub fn upsample_conv_cpu(
    x: &[f32],
    weight: &[f32],
    (n, i, h, w): (usize, usize, usize, usize),
    o: usize,
    in_scale: &[f32],
    g: &[f32; 16],
    out: &BiasAct<f32>,
) -> Vec<f32> {
    assert!(x.len() == n * i * h * w && weight.len() == o * i * 9 && in_scale.len() == n * i);
    let (hw, oh, ow) = (h * w, 2 * h, 2 * w);
    out.check(n, o, oh * ow);
    let group = images_per_gemm(hw, n, FORWARD_COLUMNS);
    let threads = labelgan_kernels::cpu_threads();
    let mut result = vec![0f32; n * o * oh * ow];
    // Rows of X and Y a little more than a power of two apart: 2^k floats apart, the
    // GEMM's reads and writes of one column fall into the same cache sets.
    let ld = group * hw + 16;
    let mut xs = vec![0f32; i * ld];
    let mut y = vec![0f32; 9 * o * ld];
    // The transposed convolution's map, padded by 1 for the filter: (2H+1) + 2 rows.
    let tw = ow + 3;
    for first in (0..n).step_by(group) {
        let nb = group.min(n - first);
        let cols = nb * hw;
        for j in 0..nb {
            for ci in 0..i {
                let m = in_scale[(first + j) * i + ci];
                let src = &x[((first + j) * i + ci) * hw..][..hw];
                for (a, &b) in xs[ci * ld + j * hw..][..hw].iter_mut().zip(src) {
                    *a = b * m;
                }
            }
        }
        for t in 0..9 {
            sgemm_strided(
                threads,
                o,
                cols,
                i,
                (&mut y[t * o * ld..(t + 1) * o * ld], ld, 1),
                false,
                (&weight[t..], i * 9, 9),
                (&xs, ld, 1),
            );
        }
        let block = &mut result[first * o * oh * ow..(first + nb) * o * oh * ow];
        block.par_chunks_mut(oh * ow).enumerate().for_each_init(
            || (vec![0f32; (oh + 3) * tw], vec![0f32; ow]),
            |(map, acc), (jo, dst)| {
                let (j, oc) = (jo / o, jo % o);
                map.fill(0.0);
                // Input pixel (yy, xx) under tap (ky, kx) lands on (2yy + ky, 2xx + kx).
                for ky in 0..3 {
                    for kx in 0..3 {
                        let src = &y[((ky * 3 + kx) * o + oc) * ld + j * hw..][..hw];
                        for (yy, s) in src.chunks_exact(w).enumerate() {
                            let row = &mut map[(2 * yy + ky + 1) * tw + kx + 1..][..2 * w];
                            for (d, &v) in row.iter_mut().step_by(2).zip(s) {
                                *d += v;
                            }
                        }
                    }
                }
                for (yo, d) in dst.chunks_exact_mut(ow).enumerate() {
                    acc.fill(0.0);
                    for a in 0..4 {
                        let row = &map[(yo + a) * tw..];
                        for b in 0..4 {
                            let gv = g[a * 4 + b];
                            for (c, &v) in acc.iter_mut().zip(&row[b..b + ow]) {
                                *c += gv * v;
                            }
                        }
                    }
                    out.row((first + j, oc, o), yo * ow, acc, d);
                }
            },
        );
    }
    result
}
