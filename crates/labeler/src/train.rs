//! Training the ensemble: Adam on mini-batches of sampled pixels, every class
//! represented, early stopping per member on held-out pixels.
//!
//! Memory: the training set is never a stack of full-resolution hypercolumns. Taps come
//! from a [`TapSource`] (kept at native resolution in f16, or regenerated from latents),
//! and only the sampled pixels' rows are gathered, a group of images at a time within
//! `feature_budget_mb`; the held-out rows are kept in f16.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::Optimizer;

use labelgan_core::{Error, FeatureTaps, Generator, NoiseMode, Result, SplitMix64, TapSpec};
use labelgan_dataset::ImageLabels;
use labelgan_hypercolumn::{sparse, sparse_into};

use crate::config::{Head, LabelerConfig};
use crate::ensemble::{BN_EPS, Ensemble, PARAM_NAMES};
use crate::host::{Adam, HostLayer};

/// Where training taps come from, one image at a time.
pub trait TapSource {
    /// Number of images.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The taps of image `i` (batch 1).
    fn taps(&self, i: usize) -> Result<FeatureTaps>;
}

/// Taps held in memory at native resolution, stored as f16.
pub struct InMemoryTaps(pub Vec<FeatureTaps>);

impl InMemoryTaps {
    /// Keeps each image of `taps` (any batch size), converting to f16.
    pub fn from_batches(batches: &[FeatureTaps]) -> Result<Self> {
        let mut out = Vec::new();
        for b in batches {
            for i in 0..b.batch() {
                let mut one = FeatureTaps::new();
                for t in b.narrow_batch(i, 1)?.iter() {
                    let mut t = t.clone();
                    t.tensor = t.tensor.to_dtype(DType::F16)?;
                    one.push(t)?;
                }
                out.push(one);
            }
        }
        Ok(Self(out))
    }
}

impl TapSource for InMemoryTaps {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn taps(&self, i: usize) -> Result<FeatureTaps> {
        self.0
            .get(i)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("no image {i}")))
    }
}

/// Taps regenerated from latents whenever needed: memory stays at one image's taps.
pub struct GeneratorTaps<'a, G: Generator> {
    /// The generator.
    pub generator: &'a G,
    /// ws `[N, num_ws, w_dim]`.
    pub ws: Tensor,
    /// Noise mode.
    pub noise: NoiseMode,
    /// Keep only these taps (by name), e.g. the conv layers.
    pub keep: Vec<String>,
}

impl<G: Generator> TapSource for GeneratorTaps<'_, G> {
    fn len(&self) -> usize {
        self.ws.dims().first().copied().unwrap_or(0)
    }
    fn taps(&self, i: usize) -> Result<FeatureTaps> {
        let out = self.generator.synthesize(&self.ws.narrow(0, i, 1)?, self.noise)?;
        Ok(out.taps.filter(|n| self.keep.iter().any(|k| k == n)))
    }
}

/// Ground truth of one training image at the labeler's resolution T, for its head.
#[derive(Debug, Clone)]
enum PixelTargets {
    /// Class per pixel, `T*T`.
    Segmentation(Vec<u32>),
    /// (x, y) per keypoint, in pixels.
    Keypoints(Vec<(f32, f32)>),
    /// Depth per pixel, `T*T`.
    Depth(Vec<f32>),
}

impl PixelTargets {
    /// The labels of image `i` that `head` learns; an error names the kind it lacks.
    fn of(head: &Head, labels: &ImageLabels, i: usize) -> Result<Self> {
        let missing = |what: &str| Error::invalid(format!("training image {i} has no {what} for the {head:?} head"));
        Ok(match head {
            Head::Segmentation { .. } => {
                PixelTargets::Segmentation(labels.mask.clone().ok_or_else(|| missing("mask"))?)
            }
            Head::Keypoints { .. } => PixelTargets::Keypoints(
                labels
                    .keypoints
                    .as_ref()
                    .ok_or_else(|| missing("keypoints"))?
                    .iter()
                    .map(|p| (p[0], p[1]))
                    .collect(),
            ),
            Head::Depth => PixelTargets::Depth(labels.depth.clone().ok_or_else(|| missing("depth map"))?),
        })
    }
}

