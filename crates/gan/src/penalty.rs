//! Gradient penalties on the discriminator: WGAN-GP, DRAGAN and R1.
//!
//! Each needs D's gradient with respect to its input, and the penalty's own gradient
//! with respect to D's weights goes through that gradient: candle computes it only on a
//! thread that reads `CANDLE_GRAD_DO_NOT_DETACH=1` at its first backward pass
//! (`../shared/CANDLE_NOTES.md`; [`crate::second_order::r1_training_pool`] sets a
//! process up for it). Elsewhere the value is right and the weights get no gradient.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result, SplitMix64};
use labelgan_optim::named_grads;

/// Added under the square root of the slopes, as Compare GAN does, so that the
/// penalty's gradient is finite where D's input gradient vanishes.
const SLOPE_EPS: f64 = 1e-4;

/// A gradient penalty, added to D's loss times its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// Nothing.
    None,
    /// `mean (sqrt(eps + |grad D(x_hat)|^2) - 1)^2` at `x_hat` uniformly on the segment
    /// from a real image to a generated one (Gulrajani et al. 2017).
    WganGp,
    /// The same slope penalty at real images plus uniform noise of width the images'
    /// standard deviation, clipped to the image range [-1, 1] (Kodali et al. 2017;
    /// Compare GAN clips to [0, 1], its image range).
    Dragan,
    /// `mean |grad D(x)|^2` at real images (Mescheder et al. 2018); StyleGAN2's weight
    /// is `gamma / 2`.
    R1,
}

impl Penalty {
    /// The penalty of discriminator `d` (images to logits `[N]` or `[N, 1]`) at a batch
    /// of `real` and `fake` images `[N, C, H, W]`; randomness from `rng`.
    pub fn value(
        &self,
        d: &dyn Fn(&Tensor) -> Result<Tensor>,
        real: &Tensor,
        fake: &Tensor,
        rng: &mut SplitMix64,
    ) -> Result<Tensor> {
        let n = real.dim(0)?;
        match self {
            Penalty::None => Ok(Tensor::zeros((), real.dtype(), real.device())?),
            Penalty::WganGp => {
                if fake.dims() != real.dims() {
                    return Err(Error::invalid(format!(
                        "WGAN-GP: real images {:?} and generated {:?} differ in shape",
                        real.dims(),
                        fake.dims()
                    )));
                }
                let alpha: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
                let alpha = Tensor::new(alpha, real.device())?
                    .to_dtype(real.dtype())?
                    .reshape((n, 1, 1, 1))?;
                let (real, fake) = (real.detach(), fake.detach());
                let x_hat = (&real + alpha.broadcast_mul(&(fake - &real)?)?)?;
                slope_penalty(d, &x_hat)
            }
            Penalty::Dragan => {
                let x = real.detach();
                let std = x.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
                let mean = std.iter().sum::<f64>() / std.len() as f64;
                let sd = (std.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / std.len() as f64).sqrt();
                let noise: Vec<f64> = (0..x.elem_count()).map(|_| rng.uniform() - 0.5).collect();
                let noise = Tensor::new(noise, x.device())?
                    .to_dtype(x.dtype())?
                    .reshape(x.shape())?;
                let x_noisy = (x + (noise * sd)?)?.clamp(-1.0, 1.0)?;
                slope_penalty(d, &x_noisy)
            }
            Penalty::R1 => {
                let g = input_gradient(d, real)?;
                Ok(g.sqr()?.reshape((n, ()))?.sum(1)?.mean_all()?)
            }
        }
    }
}

/// A discriminator for a penalty: images and the one-hot classes of the same samples
/// to logits.
pub type PenaltyDiscriminator<'a> = dyn Fn(&Tensor, Option<&Tensor>) -> Result<Tensor> + 'a;

impl Penalty {
    /// The penalty's value and `weight` times its gradients with respect to `vars`
    /// (detached), with the batch taken in `groups` interleaved groups (sample `i` in
    /// group `i % groups`), each differentiated on its own and weighted by its share:
    /// the same as the whole batch at once for a discriminator that couples samples
    /// only within such groups (StyleGAN2's minibatch standard deviation), while the
    /// graph of gradients is held for one group at a time. One group (or a batch it
    /// does not divide) is the whole batch.
    #[allow(clippy::too_many_arguments)]
    pub fn gradients(
        &self,
        d: &PenaltyDiscriminator,
        (real, fake, y): (&Tensor, &Tensor, Option<&Tensor>),
        groups: usize,
        weight: f64,
        vars: &BTreeMap<String, Var>,
        rng: &mut SplitMix64,
    ) -> Result<(f32, BTreeMap<String, Tensor>)> {
        let n = real.dim(0)?;
        let groups = if groups > 1 && n.is_multiple_of(groups) {
            groups
        } else {
            1
        };
        let (mut value, mut acc) = (0f32, BTreeMap::<String, Tensor>::new());
        for j in 0..groups {
            let pick = |t: &Tensor| -> Result<Tensor> {
                if groups == 1 {
                    return Ok(t.clone());
                }
                let idx: Vec<u32> = (0..n / groups).map(|k| (j + k * groups) as u32).collect();
                Ok(t.index_select(&Tensor::new(idx, t.device())?, 0)?)
            };
            let yj = y.map(pick).transpose()?;
            let dj = |x: &Tensor| d(x, yj.as_ref());
            let p = self.value(&dj, &pick(real)?, &pick(fake)?, rng)?;
            value += p.to_dtype(DType::F32)?.to_scalar::<f32>()? / groups as f32;
            for (k, g) in named_grads(vars, &(p * (weight / groups as f64))?.backward()?) {
                let g = g.detach();
                let sum = match acc.remove(&k) {
                    Some(a) => (a + g)?,
                    None => g,
                };
                acc.insert(k, sum);
            }
        }
        Ok((value, acc))
    }
}

/// D's gradient with respect to its input at `x`, kept in the graph of D's weights.
fn input_gradient(d: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    let x = Var::from_tensor(&x.detach())?;
    let grads = d(x.as_tensor())?.sum_all()?.backward()?;
    grads
        .get(&x)
        .cloned()
        .ok_or_else(|| Error::invalid("the discriminator's output does not depend on its input"))
}

/// `mean (sqrt(eps + |grad D(x)|^2) - 1)^2`.
fn slope_penalty(d: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let g = input_gradient(d, x)?;
    let slopes = (g.sqr()?.reshape((n, ()))?.sum(1)? + SLOPE_EPS)?.sqrt()?;
    Ok((slopes - 1.0)?.sqr()?.mean_all()?)
}
