//! Feature statistics and the Frechet distance between Gaussians fitted to two feature
//! sets (the "FID" formula, Heusel et al. 2017), in f64.

use candle_core::Tensor;
use faer::{Mat, Side};

use crate::Features;
use labelgan_core::{Error, Result};

/// Running mean and covariance of feature vectors, added in batches.
///
/// The vectors are summed shifted by the first batch's mean: the covariance does not
/// change, and the subtraction of the mean's outer product at the end no longer
/// cancels most of the digits when the features sit far from 0.
#[derive(Debug, Clone)]
pub struct FeatureStats {
    /// Feature dimension.
    pub dim: usize,
    /// Vectors added so far.
    pub count: usize,
    shift: Option<Vec<f64>>,
    sum: Vec<f64>,
    /// `dim x dim` sum of outer products of the shifted vectors.
    outer: Mat<f64>,
}

impl FeatureStats {
    /// Empty statistics of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            count: 0,
            shift: None,
            sum: vec![0.0; dim],
            outer: Mat::zeros(dim, dim),
        }
    }

    /// The statistics of a whole feature set.
    pub fn of(features: &Features) -> Result<Self> {
        let mut s = Self::new(features.dim());
        s.add_features(features)?;
        Ok(s)
    }

    /// Adds the rows of `features` `[N, dim]`; non-finite values are an error.
    pub fn add(&mut self, features: &Tensor) -> Result<()> {
        self.add_features(&Features::from_tensor(features)?)
    }

    /// Adds the rows of `features`.
    pub fn add_features(&mut self, features: &Features) -> Result<()> {
        let (n, d) = (features.len(), features.dim());
        if d != self.dim {
            return Err(Error::invalid(format!(
                "features have {d} dimensions, expected {}",
                self.dim
            )));
        }
        if n == 0 {
            return Ok(());
        }
        let x = features.matrix();
        let shift = self.shift.get_or_insert_with(|| {
            (0..d)
                .map(|j| (0..n).map(|i| x[(i, j)]).sum::<f64>() / n as f64)
                .collect()
        });
        let centred = Mat::from_fn(n, d, |i, j| x[(i, j)] - shift[j]);
        for (j, s) in self.sum.iter_mut().enumerate() {
            *s += (0..n).map(|i| centred[(i, j)]).sum::<f64>();
        }
        self.outer += centred.transpose() * &centred;
        self.count += n;
        Ok(())
    }

    /// The mean vector.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        match &self.shift {
            Some(shift) => self.sum.iter().zip(shift).map(|(s, c)| s / n + c).collect(),
            None => vec![0.0; self.dim],
        }
    }

    /// Unbiased covariance (divided by N - 1, as numpy's `np.cov(rowvar=False)`),
    /// row-major `dim x dim`.
    pub fn covariance(&self) -> Result<Vec<f64>> {
        let c = self.covariance_matrix()?;
        Ok((0..self.dim * self.dim)
            .map(|k| c[(k / self.dim, k % self.dim)])
            .collect())
    }

    fn covariance_matrix(&self) -> Result<Mat<f64>> {
        if self.count < 2 {
            return Err(Error::invalid(format!(
                "a covariance needs at least 2 samples, got {}",
                self.count
            )));
        }
        let n = self.count as f64;
        let m: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        Ok(Mat::from_fn(self.dim, self.dim, |i, j| {
            (self.outer[(i, j)] - n * m[i] * m[j]) / (n - 1.0)
        }))
    }

    /// The Frechet distance between the Gaussians fitted to `self` and `other`.
    pub fn frechet_distance(&self, other: &FeatureStats) -> Result<f64> {
        if self.dim != other.dim {
            return Err(Error::invalid(format!(
                "feature sizes differ: {} and {}",
                self.dim, other.dim
            )));
        }
        frechet(
            &self.mean(),
            &self.covariance_matrix()?,
            &other.mean(),
            &other.covariance_matrix()?,
        )
    }
}

/// The Frechet distance (FID) between two feature sets.
pub fn fid(a: &Features, b: &Features) -> Result<f64> {
    Features::check_pair(a, b, 2, "FID")?;
    FeatureStats::of(a)?.frechet_distance(&FeatureStats::of(b)?)
}

/// `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))` for row-major `d x d`
/// covariances.
pub fn frechet_distance(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    if mu1.len() != d || mu2.len() != d || s1.len() != d * d || s2.len() != d * d {
        return Err(Error::invalid("frechet_distance: inconsistent sizes"));
    }
    let m = |s: &[f64]| Mat::from_fn(d, d, |i, j| s[i * d + j]);
    frechet(mu1, &m(s1), mu2, &m(s2))
}

/// The trace of the square root is the sum of the square roots of the eigenvalues of
/// the symmetric `S1^(1/2) S2 S1^(1/2)` (similar to `S1 S2`), so one symmetric
/// eigensolver serves and no complex arithmetic is needed; tiny negative eigenvalues
/// from rounding count as 0.
fn frechet(mu1: &[f64], s1: &Mat<f64>, mu2: &[f64], s2: &Mat<f64>) -> Result<f64> {
    let d = mu1.len();
    let mean_term: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let trace = |s: &Mat<f64>| (0..d).map(|i| s[(i, i)]).sum::<f64>();
    let failed = |e| Error::invalid(format!("the covariance's eigendecomposition failed: {e:?}"));
    let eig = s1.self_adjoint_eigen(Side::Lower).map_err(failed)?;
    let (u, l) = (eig.U(), eig.S().column_vector());
    // S1^(1/2) = U diag(sqrt l) U^T.
    let scaled = Mat::from_fn(d, d, |i, k| u[(i, k)] * l[k].max(0.0).sqrt());
    let root = &scaled * u.transpose();
    let m = &root * s2 * &root;
    let sym = Mat::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let vals = sym.self_adjoint_eigenvalues(Side::Lower).map_err(failed)?;
    let tr_sqrt: f64 = vals.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok((mean_term + trace(s1) + trace(s2) - 2.0 * tr_sqrt).max(0.0))
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
    fn commuting_covariances_have_the_closed_form() {
        // S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: FD = |dmu|^2 + sum (sqrt a - sqrt b)^2.
        let mut rng = SplitMix64::new(2);
        let d = 6;
        // An orthogonal Q from the eigenvectors of a random symmetric matrix.
        let spd = random_spd(d, &mut rng);
        let eig = Mat::from_fn(d, d, |i, j| spd[i * d + j])
            .self_adjoint_eigen(Side::Lower)
            .unwrap();
        let q: Vec<f64> = (0..d * d).map(|k| eig.U()[(k / d, k % d)]).collect();
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
        let m = st.mean();
        assert!((m[0] - 1.0).abs() < 1e-12 && (m[1] - 7.0 / 3.0).abs() < 1e-12, "{m:?}");
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
