//! A run's scores during training: the weight average's images against reference
//! features (FID, KID, precision and recall; with a classifier the Inception Score and
//! class consistency), and how well co-training's class predictor labels the images
//! that train without their label.

use candle_core::{Device, Tensor};
use labelgan_core::{FeatureExtractor, Result, SplitMix64, one_hot};
use labelgan_metrics::{Features, KidConfig, MetricsConfig, compare, extract};

use crate::Trainer;

/// How often D's class predictor names the true class of images `x` that train without
/// their label (co-training's inferred labels); `None` without a predictor.
pub fn inferred_accuracy(t: &Trainer, x: &Tensor, truth: &[u32]) -> Result<Option<f64>> {
    let mut hits = 0usize;
    for start in (0..truth.len()).step_by(50) {
        let k = 50.min(truth.len() - start);
        let Some(p) = t.predict_classes(&x.narrow(0, start, k)?)? else {
            return Ok(None);
        };
        let best = p.argmax(1)?.to_vec1::<u32>()?;
        hits += best
            .iter()
            .zip(&truth[start..start + k])
            .filter(|(a, b)| a == b)
            .count();
    }
    Ok(Some(hits as f64 / truth.len().max(1) as f64))
}

/// FID, KID, precision and recall of `n` images from the weight average (classes in
/// turn) against `reference`; with a classifier also the Inception Score and, for a
/// conditional model, class consistency.
pub fn score_average(
    t: &Trainer,
    ex: &dyn FeatureExtractor,
    reference: &Features,
    n: usize,
    device: &Device,
) -> Result<Vec<(String, f64)>> {
    let m = &t.config.model;
    let (features, probs) = extract(ex, n, 50, "scoring", &mut |start, k| {
        let z = SplitMix64::derive(0x5c0e, start as u64).normal_tensor(&[k, m.z_dim], device)?;
        let y = if m.conditional {
            let classes: Vec<u32> = (start..start + k).map(|i| (i % m.classes) as u32).collect();
            Some(one_hot(&classes, m.classes, device)?)
        } else {
            None
        };
        t.generate(&z, y.as_ref(), true)
    })?;
    let cfg = MetricsConfig {
        kid: KidConfig {
            subset_size: 1000.min(n),
            ..KidConfig::default()
        },
        ..MetricsConfig::default()
    };
    let s = compare(reference, &features, &cfg)?;
    let mut scores = vec![
        ("fid".into(), s.fid),
        ("kid".into(), s.kid),
        ("precision".into(), s.precision),
        ("recall".into(), s.recall),
    ];
    if let Some(p) = probs {
        scores.push(("is".into(), labelgan_metrics::inception_score(&p, 10.min(n))?.mean));
        if m.conditional {
            let classes: Vec<u32> = (0..n).map(|i| (i % m.classes) as u32).collect();
            scores.push((
                "class_consistency".into(),
                labelgan_metrics::class_consistency(&p, &classes)?,
            ));
        }
    }
    Ok(scores)
}
