//! Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is
//! the union of balls around its vectors, each of radius the distance to its k-th
//! nearest neighbour in the same set; precision is the share of generated vectors
//! inside the real manifold, recall the share of real vectors inside the generated one.

use faer::{Mat, MatRef};
use labelgan_core::{Error, Result};

use crate::Features;

/// Rows of distances computed at once (a block holds `BLOCK x N` f64).
const BLOCK: usize = 1024;

/// Precision and recall of a generated set against a real one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    /// Share of generated vectors within some real vector's k-NN radius.
    pub precision: f64,
    /// Share of real vectors within some generated vector's k-NN radius.
    pub recall: f64,
}

/// Precision and recall of `fake` against `real` with k-th nearest neighbour radii
/// (k = 3 in the paper; each set needs more than k vectors).
pub fn precision_recall(real: &Features, fake: &Features, k: usize) -> Result<PrecisionRecall> {
    if k == 0 {
        return Err(Error::invalid("precision/recall: k must be at least 1"));
    }
    Features::check_pair(real, fake, k + 1, "precision/recall")?;
    let (r, f) = (real.matrix(), fake.matrix());
    let (real_radii, fake_radii) = (knn_radii(r, k), knn_radii(f, k));
    Ok(PrecisionRecall {
        precision: covered(f, r, &real_radii),
        recall: covered(r, f, &fake_radii),
    })
}

/// Squared distances between the rows of `a` and of `b`, `[a rows, b rows]`.
fn squared_distances(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let norms = |m: MatRef<'_, f64>| -> Vec<f64> {
        (0..m.nrows())
            .map(|i| (0..m.ncols()).map(|j| m[(i, j)] * m[(i, j)]).sum())
            .collect()
    };
    let (na, nb) = (norms(a), norms(b));
    let g = a * b.transpose();
    Mat::from_fn(a.nrows(), b.nrows(), |i, j| (na[i] + nb[j] - 2.0 * g[(i, j)]).max(0.0))
}

/// Each row's squared distance to its k-th nearest other row (the row itself, at
/// distance 0, is the 0-th).
fn knn_radii(x: MatRef<'_, f64>, k: usize) -> Vec<f64> {
    let n = x.nrows();
    let mut radii = Vec::with_capacity(n);
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let d = squared_distances(x.subrows(start, rows), x);
        for i in 0..rows {
            let mut row: Vec<f64> = (0..n).map(|j| d[(i, j)]).collect();
            row[start + i] = 0.0;
            let (_, kth, _) = row.select_nth_unstable_by(k, f64::total_cmp);
            radii.push(*kth);
        }
    }
    radii
}

/// Share of the rows of `x` within `radii[j]` of some row `j` of `centres`.
fn covered(x: MatRef<'_, f64>, centres: MatRef<'_, f64>, radii: &[f64]) -> f64 {
    let n = x.nrows();
    let mut inside = 0usize;
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        let d = squared_distances(x.subrows(start, rows), centres);
        inside += (0..rows)
            .filter(|&i| (0..centres.nrows()).any(|j| d[(i, j)] <= radii[j]))
            .count();
    }
    inside as f64 / n as f64
}
