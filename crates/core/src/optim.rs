//! Optimisers shared by the crates that train (GAN, perceptual backbone, encoder).

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::Result;
use crate::io::TensorFile;

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

impl Adam {
    /// Adam with `lr` and `betas`, epsilon 1e-8.
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

    /// One update of every var in `params` that has a gradient in `grads`.
    pub fn update(&mut self, params: &BTreeMap<String, Var>, grads: &BTreeMap<String, Tensor>) -> Result<()> {
        self.step += 1;
        let (b1, b2) = self.betas;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let g = g.detach();
            let m = match self.m.get(name) {
                Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                None => (&g * (1.0 - b1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let denom = ((&v / c2)?.sqrt()? + self.eps)?;
            let upd = ((&m / c1)? / denom)?;
            var.set(&(var.as_tensor().detach() - (upd * self.lr)?)?)?;
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