/// What training did.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// Best held-out loss per member.
    pub best_val_loss: Vec<f32>,
    /// Epoch of each member's best.
    pub best_epoch: Vec<usize>,
    /// Training pixels per epoch.
    pub train_pixels: usize,
    /// Seconds.
    pub seconds: f64,
}

/// Per image: training and held-out pixel indices.
struct Split {
    train: Vec<u32>,
    held: Vec<u32>,
}

fn sample_pixels(cfg: &LabelerConfig, t: &PixelTargets, held_cap: usize, rng: &mut SplitMix64) -> Result<Split> {
    let n = cfg.resolution * cfg.resolution;
    let want = cfg.pixels_per_image.max(2);
    let mut pick: Vec<u32> = Vec::with_capacity(want);
    match t {
        PixelTargets::Segmentation(cls) => {
            let classes = cfg.head.outputs();
            let mut by_class: Vec<Vec<u32>> = vec![vec![]; classes];
            for (p, &c) in cls.iter().enumerate() {
                by_class
                    .get_mut(c as usize)
                    .ok_or_else(|| Error::invalid(format!("class {c} at pixel {p} is not below {classes}")))?
                    .push(p as u32);
            }
            let present: Vec<&mut Vec<u32>> = by_class.iter_mut().filter(|v| !v.is_empty()).collect();
            let quota = want / present.len().max(1);
            for v in present {
                // Partial Fisher-Yates: a random subset of at most `quota`.
                let k = quota.min(v.len()).max(1);
                for i in 0..k {
                    let j = i + rng.below((v.len() - i) as u64) as usize;
                    v.swap(i, j);
                }
                pick.extend_from_slice(&v[..k]);
            }
        }
        PixelTargets::Keypoints(kps) => {
            let r = 3.0
                * match cfg.head {
                    Head::Keypoints { sigma, .. } => sigma,
                    _ => 1.0,
                };
            let res = cfg.resolution as f32;
            for i in 0..want / 2 {
                let (x, y) = kps[i % kps.len().max(1)];
                let px = (x + (2.0 * rng.uniform() as f32 - 1.0) * r)
                    .round()
                    .clamp(0.0, res - 1.0) as u32;
                let py = (y + (2.0 * rng.uniform() as f32 - 1.0) * r)
                    .round()
                    .clamp(0.0, res - 1.0) as u32;
                pick.push(py * cfg.resolution as u32 + px);
            }
        }
        PixelTargets::Depth(_) => {}
    }
    while pick.len() < want {
        pick.push(rng.below(n as u64) as u32);
    }
    rng.shuffle(&mut pick);
    let held = ((pick.len() as f32 * cfg.holdout).round() as usize)
        .min(held_cap)
        .clamp(1, pick.len() - 1);
    let train = pick.split_off(held);
    Ok(Split { train, held: pick })
}

/// Targets for `pixels` of one image: u32 classes `[P]` or f32 `[P, C]`.
fn targets_for(cfg: &LabelerConfig, t: &PixelTargets, pixels: &[u32], dev: &Device) -> Result<Tensor> {
    let res = cfg.resolution;
    Ok(match t {
        PixelTargets::Segmentation(c) => Tensor::from_vec(
            pixels.iter().map(|&p| c[p as usize]).collect::<Vec<_>>(),
            pixels.len(),
            dev,
        )?,
        PixelTargets::Depth(d) => Tensor::from_vec(
            pixels.iter().map(|&p| d[p as usize]).collect::<Vec<_>>(),
            (pixels.len(), 1),
            dev,
        )?,
        PixelTargets::Keypoints(kps) => {
            let sigma = match cfg.head {
                Head::Keypoints { sigma, .. } => sigma,
                _ => 1.0,
            };
            let mut v = Vec::with_capacity(pixels.len() * kps.len());
            for &p in pixels {
                let (x, y) = ((p as usize % res) as f32, (p as usize / res) as f32);
                for &(kx, ky) in kps {
                    v.push((-((x - kx).powi(2) + (y - ky).powi(2)) / (2.0 * sigma * sigma)).exp());
                }
            }
            Tensor::from_vec(v, (pixels.len(), kps.len()), dev)?
        }
    })
}

