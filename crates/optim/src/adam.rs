//! Adam, with its state kept by variable name.
//!
//! Its state is kept by variable name, so that checkpoints can save and resume it, and a
//! step's coefficients ([`AdamStep`]) can be applied to candle tensors and, where a
//! trainer keeps weights in host memory, to plain `f32` slices: both forms compute the
//! same formula with the same roundings, the one candle's `AdamW` (no weight decay)
//! computes:
//!
//! `m ← β1 m + (1-β1) g`, `v ← β2 v + (1-β2) g²`,
//! `w ← w - (m / (1-β1ᵗ)) / (sqrt(v / (1-β2ᵗ)) + ε) · lr`.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use labelgan_core::Result;
use labelgan_core::io::TensorFile;

use crate::named_grads;

/// Adam with the bias correction of the paper, on named [`Var`]s; its state is
/// saved in checkpoints.
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Steps taken (for bias correction).
    pub step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

/// The coefficients of one Adam step (from [`Adam::next_step`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay rates of the first and second moments.
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
    /// `1 / (1 - β1ᵗ)` and `1 / (1 - β2ᵗ)`.
    pub scales: (f64, f64),
}

impl AdamStep {
    /// The coefficients of step `t` (counted from 1).
    pub fn new(lr: f64, betas: (f64, f64), eps: f64, t: u64) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        Self {
            lr,
            betas,
            eps,
            scales: (1.0 / (1.0 - betas.0.powi(t)), 1.0 / (1.0 - betas.1.powi(t))),
        }
    }

    /// Updates `w` with gradient `g` in place, moments `m` and `v` with it (zeros before
    /// the first step). Element for element the arithmetic of the tensor form (each
    /// coefficient rounded to `f32` once, as candle's scalar ops do).
    pub fn update_slices(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let n = w.len();
        assert!(
            m.len() == n && v.len() == n && g.len() == n,
            "Adam: weights, moments and gradient differ in length"
        );
        let c = |x: f64| x as f32;
        let (b1, b1c) = (c(self.betas.0), c(1.0 - self.betas.0));
        let (b2, b2c) = (c(self.betas.1), c(1.0 - self.betas.1));
        let (sm, sv, eps, lr) = (c(self.scales.0), c(self.scales.1), c(self.eps), c(self.lr));
        for i in 0..n {
            let gi = g[i];
            let mi = m[i] * b1 + gi * b1c;
            let vi = v[i] * b2 + (gi * gi) * b2c;
            m[i] = mi;
            v[i] = vi;
            w[i] -= ((mi * sm) / ((vi * sv).sqrt() + eps)) * lr;
        }
    }

    /// `(w, m, v)` after this step, for weights `w`, moments `m`, `v` (`None`: zeros)
    /// and gradient `g`.
    fn update_tensor(
        &self,
        w: &Tensor,
        m: Option<&Tensor>,
        v: Option<&Tensor>,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b1, b2) = self.betas;
        let m = match m {
            Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
            None => (g * (1.0 - b1))?,
        };
        let v = match v {
            Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
            None => (g.sqr()? * (1.0 - b2))?,
        };
        let denom = ((&v * self.scales.1)?.sqrt()? + self.eps)?;
        let w = (w - (((&m * self.scales.0)? / denom)? * self.lr)?)?;
        Ok((w, m, v))
    }
}

