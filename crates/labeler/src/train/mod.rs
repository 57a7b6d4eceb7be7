//! Training the ensemble: Adam on mini-batches of sampled pixels, every class
//! represented, early stopping per member on held-out pixels.
//!
//! Memory: the training set is never a stack of full-resolution hypercolumns. Taps come
//! from a [`TapSource`] (kept at native resolution in f16, or regenerated from latents),
//! and only the sampled pixels' rows are gathered, in f16, a group of images at a time
//! within `feature_budget_mb`; the held-out rows are kept in f16 too.

mod network;
mod sources;
mod targets;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use half::f16;

use labelgan_core::{Error, Result, SplitMix64, TapSpec};
use labelgan_dataset::ImageLabels;
use labelgan_hypercolumn::{sparse, sparse_into};
use labelgan_optim::{Adam, named_grads};

use crate::config::{Head, LabelerConfig};
use crate::ensemble::{Ensemble, PARAM_NAMES};
use crate::host::HostLayer;
use network::{State, forward_from_pre, member_loss, update_running};
pub use sources::{GeneratorTaps, InMemoryTaps, TapSource};
use targets::{PixelTargets, check_targets, sample_pixels, targets_for};

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
    config.validate()?;
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
    let mut ens = Ensemble::init(config, &specs, &dev)?;
    let m = config.members;
    let mut rng = SplitMix64::derive(config.seed, 0xDA7A);
    let splits = targets
        .iter()
        .map(|t| sample_pixels(config, t, config.max_holdout_pixels.div_ceil(targets.len()), &mut rng))
        .collect::<Result<Vec<_>>>()?;
    let train_pixels: usize = splits.iter().map(|s| s.train.len()).sum();

    let use_host = allow_host && labelgan_kernels::native_on(&dev);
    let rows = Rows {
        config,
        source,
        targets,
        splits: &splits,
        d,
        dev: &dev,
        use_host,
    };
    let mut opt = Optimiser::new(&ens, config.lr, use_host)?;
    // The optimiser holds its own copies; the best ones come back at the end.
    ens.params.clear();
    // The host path's gathered group rows `[n, D]`, reused across groups.
    let mut group_rows: Vec<f16> = vec![];

    // Held-out rows (f16) and targets, gathered during the first epoch from the same
    // taps as the training rows (one tap generation per image per epoch), then joined
    // into `held_x` and `held_y`.
    let mut held = Some(HeldOut::new(&splits, d, use_host));
    let (mut held_x, mut held_y) = (Tensor::zeros(0, DType::F16, &dev)?, Tensor::zeros(0, DType::U32, &dev)?);
    let per_image_bytes = splits.iter().map(|s| s.train.len()).max().unwrap_or(1) * d * size_of::<f16>();
    let group = (config.feature_budget_mb.saturating_mul(1 << 20) / per_image_bytes.max(1)).max(1);
    let mut best = vec![f32::INFINITY; m];
    let mut best_epoch = vec![0usize; m];
    let mut best_params: Vec<(String, Tensor)> = opt
        .state
        .vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect::<Result<_>>()?;
    best_params.extend(opt.state.running.iter().map(|(n, t)| (n.clone(), t.clone())));
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
            let (x, y) = rows.gather(chunk, &mut group_rows, held.as_mut())?;
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
                let order: Vec<&[u32]> = perms.iter().map(|p| &p[s0..s0 + b]).collect();
                let loss = opt.step(x.as_ref(), &group_rows, &order, &idx, &yb, &config.head)?;
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
        if let Some(h) = held.take() {
            (held_x, held_y) = h.into_tensors(&dev)?;
        }
        opt.sync_first_layer()?;
        let val = held_out_loss(&opt.state, opt.w1.as_tensor(), &held_x, &held_y, &config.head)?;
        let improved: Vec<bool> = (0..m).map(|k| val[k] < best[k]).collect();
        keep_improved(&mut best_params, &opt.state, &improved, &dev)?;
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

/// The trainable state and its Adam: on the CPU's host path the first layer trains
/// outside candle's graph ([`HostLayer`], the step applied to host memory), every other
/// parameter through candle's autograd; both with one [`Adam`] and its step count.
struct Optimiser {
    state: State,
    adam: Adam,
    /// The parameters Adam updates as tensors: all of them, or all but `w1` on the
    /// host path.
    graph: BTreeMap<String, Var>,
    host: Option<HostLayer>,
    /// The first layer `[M, D, h1]` (on the host path, synced by
    /// [`Optimiser::sync_first_layer`]).
    w1: Var,
}

