//! Per-image latent optimisation ("projection"): find the latent whose image is
//! closest to a target, starting from an encoder's guess or from `w_avg`.
//!
//! Loss per image: `lpips_weight * LPIPS(G(w), x) + mse_weight * MSE(G(w), x) +
//! reg_weight * mean((w - w_init)^2)`, minimised with Adam (betas 0.9, 0.999) under the
//! StyleGAN2 projector's schedule: linear warm-up over the first `rampup` fraction of
//! the steps, cosine decay to 0 over the last `rampdown` fraction. Images in a batch
//! are independent (the loss is their sum, and the generator treats samples
//! separately), and each keeps the latent of its own best step.

use candle_core::{D, Tensor, Var};
use labelgan_core::{Error, Generator, NoiseMode, Result};
use labelgan_lpips::Lpips;
use labelgan_optim::Adam;
use serde::{Deserialize, Serialize};

use crate::metrics::mse_per_image;

/// Where the optimisation moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatentSpace {
    /// One w for every layer (a W+ start is averaged over layers).
    W,
    /// One w per layer.
    WPlus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Settings of [`project`].
pub struct ProjectorConfig {
    /// Optimisation steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of steps of linear warm-up.
    pub rampup: f64,
    /// Fraction of steps of cosine decay at the end.
    pub rampdown: f64,
    /// Weight of LPIPS.
    pub lpips_weight: f64,
    /// Weight of the pixel MSE.
    pub mse_weight: f64,
    /// Weight of `mean((w - w_init)^2)`.
    pub reg_weight: f64,
    /// W or W+.
    pub space: LatentSpace,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            steps: 500,
            lr: 0.1,
            rampup: 0.05,
            rampdown: 0.25,
            lpips_weight: 10.0,
            mse_weight: 1.0,
            reg_weight: 1.0,
            space: LatentSpace::WPlus,
        }
    }
}

impl ProjectorConfig {
    /// The learning rate at step `t` (0-based).
    pub fn lr_at(&self, t: usize) -> f64 {
        let x = t as f64 / self.steps.max(1) as f64;
        let down = ((1.0 - x) / self.rampdown.max(1e-12)).min(1.0);
        let down = 0.5 - 0.5 * (std::f64::consts::PI * down).cos();
        let up = (x / self.rampup.max(1e-12)).min(1.0);
        self.lr * down * up
    }
}

/// What [`project`] found.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Best latents `[N, num_ws, w_dim]`.
    pub ws: Tensor,
    /// Each image's best loss and the step it came from (0 = the start).
    pub best_loss: Vec<f32>,
    /// The step each image's best came from.
    pub best_step: Vec<usize>,
}