impl Adam {
    /// Adam with `lr` and `betas`, epsilon 1e-8 (candle's `AdamW` defaults, without
    /// weight decay).
    pub fn new(lr: f64, betas: (f64, f64)) -> Self {
        Self {
            lr,
            betas,
            eps: 1e-8,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// Counts a step and returns its coefficients, for trainers that apply part of a
    /// step themselves ([`AdamStep::update_slices`]) and the rest with [`Adam::apply`].
    pub fn next_step(&mut self) -> AdamStep {
        self.step += 1;
        AdamStep::new(self.lr, self.betas, self.eps, self.step)
    }

    /// One update of every var in `params` that has a gradient in `grads`.
    pub fn update(&mut self, params: &BTreeMap<String, Var>, grads: &BTreeMap<String, Tensor>) -> Result<()> {
        let step = self.next_step();
        self.apply(&step, params, grads)
    }

    /// [`Adam::update`] with the gradients of a backward pass.
    pub fn update_from(&mut self, params: &BTreeMap<String, Var>, grads: &GradStore) -> Result<()> {
        self.update(params, &named_grads(params, grads))
    }

    /// Applies `step` to every var in `params` that has a gradient in `grads`.
    pub fn apply(
        &mut self,
        step: &AdamStep,
        params: &BTreeMap<String, Var>,
        grads: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let (w, m, v) = step.update_tensor(
                &var.as_tensor().detach(),
                self.m.get(name),
                self.v.get(name),
                &g.detach(),
            )?;
            var.set(&w)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Adds the moments to `out` as `{prefix}.m.{name}` and `{prefix}.v.{name}`.
    pub fn save_into(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        for (k, t) in &self.m {
            out.insert(format!("{prefix}.m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("{prefix}.v.{k}"), t.clone());
        }
    }

    /// Reads back what [`Adam::save_into`] wrote, at update count `step`.
    pub fn load_from(&mut self, prefix: &str, file: &TensorFile, step: u64) {
        for (k, t) in &file.tensors {
            if let Some(name) = k.strip_prefix(&format!("{prefix}.m.")) {
                self.m.insert(name.to_string(), t.clone());
            } else if let Some(name) = k.strip_prefix(&format!("{prefix}.v.")) {
                self.v.insert(name.to_string(), t.clone());
            }
        }
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Adam in f64 written out from the paper, on `f(w) = sum (w - target)^2 / 2`.
    fn reference(w0: &[f64], target: &[f64], lr: f64, betas: (f64, f64), eps: f64, steps: u64) -> Vec<f64> {
        let mut w = w0.to_vec();
        let (mut m, mut v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        for t in 1..=steps {
            for i in 0..w.len() {
                let g = w[i] - target[i];
                m[i] = betas.0 * m[i] + (1.0 - betas.0) * g;
                v[i] = betas.1 * v[i] + (1.0 - betas.1) * g * g;
                let mh = m[i] / (1.0 - betas.0.powi(t as i32));
                let vh = v[i] / (1.0 - betas.1.powi(t as i32));
                w[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        w
    }

    #[test]
    fn tensor_and_slice_forms_follow_the_paper_and_each_other() {
        let w0 = [0.5f32, -1.25, 2.0, 0.0, 3.5];
        let target = [1.0f32, 1.0, -2.0, 0.25, 3.5];
        let (lr, betas, steps) = (0.05, (0.9, 0.99), 40);
        let dev = Device::Cpu;
        let var = Var::from_slice(&w0, 5, &dev).unwrap();
        let params = BTreeMap::from([("w".to_string(), var.clone())]);
        let tgt = Tensor::from_slice(&target, 5, &dev).unwrap();
        let mut opt = Adam::new(lr, betas);
        let (mut w, mut m, mut v) = (w0.to_vec(), vec![0f32; 5], vec![0f32; 5]);
        let mut host = Adam::new(lr, betas);
        for _ in 0..steps {
            let loss = ((var.as_tensor() - &tgt).unwrap().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            opt.update_from(&params, &loss.backward().unwrap()).unwrap();
            let g: Vec<f32> = w.iter().zip(&target).map(|(a, b)| a - b).collect();
            host.next_step().update_slices(&mut w, &mut m, &mut v, &g);
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(got, w, "tensor and slice forms differ");
        let want = reference(&w0.map(f64::from), &target.map(f64::from), lr, betas, 1e-8, steps);
        for (a, b) in got.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs reference {b}");
        }
        // Converging: every weight moved toward its target.
        for ((a, t), s) in got.iter().zip(&target).zip(&w0) {
            assert!((a - t).abs() <= (s - t).abs(), "{s} -> {a}, target {t}");
        }
    }

    #[test]
    fn moments_survive_a_save_and_load() {
        let dev = Device::Cpu;
        let var = Var::from_slice(&[1f32, 2.0], 2, &dev).unwrap();
        let params = BTreeMap::from([("w".to_string(), var.clone())]);
        let g = BTreeMap::from([("w".to_string(), Tensor::from_slice(&[0.5f32, -1.0], 2, &dev).unwrap())]);
        let mut a = Adam::new(0.1, (0.9, 0.999));
        a.update(&params, &g).unwrap();
        let mut saved = BTreeMap::new();
        a.save_into("opt", &mut saved);
        let file = TensorFile {
            path: "adam.safetensors".into(),
            tensors: saved.into_iter().collect(),
            metadata: Default::default(),
        };
        let mut b = Adam::new(0.1, (0.9, 0.999));
        b.load_from("opt", &file, a.step);
        let other = Var::from_tensor(var.as_tensor()).unwrap();
        let other_params = BTreeMap::from([("w".to_string(), other.clone())]);
        a.update(&params, &g).unwrap();
        b.update(&other_params, &g).unwrap();
        assert_eq!(
            var.as_tensor().to_vec1::<f32>().unwrap(),
            other.as_tensor().to_vec1::<f32>().unwrap()
        );
    }
}