fn check_targets(cfg: &LabelerConfig, targets: &[PixelTargets]) -> Result<()> {
    let n = cfg.resolution * cfg.resolution;
    for (i, t) in targets.iter().enumerate() {
        let ok = match (t, &cfg.head) {
            (PixelTargets::Segmentation(v), Head::Segmentation { .. }) => v.len() == n,
            (PixelTargets::Depth(v), Head::Depth) => v.len() == n && v.iter().all(|x| x.is_finite()),
            (PixelTargets::Keypoints(v), Head::Keypoints { count, .. }) => {
                v.len() == *count && v.iter().all(|(x, y)| x.is_finite() && y.is_finite())
            }
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(format!(
                "targets of image {i} do not fit the {:?} head at {}x{} (wrong kind, length or a non-finite value)",
                cfg.head, cfg.resolution, cfg.resolution
            )));
        }
    }
    Ok(())
}

/// Trainable state: parameters as Vars (running stats as plain tensors).
struct State {
    vars: Vec<(String, Var)>,
    running: Vec<(String, Tensor)>,
}

impl State {
    fn get(&self, name: &str) -> &Tensor {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .expect("known parameter")
    }
    fn running(&self, name: &str) -> &Tensor {
        &self.running.iter().find(|(n, _)| n == name).expect("known buffer").1
    }
}

