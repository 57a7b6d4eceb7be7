//! Inference: the factored first layer of all members in one projection, BatchNorm
//! folded into the next linear layers, vote or mean, uncertainty and image score.
//!
//! Folding: `BN(r) W + b = r (diag(s) W) + ((β - μ s) W + b)` with
//! `s = γ / sqrt(σ² + ε)`, so inference is three linear maps and two ReLUs.

use std::ops::Range;

use candle_core::{D, DType, Device, Tensor};

use labelgan_core::peak::{PeakScale, subpixel_peak};
use labelgan_core::{Error, FeatureTaps, LabelKind, Labels, PixelLabeler, Prediction, Result};
use labelgan_hypercolumn::FactoredProjection;
use labelgan_kernels::linalg::{sgemm_strided, sgemm_threads};

use crate::config::{Head, Precision};
use crate::ensemble::{BN_EPS, Ensemble};

/// One image's prediction, on the CPU.
#[derive(Debug, Clone)]
pub struct ImagePrediction {
    /// Output resolution T.
    pub resolution: usize,
    /// Segmentation: class per pixel (`T*T`), majority vote (ties to the smaller class).
    pub classes: Option<Vec<u32>>,
    /// Regression heads: member mean per pixel and output, `[T*T, C]` row-major.
    pub values: Option<Vec<f32>>,
    /// Keypoints: (x, y) of the arg-max of each mean heatmap.
    pub keypoints: Option<Vec<(f32, f32)>>,
    /// Per-pixel uncertainty (`T*T`): Jensen-Shannon divergence or member variance.
    pub uncertainty: Vec<f32>,
    /// Mean of the 10 % most uncertain pixels.
    pub score: f32,
}

/// Inference-ready weights: all members' first layers as one factored projection with
/// fused ReLU, BatchNorm folded into the later layers. Build once with
/// [`Ensemble::prepare`], label many images.
pub struct Prepared {
    proj: FactoredProjection,
    /// CPU copies of `members` (W2', b2', W3', b3'), for the CPU path.
    cpu: Option<Vec<[Vec<f32>; 4]>>,
    /// Per member: (W2' [h1,h2], b2' [1,h2], W3' [h2,C], b3' [1,C]).
    members: Vec<(Tensor, Tensor, Tensor, Tensor)>,
    h1: usize,
}

/// `(s, t)` with `BN(x) = x * s + t` in eval mode, each `[M, h]`.
fn bn_affine(e: &Ensemble, prefix: &str) -> Result<(Tensor, Tensor)> {
    let s = e
        .param(&format!("{prefix}.weight"))?
        .broadcast_div(&(e.param(&format!("{prefix}.running_var"))? + BN_EPS)?.sqrt()?)?;
    let t = (e.param(&format!("{prefix}.bias"))? - (e.param(&format!("{prefix}.running_mean"))? * &s)?)?;
    Ok((s, t))
}

