//! Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the
//! squared maximum mean discrepancy between two feature sets under the cubic
//! polynomial kernel `k(x, y) = (x.y / d + 1)^3`, averaged over random subsets.

use faer::{Mat, MatRef};
use labelgan_core::{Error, Result, SplitMix64};

use crate::Features;

/// Most subsets (each costs two kernel blocks of `subset_size^2`).
pub const MAX_SUBSETS: usize = 100_000;

/// How KID is estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KidConfig {
    /// Random subsets to average over; 0: one estimate over the whole two sets.
    pub subsets: usize,
    /// Vectors drawn (without replacement) from each set per subset, at most the set's
    /// size: sets smaller than this are used whole, so the two sides may differ.
    pub subset_size: usize,
    /// Seed of the subset draws.
    pub seed: u64,
}

impl Default for KidConfig {
    /// 100 subsets of 1000, as torch-fidelity and StyleGAN2-ADA report KID.
    fn default() -> Self {
        Self {
            subsets: 100,
            subset_size: 1000,
            seed: 0,
        }
    }
}

impl KidConfig {
    /// Errors on settings that cannot give an estimate.
    pub fn validate(&self) -> Result<()> {
        if self.subsets > MAX_SUBSETS {
            return Err(Error::invalid(format!(
                "KID subsets is {}, expected at most {MAX_SUBSETS}",
                self.subsets
            )));
        }
        if self.subsets > 0 && self.subset_size < 2 {
            return Err(Error::invalid(format!(
                "KID subset size is {}, expected at least 2",
                self.subset_size
            )));
        }
        Ok(())
    }
}

/// A KID estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kid {
    /// Mean of the subset estimates.
    pub mean: f64,
    /// Their standard deviation (population, as torch-fidelity; 0 for one estimate).
    pub std: f64,
}

/// KID between feature sets `a` and `b` (each of at least 2 vectors).
pub fn kid(a: &Features, b: &Features, config: &KidConfig) -> Result<Kid> {
    config.validate()?;
    Features::check_pair(a, b, 2, "KID")?;
    if config.subsets == 0 {
        return Ok(Kid {
            mean: mmd2_unbiased(a.matrix(), b.matrix()),
            std: 0.0,
        });
    }
    let (m, n) = (config.subset_size.min(a.len()), config.subset_size.min(b.len()));
    let mut rng = SplitMix64::new(config.seed);
    let mut draw = |len: usize, k: usize| {
        let mut idx: Vec<usize> = (0..len).collect();
        rng.shuffle(&mut idx);
        idx.truncate(k);
        idx
    };
    let estimates: Vec<f64> = (0..config.subsets)
        .map(|_| {
            let (x, y) = (a.select(&draw(a.len(), m)), b.select(&draw(b.len(), n)));
            mmd2_unbiased(x.matrix(), y.matrix())
        })
        .collect();
    let mean = estimates.iter().sum::<f64>() / estimates.len() as f64;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / estimates.len() as f64;
    Ok(Kid { mean, std: var.sqrt() })
}

/// The unbiased MMD^2 of `x` (m rows) and `y` (n rows), each sum normalised by its
/// own count:
///
/// `sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (n (n-1)) - 2 sum_{i,j} k(x_i, y_j) / (m n)`
///
/// (Compare GAN's block estimator divides every term by one size and is wrong when the
/// sizes differ.)
pub fn mmd2_unbiased(x: MatRef<'_, f64>, y: MatRef<'_, f64>) -> f64 {
    let (m, n, d) = (x.nrows() as f64, y.nrows() as f64, x.ncols() as f64);
    let cubic = |g: Mat<f64>| Mat::from_fn(g.nrows(), g.ncols(), |i, j| (g[(i, j)] / d + 1.0).powi(3));
    let off_diagonal_sum = |k: &Mat<f64>| k.as_ref().sum() - k.as_ref().diagonal().column_vector().sum();
    let kxx = cubic(x * x.transpose());
    let kyy = cubic(y * y.transpose());
    let kxy = cubic(x * y.transpose());
    let cross = kxy.as_ref().sum();
    off_diagonal_sum(&kxx) / (m * (m - 1.0)) + off_diagonal_sum(&kyy) / (n * (n - 1.0)) - 2.0 * cross / (m * n)
}
