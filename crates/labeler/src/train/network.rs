//! The ensemble's network in training form: `Linear → ReLU → BatchNorm → Linear → ReLU
//! → BatchNorm → Linear` for all members at once (`[M, B, ·]`), batch statistics folded
//! into running ones, and the per-member loss of each head.

use candle_core::{D, Tensor, Var};

use labelgan_core::Result;

use crate::config::Head;
use crate::ensemble::BN_EPS;

/// Trainable state: parameters as Vars (running stats as plain tensors).
pub(crate) struct State {
    pub(crate) vars: Vec<(String, Var)>,
    pub(crate) running: Vec<(String, Tensor)>,
}

impl State {
    pub(crate) fn get(&self, name: &str) -> &Tensor {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .expect("known parameter")
    }
    pub(crate) fn running(&self, name: &str) -> &Tensor {
        &self.running.iter().find(|(n, _)| n == name).expect("known buffer").1
    }
}

/// BatchNorm in training mode over dim 1 of `[M, B, h]`; returns output, batch mean and
/// unbiased batch variance.
pub(crate) fn bn_train(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
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

pub(crate) fn bn_eval(x: &Tensor, s: &State, p: &str) -> Result<Tensor> {
    let scale = s
        .get(&format!("{p}.weight"))
        .broadcast_div(&(s.running(&format!("{p}.running_var")) + BN_EPS)?.sqrt()?)?;
    let shift = (s.get(&format!("{p}.bias")) - s.running(&format!("{p}.running_mean")).mul(&scale)?)?;
    Ok(x.broadcast_mul(&scale.unsqueeze(1)?)?
        .broadcast_add(&shift.unsqueeze(1)?)?)
}

/// Forward from the first layer's output before its bias, `pre = x W1` `[M, B, h1]`, to
/// `[M, B, C]`; in training mode also the BN batch statistics.
pub(crate) fn forward_from_pre(s: &State, pre: &Tensor, train: bool) -> Result<(Tensor, Vec<(String, Tensor)>)> {
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
pub(crate) fn update_running(state: &mut State, stats: Vec<(String, Tensor)>) -> Result<()> {
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
pub(crate) fn member_loss(head: &Head, out: &Tensor, y: &Tensor) -> Result<Tensor> {
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
