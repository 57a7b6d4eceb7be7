//! Feature statistics and the Frechet distance between Gaussians (the "FID" formula,
//! Heusel et al. 2017), in f64.

use candle_core::{DType, Tensor};

use labelgan_core::{Error, Result};

/// Running mean and covariance of feature vectors.
#[derive(Debug, Clone)]
pub struct FeatureStats {
    /// Feature dimension.
    pub dim: usize,
    /// Vectors added so far.
    pub count: usize,
    sum: Vec<f64>,
    /// Row-major `dim x dim` sum of outer products.
    outer: Vec<f64>,
}

impl FeatureStats {
    /// Empty statistics of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            sum: vec![0.0; dim],
            outer: vec![0.0; dim * dim],
        }
    }

    /// Adds the rows of `features` `[N, dim]`; non-finite values are an error.
    pub fn add(&mut self, features: &Tensor) -> Result<()> {
        let (n, d) = features
            .dims2()
            .map_err(|_| Error::invalid(format!("features must be [N, D], got {:?}", features.dims())))?;
        if d != self.dim {
            return Err(Error::invalid(format!(
                "features have {d} dimensions, expected {}",
                self.dim
            )));
        }
        let rows = features.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        for row in &rows {
            if row.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid("features contain NaN or infinity"));
            }
            for (i, &a) in row.iter().enumerate() {
                self.sum[i] += a;
                let o = &mut self.outer[i * d..(i + 1) * d];
                for (x, &b) in o.iter_mut().zip(row) {
                    *x += a * b;
                }
            }
        }
        self.count += n;
        Ok(())
    }

    /// The mean vector.
    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.count.max(1) as f64).collect()
    }

    /// Unbiased covariance (row-major), as numpy's `np.cov(rowvar=False)`.
    pub fn covariance(&self) -> Result<Vec<f64>> {
        if self.count < 2 {
            return Err(Error::invalid(format!(
                "a covariance needs at least 2 samples, got {}",
                self.count
            )));
        }
        let (n, d, mu) = (self.count as f64, self.dim, self.mean());
        Ok((0..d * d)
            .map(|k| (self.outer[k] - n * mu[k / d] * mu[k % d]) / (n - 1.0))
            .collect())
    }

    /// The Frechet distance between the Gaussians fitted to `self` and `other`.
    pub fn frechet_distance(&self, other: &FeatureStats) -> Result<f64> {
        if self.dim != other.dim {
            return Err(Error::invalid(format!(
                "feature sizes differ: {} and {}",
                self.dim, other.dim
            )));
        }
        frechet_distance(
            &self.mean(),
            &self.covariance()?,
            &other.mean(),
            &other.covariance()?,
            self.dim,
        )
    }
}

/// `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))` for row-major `d x d`
/// covariances. The trace of the square root is taken as the sum of the square roots of
/// the eigenvalues of the symmetric `S1^(1/2) S2 S1^(1/2)` (similar to `S1 S2`), so no
/// complex arithmetic is needed; tiny negative eigenvalues from rounding count as 0.
pub fn frechet_distance(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    if mu1.len() != d || mu2.len() != d || s1.len() != d * d || s2.len() != d * d {
        return Err(Error::invalid("frechet_distance: inconsistent sizes"));
    }
    let mean_term: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let (vals, vecs) = symmetric_eigen(s1, d);
    // S1^(1/2) = V diag(sqrt(l)) V^T.
    let mut h = vec![0.0; d * d];
    for k in 0..d {
        let r = vals[k].max(0.0).sqrt();
        for i in 0..d {
            let vik = vecs[i * d + k] * r;
            for j in 0..d {
                h[i * d + j] += vik * vecs[j * d + k];
            }
        }
    }
    let m = matmul(&matmul(&h, s2, d), &h, d);
    let sym: Vec<f64> = (0..d * d).map(|k| 0.5 * (m[k] + m[(k % d) * d + k / d])).collect();
    let (mv, _) = symmetric_eigen(&sym, d);
    let tr_sqrt: f64 = mv.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok((mean_term + trace(s1) + trace(s2) - 2.0 * tr_sqrt).max(0.0))
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik == 0.0 {
                continue;
            }
            let (row, brow) = (&mut c[i * d..(i + 1) * d], &b[k * d..(k + 1) * d]);
            for (x, &y) in row.iter_mut().zip(brow) {
                *x += aik * y;
            }
        }
    }
    c
}