/// BatchNorm in training mode over dim 1 of `[M, B, h]`; returns output, batch mean and
/// unbiased batch variance.
fn bn_train(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let n = x.dim(1)? as f64;
    let mu = x.mean_keepdim(1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(1)?;
    let y = xc
        .broadcast_div(&(var.clone() + BN_EPS)?.sqrt()?)?
        .broadcast_mul(&g.unsqueeze(1)?)?
        .broadcast_add(&b.unsqueeze(1)?)?;
    let unbiased = (var * (n / (n - 1.0).max(1.0)))?;
    Ok((y, mu.squeeze(1)?, unbiased.squeeze(1)?))
}

fn bn_eval(x: &Tensor, s: &State, p: &str) -> Result<Tensor> {
    let scale = s
        .get(&format!("{p}.weight"))
        .broadcast_div(&(s.running(&format!("{p}.running_var")) + BN_EPS)?.sqrt()?)?;
    let shift = (s.get(&format!("{p}.bias")) - s.running(&format!("{p}.running_mean")).mul(&scale)?)?;
    Ok(x.broadcast_mul(&scale.unsqueeze(1)?)?
        .broadcast_add(&shift.unsqueeze(1)?)?)
}

/// Forward from the first layer's output before its bias, `pre = x W1` `[M, B, h1]`, to
/// `[M, B, C]`; in training mode also the BN batch statistics.
fn forward_from_pre(s: &State, pre: &Tensor, train: bool) -> Result<(Tensor, Vec<(String, Tensor)>)> {
    let mut stats = vec![];
    let h = pre.broadcast_add(&s.get("b1").unsqueeze(1)?)?.relu()?;
    let h = if train {
        let (y, mu, var) = bn_train(&h, s.get("bn1.weight"), s.get("bn1.bias"))?;
        stats.push(("bn1".to_string(), Tensor::stack(&[mu, var], 0)?));
        y
    } else {
        bn_eval(&h, s, "bn1")?
    };
    let h = h
        .matmul(s.get("w2"))?
        .broadcast_add(&s.get("b2").unsqueeze(1)?)?
        .relu()?;
    let h = if train {
        let (y, mu, var) = bn_train(&h, s.get("bn2.weight"), s.get("bn2.bias"))?;
        stats.push(("bn2".to_string(), Tensor::stack(&[mu, var], 0)?));
        y
    } else {
        bn_eval(&h, s, "bn2")?
    };
    Ok((h.matmul(s.get("w3"))?.broadcast_add(&s.get("b3").unsqueeze(1)?)?, stats))
}

/// Folds a step's BatchNorm batch statistics into the running ones (momentum 0.1).
fn update_running(state: &mut State, stats: Vec<(String, Tensor)>) -> Result<()> {
    for (p, st) in stats {
        let (mu, var) = (st.get(0)?.detach(), st.get(1)?.detach());
        for (suffix, v) in [("running_mean", mu), ("running_var", var)] {
            let key = format!("{p}.{suffix}");
            if let Some((_, r)) = state.running.iter_mut().find(|(n, _)| *n == key) {
                *r = ((&*r * 0.9)? + (v * 0.1)?)?;
            }
        }
    }
    Ok(())
}

/// Per-member loss `[M]` of outputs `[M, B, C]` against targets (`[M, B]` u32 or
/// `[M, B, C]` f32).
fn member_loss(head: &Head, out: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(match head {
        Head::Segmentation { .. } => {
            let logp = candle_nn::ops::log_softmax(out, D::Minus1)?;
            logp.gather(&y.unsqueeze(D::Minus1)?, D::Minus1)?
                .squeeze(D::Minus1)?
                .mean(1)?
                .neg()?
        }
        _ => (out - y)?.sqr()?.mean(D::Minus1)?.mean(1)?,
    })
}

/// Trains an ensemble on images from `source` with ground truth `labels` (one per
/// image; the head's kind must be present in each). `progress` receives one line per
/// image group.
///
/// On the CPU the first layer trains outside candle's graph (the `host` module: two GEMMs
/// and one in-place Adam pass per step); elsewhere the whole network runs through
/// candle's autograd. Both compute the same steps.
pub fn fit(
    config: &LabelerConfig,
    source: &dyn TapSource,
    labels: &[ImageLabels],
    progress: impl FnMut(&str),
) -> Result<(Ensemble, TrainReport)> {
    fit_on(config, source, labels, progress, true)
}

/// [`fit`], with the CPU's host first layer allowed or not (tests compare the two).
pub(crate) fn fit_on(
    config: &LabelerConfig,
    source: &dyn TapSource,
    labels: &[ImageLabels],
    mut progress: impl FnMut(&str),
    allow_host: bool,
) -> Result<(Ensemble, TrainReport)> {
    let start = std::time::Instant::now();
    let targets = labels
        .iter()
        .enumerate()
        .map(|(i, l)| PixelTargets::of(&config.head, l, i))
        .collect::<Result<Vec<_>>>()?;
    let targets = &targets[..];
    if source.len() != targets.len() || targets.is_empty() {
        return Err(Error::invalid(format!(
            "{} tap images but {} targets",
            source.len(),
            targets.len()
        )));
    }
    check_targets(config, targets)?;
    let first = source.taps(0)?;
    let specs: Vec<TapSpec> = first.specs();
    let dev = first
        .iter()
        .next()
        .map(|t| t.tensor.device().clone())
        .unwrap_or(Device::Cpu);
    let d: usize = specs.iter().map(|t| t.channels).sum();
    let init = Ensemble::init(config, &specs, &dev)?;
    let m = config.members;
    let mut rng = SplitMix64::derive(config.seed, 0xDA7A);
    let splits = targets
        .iter()
        .map(|t| sample_pixels(config, t, config.max_holdout_pixels.div_ceil(targets.len()), &mut rng))
        .collect::<Result<Vec<_>>>()?;
    let train_pixels: usize = splits.iter().map(|s| s.train.len()).sum();
    let mode = config.upsample();
    let t = config.resolution;

    let is_running = |n: &str| n.contains("running");
    let mut state = State {
        vars: vec![],
        running: vec![],
    };
    for name in PARAM_NAMES {
        let p = init.param(name)?.clone();
        if is_running(name) {
            state.running.push((name.to_string(), p));
        } else {
            state.vars.push((name.to_string(), Var::from_tensor(&p)?));
        }
    }
    let params = candle_nn::ParamsAdamW {
        lr: config.lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let use_host = allow_host && dev.is_cpu();
    let (_, _, h1) = init.param("w1")?.dims3()?;
    let mut host = if use_host {
        Some(HostLayer::new(
            m,
            d,
            h1,
            init.param("w1")?.flatten_all()?.to_vec1::<f32>()?,
        ))
    } else {
        None
    };
    let adam = Adam {
        lr: params.lr,
        beta1: params.beta1,
        beta2: params.beta2,
        eps: params.eps,
    };
    let mut opt = candle_nn::AdamW::new(
        state
            .vars
            .iter()
            .filter(|(n, _)| !(use_host && n == "w1"))
            .map(|(_, v)| v.clone())
            .collect(),
        params,
    )?;
    let w1_var = state
        .vars
        .iter()
        .find(|(n, _)| n == "w1")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::invalid("no w1"))?;
    // The host path's gathered group rows `[n, D]`, reused across groups.
    let mut group_rows: Vec<f32> = vec![];

    // Held-out rows (f16) and targets, gathered during the first epoch from the same
    // taps as the training rows: one tap generation per image per epoch.
    let mut held_parts: Vec<Option<(Tensor, Tensor)>> = vec![None; targets.len()];
    let (mut held_x, mut held_y) = (Tensor::zeros(0, DType::F16, &dev)?, Tensor::zeros(0, DType::U32, &dev)?);
    let per_image_bytes = splits.iter().map(|s| s.train.len()).max().unwrap_or(1) * d * 4;
    let group = (config.feature_budget_mb * (1 << 20) / per_image_bytes.max(1)).max(1);
    let mut best = vec![f32::INFINITY; m];
    let mut best_epoch = vec![0usize; m];
    let mut best_params: Vec<(String, Tensor)> = state
        .vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<_>>()?;
    best_params.extend(state.running.iter().map(|(n, t)| (n.clone(), t.clone())));
    let mut epochs = 0;
    for epoch in 0..config.max_epochs {
        epochs = epoch + 1;
        let epoch_start = std::time::Instant::now();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        rng.shuffle(&mut order);
        let mut seen = 0;
        let mut loss_sum = 0f64;
        let mut steps = 0usize;
        for chunk in order.chunks(group) {
            let mut xs = vec![];
            let mut ys = vec![];
            group_rows.clear();
            if use_host {
                // Sized once: growing it would copy the group while holding it twice.
                let rows: usize = chunk.iter().map(|&i| splits[i].train.len()).sum();
                group_rows.reserve_exact(rows * d);
            }
            for &i in chunk {
                let taps = source.taps(i)?;
                if held_parts[i].is_none() {
                    let hx = if use_host {
                        let mut v = vec![0f32; splits[i].held.len() * d];
                        sparse_into(&taps, 0, &splits[i].held, t, mode, &mut v)?;
                        Tensor::from_vec(v, (splits[i].held.len(), d), &dev)?
                    } else {
                        sparse(&taps, 0, &splits[i].held, t, mode)?
                    };
                    held_parts[i] = Some((
                        hx.to_dtype(DType::F16)?,
                        targets_for(config, &targets[i], &splits[i].held, &dev)?,
                    ));
                }
                if use_host {
                    // Straight into the group buffer: the rows are never held twice.
                    let at = group_rows.len();
                    group_rows.resize(at + splits[i].train.len() * d, 0.0);
                    sparse_into(&taps, 0, &splits[i].train, t, mode, &mut group_rows[at..])?;
                } else {
                    xs.push(sparse(&taps, 0, &splits[i].train, t, mode)?);
                }
                ys.push(targets_for(config, &targets[i], &splits[i].train, &dev)?);
            }
            let x = if use_host { None } else { Some(Tensor::cat(&xs, 0)?) };
            let y = Tensor::cat(&ys, 0)?;
            drop(xs);
            let n = y.dim(0)?;
            let b = config.batch_size.min(n).max(1);
            // Each member walks its own permutation of the group's pixels.
            let perms: Vec<Vec<u32>> = (0..m)
                .map(|_| {
                    let mut p: Vec<u32> = (0..n as u32).collect();
                    rng.shuffle(&mut p);
                    p
                })
                .collect();
            for s0 in (0..n - b + 1).step_by(b) {
                let idx: Vec<u32> = perms.iter().flat_map(|p| p[s0..s0 + b].iter().copied()).collect();
                let idx = Tensor::from_vec(idx, m * b, &dev)?;
                let yb = y.index_select(&idx, 0)?;
                let yb = if yb.rank() == 1 {
                    yb.reshape((m, b))?
                } else {
                    yb.reshape((m, b, ()))?
                };
                let loss = match (&mut host, &x) {
                    (Some(host), _) => {
                        let order: Vec<&[u32]> = perms.iter().map(|p| &p[s0..s0 + b]).collect();
                        host.gather(&group_rows, &order, b);
                        // The first layer's output enters the graph as a leaf: its
                        // gradient is what the host layer needs.
                        let pre = Var::from_tensor(&Tensor::from_vec(host.forward(b), (m, b, h1), &dev)?)?;
                        let (out, stats) = forward_from_pre(&state, pre.as_tensor(), true)?;
                        let loss = member_loss(&config.head, &out, &yb)?.sum_all()?;
                        let grads = loss.backward()?;
                        let g = grads
                            .get(pre.as_tensor())
                            .ok_or_else(|| Error::invalid("no gradient reached the first layer"))?
                            .flatten_all()?
                            .to_vec1::<f32>()?;
                        host.backward_step(&g, b, adam);
                        opt.step(&grads)?;
                        update_running(&mut state, stats)?;
                        loss
                    }
                    (None, Some(x)) => {
                        let xb = x.index_select(&idx, 0)?.reshape((m, b, d))?;
                        let pre = xb.matmul(w1_var.as_tensor())?;
                        let (out, stats) = forward_from_pre(&state, &pre, true)?;
                        let loss = member_loss(&config.head, &out, &yb)?.sum_all()?;
                        opt.backward_step(&loss)?;
                        update_running(&mut state, stats)?;
                        loss
                    }
                    (None, None) => return Err(Error::invalid("no training rows")),
                };
                loss_sum += loss.to_scalar::<f32>()? as f64 / m as f64;
                steps += 1;
            }
            seen += chunk.len();
            progress(&format!(
                "epoch {}/{}: {seen}/{} images, train loss {:.4}, {:.0} px/s",
                epoch + 1,
                config.max_epochs,
                targets.len(),
                loss_sum / steps.max(1) as f64,
                (steps * b * m) as f64 / epoch_start.elapsed().as_secs_f64()
            ));
        }
        if epoch == 0 {
            let (hx, hy): (Vec<Tensor>, Vec<Tensor>) = held_parts.iter_mut().filter_map(Option::take).unzip();
            held_x = Tensor::cat(&hx, 0)?;
            held_y = Tensor::cat(&hy, 0)?;
        }
        if let Some(host) = &host {
            w1_var.set(&Tensor::from_slice(&host.weights, (m, d, h1), &dev)?)?;
        }
        // Held-out loss per member (eval-mode BN), in chunks; every member's first
        // layer in one GEMM `[len, D] x [D, M*h1]`.
        let w1_flat = w1_var.as_tensor().permute((1, 0, 2))?.reshape((d, m * h1))?;
        let mut val = vec![0f32; m];
        let nh = held_x.dim(0)?;
        for c0 in (0..nh).step_by(4096) {
            let len = 4096.min(nh - c0);
            let pre = held_x
                .narrow(0, c0, len)?
                .to_dtype(DType::F32)?
                .matmul(&w1_flat)?
                .reshape((len, m, h1))?
                .transpose(0, 1)?
                .contiguous()?;
            let yb = held_y.narrow(0, c0, len)?.unsqueeze(0)?;
            let yb = if yb.rank() == 2 {
                yb.broadcast_as((m, len))?.contiguous()?
            } else {
                yb.broadcast_as((m, len, held_y.dim(1)?))?.contiguous()?
            };
            let (out, _) = forward_from_pre(&state, &pre, false)?;
            let l = member_loss(&config.head, &out, &yb)?.to_vec1::<f32>()?;
            for k in 0..m {
                val[k] += l[k] * len as f32 / nh as f32;
            }
        }
        let improved: Vec<bool> = (0..m).map(|k| val[k] < best[k]).collect();
        if improved.iter().any(|&x| x) {
            let mask = Tensor::from_vec(
                improved.iter().map(|&x| if x { 1f32 } else { 0.0 }).collect::<Vec<_>>(),
                m,
                &dev,
            )?;
            for (name, bp) in best_params.iter_mut() {
                let cur = match state.vars.iter().find(|(n, _)| n == name) {
                    Some((_, v)) => v.as_tensor().detach(),
                    None => state.running(name).clone(),
                };
                let shape: Vec<usize> = std::iter::once(m)
                    .chain(std::iter::repeat_n(1, cur.rank() - 1))
                    .collect();
                let mk = mask.reshape(shape)?;
                *bp = (cur.broadcast_mul(&mk)? + bp.broadcast_mul(&(1.0 - &mk)?)?)?;
            }
        }
        for k in 0..m {
            if improved[k] {
                best[k] = val[k];
                best_epoch[k] = epoch;
            }
        }
        progress(&format!(
            "epoch {}: held-out loss {:.4} (mean over members)",
            epoch + 1,
            val.iter().sum::<f32>() / m as f32
        ));
        if (0..m).all(|k| epoch >= best_epoch[k] + config.patience) {
            break;
        }
    }
    let mut ens = init;
    for (name, t) in best_params {
        ens.params.insert(name, t);
    }
    let report = TrainReport {
        epochs,
        best_val_loss: best,
        best_epoch,
        train_pixels,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((ens, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelgan_core::Tap;

    fn taps(rng: &mut SplitMix64) -> FeatureTaps {
        let mut t = FeatureTaps::new();
        for (i, (c, r)) in [(7, 4), (5, 8), (4, 16)].into_iter().enumerate() {
            t.push(Tap::new(format!("l{i}"), rng.normal_tensor(&[1, c, r, r], &Device::Cpu).unwrap()).unwrap())
                .unwrap();
        }
        t
    }

    /// The host first layer (hand-written GEMMs and Adam) against candle's autograd and
    /// AdamW over the whole network: the same steps, so the same weights after training,
    /// up to float rounding, for every head.
    #[test]
    fn host_first_layer_takes_candle_s_steps() {
        let mut rng = SplitMix64::new(11);
        let images: Vec<FeatureTaps> = (0..3).map(|_| taps(&mut rng)).collect();
        let source = InMemoryTaps::from_batches(&images).unwrap();
        let heads = [
            Head::Segmentation { classes: 3 },
            Head::Depth,
            Head::Keypoints { count: 2, sigma: 2.0 },
        ];
        for head in heads {
            let targets: Vec<ImageLabels> = (0..3)
                .map(|_| match head {
                    Head::Segmentation { .. } => ImageLabels {
                        mask: Some((0..256).map(|_| rng.below(3) as u32).collect()),
                        ..ImageLabels::default()
                    },
                    Head::Depth => ImageLabels {
                        depth: Some((0..256).map(|_| rng.uniform() as f32).collect()),
                        ..ImageLabels::default()
                    },
                    Head::Keypoints { .. } => ImageLabels {
                        keypoints: Some(vec![[3.0, 4.0], [12.5, 9.0]]),
                        ..ImageLabels::default()
                    },
                })
                .collect();
            let cfg = LabelerConfig {
                members: 3,
                hidden: Some((12, 6)),
                pixels_per_image: 90,
                batch_size: 20,
                max_epochs: 3,
                patience: 5,
                feature_budget_mb: 0,
                ..LabelerConfig::new(head.clone(), 16)
            };
            let (a, ra) = fit_on(&cfg, &source, &targets, |_| {}, true).unwrap();
            let (b, rb) = fit_on(&cfg, &source, &targets, |_| {}, false).unwrap();
            assert_eq!(ra.best_epoch, rb.best_epoch, "{head:?}");
            for (x, y) in ra.best_val_loss.iter().zip(&rb.best_val_loss) {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{head:?}: held-out loss {x} vs {y}"
                );
            }
            for name in PARAM_NAMES {
                let (pa, pb) = (a.param(name).unwrap(), b.param(name).unwrap());
                let max_abs_diff = |x: &Tensor, y: &Tensor| -> f32 {
                    (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
                };
                let diff = max_abs_diff(pa, pb);
                let moved = max_abs_diff(pb, &init_param(&cfg, &images[0], name));
                assert!(diff <= 1e-5, "{head:?} {name}: paths differ by {diff}");
                if !name.contains("running") {
                    assert!(moved > 1e-3, "{head:?} {name} did not train ({moved})");
                }
            }
        }
    }

    #[test]
    fn held_out_pixels_are_capped_and_the_rest_train() {
        let cfg = LabelerConfig {
            pixels_per_image: 100,
            holdout: 0.5,
            ..LabelerConfig::new(Head::Depth, 16)
        };
        let t = PixelTargets::Depth(vec![0.5; 256]);
        let mut rng = SplitMix64::new(1);
        let s = sample_pixels(&cfg, &t, 10, &mut rng).unwrap();
        assert_eq!((s.held.len(), s.train.len()), (10, 90));
        let s = sample_pixels(&cfg, &t, 1000, &mut rng).unwrap();
        assert_eq!((s.held.len(), s.train.len()), (50, 50));
        // A saved config from before the cap loads with the default cap.
        let mut json = serde_json::to_value(&cfg).unwrap();
        json.as_object_mut().unwrap().remove("max_holdout_pixels");
        let back: LabelerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.max_holdout_pixels, 25_000);
    }

    fn init_param(cfg: &LabelerConfig, taps: &FeatureTaps, name: &str) -> Tensor {
        Ensemble::init(cfg, &taps.specs(), &Device::Cpu)
            .unwrap()
            .param(name)
            .unwrap()
            .clone()
    }
}
