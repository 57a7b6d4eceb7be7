//! Inference: the factored first layer of all members in one projection, BatchNorm
//! folded into the next linear layers, vote or mean, uncertainty and image score.
//!
//! Folding: `BN(r) W + b = r (diag(s) W) + ((β - μ s) W + b)` with
//! `s = γ / sqrt(σ² + ε)`, so inference is three linear maps and two ReLUs.

use std::ops::Range;

use candle_core::{D, DType, Device, Tensor};

use labelgan_core::{Error, FeatureTaps, LabelKind, Labels, PixelLabeler, Prediction, Result};
use labelgan_hypercolumn::FactoredProjection;
use labelgan_hypercolumn::linalg::sgemm_threads;

use crate::config::Head;
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
        let cpu = if device.is_cpu() {
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
                    let out = logits.concat(); // [M, px, C]
                    let threads = std::thread::available_parallelism()
                        .map_or(1, |n| n.get())
                        .min(px)
                        .max(1);
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
        let keypoints = match self.config.head {
            Head::Keypoints { count, .. } => Some(
                (0..count)
                    .map(|k| {
                        let best = (0..t * t)
                            .max_by(|&a, &b| values[a * count + k].total_cmp(&values[b * count + k]))
                            .unwrap_or(0);
                        ((best % t) as f32, (best / t) as f32)
                    })
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
/// `h [px, h1]`, on the calling thread: logits `[px, C]`.
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
        sgemm_threads(1, px, c, h2, &mut o, false, z, h2, 1, w3);
    });
    for row in o.chunks_mut(c) {
        row.iter_mut().zip(b3).for_each(|(v, &b)| *v += b);
    }
    o
}

/// The vote (or mean) and uncertainty of pixels `pixels` of member outputs
/// `out [M, px, C]`, with AVX2+FMA code where the CPU has it.
fn combine_members(out: &[f32], m: usize, px: usize, c: usize, pixels: Range<usize>, seg: bool) -> TailOut {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { combine_members_avx2(out, m, px, c, pixels, seg) };
    }
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

/// CPU version of [`vote_and_js`] over logits `[M, px, C]`, appending per pixel. A
/// member's entropy uses `ln p_j = (l_j - max) - ln S`: one logarithm per member.
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
    let mut p = vec![0f32; c];
    let mut mean = vec![0f32; c];
    let mut votes = vec![0u16; c];
    for i in pixels {
        mean.iter_mut().for_each(|v| *v = 0.0);
        votes.iter_mut().for_each(|v| *v = 0);
        let mut mean_h = 0f32;
        for k in 0..m {
            let l = &out[(k * px + i) * c..(k * px + i + 1) * c];
            let mx = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (q, &v) in p.iter_mut().zip(l) {
                *q = (v - mx).exp();
                sum += *q;
            }
            let ln_s = sum.ln();
            let mut best = 0;
            let mut h = 0f32;
            for j in 0..c {
                p[j] /= sum;
                mean[j] += p[j] / m as f32;
                h -= p[j] * (l[j] - mx - ln_s);
                if p[j] > p[best] {
                    best = j;
                }
            }
            mean_h += h / m as f32;
            votes[best] += 1;
        }
        let h_mean: f32 = -mean.iter().map(|&q| q * (q + 1e-12).ln()).sum::<f32>();
        let mut best = 0;
        for j in 0..c {
            if votes[j] > votes[best] {
                best = j;
            }
        }
        classes.push(best as u32);
        js.push(h_mean - mean_h);
    }
}

/// Member mean `[px, C]` and variance (averaged over C) of outputs `[M, px, C]`.
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
            let mean = (0..m).map(|k| out[(k * px + i) * c + j]).sum::<f32>() / m as f32;
            v += (0..m).map(|k| (out[(k * px + i) * c + j] - mean).powi(2)).sum::<f32>() / m as f32;
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