impl Optimiser {
    fn new(init: &Ensemble, lr: f64, use_host: bool) -> Result<Self> {
        let mut state = State {
            vars: vec![],
            running: vec![],
        };
        for name in PARAM_NAMES {
            let p = init.param(name)?.clone();
            if name.contains("running") {
                state.running.push((name.to_string(), p));
            } else {
                state.vars.push((name.to_string(), Var::from_tensor(&p)?));
            }
        }
        let (m, d, h1) = init.param("w1")?.dims3()?;
        let host = if use_host {
            Some(HostLayer::new(
                m,
                d,
                h1,
                init.param("w1")?.flatten_all()?.to_vec1::<f32>()?,
            ))
        } else {
            None
        };
        let graph = state
            .vars
            .iter()
            .filter(|(n, _)| !(use_host && n == "w1"))
            .cloned()
            .collect();
        let w1 = state
            .vars
            .iter()
            .find(|(n, _)| n == "w1")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::invalid("no w1"))?;
        Ok(Self {
            state,
            adam: Adam::new(lr, (0.9, 0.999)),
            graph,
            host,
            w1,
        })
    }

    /// One step on batch `order` (per member, `b` rows of the group: from `group_rows`
    /// on the host path, else `x.index_select(idx)`) with targets `yb`; returns the loss
    /// summed over members.
    fn step(
        &mut self,
        x: Option<&Tensor>,
        group_rows: &[f16],
        order: &[&[u32]],
        idx: &Tensor,
        yb: &Tensor,
        head: &Head,
    ) -> Result<Tensor> {
        let (m, d, h1) = self.w1.as_tensor().dims3()?;
        let b = order.first().map_or(0, |o| o.len());
        let dev = self.w1.as_tensor().device().clone();
        let (out, stats, loss) = match (&mut self.host, x) {
            (Some(host), _) => {
                host.gather(group_rows, order, b);
                // The first layer's output enters the graph as a leaf: its gradient is
                // what the host layer needs.
                let pre = Var::from_tensor(&Tensor::from_vec(host.forward(b), (m, b, h1), &dev)?)?;
                let (out, stats) = forward_from_pre(&self.state, pre.as_tensor(), true)?;
                let loss = member_loss(head, &out, yb)?.sum_all()?;
                let grads = loss.backward()?;
                let g = grads
                    .get(pre.as_tensor())
                    .ok_or_else(|| Error::invalid("no gradient reached the first layer"))?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let step = self.adam.next_step();
                host.backward_step(&g, b, &step);
                self.adam.apply(&step, &self.graph, &named_grads(&self.graph, &grads))?;
                (out, stats, loss)
            }
            (None, Some(x)) => {
                let xb = x.index_select(idx, 0)?.to_dtype(DType::F32)?.reshape((m, b, d))?;
                let pre = xb.matmul(self.w1.as_tensor())?;
                let (out, stats) = forward_from_pre(&self.state, &pre, true)?;
                let loss = member_loss(head, &out, yb)?.sum_all()?;
                self.adam.update_from(&self.graph, &loss.backward()?)?;
                (out, stats, loss)
            }
            (None, None) => return Err(Error::invalid("no training rows")),
        };
        drop(out);
        update_running(&mut self.state, stats)?;
        Ok(loss)
    }

    /// Copies the host path's first layer into [`Optimiser::w1`].
    fn sync_first_layer(&mut self) -> Result<()> {
        if let Some(host) = &self.host {
            let dims = self.w1.as_tensor().dims3()?;
            self.w1
                .set(&Tensor::from_slice(&host.weights, dims, self.w1.as_tensor().device())?)?;
        }
        Ok(())
    }
}

/// Gathers the hypercolumn rows of a group of images' sampled pixels in f16: the
/// training rows (on the CPU's host path straight into one buffer, never held twice)
/// and, the first time an image is seen, its held-out rows and targets.
struct Rows<'a> {
    config: &'a LabelerConfig,
    source: &'a dyn TapSource,
    targets: &'a [PixelTargets<'a>],
    splits: &'a [targets::Split],
    d: usize,
    dev: &'a Device,
    use_host: bool,
}

