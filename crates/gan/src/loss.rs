//! The four GAN losses of Compare GAN, on the discriminator's logits.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use labelgan_core::Result;

/// A GAN loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// D: `softplus(-real) + softplus(fake)`; G: `softplus(-fake)` (Goodfellow et al.'s
    /// cross-entropy, with G maximising log D(G(z))).
    NonSaturating,
    /// D: `relu(1 - real) + relu(1 + fake)`; G: `-fake`.
    Hinge,
    /// D: `fake - real`; G: `-fake` (with a penalty or clipping to keep D Lipschitz).
    Wasserstein,
    /// On `s = sigmoid(logit)`: D: `((s_real - 1)^2 + s_fake^2) / 2`; G:
    /// `(s_fake - 1)^2 / 2` (Mao et al., as Compare GAN computes it).
    LeastSquares,
}

/// The discriminator's loss and its two halves, each a mean over the batch.
#[derive(Debug, Clone)]
pub struct DiscriminatorLoss {
    /// What D minimises.
    pub total: Tensor,
    /// The term on real images.
    pub real: Tensor,
    /// The term on generated images.
    pub fake: Tensor,
}

/// `log(1 + exp(x))` without overflow: `relu(x) + log(1 + exp(-|x|))`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// `1 / (1 + exp(-x))`, from differentiable elementary ops.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

impl Loss {
    /// D's loss from its logits on real and on generated images (any shape).
    pub fn discriminator(&self, real: &Tensor, fake: &Tensor) -> Result<DiscriminatorLoss> {
        let (r, f) = match self {
            Loss::NonSaturating => (softplus(&real.neg()?)?.mean_all()?, softplus(fake)?.mean_all()?),
            Loss::Hinge => (
                real.neg()?.affine(1.0, 1.0)?.relu()?.mean_all()?,
                fake.affine(1.0, 1.0)?.relu()?.mean_all()?,
            ),
            Loss::Wasserstein => (real.mean_all()?.neg()?, fake.mean_all()?),
            Loss::LeastSquares => (
                (sigmoid(real)? - 1.0)?.sqr()?.mean_all()?,
                sigmoid(fake)?.sqr()?.mean_all()?,
            ),
        };
        let total = match self {
            Loss::LeastSquares => ((&r + &f)? * 0.5)?,
            _ => (&r + &f)?,
        };
        Ok(DiscriminatorLoss {
            total,
            real: r,
            fake: f,
        })
    }

    /// G's loss from D's logits on generated images.
    pub fn generator(&self, fake: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Loss::NonSaturating => softplus(&fake.neg()?)?.mean_all()?,
            Loss::Hinge | Loss::Wasserstein => fake.mean_all()?.neg()?,
            Loss::LeastSquares => ((sigmoid(fake)? - 1.0)?.sqr()?.mean_all()? * 0.5)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_gradient;
    use candle_core::Device;

    const ALL: [Loss; 4] = [Loss::NonSaturating, Loss::Hinge, Loss::Wasserstein, Loss::LeastSquares];

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn values_follow_the_formulas() {
        let (real, fake) = ([2.0, -0.5, 0.3], [-1.5, 0.7, 4.0]);
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let sg = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mean = |f: &dyn Fn(f64) -> f64, v: &[f64]| v.iter().map(|&x| f(x)).sum::<f64>() / v.len() as f64;
        let want = [
            (mean(&|x| sp(-x), &real) + mean(&sp, &fake), mean(&|x| sp(-x), &fake)),
            (
                mean(&|x| (1.0 - x).max(0.0), &real) + mean(&|x| (1.0 + x).max(0.0), &fake),
                -mean(&|x| x, &fake),
            ),
            (mean(&|x| x, &fake) - mean(&|x| x, &real), -mean(&|x| x, &fake)),
            (
                0.5 * (mean(&|x| (sg(x) - 1.0).powi(2), &real) + mean(&|x| sg(x).powi(2), &fake)),
                0.5 * mean(&|x| (sg(x) - 1.0).powi(2), &fake),
            ),
        ];
        for (loss, (d, g)) in ALL.iter().zip(want) {
            let got = loss.discriminator(&t(&real), &t(&fake)).unwrap();
            assert!(
                (scalar(&got.total) - d).abs() < 1e-12,
                "{loss:?} D {} vs {d}",
                scalar(&got.total)
            );
            assert!(
                (scalar(&loss.generator(&t(&fake)).unwrap()) - g).abs() < 1e-12,
                "{loss:?} G"
            );
        }
        // softplus does not overflow.
        assert!((scalar(&softplus(&t(&[800.0])).unwrap().sum_all().unwrap()) - 800.0).abs() < 1e-9);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x0 = t(&[1.3, -0.2, 0.6, -2.1]);
        let other = t(&[0.4, -1.0, 2.2, 0.1]);
        for loss in ALL {
            assert_gradient(&|x| loss.generator(x).unwrap(), &x0, &[0, 1, 2, 3], 1e-6, 1e-6);
            assert_gradient(
                &|x| loss.discriminator(x, &other).unwrap().total,
                &x0,
                &[0, 1, 2, 3],
                1e-6,
                1e-6,
            );
        }
    }
}
