//! Per-class FID (the S3GAN paper's intra-FID): the FID between the real images of each
//! class and the generated images conditioned on it, so that a conditional generator
//! cannot hide a poor class behind good ones.

use labelgan_core::{Error, Result};

use crate::{Features, fid};

/// FID of class `k` for each `k < classes`: the rows of `a` whose class is `k` against
/// the rows of `b` whose class is `k`. Every class needs at least two rows in each set.
pub fn per_class_fid(
    a: &Features,
    a_classes: &[u32],
    b: &Features,
    b_classes: &[u32],
    classes: usize,
) -> Result<Vec<f64>> {
    for (set, f, c) in [("reference", a, a_classes), ("scored", b, b_classes)] {
        if f.len() != c.len() {
            return Err(Error::invalid(format!(
                "per-class FID: the {set} set has {} rows and {} classes",
                f.len(),
                c.len()
            )));
        }
        if let Some(bad) = c.iter().find(|&&k| k as usize >= classes) {
            return Err(Error::invalid(format!(
                "per-class FID: class {bad} in the {set} set, expected classes 0..{classes}"
            )));
        }
    }
    if let Some(short) = short_class(a_classes, b_classes, classes) {
        return Err(Error::invalid(format!("per-class FID: {short}")));
    }
    let rows = |c: &[u32], k: usize| -> Vec<usize> { (0..c.len()).filter(|&i| c[i] as usize == k).collect() };
    (0..classes)
        .map(|k| fid(&a.select(&rows(a_classes, k)), &b.select(&rows(b_classes, k))))
        .collect()
}

/// The first class (of `0..classes`) with fewer than the two images per set that
/// [`per_class_fid`] needs, said in words; `None` when every class has enough.
pub fn short_class(a_classes: &[u32], b_classes: &[u32], classes: usize) -> Option<String> {
    let count = |c: &[u32], k: usize| c.iter().filter(|&&x| x as usize == k).count();
    (0..classes).find_map(|k| {
        let (na, nb) = (count(a_classes, k), count(b_classes, k));
        (na < 2 || nb < 2).then(|| format!("class {k} has {na} reference and {nb} scored images (need 2 of each)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes far apart in one dimension: each class's FID sees only its own rows.
    #[test]
    fn each_class_is_scored_on_its_own_rows() {
        // a: class 0 near 0, class 1 near 10 (interleaved); b: class 0 near 1, class 1 near 10.
        let a = Features::from_rows(&[0.0, 10.0, 0.5, 10.5, -0.5, 9.5, 0.2, 10.1], 8, 1).unwrap();
        let b = Features::from_rows(&[1.0, 1.5, 0.5, 1.2, 10.0, 10.5, 9.5, 10.1], 8, 1).unwrap();
        let (ca, cb) = ([0, 1, 0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 1, 1, 1, 1]);
        let got = per_class_fid(&a, &ca, &b, &cb, 2).unwrap();
        // In one dimension FID is (mu_a - mu_b)^2 + (sd_a - sd_b)^2 (unbiased variances).
        let one_d = |x: &[f64], y: &[f64]| {
            let m = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let sd = |v: &[f64]| (v.iter().map(|t| (t - m(v)).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
            (m(x) - m(y)).powi(2) + (sd(x) - sd(y)).powi(2)
        };
        let want0 = one_d(&[0.0, 0.5, -0.5, 0.2], &[1.0, 1.5, 0.5, 1.2]);
        let want1 = one_d(&[10.0, 10.5, 9.5, 10.1], &[10.0, 10.5, 9.5, 10.1]);
        assert!((got[0] - want0).abs() < 1e-9, "{got:?} {want0}");
        assert!((got[1] - want1).abs() < 1e-9, "{got:?} {want1}");
        // Pooled, the sets look alike; per class, class 0 is off by about 1.
        assert!(got[0] > 0.8);
    }

    #[test]
    fn bad_classes_are_named() {
        let a = Features::from_rows(&[0.0, 1.0, 2.0, 3.0], 4, 1).unwrap();
        let err = per_class_fid(&a, &[0, 0, 1, 1], &a, &[0, 0, 1, 2], 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("class 2 in the scored set"), "{err}");
        let err = per_class_fid(&a, &[0, 0, 0, 1], &a, &[0, 0, 1, 1], 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("class 1 has 1 reference"), "{err}");
        assert_eq!(short_class(&[0, 0, 1, 1], &[0, 0, 1, 1], 2), None);
        assert!(
            short_class(&[0, 0, 1, 1], &[0, 0, 1, 1], 3)
                .unwrap()
                .starts_with("class 2 has 0")
        );
        let err = per_class_fid(&a, &[0, 0, 1], &a, &[0, 0, 1, 1], 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("reference set has 4 rows and 3 classes"), "{err}");
    }
}
