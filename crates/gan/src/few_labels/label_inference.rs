//! S2GAN's label inference: features learned without labels (rotation prediction, on
//! every image) are standardised; a multinomial logistic regression fitted on the
//! labelled few names the classes of the rest (its argmax: hard labels; its
//! probabilities: soft ones), or, with no labels at all, k-means clusters the
//! features. The regression's L2 weight is chosen on a held-out part of the labelled
//! images, then the regression is refitted on all of them.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

use candle_core::{DType, Device, Tensor};

use labelgan_core::{Error, FeatureExtractor, Progress, Result, SplitMix64};

use super::{Inference, InferredLabels, LabelSplit};

/// The linear classifier's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    /// L2 weights to choose from.
    pub alphas: Vec<f64>,
    /// L-BFGS iterations.
    pub max_iterations: u64,
    /// Share of the labelled images held out to choose the weight.
    pub validation: f64,
    /// Seed of the held-out choice.
    pub seed: u64,
}

impl Default for LinearProbe {
    fn default() -> Self {
        Self {
            alphas: vec![1e-3, 1e-2, 1e-1, 1.0, 10.0],
            max_iterations: 200,
            validation: 0.2,
            seed: 0,
        }
    }
}

/// What the fit chose and how well it did on its held-out labelled images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeReport {
    /// The chosen L2 weight.
    pub alpha: f64,
    /// Accuracy on the held-out labelled images with that weight.
    pub validation_accuracy: f64,
}

/// Features `[N, D]` of `images` (`[N, 3, R, R]` in [-1, 1], on the CPU) through
/// `extractor` on `device`, 64 images at a time, with a progress line.
pub fn image_features(extractor: &dyn FeatureExtractor, images: &Tensor, device: &Device) -> Result<Array2<f32>> {
    let n = images.dim(0)?;
    let d = extractor.dim();
    let bar = Progress::new(n as u64, "features", "images");
    let mut out = Vec::with_capacity(n * d);
    for start in (0..n).step_by(64) {
        let m = 64.min(n - start);
        let f = extractor.features(&images.narrow(0, start, m)?.to_device(device)?)?;
        if f.dims() != [m, d] {
            return Err(Error::invalid(format!(
                "the extractor gave features {:?} for {m} images, expected [{m}, {d}]",
                f.dims()
            )));
        }
        out.extend(f.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        bar.set((start + m) as u64);
    }
    bar.finish();
    Array2::from_shape_vec((n, d), out).map_err(|e| Error::invalid(e.to_string()))
}

/// Features `[N, D]` standardised per dimension (mean 0, variance 1; constant
/// dimensions left at 0), in f64.
pub fn standardise(features: &Array2<f32>) -> Result<Array2<f64>> {
    if features.nrows() == 0 || features.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("features are empty or hold NaN or infinity"));
    }
    let x = features.mapv(f64::from);
    let mean = x.mean_axis(Axis(0)).ok_or_else(|| Error::invalid("no features"))?;
    let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-12 { s } else { 1.0 });
    Ok((x - &mean) / &std)
}

/// Labels for every image of a training set: the labelled images (those of `split`)
/// keep their class from `truth`; the others get the prediction of a linear
/// classifier fitted on the labelled images' `features`. `truth` is read only where
/// the split labels an image.
pub fn infer_with_classifier(
    features: &Array2<f32>,
    truth: &[u32],
    split: &LabelSplit,
    (fraction, split_seed): (f64, u64),
    classes: usize,
    probe: &LinearProbe,
) -> Result<(InferredLabels, ProbeReport)> {
    let n = features.nrows();
    if truth.len() != n || split.len() != n {
        return Err(Error::invalid(format!(
            "{} features, {} classes and a split of {}",
            n,
            truth.len(),
            split.len()
        )));
    }
    if probe.alphas.is_empty() || !(0.0..1.0).contains(&probe.validation) {
        return Err(Error::invalid(
            "the probe needs L2 weights and a validation share in [0, 1)",
        ));
    }
    let x = standardise(features)?;
    let labelled = split.labelled();
    let mut order = labelled.clone();
    SplitMix64::new(probe.seed ^ 0x7072_6f62).shuffle(&mut order);
    let held = ((order.len() as f64 * probe.validation).round() as usize).min(order.len().saturating_sub(2));
    let (val, fit) = order.split_at(held);
    let mut best = ProbeReport {
        alpha: probe.alphas[0],
        validation_accuracy: f64::NAN,
    };
    if !val.is_empty() {
        for &alpha in &probe.alphas {
            let model = fit_regression(&x, truth, fit, classes, alpha, probe.max_iterations)?;
            let pred = model.predict(&x.select(Axis(0), val));
            let right = pred.iter().zip(val).filter(|(p, i)| **p == truth[**i] as usize).count();
            let acc = right as f64 / val.len() as f64;
            // Ties go to the stronger weight (the simpler model).
            if best.validation_accuracy.is_nan() || acc >= best.validation_accuracy {
                best = ProbeReport {
                    alpha,
                    validation_accuracy: acc,
                };
            }
        }
    }
    let model = fit_regression(&x, truth, &labelled, classes, best.alpha, probe.max_iterations)?;
    let probs = model.predict_probabilities(&x);
    let mut out_classes = Vec::with_capacity(n);
    let mut out_probs = Array2::<f32>::zeros((n, classes));
    for i in 0..n {
        if split.is_labelled(i) {
            out_classes.push(truth[i]);
            out_probs[[i, truth[i] as usize]] = 1.0;
        } else {
            let row = probs.row(i);
            let mut arg = 0;
            for (j, &p) in row.iter().enumerate() {
                out_probs[[i, j]] = p as f32;
                if p > row[arg] {
                    arg = j;
                }
            }
            out_classes.push(arg as u32);
        }
    }
    normalise_rows(&mut out_probs);
    Ok((
        InferredLabels {
            classes: out_classes,
            probabilities: out_probs,
            inference: Inference::LinearClassifier,
            fraction,
            split_seed,
        },
        best,
    ))
}

