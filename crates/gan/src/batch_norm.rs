//! Batch normalisation with moving averages and "standing" statistics for evaluation,
//! and its conditional and self-modulated forms (gamma and beta from a class or a
//! latent, centred so that gamma starts at 1).

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, Linear, Module, VarBuilder};
use labelgan_kernels::channel::{channel_affine, channel_sum};

use labelgan_core::{Error, Result};

/// How a batch-norm layer normalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    /// The batch's own statistics; the moving averages take a step towards them.
    Train,
    /// The batch's own statistics, also added to the standing sums (run the generator
    /// over many batches in this mode before evaluating, as Compare GAN does).
    Accumulate,
    /// Standing statistics if any were accumulated, else the moving averages.
    Eval,
    /// The batch's own statistics, nothing stored: for weights whose moving averages
    /// were never tracked, such as the generator's weight average.
    Batch,
}

#[derive(Debug, Clone)]
struct Stats {
    mean: Tensor,
    var: Tensor,
}

/// Per-channel normalisation of `[N, C, ...]` activations, without affine terms (the
/// layers below add them).
#[derive(Debug)]
pub struct BatchNorm {
    channels: usize,
    eps: f64,
    /// Weight of the newest batch in the moving averages.
    momentum: f64,
    moving: Mutex<Stats>,
    /// The mean of the accumulated batches' means and variances, and how many.
    standing: Mutex<Option<(Stats, usize)>>,
}

impl BatchNorm {
    /// A layer for `channels` channels (moving mean 0, variance 1), `eps` 1e-5 and
    /// momentum 0.1 unless set.
    pub fn new(channels: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            channels,
            eps: 1e-5,
            momentum: 0.1,
            moving: Mutex::new(Stats {
                mean: Tensor::zeros(channels, dtype, device)?,
                var: Tensor::ones(channels, dtype, device)?,
            }),
            standing: Mutex::new(None),
        })
    }

    /// Forgets the standing statistics (before accumulating them anew).
    pub fn reset_standing(&self) {
        *self.standing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The moving mean and variance `[C]`.
    pub fn moving(&self) -> (Tensor, Tensor) {
        let s = self.moving.lock().unwrap_or_else(|e| e.into_inner());
        (s.mean.clone(), s.var.clone())
    }

    /// The statistics [`BnMode::Eval`] normalises with (the standing ones once
    /// accumulated, else the moving averages) as `PREFIX.moving_mean` and
    /// `PREFIX.moving_var`.
    pub fn buffers(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        let s = self.eval_stats();
        out.insert(format!("{prefix}.moving_mean"), s.mean);
        out.insert(format!("{prefix}.moving_var"), s.var);
    }

    fn eval_stats(&self) -> Stats {
        match &*self.standing.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((mean, _)) => mean.clone(),
            None => self.moving.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Restores what [`BatchNorm::buffers`] wrote under `prefix` as the moving
    /// averages, and forgets any standing statistics.
    pub fn set_buffers(&self, prefix: &str, from: &BTreeMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            let name = format!("{prefix}.{k}");
            match from.get(&name) {
                Some(t) if t.dims() == [self.channels] => Ok(t.clone()),
                Some(t) => Err(Error::invalid(format!(
                    "{name} is {:?}, expected [{}]",
                    t.dims(),
                    self.channels
                ))),
                None => Err(Error::invalid(format!("{name} is missing"))),
            }
        };
        *self.moving.lock().unwrap_or_else(|e| e.into_inner()) = Stats {
            mean: get("moving_mean")?,
            var: get("moving_var")?,
        };
        self.reset_standing();
        Ok(())
    }

    /// `(x - mean) / sqrt(var + eps)` per channel.
    pub fn normalise(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        if x.rank() < 2 || x.dim(1)? != self.channels {
            return Err(Error::invalid(format!(
                "batch norm of {} channels got activations {:?}",
                self.channels,
                x.dims()
            )));
        }
        // Per-channel sums without strided reductions either way (`labelgan_kernels::channel`).
        let count = (x.elem_count() / self.channels).max(1) as f64;
        let mut centred = None;
        let stats = match mode {
            BnMode::Train | BnMode::Accumulate | BnMode::Batch => {
                let mean = (channel_sum(x)? / count)?;
                let xc = channel_affine(x, None, Some(&mean.neg()?))?;
                let var = (channel_sum(&xc.sqr()?)? / count)?;
                centred = Some(xc);
                let fixed = Stats {
                    mean: mean.detach(),
                    var: var.detach(),
                };
                if mode == BnMode::Train {
                    let mut m = self.moving.lock().unwrap_or_else(|e| e.into_inner());
                    let step = |old: &Tensor, new: &Tensor| -> Result<Tensor> {
                        Ok(((old * (1.0 - self.momentum))? + (new * self.momentum)?)?)
                    };
                    *m = Stats {
                        mean: step(&m.mean, &fixed.mean)?,
                        var: step(&m.var, &fixed.var)?,
                    };
                } else if mode == BnMode::Accumulate {
                    let mut s = self.standing.lock().unwrap_or_else(|e| e.into_inner());
                    // The running mean over batches: m_k = m_(k-1) + (x_k - m_(k-1)) / k.
                    *s = Some(match s.take() {
                        Some((m, k)) => {
                            let step = |old: Tensor, new: &Tensor| -> Result<Tensor> {
                                Ok((&old + ((new - &old)? / (k + 1) as f64)?)?)
                            };
                            (
                                Stats {
                                    mean: step(m.mean, &fixed.mean)?,
                                    var: step(m.var, &fixed.var)?,
                                },
                                k + 1,
                            )
                        }
                        None => (fixed, 1),
                    });
                }
                Stats { mean, var }
            }
            BnMode::Eval => self.eval_stats(),
        };
        let xc = match centred {
            Some(xc) => xc,
            None => channel_affine(x, None, Some(&stats.mean.neg()?))?,
        };
        let inv = (stats.var + self.eps)?.sqrt()?.recip()?;
        channel_affine(&xc, Some(&inv), None)
    }
}

