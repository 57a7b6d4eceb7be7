//! Spectral normalisation (Miyato et al. 2018): a weight divided by an estimate of its
//! largest singular value, kept by one power iteration per training step from a
//! persistent vector `u`.

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use labelgan_core::{Result, SplitMix64};

/// Guards the normalisation of vectors near 0.
const EPS: f64 = 1e-12;

/// The persistent state of one weight's spectral normalisation.
#[derive(Debug)]
pub struct SpectralNorm {
    /// The left singular vector estimate `[out]` (not trained; saved with checkpoints).
    u: Mutex<Tensor>,
}

fn normalise(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_all()?.sqrt()?;
    Ok(x.broadcast_div(&(norm + EPS)?)?)
}

impl SpectralNorm {
    /// A random unit `u` for a weight of `out` rows, from `seed`.
    pub fn new(out: usize, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        let u = SplitMix64::new(seed).normal_tensor(&[out], device)?.to_dtype(dtype)?;
        Ok(Self {
            u: Mutex::new(normalise(&u)?),
        })
    }

    /// The current `u`.
    pub fn u(&self) -> Tensor {
        self.u.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces `u` (a checkpoint's).
    pub fn set_u(&self, u: Tensor) {
        *self.u.lock().unwrap_or_else(|e| e.into_inner()) = u;
    }

    /// `w / sigma(w)` for a weight `w` `[out, ...]` (flattened to `[out, rest]`), with
    /// `sigma = u' W v`, `v = W^T u / |W^T u|`, `u' = W v / |W v|`. The vectors are
    /// constants to the gradient, which flows through `W` in both places. With
    /// `update` (training) `u'` replaces `u`; without, `u` stays as it is.
    pub fn apply(&self, w: &Tensor, update: bool) -> Result<Tensor> {
        let out = w.dim(0)?;
        let wm = w.reshape((out, ()))?;
        let frozen = wm.detach();
        let u = self.u();
        let v = normalise(&frozen.t()?.matmul(&u.unsqueeze(1)?)?)?;
        let u_new = normalise(&frozen.matmul(&v)?)?;
        let sigma = u_new.t()?.matmul(&wm.matmul(&v)?)?.reshape(())?;
        if update {
            self.set_u(u_new.squeeze(1)?.detach());
        }
        Ok(w.broadcast_div(&sigma)?)
    }

    /// The current estimate of the largest singular value of `w`.
    pub fn sigma(&self, w: &Tensor) -> Result<f64> {
        let normalised = self.apply(w, false)?;
        let ratio = (w.flatten_all()?.abs()?.max(0)? / normalised.flatten_all()?.abs()?.max(0)?)?;
        Ok(ratio.to_dtype(DType::F64)?.to_scalar::<f64>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::randn;
    use candle_core::Var;

    fn top_singular_value(w: &Tensor) -> f64 {
        let out = w.dim(0).unwrap();
        let rows: Vec<Vec<f64>> = w.reshape((out, ())).unwrap().to_vec2().unwrap();
        let m = faer::Mat::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j]);
        let s = m.singular_values().unwrap();
        s.iter().cloned().fold(0.0, f64::max)
    }

    #[test]
    fn sigma_converges_to_the_largest_singular_value() {
        // A conv kernel [out, in, kh, kw], flattened to [8, 27].
        let w = randn(1, &[8, 3, 3, 3]);
        let sn = SpectralNorm::new(8, 2, DType::F64, &Device::Cpu).unwrap();
        let first = sn.sigma(&w).unwrap();
        for _ in 0..100 {
            sn.apply(&w, true).unwrap();
        }
        let want = top_singular_value(&w);
        let got = sn.sigma(&w).unwrap();
        assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
        assert!(
            first < want,
            "one iteration from a random u under-estimates: {first} {want}"
        );
        // Without update, u stays.
        let u = sn.u();
        sn.apply(&w, false).unwrap();
        assert_eq!(u.to_vec1::<f64>().unwrap(), sn.u().to_vec1::<f64>().unwrap());
        // The normalised weight's largest singular value is 1.
        let normalised = sn.apply(&w, false).unwrap();
        assert!((top_singular_value(&normalised) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn gradient_matches_finite_differences_at_convergence() {
        let w0 = randn(3, &[4, 6]);
        let r = randn(4, &[4, 6]);
        let sn = SpectralNorm::new(4, 5, DType::F64, &Device::Cpu).unwrap();
        for _ in 0..200 {
            sn.apply(&w0, true).unwrap();
        }
        let f = |w: &Tensor| -> f64 {
            // A fresh estimate for each probe: at the top singular pair sigma is
            // stationary in v, so holding the vectors fixed costs only second order.
            let probe = SpectralNorm::new(4, 5, DType::F64, &Device::Cpu).unwrap();
            probe.set_u(sn.u());
            for _ in 0..50 {
                probe.apply(w, true).unwrap();
            }
            (probe.apply(w, false).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let v = Var::from_tensor(&w0).unwrap();
        let loss = (sn.apply(v.as_tensor(), false).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap();
        let g: Vec<Vec<f64>> = loss.backward().unwrap().get(&v).unwrap().to_vec2().unwrap();
        let base: Vec<Vec<f64>> = w0.to_vec2().unwrap();
        for (i, j) in [(0, 0), (1, 3), (3, 5), (2, 2)] {
            let h = 1e-6;
            let probe = |d: f64| {
                let mut b = base.clone();
                b[i][j] += d;
                f(&Tensor::new(b, &Device::Cpu).unwrap())
            };
            let fd = (probe(h) - probe(-h)) / (2.0 * h);
            assert!((fd - g[i][j]).abs() < 1e-6, "d/dw[{i}][{j}]: {} vs {fd}", g[i][j]);
        }
    }
}
