//! The metrics against values computed independently with numpy and scipy
//! (`tools/metrics_reference.py`, which builds the same feature sets), including sets
//! of different sizes, and against Compare GAN's own FID example.

use labelgan_metrics::{Features, KidConfig, MetricsConfig, compare, fid, inception_score, kid, precision_recall};

/// `n x d` values of the LCG `x <- (1664525 x + 1013904223) mod 2^32` from `seed`,
/// each `x / 2^32 + shift` (as the Python script).
fn lcg(n: usize, d: usize, seed: u64, shift: f64) -> Features {
    let mut state = seed;
    let values: Vec<f64> = (0..n * d)
        .map(|_| {
            state = (1664525 * state + 1013904223) % (1 << 32);
            state as f64 / (1u64 << 32) as f64 + shift
        })
        .collect();
    Features::from_rows(&values, n, d).unwrap()
}

fn close(got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{got} vs {want}");
}

fn pair() -> (Features, Features) {
    (lcg(37, 5, 1, 0.0), lcg(23, 5, 2, 0.1))
}

#[test]
fn fid_matches_scipy_sqrtm_and_compare_gans_example() {
    let (a, b) = pair();
    close(fid(&a, &b).unwrap(), 0.11039381096660039, 1e-10);
    close(fid(&b, &a).unwrap(), 0.11039381096660039, 1e-10);
    // Compare GAN's test: means [1.5, 1] and [5.5, 9], one varying column each.
    let real: Vec<f64> = (0..100).flat_map(|i| [if i < 50 { 2.0 } else { 1.0 }, 1.0]).collect();
    let fake: Vec<f64> = (0..100).flat_map(|i| [if i < 50 { 9.0 } else { 2.0 }, 9.0]).collect();
    let (r, g) = (
        Features::from_rows(&real, 100, 2).unwrap(),
        Features::from_rows(&fake, 100, 2).unwrap(),
    );
    close(fid(&r, &g).unwrap(), 89.09090909090908, 1e-9);
}

#[test]
fn fid_keeps_its_digits_far_from_the_origin() {
    // Shifting both sets by 1e6 changes nothing (the statistics are summed centred).
    let (a, b) = pair();
    let far = |f: &Features| {
        let m = f.matrix();
        let v: Vec<f64> = (0..f.len())
            .flat_map(|i| (0..f.dim()).map(move |j| m[(i, j)] + 1e6))
            .collect();
        Features::from_rows(&v, f.len(), f.dim()).unwrap()
    };
    close(fid(&far(&a), &far(&b)).unwrap(), 0.11039381096660039, 1e-6);
}

#[test]
fn kid_is_the_unbiased_estimate_for_sets_of_different_sizes() {
    let (a, b) = pair();
    let whole = KidConfig {
        subsets: 0,
        ..KidConfig::default()
    };
    let k = kid(&a, &b, &whole).unwrap();
    close(k.mean, 0.09747856798845955, 1e-12);
    assert_eq!(k.std, 0.0);
    close(kid(&b, &a, &whole).unwrap().mean, 0.09747856798845955, 1e-12);
    // Subsets at least as large as the sets are the whole sets, in another order.
    let subsets = KidConfig {
        subsets: 5,
        subset_size: 100,
        seed: 3,
    };
    let k = kid(&a, &b, &subsets).unwrap();
    close(k.mean, 0.09747856798845955, 1e-12);
    assert!(k.std < 1e-12, "{}", k.std);
    // Smaller subsets scatter around it.
    let k = kid(
        &a,
        &b,
        &KidConfig {
            subsets: 50,
            subset_size: 10,
            seed: 3,
        },
    )
    .unwrap();
    assert!(k.std > 1e-3 && (k.mean - 0.0975).abs() < 3.0 * k.std, "{k:?}");
    // Compare GAN's block estimator divides the cross term by one set's size; the
    // estimate above is the one numpy gives for 37 against 23.
}

#[test]
fn precision_and_recall_match_brute_force_knn() {
    let (a, b) = pair();
    let pr = precision_recall(&a, &b, 3).unwrap();
    close(pr.precision, 0.8260869565217391, 1e-15);
    close(pr.recall, 0.8918918918918919, 1e-15);
    let pr = precision_recall(&a, &b, 1).unwrap();
    close(pr.precision, 0.5652173913043478, 1e-15);
    close(pr.recall, 0.6216216216216216, 1e-15);
    assert!(precision_recall(&a, &lcg(3, 5, 4, 0.0), 3).is_err());
}

#[test]
fn inception_score_matches_scipy_entropy() {
    let logits = lcg(50, 4, 3, 0.0);
    let m = logits.matrix();
    let probs: Vec<f64> = (0..50)
        .flat_map(|i| {
            let e: Vec<f64> = (0..4).map(|j| (3.0 * m[(i, j)]).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect();
    let p = Features::from_rows(&probs, 50, 4).unwrap();
    let s = inception_score(&p, 10).unwrap();
    close(s.mean, 1.2082455791989188, 1e-12);
    close(s.std, 0.07000752918839137, 1e-12);
    let s = inception_score(&p, 3).unwrap();
    close(s.mean, 1.2224026587265, 1e-12);
    close(s.std, 0.017656255210210053, 1e-12);
    // Logits are not probabilities: named, not scored.
    assert!(
        inception_score(&logits, 10)
            .unwrap_err()
            .to_string()
            .contains("softmax")
    );
    assert!(inception_score(&p, 51).is_err());
}

#[test]
fn compare_reports_every_metric_at_its_counts() {
    let (a, b) = pair();
    let cfg = MetricsConfig {
        kid: KidConfig {
            subsets: 0,
            ..KidConfig::default()
        },
        ..MetricsConfig::default()
    };
    let s = compare(&a, &b, &cfg).unwrap();
    assert_eq!((s.count_a, s.count_b), (37, 23));
    close(s.fid, 0.11039381096660039, 1e-10);
    close(s.kid, 0.09747856798845955, 1e-12);
    close(s.recall, 0.8918918918918919, 1e-15);
    assert!(
        compare(&a, &lcg(5, 4, 1, 0.0), &cfg)
            .unwrap_err()
            .to_string()
            .contains("5 and 4 dimensions")
    );
}