/// `gamma * x_hat + beta` with per-sample `[N, C]` gamma and beta on `[N, C, ...]`.
fn modulate(x_hat: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let shape: Vec<usize> = (0..x_hat.rank())
        .map(|i| if i < 2 { x_hat.dim(i).unwrap_or(1) } else { 1 })
        .collect();
    Ok(x_hat
        .broadcast_mul(&gamma.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.reshape(shape.as_slice())?)?)
}

/// Conditional batch norm: `gamma = 1 + y W_gamma`, `beta = y W_beta` for a class
/// vector `y` `[N, classes]` (one-hot, or any embedding), the weights starting at 0.
/// Centred at 1 so that `y = 0` (and a fresh layer) is plain normalisation; Compare GAN
/// forgets the `1 +` (its issue 54) and starts every gamma at 0.
#[derive(Debug)]
pub struct ConditionalBatchNorm {
    bn: BatchNorm,
    gamma: Linear,
    beta: Linear,
}

fn zero_linear(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((outputs, inputs), "weight", Init::Const(0.0))?;
    Ok(Linear::new(w, None))
}

impl ConditionalBatchNorm {
    /// A layer of `channels` channels conditioned on `classes`-vectors; weights
    /// `gamma.weight` and `beta.weight` under `vb`.
    pub fn new(channels: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            bn: BatchNorm::new(channels, vb.dtype(), vb.device())?,
            gamma: zero_linear(classes, channels, vb.pp("gamma"))?,
            beta: zero_linear(classes, channels, vb.pp("beta"))?,
        })
    }

    /// The normalised and modulated activations.
    pub fn forward(&self, x: &Tensor, y: &Tensor, mode: BnMode) -> Result<Tensor> {
        let gamma = (self.gamma.forward(y)? + 1.0)?;
        modulate(&self.bn.normalise(x, mode)?, &gamma, &self.beta.forward(y)?)
    }

    /// The normalisation (for its statistics).
    pub fn batch_norm(&self) -> &BatchNorm {
        &self.bn
    }
}

/// Hidden width of the self-modulation MLPs (Chen et al. 2019).
pub const SELF_MODULATION_HIDDEN: usize = 32;

/// Self-modulated batch norm: gamma and beta from the latent `z` (and, conditioned, the
/// class: pass their concatenation) through one hidden ReLU layer of 32:
/// `gamma = 1 + MLP_gamma(z)`, `beta = MLP_beta(z)`.
#[derive(Debug)]
pub struct SelfModulatedBatchNorm {
    bn: BatchNorm,
    gamma: (Linear, Linear),
    beta: (Linear, Linear),
}

impl SelfModulatedBatchNorm {
    /// A layer of `channels` channels modulated by `inputs`-vectors; weights under `vb`
    /// (`gamma.hidden`, `gamma.out`, `beta.hidden`, `beta.out`; the output layers start
    /// at 0, so a fresh layer is plain normalisation).
    pub fn new(channels: usize, inputs: usize, vb: VarBuilder) -> Result<Self> {
        let mlp = |vb: VarBuilder| -> Result<(Linear, Linear)> {
            Ok((
                candle_nn::linear(inputs, SELF_MODULATION_HIDDEN, vb.pp("hidden"))?,
                zero_linear(SELF_MODULATION_HIDDEN, channels, vb.pp("out"))?,
            ))
        };
        Ok(Self {
            bn: BatchNorm::new(channels, vb.dtype(), vb.device())?,
            gamma: mlp(vb.pp("gamma"))?,
            beta: mlp(vb.pp("beta"))?,
        })
    }

