//! HandsOff's uncertainty filter: of each block of candidates, drop the ones the
//! labelers are least sure of.
//!
//! Filtering works on blocks of `block` consecutive candidates: in each, the
//! `round(filter_fraction * block)` with the highest uncertainty score are dropped (ties
//! to the later candidate) and the rest are kept in candidate order. Blocks make the
//! choice local, so a run streams and resumes exactly. A NaN score counts as the most
//! uncertain of all.

/// Positions (ascending) of the `keep` candidates with the lowest scores; ties go to the
/// earlier candidate, NaN is above everything.
pub fn keep_most_certain(scores: &[f32], keep: usize) -> Vec<usize> {
    let key = |s: f32| if s.is_nan() { f32::INFINITY } else { s };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])).then(a.cmp(&b)));
    order.truncate(keep.min(scores.len()));
    order.sort_unstable();
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly the most uncertain are dropped; order is kept; ties drop the later one.
    #[test]
    fn drops_exactly_the_most_uncertain() {
        let scores = [0.5, 0.9, 0.1, 0.7, 0.3];
        assert_eq!(keep_most_certain(&scores, 3), vec![0, 2, 4]);
        assert_eq!(keep_most_certain(&scores, 1), vec![2]);
        assert_eq!(keep_most_certain(&scores, 9), vec![0, 1, 2, 3, 4]);
        assert_eq!(keep_most_certain(&[0.2, 0.2, 0.2], 2), vec![0, 1]);
        assert_eq!(keep_most_certain(&[f32::NAN, 0.9, 0.1], 2), vec![1, 2]);
    }
}
