//! Inception Score (Salimans et al. 2016) over any classifier's class probabilities:
//! `exp(E_x KL(p(y|x) || p(y)))`, computed in splits, mean and standard deviation.

use labelgan_core::{Error, Result};

use crate::Features;

/// How far a row of probabilities may sum from 1 (they arrive as f32 softmax outputs).
const SUM_TOLERANCE: f64 = 1e-3;

/// An Inception Score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionScore {
    /// Mean over the splits.
    pub mean: f64,
    /// Population standard deviation over the splits (as the original code).
    pub std: f64,
}

/// The score of class probabilities `probs` `[N, classes]` (rows non-negative, summing
/// to 1) in `splits` consecutive parts of (nearly) equal size (10 by convention).
pub fn inception_score(probs: &Features, splits: usize) -> Result<InceptionScore> {
    let (n, c) = (probs.len(), probs.dim());
    if splits == 0 || splits > n {
        return Err(Error::invalid(format!(
            "Inception Score: {splits} splits for {n} images, expected 1..={n}"
        )));
    }
    let p = probs.matrix();
    for i in 0..n {
        let row = (0..c).map(|j| p[(i, j)]);
        let sum: f64 = row.clone().sum();
        if row.clone().any(|v| v < 0.0) || (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(Error::invalid(format!(
                "Inception Score: row {i} is not a probability vector (sums to {sum:.4}); pass softmax outputs, not logits"
            )));
        }
    }
    let scores: Vec<f64> = (0..splits)
        .map(|k| {
            let (lo, hi) = (k * n / splits, (k + 1) * n / splits);
            let rows = (hi - lo) as f64;
            let marginal: Vec<f64> = (0..c)
                .map(|j| (lo..hi).map(|i| p[(i, j)]).sum::<f64>() / rows)
                .collect();
            let kl: f64 = (lo..hi)
                .map(|i| {
                    (0..c)
                        .filter(|&j| p[(i, j)] > 0.0)
                        .map(|j| p[(i, j)] * (p[(i, j)].ln() - marginal[j].ln()))
                        .sum::<f64>()
                })
                .sum::<f64>()
                / rows;
            kl.exp()
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok(InceptionScore { mean, std: var.sqrt() })
}