impl Rows<'_> {
    /// The rows of `chunk`'s training pixels (`None` on the host path, where they go to
    /// `group_rows`) and their targets.
    fn gather(
        &self,
        chunk: &[usize],
        group_rows: &mut Vec<f16>,
        mut held: Option<&mut HeldOut>,
    ) -> Result<(Option<Tensor>, Tensor)> {
        let (config, splits, d, dev) = (self.config, self.splits, self.d, self.dev);
        let (t, mode) = (config.resolution, config.upsample());
        let mut xs = vec![];
        let mut ys = vec![];
        // Freed, not cleared: the last group's rows would otherwise stay resident while
        // this group's taps are generated.
        *group_rows = Vec::new();
        if self.use_host {
            // Sized once: growing it would copy the group while holding it twice.
            let rows: usize = chunk.iter().map(|&i| splits[i].train.len()).sum();
            group_rows.reserve_exact(rows * d);
        }
        for &i in chunk {
            let taps = self.source.taps(i)?;
            if let Some(held) = held.as_deref_mut().filter(|h| !h.has(i)) {
                // First epoch: the image's features are checked once (a NaN feature
                // trains NaN weights without a word otherwise).
                for tap in taps.iter() {
                    labelgan_core::ensure_finite(
                        &tap.tensor,
                        &format!("the features of training image {i} (tap `{}`)", tap.name),
                    )?;
                }
                if let Some(rows) = held.host_rows(i) {
                    sparse_into(&taps, 0, &splits[i].held, t, mode, rows)?;
                    in_f16_range(rows, i)?;
                } else {
                    let hx = sparse(&taps, 0, &splits[i].held, t, mode)?.to_dtype(DType::F16)?;
                    labelgan_core::ensure_finite(&hx, &beyond_f16(i))?;
                    held.parts[i] = Some(hx);
                }
                held.targets[i] = Some(targets_for(config, &self.targets[i], &splits[i].held, dev)?);
            }
            if self.use_host {
                // Straight into the group buffer: the rows are never held twice.
                let at = group_rows.len();
                group_rows.resize(at + splits[i].train.len() * d, f16::ZERO);
                sparse_into(&taps, 0, &splits[i].train, t, mode, &mut group_rows[at..])?;
                in_f16_range(&group_rows[at..], i)?;
            } else {
                let x = sparse(&taps, 0, &splits[i].train, t, mode)?.to_dtype(DType::F16)?;
                labelgan_core::ensure_finite(&x, &beyond_f16(i))?;
                xs.push(x);
            }
            ys.push(targets_for(config, &self.targets[i], &splits[i].train, dev)?);
        }
        let x = if self.use_host {
            None
        } else {
            Some(Tensor::cat(&xs, 0)?)
        };
        Ok((x, Tensor::cat(&ys, 0)?))
    }
}

/// The held-out rows (f16) and targets, gathered image by image during the first epoch.
/// On the CPU's host path every image's rows go straight into one buffer at the
/// image's offset, so joining them never holds the rows twice.
struct HeldOut {
    /// Host path: all held-out rows `[P, D]`, image `i`'s from `offsets[i]` rows.
    rows: Vec<f16>,
    offsets: Vec<usize>,
    /// Elsewhere: each image's rows as a tensor.
    parts: Vec<Option<Tensor>>,
    targets: Vec<Option<Tensor>>,
    d: usize,
    host: bool,
}

impl HeldOut {
    fn new(splits: &[targets::Split], d: usize, host: bool) -> Self {
        let mut offsets = Vec::with_capacity(splits.len() + 1);
        offsets.push(0);
        for s in splits {
            offsets.push(offsets[offsets.len() - 1] + s.held.len());
        }
        let rows = if host {
            vec![f16::ZERO; offsets[splits.len()] * d]
        } else {
            vec![]
        };
        Self {
            rows,
            offsets,
            parts: vec![None; splits.len()],
            targets: vec![None; splits.len()],
            d,
            host,
        }
    }

    /// Whether image `i`'s held-out rows are gathered.
    fn has(&self, i: usize) -> bool {
        self.targets[i].is_some()
    }

    /// Image `i`'s rows in the host buffer (`None` off the host path).
    fn host_rows(&mut self, i: usize) -> Option<&mut [f16]> {
        if !self.host {
            return None;
        }
        let d = self.d;
        Some(&mut self.rows[self.offsets[i] * d..self.offsets[i + 1] * d])
    }

    /// All held-out rows `[P, D]` and targets, in image order.
    fn into_tensors(self, dev: &Device) -> Result<(Tensor, Tensor)> {
        let y: Vec<Tensor> = self.targets.into_iter().flatten().collect();
        let x = if self.host {
            let n = self.offsets.last().copied().unwrap_or(0);
            Tensor::from_vec(self.rows, (n, self.d), dev)?
        } else {
            Tensor::cat(&self.parts.into_iter().flatten().collect::<Vec<_>>(), 0)?
        };
        Ok((x, Tensor::cat(&y, 0)?))
    }
}

