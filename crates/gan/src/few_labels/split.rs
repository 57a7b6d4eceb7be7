//! The labelled subset of a finite training set.

use labelgan_core::{Error, Result, SplitMix64};

/// Which of `n` images keep their labels: the first `round(fraction * n)` (at least
/// one) of a permutation drawn from a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSplit {
    labelled: Vec<bool>,
}

impl LabelSplit {
    /// The split of `n` images with `fraction` in (0, 1] labelled.
    pub fn new(n: usize, fraction: f64, seed: u64) -> Result<Self> {
        if n == 0 || !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::invalid(format!(
                "a label split of {n} images with fraction {fraction}"
            )));
        }
        let keep = ((fraction * n as f64).round() as usize).clamp(1, n);
        let mut order: Vec<usize> = (0..n).collect();
        SplitMix64::new(seed ^ 0x6c61_6265_6c73).shuffle(&mut order);
        let mut labelled = vec![false; n];
        for &i in &order[..keep] {
            labelled[i] = true;
        }
        Ok(Self { labelled })
    }

    /// Whether image `i` keeps its label.
    pub fn is_labelled(&self, i: usize) -> bool {
        self.labelled.get(i).copied().unwrap_or(false)
    }

    /// The labelled images, in index order.
    pub fn labelled(&self) -> Vec<usize> {
        (0..self.labelled.len()).filter(|&i| self.labelled[i]).collect()
    }

    /// The unlabelled images, in index order.
    pub fn unlabelled(&self) -> Vec<usize> {
        (0..self.labelled.len()).filter(|&i| !self.labelled[i]).collect()
    }

    /// Images in the set.
    pub fn len(&self) -> usize {
        self.labelled.len()
    }

    /// Whether the set is empty (never: a split holds at least one image).
    pub fn is_empty(&self) -> bool {
        self.labelled.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_is_kept_and_the_seed_decides_which() {
        let s = LabelSplit::new(1000, 0.025, 0).unwrap();
        assert_eq!(s.labelled().len(), 25);
        assert_eq!(s.unlabelled().len(), 975);
        assert_eq!(s, LabelSplit::new(1000, 0.025, 0).unwrap());
        assert_ne!(s, LabelSplit::new(1000, 0.025, 1).unwrap());
        // A larger fraction of the same seed keeps the smaller one's images.
        let more = LabelSplit::new(1000, 0.1, 0).unwrap();
        assert!(s.labelled().iter().all(|&i| more.is_labelled(i)));
        assert_eq!(LabelSplit::new(10, 0.01, 0).unwrap().labelled().len(), 1);
        assert_eq!(LabelSplit::new(10, 1.0, 0).unwrap().unlabelled().len(), 0);
        assert!(LabelSplit::new(0, 0.5, 0).is_err());
        assert!(LabelSplit::new(10, 0.0, 0).is_err());
        assert!(LabelSplit::new(10, f64::NAN, 0).is_err());
    }
}