impl Ensemble {
    /// Inference weights on `device` (see [`Prepared`]).
    pub fn prepare(&self, device: &Device) -> Result<Prepared> {
        let (m, d, h1) = self.param("w1")?.dims3()?;
        let w1 = self.param("w1")?.permute((1, 0, 2))?.reshape((d, m * h1))?;
        let b1 = self.param("b1")?.reshape(m * h1)?;
        let mut proj = FactoredProjection::new(&w1.to_device(device)?, Some(&b1.to_device(device)?), &self.taps)?;
        proj.relu = true;
        proj.set_bf16(self.config.precision == Precision::Bf16)?;
        let (s1, t1) = bn_affine(self, "bn1")?;
        let (s2, t2) = bn_affine(self, "bn2")?;
        let (w2, b2, w3, b3) = (
            self.param("w2")?,
            self.param("b2")?,
            self.param("w3")?,
            self.param("b3")?,
        );
        let mut members = Vec::with_capacity(m);
        for k in 0..m {
            let fold = |w: &Tensor, b: &Tensor, s: &Tensor, t: &Tensor| -> Result<(Tensor, Tensor)> {
                let (w, b, s, t) = (w.get(k)?, b.get(k)?, s.get(k)?, t.get(k)?);
                let wf = w.broadcast_mul(&s.unsqueeze(1)?)?;
                let bf = (t.unsqueeze(0)?.matmul(&w)? + b.unsqueeze(0)?)?;
                Ok((wf.to_device(device)?, bf.to_device(device)?))
            };
            let (w2f, b2f) = fold(w2, b2, &s1, &t1)?;
            let (w3f, b3f) = fold(w3, b3, &s2, &t2)?;
            members.push((w2f, b2f, w3f, b3f));
        }
        let cpu = if labelgan_kernels::native_on(device) {
            let v = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
            Some(
                members
                    .iter()
                    .map(|(a, b, c, d)| Ok([v(a)?, v(b)?, v(c)?, v(d)?]))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        Ok(Prepared { proj, cpu, members, h1 })
    }

    /// Labels image `image` of `taps` (which must match [`Ensemble::taps`]).
    pub fn predict_image(&self, taps: &FeatureTaps, image: usize) -> Result<ImagePrediction> {
        check_finite(taps)?;
        let device = taps
            .iter()
            .next()
            .map(|t| t.tensor.device().clone())
            .unwrap_or(Device::Cpu);
        let folded = self.prepare(&device)?;
        self.predict_prepared(&folded, taps, image)
    }

    /// Labels image `image` with weights from [`Ensemble::prepare`].
    pub fn predict_prepared(&self, f: &Prepared, taps: &FeatureTaps, image: usize) -> Result<ImagePrediction> {
        let t = self.config.resolution;
        let c = self.config.head.outputs();
        let seg = matches!(self.config.head, Head::Segmentation { .. });
        let mut classes = Vec::with_capacity(if seg { t * t } else { 0 });
        let mut values = Vec::with_capacity(if seg { 0 } else { t * t * c });
        let mut uncertainty = Vec::with_capacity(t * t);
        if let Some(cpu) = &f.cpu {
            let (m, h1) = (cpu.len(), f.h1);
            let h2 = cpu.first().map_or(0, |w| w[1].len());
            let per_block = 1;
            // One block of the first layer's outputs per member: its layers 2 and 3 run
            // on the worker that computed the block, while the block is in cache.
            f.proj.for_each_cpu_block(
                taps,
                image,
                t,
                self.config.upsample(),
                self.config.tile_pixels,
                per_block * h1,
                |b, h| {
                    Ok((b * per_block..(b + 1) * per_block)
                        .enumerate()
                        .map(|(j, k)| member_logits(&cpu[k], &h[j * h1..], per_block * h1, h1, h2, c))
                        .collect::<Vec<_>>())
                },
                |_, logits| {
                    let logits: Vec<Vec<f32>> = logits.into_iter().flatten().collect();
                    let px = logits.first().map_or(0, |l| l.len() / c.max(1));
                    let out = logits.concat(); // [M, C, px]
                    let threads = labelgan_kernels::cpu_threads().min(px).max(1);
                    let per = px.div_ceil(threads);
                    // Each thread votes (or averages) a run of pixels.
                    let parts: Vec<TailOut> = {
                        use rayon::prelude::*;
                        (0..threads)
                            .into_par_iter()
                            .map(|ti| {
                                let pixels = (ti * per).min(px)..((ti + 1) * per).min(px);
                                combine_members(&out, m, px, c, pixels, seg)
                            })
                            .collect()
                    };
                    for (cls, vals, unc) in parts {
                        classes.extend(cls);
                        values.extend(vals);
                        uncertainty.extend(unc);
                    }
                    Ok(())
                },
            )?;
        } else {
            f.proj.for_each_tile(
                taps,
                image,
                t,
                self.config.upsample(),
                self.config.tile_pixels,
                |_, h| {
                    // h: [px, M*h1] after bias and ReLU.
                    let outs = f
                        .members
                        .iter()
                        .enumerate()
                        .map(|(k, (w2, b2, w3, b3))| -> Result<Tensor> {
                            let x = h.narrow(1, k * f.h1, f.h1)?;
                            let z = x.matmul(w2)?.broadcast_add(b2)?.relu()?;
                            Ok(z.matmul(w3)?.broadcast_add(b3)?)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let out = Tensor::stack(&outs, 0)?; // [M, px, C]
                    if seg {
                        let (cls, js) = vote_and_js(&out, c)?;
                        classes.extend(cls);
                        uncertainty.extend(js);
                    } else {
                        let mean = out.mean(0)?; // [px, C]
                        let var = out.broadcast_sub(&mean)?.sqr()?.mean(0)?.mean(D::Minus1)?; // [px]
                        values.extend(mean.flatten_all()?.to_vec1::<f32>()?);
                        uncertainty.extend(var.to_vec1::<f32>()?);
                    }
                    Ok(())
                },
            )?;
        }
        // Non-finite features give NaN logits, which vote class 0 with a NaN (so far the
        // lowest) uncertainty: refuse them instead of labelling.
        if let Some(px) = uncertainty.iter().position(|u| !u.is_finite()) {
            return Err(Error::invalid(format!(
                "the labeler's output for image {image} is not finite at pixel {px}: its input features (or the labeler's weights) hold NaN or infinity"
            )));
        }
        let keypoints = match self.config.head {
            Head::Keypoints { count, .. } => Some(
                (0..count)
                    .map(|k| subpixel_peak(t, t, PeakScale::Linear, |x, y| values[(y * t + x) * count + k]))
                    .collect(),
            ),
            _ => None,
        };
        Ok(ImagePrediction {
            resolution: t,
            score: top_decile_mean(&uncertainty),
            classes: seg.then_some(classes),
            values: (!seg).then_some(values),
            keypoints,
            uncertainty,
        })
    }
}

/// (classes, values, uncertainty) of a run of pixels.
type TailOut = (Vec<u32>, Vec<f32>, Vec<f32>);

/// Layers 2 and 3 of one member (BatchNorm folded) for its first-layer outputs
/// `h [px, h1]`, on the calling thread: logits class-major, `[C, px]` (so that the
/// vote reads a run of pixels of one class as one vector).
fn member_logits(w: &[Vec<f32>; 4], h: &[f32], stride: usize, h1: usize, h2: usize, c: usize) -> Vec<f32> {
    let [w2, b2, w3, b3] = w;
    let px = (h.len() + stride - h1) / stride.max(1);
    thread_local! {
        /// The hidden layer, reused across calls on this thread.
        static Z: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut o = vec![0f32; px * c];
    Z.with_borrow_mut(|z| {
        // Overwritten by the GEMM (it does not read dst) before it is read.
        if z.len() < px * h2 {
            z.resize(px * h2, 0.0);
        }
        let z = &mut z[..px * h2];
        sgemm_threads(1, px, h2, h1, z, false, h, stride, 1, w2);
        for row in z.chunks_mut(h2) {
            row.iter_mut().zip(b2).for_each(|(v, &b)| *v = (*v + b).max(0.0));
        }
        sgemm_strided(1, px, c, h2, (&mut o, 1, px), false, (z, h2, 1), (w3, c, 1));
    });
    for (row, &b) in o.chunks_mut(px.max(1)).zip(b3) {
        row.iter_mut().for_each(|v| *v += b);
    }
    o
}

/// The vote (or mean) and uncertainty of pixels `pixels` of member outputs
/// `out [M, C, px]`, with AVX-512 or AVX2+FMA code where the CPU has it.
fn combine_members(out: &[f32], m: usize, px: usize, c: usize, pixels: Range<usize>, seg: bool) -> TailOut {
    #[cfg(target_arch = "x86_64")]
    {
        use labelgan_kernels::{Simd, simd};
        if simd() == Simd::Avx512 {
            // SAFETY: the CPU supports the enabled features (`simd` detected them).
            return unsafe { combine_members_avx512(out, m, px, c, pixels, seg) };
        }
        if simd() == Simd::Avx2Fma {
            // SAFETY: the CPU supports the enabled features (`simd` detected them).
            return unsafe { combine_members_avx2(out, m, px, c, pixels, seg) };
        }
    }
    combine_members_body(out, m, px, c, pixels, seg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn combine_members_avx512(
    out: &[f32],
    m: usize,
    px: usize,
    c: usize,
    pixels: Range<usize>,
    seg: bool,
) -> TailOut {
    combine_members_body(out, m, px, c, pixels, seg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn combine_members_avx2(out: &[f32], m: usize, px: usize, c: usize, pixels: Range<usize>, seg: bool) -> TailOut {
    combine_members_body(out, m, px, c, pixels, seg)
}

#[inline(always)]
fn combine_members_body(out: &[f32], m: usize, px: usize, c: usize, pixels: Range<usize>, seg: bool) -> TailOut {
    let (mut classes, mut values, mut unc) = (vec![], vec![], vec![]);
    if seg {
        cpu_vote_and_js(out, m, px, c, pixels, &mut classes, &mut unc);
    } else {
        cpu_mean_and_var(out, m, px, c, pixels, &mut values, &mut unc);
    }
    (classes, values, unc)
}

/// Pixels handled together by the vote: one AVX-512 vector (two AVX2 ones).
const LANES: usize = 16;

/// CPU version of [`vote_and_js`] over class-major logits `[M, C, px]`, appending per
/// pixel. Runs of [`LANES`] pixels are computed lane-wise (the loops below vectorise,
/// with the polynomial [`exp_lane`] and [`ln_lane`]); a member's entropy uses
/// `ln p_j = (l_j - max) - ln S`, one logarithm per member.
#[inline(always)]
fn cpu_vote_and_js(
    out: &[f32],
    m: usize,
    px: usize,
    c: usize,
    pixels: Range<usize>,
    classes: &mut Vec<u32>,
    js: &mut Vec<f32>,
) {
    type V = [f32; LANES];
    let mut l = vec![[0f32; LANES]; c];
    let mut e = vec![[0f32; LANES]; c];
    let mut mean = vec![[0f32; LANES]; c];
    let mut votes = vec![[0f32; LANES]; c];
    let inv_m = 1.0 / m as f32;
    let mut p0 = pixels.start;
    while p0 < pixels.end {
        let n = LANES.min(pixels.end - p0);
        mean.iter_mut().for_each(|v| *v = [0.0; LANES]);
        votes.iter_mut().for_each(|v| *v = [0.0; LANES]);
        let mut mean_h: V = [0.0; LANES];
        for k in 0..m {
            for (j, lj) in l.iter_mut().enumerate() {
                let src = &out[(k * c + j) * px + p0..(k * c + j) * px + p0 + n];
                lj[..n].copy_from_slice(src);
                // Lanes past the last pixel: finite values, results dropped.
                lj[n..].iter_mut().for_each(|v| *v = 0.0);
            }
            let mut mx: V = [f32::NEG_INFINITY; LANES];
            for lj in &l {
                for i in 0..LANES {
                    mx[i] = mx[i].max(lj[i]);
                }
            }
            let mut sum: V = [0.0; LANES];
            for (ej, lj) in e.iter_mut().zip(&l) {
                for i in 0..LANES {
                    ej[i] = exp_lane(lj[i] - mx[i]);
                    sum[i] += ej[i];
                }
            }
            let mut ln_s: V = [0.0; LANES];
            let mut inv_s: V = [0.0; LANES];
            for i in 0..LANES {
                ln_s[i] = ln_lane(sum[i]);
                inv_s[i] = 1.0 / sum[i];
            }
            let mut h: V = [0.0; LANES];
            let mut best_p: V = [-1.0; LANES];
            let mut best: V = [0.0; LANES];
            for (j, ((ej, lj), mj)) in e.iter().zip(&l).zip(mean.iter_mut()).enumerate() {
                for i in 0..LANES {
                    let p = ej[i] * inv_s[i];
                    mj[i] += p * inv_m;
                    h[i] -= p * (lj[i] - mx[i] - ln_s[i]);
                    // Strictly greater: ties go to the smaller class.
                    if p > best_p[i] {
                        best_p[i] = p;
                        best[i] = j as f32;
                    }
                }
            }
            for (j, vj) in votes.iter_mut().enumerate() {
                for i in 0..LANES {
                    vj[i] += if best[i] == j as f32 { 1.0 } else { 0.0 };
                }
            }
            for i in 0..LANES {
                mean_h[i] += h[i] * inv_m;
            }
        }
        let mut h_mean: V = [0.0; LANES];
        for mj in &mean {
            for i in 0..LANES {
                h_mean[i] -= mj[i] * ln_lane(mj[i] + 1e-12);
            }
        }
        let mut top: V = [-1.0; LANES];
        let mut cls: V = [0.0; LANES];
        for (j, vj) in votes.iter().enumerate() {
            for i in 0..LANES {
                if vj[i] > top[i] {
                    top[i] = vj[i];
                    cls[i] = j as f32;
                }
            }
        }
        classes.extend(cls[..n].iter().map(|&v| v as u32));
        js.extend((0..n).map(|i| h_mean[i] - mean_h[i]));
        p0 += n;
    }
}

/// `e^x` for `x <= 0` (and moderate positive x) to about 2 ulp: `2^n e^r` with
/// `|r| <= ln 2 / 2` and a degree-6 polynomial for `e^r` (Cephes' coefficients).
/// Branch-free, so that a loop over lanes vectorises.
#[inline(always)]
fn exp_lane(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut y = 1.987_569_1e-4_f32;
    y = y.mul_add(r, 1.398_2e-3);
    y = y.mul_add(r, 8.333_452e-3);
    y = y.mul_add(r, 4.166_579_6e-2);
    y = y.mul_add(r, 1.666_666_5e-1);
    y = y.mul_add(r, 0.5);
    let y = y.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `ln x` for positive, normal `x` to about 2 ulp: `x = 2^e m`, `m` in
/// `[sqrt(1/2), sqrt(2))`, and Cephes' degree-9 polynomial for `ln(1 + f)`.
/// Branch-free, so that a loop over lanes vectorises.
#[inline(always)]
fn ln_lane(x: f32) -> f32 {
    let bits = x.to_bits();
    // m in [0.5, 1): x = m 2^e.
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (if small { e - 1 } else { e }) as f32;
    let f = if small { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut y = 7.037_683_6e-2_f32;
    y = y.mul_add(f, -1.151_461e-1);
    y = y.mul_add(f, 1.167_699_9e-1);
    y = y.mul_add(f, -1.242_014_1e-1);
    y = y.mul_add(f, 1.424_932_3e-1);
    y = y.mul_add(f, -1.666_805_8e-1);
    y = y.mul_add(f, 2.000_071_4e-1);
    y = y.mul_add(f, -2.499_999_4e-1);
    y = y.mul_add(f, 0.333_333_3);
    let mut y = y * f * z;
    y = e.mul_add(-2.121_944_4e-4, y);
    y = z.mul_add(-0.5, y);
    e.mul_add(0.693_359_4, f + y)
}

/// Member mean `[px, C]` and variance (averaged over C) of class-major outputs
/// `[M, C, px]`.
#[inline(always)]
fn cpu_mean_and_var(
    out: &[f32],
    m: usize,
    px: usize,
    c: usize,
    pixels: Range<usize>,
    values: &mut Vec<f32>,
    var: &mut Vec<f32>,
) {
    for i in pixels {
        let mut v = 0f32;
        for j in 0..c {
            let at = |k: usize| out[(k * c + j) * px + i];
            let mean = (0..m).map(at).sum::<f32>() / m as f32;
            v += (0..m).map(|k| (at(k) - mean).powi(2)).sum::<f32>() / m as f32;
            values.push(mean);
        }
        var.push(v / c as f32);
    }
}

/// Majority vote over members (ties to the smaller class) and the Jensen-Shannon
/// divergence `H(mean p) - mean H(p)` per pixel, for logits `[M, px, C]`.
pub fn vote_and_js(logits: &Tensor, c: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    let (m, px, _) = logits.dims3()?;
    let p = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
    let ent = |p: &Tensor| -> Result<Tensor> { Ok(p.mul(&(p + 1e-12)?.log()?)?.sum(D::Minus1)?.neg()?) };
    let js = (ent(&p.mean(0)?)? - ent(&p)?.mean(0)?)?.to_vec1::<f32>()?;
    let arg = p.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?; // [M*px]
    let mut counts = vec![0u16; c];
    let mut out = Vec::with_capacity(px);
    for i in 0..px {
        counts.iter_mut().for_each(|x| *x = 0);
        for k in 0..m {
            counts[arg[k * px + i] as usize] += 1;
        }
        let mut best = 0;
        for (cls, &n) in counts.iter().enumerate() {
            if n > counts[best] {
                best = cls;
            }
        }
        out.push(best as u32);
    }
    Ok((out, js))
}

/// Refuses features holding NaN or infinity (ReLU would turn a NaN into 0 and label
/// from garbage without a word), naming the tap.
fn check_finite(taps: &FeatureTaps) -> Result<()> {
    for tap in taps.iter() {
        labelgan_core::ensure_finite(&tap.tensor, &format!("the features to label (tap `{}`)", tap.name))?;
    }
    Ok(())
}

/// Mean of the largest 10 % of `u` (at least one value); 0 for an empty slice.
pub fn top_decile_mean(u: &[f32]) -> f32 {
    if u.is_empty() {
        return 0.0;
    }
    let k = (u.len() / 10).max(1);
    let mut v = u.to_vec();
    v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    v[..k].iter().sum::<f32>() / k as f32
}

impl PixelLabeler for Ensemble {
    fn kind(&self) -> &LabelKind {
        &self.kind
    }

    fn predict(&self, taps: &FeatureTaps) -> Result<Prediction> {
        let n = taps.batch();
        if n == 0 {
            return Err(Error::invalid("no images to label"));
        }
        check_finite(taps)?;
        let device = taps
            .iter()
            .next()
            .map(|t| t.tensor.device().clone())
            .unwrap_or(Device::Cpu);
        let folded = self.prepare(&device)?;
        let t = self.config.resolution;
        let preds = (0..n)
            .map(|i| self.predict_prepared(&folded, taps, i))
            .collect::<Result<Vec<_>>>()?;
        let unc: Vec<f32> = preds.iter().flat_map(|p| p.uncertainty.iter().copied()).collect();
        let uncertainty = Tensor::from_vec(unc, (n, t, t), &device)?;
        let score = Tensor::from_vec(preds.iter().map(|p| p.score).collect::<Vec<_>>(), n, &device)?;
        let labels = match self.config.head {
            Head::Segmentation { .. } => {
                let v: Vec<u32> = preds
                    .iter()
                    .flat_map(|p| p.classes.clone().unwrap_or_default())
                    .collect();
                Labels::Segmentation(Tensor::from_vec(v, (n, t, t), &device)?)
            }
            Head::Keypoints { count, .. } => {
                let v: Vec<f32> = preds
                    .iter()
                    .flat_map(|p| p.keypoints.clone().unwrap_or_default())
                    .flat_map(|(x, y)| [x, y])
                    .collect();
                Labels::Keypoints(Tensor::from_vec(v, (n, count, 2), &device)?)
            }
            Head::Depth => {
                let v: Vec<f32> = preds
                    .iter()
                    .flat_map(|p| p.values.clone().unwrap_or_default())
                    .collect();
                Labels::Depth(Tensor::from_vec(v, (n, 1, t, t), &device)?)
            }
        };
        Ok(Prediction {
            labels,
            uncertainty,
            score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{exp_lane, ln_lane};

    /// The polynomial exp and ln against the standard library's, over the ranges the
    /// vote uses them on (exp of `l - max <= 0`, ln of sums in `[1, C]` and of means
    /// in `(0, 1]`), and beyond.
    #[test]
    fn lane_exp_and_ln_match_std() {
        let mut worst = (0f64, 0f64);
        for i in 0..200_000 {
            let x = -87.0 + 95.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_lane(x) as f64, (x as f64).exp());
            worst.0 = worst.0.max((got - want).abs() / want);
            let y = 1e-12f32 * (1e14f32).powf(i as f32 / 200_000.0);
            let (got, want) = (ln_lane(y) as f64, (y as f64).ln());
            worst.1 = worst.1.max((got - want).abs() / want.abs().max(1e-3));
        }
        assert!(worst.0 < 1e-6, "exp: worst relative error {}", worst.0);
        assert!(worst.1 < 1e-6, "ln: worst error {}", worst.1);
        assert_eq!(ln_lane(1.0), 0.0);
        assert!((exp_lane(0.0) - 1.0).abs() < 1e-7);
    }
}