/// Refuses rows of training image `image` that f16 cannot hold (the taps were checked
/// finite, so an infinity here is a feature beyond ±65,504).
fn in_f16_range(rows: &[f16], image: usize) -> Result<()> {
    match rows.iter().position(|v| v.is_infinite()) {
        None => Ok(()),
        Some(k) => Err(Error::invalid(format!(
            "{} hold an infinity at row value {k}",
            beyond_f16(image)
        ))),
    }
}

fn beyond_f16(image: usize) -> String {
    format!("the f16 training rows of image {image} (a feature beyond f16's ±65504 becomes infinite)")
}

/// Held-out loss per member (eval-mode BatchNorm) over rows `held_x` `[P, D]` (f16)
/// with targets `held_y`, in chunks of 4096 rows; every member's first layer `w1`
/// `[M, D, h1]` in one GEMM `[len, D] x [D, M*h1]`.
fn held_out_loss(state: &State, w1: &Tensor, held_x: &Tensor, held_y: &Tensor, head: &Head) -> Result<Vec<f32>> {
    let (m, d, h1) = w1.dims3()?;
    let w1_flat = w1.permute((1, 0, 2))?.reshape((d, m * h1))?;
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
        let (out, _) = forward_from_pre(state, &pre, false)?;
        let l = member_loss(head, &out, &yb)?.to_vec1::<f32>()?;
        for k in 0..m {
            val[k] += l[k] * len as f32 / nh as f32;
        }
    }
    Ok(val)
}