/// Eigenvalues and eigenvectors (columns, row-major `d x d`) of a symmetric matrix, by
/// cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * norm.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * d + p], a[q * d + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Rows and columns p, q of A; columns p, q of V.
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelgan_core::SplitMix64;

    fn random_spd(d: usize, rng: &mut SplitMix64) -> Vec<f64> {
        let b: Vec<f64> = (0..d * d).map(|_| rng.normal()).collect();
        let mut s = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                s[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>() / d as f64;
            }
            s[i * d + i] += 0.1;
        }
        s
    }

    #[test]
    fn eigen_reconstructs() {
        let mut rng = SplitMix64::new(1);
        let d = 7;
        let s = random_spd(d, &mut rng);
        let (l, v) = symmetric_eigen(&s, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| v[i * d + k] * l[k] * v[j * d + k]).sum();
                assert!((r - s[i * d + j]).abs() < 1e-10, "{r} vs {}", s[i * d + j]);
            }
        }
    }

    #[test]
    fn commuting_covariances_have_the_closed_form() {
        // S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FD = |dmu|^2 + sum (sqrt a - sqrt b)^2.
        let mut rng = SplitMix64::new(2);
        let d = 6;
        let (_, q) = symmetric_eigen(&random_spd(d, &mut rng), d);
        let a: Vec<f64> = (0..d).map(|_| 0.1 + rng.uniform() * 3.0).collect();
        let b: Vec<f64> = (0..d).map(|_| 0.1 + rng.uniform() * 3.0).collect();
        let build = |e: &[f64]| -> Vec<f64> {
            (0..d * d)
                .map(|k| (0..d).map(|m| q[(k / d) * d + m] * e[m] * q[(k % d) * d + m]).sum())
                .collect()
        };
        let mu1: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let mu2: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let got = frechet_distance(&mu1, &build(&a), &mu2, &build(&b), d).unwrap();
        let want: f64 = mu1.iter().zip(&mu2).map(|(x, y)| (x - y).powi(2)).sum::<f64>()
            + a.iter()
                .zip(&b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        assert!((got - want).abs() < 1e-9 * want.max(1.0), "{got} vs {want}");
    }

    #[test]
    fn symmetric_and_zero_on_itself() {
        let mut rng = SplitMix64::new(3);
        let d = 9;
        let (s1, s2) = (random_spd(d, &mut rng), random_spd(d, &mut rng));
        let mu: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let ab = frechet_distance(&mu, &s1, &mu, &s2, d).unwrap();
        let ba = frechet_distance(&mu, &s2, &mu, &s1, d).unwrap();
        assert!(ab > 0.01 && (ab - ba).abs() < 1e-9, "{ab} {ba}");
        assert!(frechet_distance(&mu, &s1, &mu, &s1, d).unwrap() < 1e-9);
    }

    #[test]
    fn matches_scipy_sqrtm_on_non_commuting_matrices() {
        // numpy/scipy: |m1-m2|^2 + tr(s1) + tr(s2) - 2 tr(sqrtm(s1 @ s2).real).
        let s1 = [2.0, 0.5, 0.1, 0.5, 1.0, 0.3, 0.1, 0.3, 0.7];
        let s2 = [1.0, -0.4, 0.2, -0.4, 1.5, 0.0, 0.2, 0.0, 0.9];
        let got = frechet_distance(&[0.1, -0.2, 0.3], &s1, &[0.0, 0.4, 0.1], &s2, 3).unwrap();
        assert!((got - 1.026412472330069).abs() < 1e-10, "{got}");
    }

    #[test]
    fn stats_match_direct_formulas() {
        let x = Tensor::new(&[[1f32, 2.], [3., 5.], [-1., 0.]], &candle_core::Device::Cpu).unwrap();
        let mut st = FeatureStats::new(2);
        st.add(&x.narrow(0, 0, 2).unwrap()).unwrap();
        st.add(&x.narrow(0, 2, 1).unwrap()).unwrap();
        assert_eq!(st.mean(), vec![1.0, 7.0 / 3.0]);
        let c = st.covariance().unwrap();
        // np.cov([[1,3,-1],[2,5,0]]) = [[4, 5], [5, 6.3333]].
        assert!((c[0] - 4.0).abs() < 1e-12 && (c[1] - 5.0).abs() < 1e-12 && (c[3] - 19.0 / 3.0).abs() < 1e-12);
        assert!(
            st.add(&Tensor::new(&[[f32::NAN, 0.]], &candle_core::Device::Cpu).unwrap())
                .is_err()
        );
        assert!(
            st.add(&Tensor::new(&[[1f32, 2., 3.]], &candle_core::Device::Cpu).unwrap())
                .is_err()
        );
    }
}
