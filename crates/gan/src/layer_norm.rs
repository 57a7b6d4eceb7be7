//! Layer normalisation of a discriminator's activations (Ba et al. 2016), Compare
//! GAN's `layer_norm` option for D: each sample's `[C, H, W]` activations to zero mean
//! and unit variance, then a learned scale and shift per channel. Unlike batch norm it
//! couples no two samples, so it is safe under a gradient penalty (WGAN-GP's advice).

use candle_core::{D, Tensor};
use candle_nn::VarBuilder;

use labelgan_core::Result;

/// Added to the variance before the square root.
const EPS: f64 = 1e-5;

/// A layer norm over `channels` channels.
#[derive(Debug)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    /// Scale 1 and shift 0 to start, under `vb` (`gamma`, `beta`).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(channels, "gamma", candle_nn::Init::Const(1.0))?,
            beta: vb.get_with_hints(channels, "beta", candle_nn::Init::Const(0.0))?,
        })
    }

    /// Normalises `x` `[N, C, H, W]` (or `[N, C]`) per sample.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let n = dims[0];
        let flat = x.reshape((n, ()))?;
        let mean = flat.mean_keepdim(D::Minus1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + EPS)?.sqrt()?)?.reshape(dims.as_slice())?;
        let mut affine = vec![1; dims.len()];
        affine[1] = dims[1];
        Ok(normed
            .broadcast_mul(&self.gamma.reshape(affine.as_slice())?)?
            .broadcast_add(&self.beta.reshape(affine.as_slice())?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;
    use labelgan_core::SplitMix64;

    #[test]
    fn normalises_each_sample_by_hand_and_gradients_match_finite_differences() {
        let vm = VarMap::new();
        let ln = LayerNorm::new(3, crate::seeded_var_builder(&vm, 1, DType::F64, &Device::Cpu)).unwrap();
        let x = SplitMix64::new(4)
            .normal_tensor(&[2, 3, 2, 2], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let x = ((x * 3.0).unwrap() + 1.5).unwrap();
        // By hand: sample 1's twelve values.
        let v: Vec<f64> = x.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mean = v.iter().sum::<f64>() / 12.0;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 12.0;
        let y: Vec<f64> = ln
            .forward(&x)
            .unwrap()
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in v.iter().zip(&y) {
            assert!(((a - mean) / (var + EPS).sqrt() - b).abs() < 1e-12);
        }
        // d/dx of sum(LN(x) * r) against central differences.
        let r = SplitMix64::new(9)
            .normal_tensor(&[2, 3, 2, 2], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let f = |t: &Tensor| ln.forward(t).unwrap().mul(&r).unwrap().sum_all().unwrap();
        let grad = f(xv.as_tensor())
            .backward()
            .unwrap()
            .get(&xv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        for i in [0, 5, 13, 23] {
            let at = |h: f64| {
                let mut p = base.clone();
                p[i] += h;
                f(&Tensor::from_vec(p, (2, 3, 2, 2), &Device::Cpu).unwrap())
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (at(1e-5) - at(-1e-5)) / 2e-5;
            assert!((fd - grad[i]).abs() < 1e-6, "element {i}: {fd} vs {}", grad[i]);
        }
    }
}
