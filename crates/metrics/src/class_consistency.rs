//! Class consistency of a conditional generator: how often a classifier trained on real
//! labelled images names the class each generated image was conditioned on (S3GAN's
//! check that the labels it inferred still steer the generator).

use labelgan_core::{Error, Result};

use crate::Features;

/// The fraction of rows of `probs` (`[N, classes]` class probabilities of generated
/// images) whose most probable class is `classes[i]`, the class image `i` was made for.
pub fn class_consistency(probs: &Features, classes: &[u32]) -> Result<f64> {
    let (n, k) = (probs.len(), probs.dim());
    if classes.len() != n || n == 0 {
        return Err(Error::invalid(format!(
            "class consistency: {} classes for {n} probability rows (need at least one, as many)",
            classes.len()
        )));
    }
    if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
        return Err(Error::invalid(format!(
            "class consistency: class {c} of a {k}-class classifier"
        )));
    }
    let rows = probs.slice(0, n);
    let hits = (0..n)
        .filter(|&i| {
            let best = (0..k).fold(0, |b, j| if rows[(i, j)] > rows[(i, b)] { j } else { b });
            best == classes[i] as usize
        })
        .count();
    Ok(hits as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_rows_whose_argmax_is_the_conditioning_class() {
        let p = Features::from_rows(&[0.7, 0.2, 0.1, 0.1, 0.1, 0.8, 0.3, 0.4, 0.3, 0.5, 0.4, 0.1], 4, 3).unwrap();
        assert_eq!(class_consistency(&p, &[0, 2, 1, 1]).unwrap(), 0.75);
        assert_eq!(class_consistency(&p, &[1, 1, 0, 2]).unwrap(), 0.0);
        assert!(class_consistency(&p, &[0, 1]).is_err());
        assert!(
            class_consistency(&p, &[0, 1, 2, 3])
                .unwrap_err()
                .to_string()
                .contains("class 3 of a 3-class")
        );
    }
}