    /// The normalised and modulated activations.
    pub fn forward(&self, x: &Tensor, z: &Tensor, mode: BnMode) -> Result<Tensor> {
        let run = |(h, o): &(Linear, Linear)| -> Result<Tensor> { Ok(o.forward(&h.forward(z)?.relu()?)?) };
        let gamma = (run(&self.gamma)? + 1.0)?;
        modulate(&self.bn.normalise(x, mode)?, &gamma, &run(&self.beta)?)
    }

    /// The normalisation (for its statistics).
    pub fn batch_norm(&self) -> &BatchNorm {
        &self.bn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradient, randn};
    use candle_nn::VarMap;
    use labelgan_core::max_abs_diff;

    fn per_channel(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let flat = x.transpose(0, 1).unwrap().flatten_from(1).unwrap();
        let m = flat.mean(1).unwrap();
        let v = flat
            .broadcast_sub(&m.unsqueeze(1).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean(1)
            .unwrap();
        (m.to_vec1().unwrap(), v.to_vec1().unwrap())
    }

    #[test]
    fn train_mode_standardises_and_moves_the_averages() {
        let x = ((randn(1, &[6, 3, 4, 4]) * 2.0).unwrap() + 5.0).unwrap();
        let bn = BatchNorm::new(3, DType::F64, &Device::Cpu).unwrap();
        let y = bn.normalise(&x, BnMode::Train).unwrap();
        let (m, v) = per_channel(&y);
        assert!(
            m.iter().all(|m| m.abs() < 1e-12) && v.iter().all(|v| (v - 1.0).abs() < 1e-4),
            "{m:?} {v:?}"
        );
        let (bm, bv) = per_channel(&x);
        let (mm, mv) = bn.moving();
        for c in 0..3 {
            assert!((mm.to_vec1::<f64>().unwrap()[c] - 0.1 * bm[c]).abs() < 1e-12);
            assert!((mv.to_vec1::<f64>().unwrap()[c] - (0.9 + 0.1 * bv[c])).abs() < 1e-12);
        }
        assert!(bn.normalise(&randn(2, &[2, 4, 3, 3]), BnMode::Train).is_err());
    }

    #[test]
    fn batch_mode_standardises_and_stores_nothing() {
        let bn = BatchNorm::new(2, DType::F64, &Device::Cpu).unwrap();
        let x = randn(6, &[4, 2, 3, 3]).affine(2.0, 1.0).unwrap();
        let got = bn.normalise(&x, BnMode::Batch).unwrap();
        let (mean, var) = per_channel(&got);
        for c in 0..2 {
            assert!(mean[c].abs() < 1e-12 && (var[c] - 1.0).abs() < 1e-4, "{mean:?} {var:?}");
        }
        // Neither the moving averages nor the standing statistics moved.
        assert_eq!(bn.moving().0.to_vec1::<f64>().unwrap(), vec![0.0, 0.0]);
        assert_eq!(bn.moving().1.to_vec1::<f64>().unwrap(), vec![1.0, 1.0]);
        assert_evals_as_fresh(&bn, &randn(5, &[1, 2, 3, 3]));
    }

    #[test]
    fn eval_uses_standing_statistics_once_accumulated() {
        let bn = BatchNorm::new(2, DType::F64, &Device::Cpu).unwrap();
        let (a, b) = (randn(3, &[4, 2, 3, 3]), (randn(4, &[4, 2, 3, 3]) * 3.0).unwrap());
        let probe = randn(5, &[1, 2, 3, 3]);
        // Before: the moving averages (mean 0, var 1).
        let before = bn.normalise(&probe, BnMode::Eval).unwrap();
        let want = (&probe / (1.0f64 + 1e-5).sqrt()).unwrap();
        assert!(max_abs_diff(&before, &want).unwrap() < 1e-12);
        bn.normalise(&a, BnMode::Accumulate).unwrap();
        bn.normalise(&b, BnMode::Accumulate).unwrap();
        let ((ma, va), (mb, vb)) = (per_channel(&a), per_channel(&b));
        let got = bn.normalise(&probe, BnMode::Eval).unwrap();
        let probe_v: Vec<f64> = probe.flatten_all().unwrap().to_vec1().unwrap();
        let got_v: Vec<f64> = got.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (x, g)) in probe_v.iter().zip(&got_v).enumerate() {
            let c = i / 9;
            let (m, v) = ((ma[c] + mb[c]) / 2.0, (va[c] + vb[c]) / 2.0);
            assert!((g - (x - m) / (v + 1e-5).sqrt()).abs() < 1e-12);
        }
        // The buffers are what Eval uses: the standing statistics; restoring buffers
        // (the moving averages) forgets them.
        let mut saved = BTreeMap::new();
        bn.buffers("bn", &mut saved);
        let saved_mean: Vec<f64> = saved["bn.moving_mean"].to_vec1().unwrap();
        for c in 0..2 {
            assert!((saved_mean[c] - (ma[c] + mb[c]) / 2.0).abs() < 1e-12);
        }
        let mut fresh = BTreeMap::new();
        BatchNorm::new(2, DType::F64, &Device::Cpu)
            .unwrap()
            .buffers("bn", &mut fresh);
        let other = BatchNorm::new(2, DType::F64, &Device::Cpu).unwrap();
        other.normalise(&a, BnMode::Accumulate).unwrap();
        other.set_buffers("bn", &fresh).unwrap();
        assert_evals_as_fresh(&other, &probe);
        // Accumulating leaves the moving averages alone; reset forgets.
        assert_eq!(bn.moving().0.to_vec1::<f64>().unwrap(), vec![0.0, 0.0]);
        bn.reset_standing();
        assert_evals_as_fresh(&bn, &probe);
    }

