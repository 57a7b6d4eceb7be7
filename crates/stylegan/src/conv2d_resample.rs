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

/// The most bytes the nine GEMM outputs of one chunk of output channels take.
pub const Y_BYTES: usize = 64 << 20;

/// `x [N, I, H, W]`, each input channel times `in_scale [N * I]`, transposed-convolved
/// with `weight [O, I, 3, 3]` at stride 2 (`[N, O, 2H+1, 2W+1]`), padded by 1 and
/// correlated with `g` (the 4x4 filter kernel, row-major, gain included), then `out`:
/// `[N, O, 2H, 2W]`. The output channels go in chunks whose nine GEMM outputs take at
/// most `y_bytes` ([`Y_BYTES`] unless a test wants smaller ones).
///
/// # Panics
/// If the buffer lengths do not match the dimensions (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn upsample_conv_cpu(
    x: &[f32],
    weight: &[f32],
    (n, i, h, w): (usize, usize, usize, usize),
    o: usize,
    in_scale: &[f32],
    g: &[f32; 16],
    out: &BiasAct<f32>,
    y_bytes: usize,
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
    // Output channels in chunks whose nine GEMM outputs stay under Y_BYTES (at 512 px
    // all 64 channels' would take 151 MB).
    let chunks = (9 * o * ld * 4).div_ceil(y_bytes.max(1)).max(1);
    let oc = o.div_ceil(chunks);
    let mut y = vec![0f32; 9 * oc * ld];
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
        for o0 in (0..o).step_by(oc) {
            let oc = oc.min(o - o0);
            for t in 0..9 {
                sgemm_strided(
                    threads,
                    oc,
                    cols,
                    i,
                    (&mut y[t * oc * ld..(t + 1) * oc * ld], ld, 1),
                    false,
                    (&weight[o0 * i * 9 + t..], i * 9, 9),
                    (&xs, ld, 1),
                );
            }
            for j in 0..nb {
                let at = ((first + j) * o + o0) * oh * ow;
                result[at..at + oc * oh * ow]
                    .par_chunks_mut(oh * ow)
                    .enumerate()
                    .for_each_init(
                        || (vec![0f32; (oh + 3) * tw], vec![0f32; ow]),
                        |(map, acc), (c, dst)| {
                            map.fill(0.0);
                            // Input pixel (yy, xx) under tap (ky, kx) lands on (2yy + ky, 2xx + kx).
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let src = &y[((ky * 3 + kx) * oc + c) * ld + j * hw..][..hw];
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
                                out.row((first + j, o0 + c, o), yo * ow, acc, d);
                            }
                        },
                    );
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelgan_kernels::bias_act::Activation;

    /// Chunks of output channels (3 of 7 channels: 3, 3, 1) give the numbers of one chunk.
    #[test]
    fn channel_chunks_equal_one_chunk() {
        let (n, i, h, w, o) = (2, 3, 5, 4, 7);
        let v = |len: usize, k: usize| -> Vec<f32> {
            (0..len).map(|j| ((j * 37 + k * 11) % 17) as f32 / 8.0 - 1.0).collect()
        };
        let (x, weight, scale) = (v(n * i * h * w, 1), v(o * i * 9, 2), v(n * i, 3));
        let g: [f32; 16] = v(16, 4).try_into().unwrap();
        let bias = v(o, 5);
        let act = BiasAct {
            bias: Some(&bias),
            act: Activation::LeakyRelu { slope: 0.2, gain: 1.4 },
            ..BiasAct::default()
        };
        let whole = upsample_conv_cpu(&x, &weight, (n, i, h, w), o, &scale, &g, &act, usize::MAX);
        let ld = (n * h * w).max(h * w) + 16;
        let three = 9 * 3 * ld * 4;
        let chunked = upsample_conv_cpu(&x, &weight, (n, i, h, w), o, &scale, &g, &act, three);
        assert_eq!(whole.len(), n * o * 4 * h * w);
        let e = whole
            .iter()
            .zip(&chunked)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(e < 1e-5, "{e}");
    }
}
