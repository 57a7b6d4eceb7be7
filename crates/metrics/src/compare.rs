//! Every metric between two feature sets at once, as `labelgan metrics` reports them.

use serde::Serialize;

use labelgan_core::{Error, Result};

use crate::{Features, KidConfig, fid, inception_score, kid, precision_recall};

/// Settings of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsConfig {
    /// How KID is estimated.
    pub kid: KidConfig,
    /// The k of precision and recall's k-NN radii (3 in the paper).
    pub pr_k: usize,
    /// Splits of the Inception Score (10 by convention).
    pub is_splits: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            kid: KidConfig::default(),
            pr_k: 3,
            is_splits: 10,
        }
    }
}

/// The scores of set `b` against reference set `a` (the real images).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Vectors in `a` and in `b` (a metric is only comparable at the same counts).
    pub count_a: usize,
    /// See `count_a`.
    pub count_b: usize,
    /// Frechet distance.
    pub fid: f64,
    /// KID, mean over subsets.
    pub kid: f64,
    /// KID, standard deviation over subsets.
    pub kid_std: f64,
    /// Share of `b` inside `a`'s k-NN manifold.
    pub precision: f64,
    /// Share of `a` inside `b`'s k-NN manifold.
    pub recall: f64,
    /// Inception Score of `b`, when class probabilities were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is: Option<f64>,
    /// Its standard deviation over splits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_std: Option<f64>,
}

/// FID, KID, precision and recall of `b` against `a`.
pub fn compare(a: &Features, b: &Features, config: &MetricsConfig) -> Result<Scores> {
    config.kid.validate()?;
    if config.is_splits == 0 {
        return Err(Error::invalid("Inception Score splits must be at least 1"));
    }
    let k = kid(a, b, &config.kid)?;
    let pr = precision_recall(a, b, config.pr_k)?;
    Ok(Scores {
        count_a: a.len(),
        count_b: b.len(),
        fid: fid(a, b)?,
        kid: k.mean,
        kid_std: k.std,
        precision: pr.precision,
        recall: pr.recall,
        is: None,
        is_std: None,
    })
}

impl Scores {
    /// Adds the Inception Score of class probabilities `probs` of set `b`.
    pub fn with_inception_score(mut self, probs: &Features, splits: usize) -> Result<Self> {
        let s = inception_score(probs, splits)?;
        (self.is, self.is_std) = (Some(s.mean), Some(s.std));
        Ok(self)
    }
}