    /// Asserts that `bn` in Eval normalises `probe` as a fresh layer does (moving mean
    /// 0, variance 1).
    fn assert_evals_as_fresh(bn: &BatchNorm, probe: &Tensor) {
        let got: Vec<f64> = bn
            .normalise(probe, BnMode::Eval)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let fresh: Vec<f64> = (probe / (1.0f64 + 1e-5).sqrt())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, fresh);
    }

    #[test]
    fn conditional_batch_norm_at_y_zero_is_batch_norm_and_centred_at_one() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let cbn = ConditionalBatchNorm::new(3, 4, vb).unwrap();
        let x = randn(6, &[2, 3, 2, 2]);
        let plain = BatchNorm::new(3, DType::F64, &Device::Cpu)
            .unwrap()
            .normalise(&x, BnMode::Train)
            .unwrap();
        let zero = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
        let got = cbn.forward(&x, &zero, BnMode::Train).unwrap();
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            plain.flatten_all().unwrap().to_vec1::<f64>().unwrap()
        );
        // gamma = 1 + W_gamma[:, class], beta = W_beta[:, class] for a one-hot class.
        let data = vm.data().lock().unwrap();
        data["gamma.weight"].set(&randn(7, &[3, 4])).unwrap();
        data["beta.weight"].set(&randn(8, &[3, 4])).unwrap();
        let (wg, wb): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (
            data["gamma.weight"].as_tensor().to_vec2().unwrap(),
            data["beta.weight"].as_tensor().to_vec2().unwrap(),
        );
        drop(data);
        let y = Tensor::new(&[[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let got: Vec<f64> = cbn
            .forward(&x, &y, BnMode::Train)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let p: Vec<f64> = plain.flatten_all().unwrap().to_vec1().unwrap();
        for (i, (g, v)) in got.iter().zip(&p).enumerate() {
            let (n, c) = (i / 12, (i / 4) % 3);
            let class = if n == 0 { 2 } else { 0 };
            assert!((g - ((1.0 + wg[c][class]) * v + wb[c][class])).abs() < 1e-12);
        }
    }

    #[test]
    fn a_fresh_self_modulated_layer_is_batch_norm() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let sbn = SelfModulatedBatchNorm::new(3, 5, vb).unwrap();
        let x = randn(9, &[2, 3, 2, 2]);
        let z = randn(10, &[2, 5]);
        let plain = BatchNorm::new(3, DType::F64, &Device::Cpu)
            .unwrap()
            .normalise(&x, BnMode::Train)
            .unwrap();
        let got = sbn.forward(&x, &z, BnMode::Train).unwrap();
        assert!(max_abs_diff(&got, &plain).unwrap() < 1e-12);
        assert_eq!(
            vm.all_vars().len(),
            6,
            "two MLPs: hidden weight and bias, output weight"
        );
    }

    #[test]
    fn train_mode_gradient_matches_finite_differences() {
        let r = randn(12, &[3, 2, 2, 2]);
        let bn = BatchNorm::new(2, DType::F64, &Device::Cpu).unwrap();
        let f = |x: &Tensor| {
            (bn.normalise(x, BnMode::Train).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        assert_gradient(&f, &randn(11, &[3, 2, 2, 2]), &[0, 5, 11, 23], 1e-6, 1e-6);
    }
}