/// Multinomial logistic regression on rows `rows` of `x`, with every class present
/// in its targets (linfa names the classes it saw; the columns must be all `classes`).
fn fit_regression(
    x: &Array2<f64>,
    truth: &[u32],
    rows: &[usize],
    classes: usize,
    alpha: f64,
    iterations: u64,
) -> Result<linfa_logistic::MultiFittedLogisticRegression<f64, usize>> {
    let mut seen = vec![false; classes];
    for &i in rows {
        let c = truth[i] as usize;
        if c >= classes {
            return Err(Error::invalid(format!("class {c} of {classes}")));
        }
        seen[c] = true;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(Error::invalid(format!(
            "no labelled image of class {missing}: a linear classifier needs every class (raise labels.fraction)"
        )));
    }
    let targets: Array1<usize> = rows.iter().map(|&i| truth[i] as usize).collect();
    let data = Dataset::new(x.select(Axis(0), rows), targets);
    MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(iterations)
        .fit(&data)
        .map_err(|e| Error::invalid(format!("the linear classifier: {e}")))
}

fn normalise_rows(p: &mut Array2<f32>) {
    for mut row in p.rows_mut() {
        let s: f32 = row.sum();
        if s > 0.0 {
            row /= s;
        }
    }
}

/// Labels from k-means on the standardised features: `k` clusters (the best of three
/// seeded runs), one-hot. Cluster ids are not class ids; a conditional GAN needs only
/// that images of one id look alike.
pub fn infer_with_kmeans(features: &Array2<f32>, k: usize, seed: u64) -> Result<InferredLabels> {
    let n = features.nrows();
    if k < 2 || k > n {
        return Err(Error::invalid(format!("k-means with {k} clusters of {n} images")));
    }
    let x = standardise(features)?;
    let data = DatasetBase::from(x.clone());
    let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(seed))
        .n_runs(3)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&data)
        .map_err(|e| Error::invalid(format!("k-means: {e}")))?;
    let ids = model.predict(&x);
    let mut probabilities = Array2::<f32>::zeros((n, k));
    for (i, &c) in ids.iter().enumerate() {
        probabilities[[i, c]] = 1.0;
    }
    Ok(InferredLabels {
        classes: ids.iter().map(|&c| c as u32).collect(),
        probabilities,
        inference: Inference::KMeans,
        fraction: 0.0,
        split_seed: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated Gaussian blobs in 5-D, with their classes.
    fn blobs(n: usize) -> (Array2<f32>, Vec<u32>) {
        let mut rng = SplitMix64::new(3);
        let classes: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let x = Array2::from_shape_fn((n, 5), |(i, j)| {
            let centre = if j == classes[i] as usize { 6.0 } else { 0.0 };
            (centre + rng.normal()) as f32
        });
        (x, classes)
    }

    #[test]
    fn the_classifier_labels_the_rest_from_a_few() {
        let (x, truth) = blobs(300);
        let split = LabelSplit::new(300, 0.1, 0).unwrap();
        let (labels, report) = infer_with_classifier(&x, &truth, &split, (0.1, 0), 3, &LinearProbe::default()).unwrap();
        assert!(labels.accuracy(&truth, &split.unlabelled()).unwrap() > 0.97);
        assert!(report.validation_accuracy > 0.8, "{report:?}");
        for i in split.labelled() {
            assert_eq!(labels.classes[i], truth[i]);
            assert_eq!(labels.probabilities[[i, truth[i] as usize]], 1.0);
        }
        for row in labels.probabilities.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn the_unlabelled_truth_is_never_read() {
        let (x, truth) = blobs(300);
        let split = LabelSplit::new(300, 0.1, 0).unwrap();
        let mut scrambled = truth.clone();
        for i in split.unlabelled() {
            scrambled[i] = (truth[i] + 1) % 3;
        }
        let a = infer_with_classifier(&x, &truth, &split, (0.1, 0), 3, &LinearProbe::default()).unwrap();
        let b = infer_with_classifier(&x, &scrambled, &split, (0.1, 0), 3, &LinearProbe::default()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_class_without_a_labelled_image_is_named() {
        let (x, mut truth) = blobs(30);
        let split = LabelSplit::new(30, 0.1, 0).unwrap();
        for i in split.labelled() {
            truth[i] = 0;
        }
        let e = infer_with_classifier(&x, &truth, &split, (0.1, 0), 3, &LinearProbe::default()).unwrap_err();
        assert!(e.to_string().contains("no labelled image of class"), "{e}");
    }

    #[test]
    fn kmeans_finds_the_blobs() {
        let (x, truth) = blobs(300);
        let labels = infer_with_kmeans(&x, 3, 0).unwrap();
        let all: Vec<usize> = (0..300).collect();
        assert!(labels.purity(&truth, &all, 3).unwrap() > 0.97);
        assert!(infer_with_kmeans(&x, 1, 0).is_err());
    }
}