/// Copies into `best` (per parameter, `[M, ...]`) the current values of the members
/// whose held-out loss `improved`.
fn keep_improved(best: &mut [(String, Tensor)], state: &State, improved: &[bool], dev: &Device) -> Result<()> {
    if !improved.iter().any(|&x| x) {
        return Ok(());
    }
    let m = improved.len();
    let mask = Tensor::from_vec(
        improved.iter().map(|&x| if x { 1f32 } else { 0.0 }).collect::<Vec<_>>(),
        m,
        dev,
    )?;
    for (name, bp) in best.iter_mut() {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Head;
    use labelgan_core::{FeatureTaps, Tap};

    /// A tap source that keeps the taps as given (f32).
    struct F32Taps(Vec<FeatureTaps>);

    impl TapSource for F32Taps {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn taps(&self, i: usize) -> Result<FeatureTaps> {
            Ok(self.0[i].clone())
        }
    }

    /// `n` random 16x16 masks of 3 classes.
    fn random_masks(rng: &mut SplitMix64, n: usize) -> Vec<ImageLabels> {
        (0..n)
            .map(|_| ImageLabels {
                mask: Some((0..256).map(|_| rng.below(3) as u32).collect()),
                ..ImageLabels::default()
            })
            .collect()
    }

    /// A small 3-class segmentation labeler at 16 px, trained for `epochs`.
    fn small_segmentation(epochs: usize) -> LabelerConfig {
        LabelerConfig {
            members: 2,
            hidden: Some((8, 4)),
            pixels_per_image: 60,
            batch_size: 20,
            max_epochs: epochs,
            ..LabelerConfig::new(Head::Segmentation { classes: 3 }, 16)
        }
    }

    fn taps(rng: &mut SplitMix64) -> FeatureTaps {
        let mut t = FeatureTaps::new();
        for (i, (c, r)) in [(7, 4), (5, 8), (4, 16)].into_iter().enumerate() {
            t.push(Tap::new(format!("l{i}"), rng.normal_tensor(&[1, c, r, r], &Device::Cpu).unwrap()).unwrap())
                .unwrap();
        }
        t
    }

    /// The host first layer (hand-written GEMMs, Adam on host memory) against candle's
    /// autograd over the whole network: the same steps, so the same weights after
    /// training, up to the GEMMs' float rounding, for every head.
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

    /// NaN features are refused by fit (naming the image and tap) and by predict,
    /// instead of training NaN weights or labelling class 0 with the lowest uncertainty.
    #[test]
    fn non_finite_features_are_refused() {
        use labelgan_core::PixelLabeler;
        let mut rng = SplitMix64::new(12);
        let mut images: Vec<FeatureTaps> = (0..3).map(|_| taps(&mut rng)).collect();
        let targets = random_masks(&mut rng, 3);
        let cfg = small_segmentation(2);
        let clean = InMemoryTaps::from_batches(&images).unwrap();
        let (ens, _) = fit(&cfg, &clean, &targets, |_| {}).unwrap();
        let mut bad = FeatureTaps::new();
        for (k, tap) in images[1].iter().enumerate() {
            let mut v = tap.tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if k == 1 {
                v[5] = f32::NAN;
            }
            let t = Tensor::from_vec(v, tap.tensor.dims(), &Device::Cpu).unwrap();
            bad.push(Tap::new(tap.name.clone(), t).unwrap()).unwrap();
        }
        let e = ens.predict(&bad).unwrap_err().to_string();
        assert!(e.contains("tap `l1`") && e.contains("non-finite"), "{e}");
        images[1] = bad;
        let e = InMemoryTaps::from_batches(&images).err().unwrap().to_string();
        assert!(e.contains("image 1's tap `l1`") && e.contains("non-finite"), "{e}");
        let source = F32Taps(images);
        let e = fit(&cfg, &source, &targets, |_| {}).unwrap_err().to_string();
        assert!(
            e.contains("training image 1") && e.contains("`l1`") && e.contains("non-finite"),
            "{e}"
        );
    }

    /// A feature f16 cannot hold is refused on both paths, naming the image, instead of
    /// training on an infinity.
    #[test]
    fn features_beyond_f16_are_refused() {
        let mut rng = SplitMix64::new(13);
        let mut images: Vec<FeatureTaps> = (0..2).map(|_| taps(&mut rng)).collect();
        let mut big = FeatureTaps::new();
        for (k, tap) in images[1].iter().enumerate() {
            let scale = if k == 0 { 1e6 } else { 1.0 };
            big.push(Tap::new(tap.name.clone(), (&tap.tensor * scale).unwrap()).unwrap())
                .unwrap();
        }
        images[1] = big;
        let e = InMemoryTaps::from_batches(&images).err().unwrap().to_string();
        assert!(e.contains("image 1's tap `l0` in f16") && e.contains("65504"), "{e}");
        // A source that keeps f32 taps reaches the labeler's own rows.
        let source = F32Taps(images);
        let targets = random_masks(&mut rng, 2);
        let cfg = small_segmentation(1);
        for host in [true, false] {
            let e = fit_on(&cfg, &source, &targets, |_| {}, host).unwrap_err().to_string();
            assert!(e.contains("image 1") && e.contains("65504"), "host {host}: {e}");
        }
    }

    /// Each pixel at most once, held-out pixels never also training ones, at most every
    /// pixel of the image, and the ignore index never sampled; for every head, with more
    /// pixels asked for than the image has.
    #[test]
    fn pixels_are_sampled_without_replacement_and_held_out_apart() {
        let r = 8;
        let mask: Vec<u32> = (0..r * r)
            .map(|p| if p % 5 == 0 { 255 } else { (p % 3) as u32 })
            .collect();
        let depth = vec![0.5; r * r];
        let heads = [
            (Head::Segmentation { classes: 3 }, PixelTargets::Segmentation(&mask)),
            (
                Head::Keypoints { count: 2, sigma: 2.0 },
                PixelTargets::Keypoints(vec![(1.0, 1.0), (6.0, 5.0)]),
            ),
            (Head::Depth, PixelTargets::Depth(&depth)),
        ];
        for (head, t) in heads {
            for want in [10, 40, 1000] {
                let cfg = LabelerConfig {
                    pixels_per_image: want,
                    holdout: 0.25,
                    ..LabelerConfig::new(head.clone(), r)
                };
                let s = sample_pixels(&cfg, &t, usize::MAX, &mut SplitMix64::new(want as u64)).unwrap();
                let mut all: Vec<u32> = s.train.iter().chain(&s.held).copied().collect();
                let n = all.len();
                all.sort_unstable();
                all.dedup();
                assert_eq!(all.len(), n, "{head:?} {want}: a pixel sampled twice");
                let eligible = if matches!(head, Head::Segmentation { .. }) {
                    mask.iter().filter(|&&c| c != 255).count()
                } else {
                    r * r
                };
                assert_eq!(n, want.min(eligible), "{head:?} {want}");
                if matches!(head, Head::Segmentation { .. }) {
                    assert!(
                        all.iter().all(|&p| mask[p as usize] != 255),
                        "an ignored pixel was sampled"
                    );
                }
            }
        }
        // Without an ignore index, 255 is a class like any other (and here out of range).
        let cfg = LabelerConfig {
            ignore_index: None,
            ..LabelerConfig::new(Head::Segmentation { classes: 3 }, r)
        };
        let e = sample_pixels(&cfg, &PixelTargets::Segmentation(&mask), 1, &mut SplitMix64::new(0));
        assert!(e.is_err_and(|e| e.to_string().contains("class 255")));
    }

    #[test]
    fn held_out_pixels_are_capped_and_the_rest_train() {
        let cfg = LabelerConfig {
            pixels_per_image: 100,
            holdout: 0.5,
            ..LabelerConfig::new(Head::Depth, 16)
        };
        let depth = vec![0.5; 256];
        let t = PixelTargets::Depth(&depth);
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