/// Optimises latents for `images` `[N, 3, R, R]` in [-1, 1] from `init`
/// `[N, num_ws, w_dim]`, with constant noise. `lpips` may be `None` only when
/// `config.lpips_weight` is 0. `progress(step, mean loss)` is called after every step.
pub fn project<G: Generator + ?Sized>(
    g: &G,
    lpips: Option<&Lpips>,
    images: &Tensor,
    init: &Tensor,
    config: &ProjectorConfig,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<Projection> {
    let s = g.spec();
    let n = images.dim(0)?;
    if images.dims() != [n, s.img_channels, s.resolution, s.resolution] {
        return Err(Error::invalid(format!(
            "images must be [N, {}, {r}, {r}] for this generator, got {:?}",
            s.img_channels,
            images.dims(),
            r = s.resolution
        )));
    }
    if init.dims() != [n, s.num_ws, s.w_dim] {
        return Err(Error::invalid(format!(
            "initial latents must be [{n}, {}, {}], got {:?}",
            s.num_ws,
            s.w_dim,
            init.dims()
        )));
    }
    let lpips = match (lpips, config.lpips_weight != 0.0) {
        (Some(l), true) => Some(l),
        (None, true) => {
            return Err(Error::invalid(format!(
                "the projector's LPIPS weight is {} but no perceptual model was given",
                config.lpips_weight
            )));
        }
        (_, false) => None,
    };
    let start = match config.space {
        LatentSpace::W => init.mean_keepdim(1)?,
        LatentSpace::WPlus => init.clone(),
    }
    .detach();
    let expand = |p: &Tensor| -> Result<Tensor> {
        Ok(match config.space {
            LatentSpace::W => p.repeat((1, s.num_ws, 1))?,
            LatentSpace::WPlus => p.clone(),
        })
    };
    let var = Var::from_tensor(&start)?;
    let params = std::collections::BTreeMap::from([("w".to_string(), var.clone())]);
    let mut opt = Adam::new(config.lr, (0.9, 0.999));
    let row = start.elem_count() / n.max(1);
    let mut best: Vec<f32> = start.flatten_all()?.to_vec1()?;
    let (mut best_loss, mut best_step) = (vec![f32::INFINITY; n], vec![0usize; n]);
    let images = images.detach();
    for t in 0..=config.steps {
        let p = var.as_tensor();
        let img = g.image(&expand(p)?, NoiseMode::Const)?;
        let mut loss = (mse_per_image(&img, &images)? * config.mse_weight)?;
        if let Some(lp) = lpips {
            loss = (loss + (lp.distance(&img, &images)? * config.lpips_weight)?)?;
        }
        if config.reg_weight != 0.0 {
            let reg = (p - &start)?.sqr()?.flatten_from(1)?.mean(D::Minus1)?;
            loss = (loss + (reg * config.reg_weight)?)?;
        }
        let per = loss.to_vec1::<f32>()?;
        if per.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "projection diverged at step {t} (loss {per:?}); lower the learning rate"
            )));
        }
        let now: Vec<f32> = p.flatten_all()?.to_vec1()?;
        for i in 0..n {
            if per[i] < best_loss[i] {
                best_loss[i] = per[i];
                best_step[i] = t;
                best[i * row..(i + 1) * row].copy_from_slice(&now[i * row..(i + 1) * row]);
            }
        }
        if t == config.steps {
            break; // the last evaluation only scores the final latents
        }
        let grads = loss.sum_all()?.backward()?;
        let gw = grads
            .get(p)
            .ok_or_else(|| Error::invalid("internal: no gradient with respect to the latents"))?;
        opt.lr = config.lr_at(t);
        opt.update(
            &params,
            &std::collections::BTreeMap::from([("w".to_string(), gw.clone())]),
        )?;
        progress(t + 1, per.iter().sum::<f32>() / n as f32);
    }
    let best = Tensor::from_vec(best, start.dims(), start.device())?;
    Ok(Projection {
        ws: expand(&best)?,
        best_loss,
        best_step,
    })
}

/// [`project`] over `images` `batch` at a time (the latents of one image never depend on
/// the others'), returning all best latents. `progress(images done, total)` is called
/// after each batch.
#[allow(clippy::too_many_arguments)]
pub fn project_in_batches<G: Generator + ?Sized>(
    g: &G,
    lpips: Option<&Lpips>,
    images: &Tensor,
    init: &Tensor,
    config: &ProjectorConfig,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let n = images.dim(0)?;
    if init.dim(0)? != n {
        return Err(Error::invalid(format!(
            "{n} images but {} initial latents",
            init.dim(0)?
        )));
    }
    let batch = batch.max(1);
    let mut out = vec![];
    for s in (0..n).step_by(batch) {
        let k = batch.min(n - s);
        let p = project(
            g,
            lpips,
            &images.narrow(0, s, k)?,
            &init.narrow(0, s, k)?,
            config,
            &mut |_, _| {},
        )?;
        out.push(p.ws);
        progress(s + k, n);
    }
    Ok(Tensor::cat(&out, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ramps_up_and_down() {
        let c = ProjectorConfig {
            steps: 100,
            ..ProjectorConfig::default()
        };
        assert_eq!(c.lr_at(0), 0.0);
        assert!((c.lr_at(5) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(50) - 0.1).abs() < 1e-12);
        // Halfway through the ramp-down the cosine is at one half.
        assert!((c.lr_at(88) - 0.1 * (0.5 - 0.5 * (std::f64::consts::PI * 0.48).cos())).abs() < 1e-12);
        assert!(c.lr_at(99) < 0.01);
    }
}
