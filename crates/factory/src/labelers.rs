//! The labelers that label each generated image, one per label kind.

use labelgan_core::{Error, FeatureTaps, Labels, PixelLabeler, Result};
use labelgan_dataset::ImageLabels;
use labelgan_labeler::{Ensemble, Precision};

/// One labeler per label kind; any may be missing. The first present of
/// segmentation, keypoints, depth gives the uncertainty score used for filtering.
#[derive(Debug, Clone)]
pub struct Labelers<L = Ensemble> {
    /// Class masks.
    pub segmentation: Option<L>,
    /// Keypoints.
    pub keypoints: Option<L>,
    /// Depth maps.
    pub depth: Option<L>,
}

impl<L> Default for Labelers<L> {
    fn default() -> Self {
        Self {
            segmentation: None,
            keypoints: None,
            depth: None,
        }
    }
}

impl<L: PixelLabeler> Labelers<L> {
    /// The labelers present, in order.
    pub fn all(&self) -> Vec<&L> {
        [&self.segmentation, &self.keypoints, &self.depth]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Whether no labeler is present.
    pub fn is_empty(&self) -> bool {
        self.all().is_empty()
    }

    /// Labels every image of `taps` (the generator's feature taps of one batch) at
    /// `resolution` pixels: per image its labels and its uncertainty score.
    pub fn label(&self, taps: &FeatureTaps, resolution: usize) -> Result<Vec<(ImageLabels, f32)>> {
        let n = taps.batch();
        let mut out: Vec<(ImageLabels, f32)> = (0..n).map(|_| (ImageLabels::default(), f32::NAN)).collect();
        for (k, labeler) in self.all().into_iter().enumerate() {
            let p = labeler.predict(taps)?;
            let dims = p.uncertainty.dims();
            if dims != [n, resolution, resolution] {
                return Err(Error::invalid(format!(
                    "a labeler predicts {dims:?} per batch but the generator makes {n} images of {resolution} px"
                )));
            }
            // The labeler may be a user's: its shapes are checked, not trusted.
            let (t, want) = match &p.labels {
                Labels::Segmentation(t) => (t, vec![n, resolution, resolution]),
                Labels::Keypoints(t) => (t, vec![n, t.dims().get(1).copied().unwrap_or(0), 2]),
                Labels::Depth(t) => (t, vec![n, 1, resolution, resolution]),
            };
            if t.dims() != want || p.score.dims() != [n] {
                return Err(Error::invalid(format!(
                    "a labeler returned labels {:?} and scores {:?} for {n} images of {resolution} px; expected labels {want:?} and scores [{n}]",
                    t.dims(),
                    p.score.dims()
                )));
            }
            let scores = p.score.to_vec1::<f32>()?;
            match &p.labels {
                Labels::Segmentation(t) => {
                    for (o, m) in out.iter_mut().zip(t.flatten_from(1)?.to_vec2::<u32>()?) {
                        o.0.mask = Some(m);
                    }
                }
                Labels::Keypoints(t) => {
                    for (o, kp) in out.iter_mut().zip(t.to_vec3::<f32>()?) {
                        o.0.keypoints = Some(kp.into_iter().map(|v| [v[0], v[1]]).collect());
                    }
                }
                Labels::Depth(t) => {
                    for (o, d) in out.iter_mut().zip(t.flatten_from(1)?.to_vec2::<f32>()?) {
                        o.0.depth = Some(d);
                    }
                }
            }
            if k == 0 {
                for (o, s) in out.iter_mut().zip(scores) {
                    o.1 = s;
                }
            }
        }
        Ok(out)
    }
}

impl Labelers<Ensemble> {
    /// Sets the first-layer arithmetic every present labeler labels with.
    pub fn set_precision(&mut self, precision: Precision) {
        for e in [&mut self.segmentation, &mut self.keypoints, &mut self.depth]
            .into_iter()
            .flatten()
        {
            e.config.precision = precision;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use labelgan_core::{LabelKind, Prediction, Tap};

    /// A labeler returning keypoints of the wrong shape (x only).
    struct Broken(LabelKind);

    impl PixelLabeler for Broken {
        fn kind(&self) -> &LabelKind {
            &self.0
        }
        fn predict(&self, taps: &FeatureTaps) -> Result<Prediction> {
            let n = taps.batch();
            Ok(Prediction {
                labels: Labels::Keypoints(Tensor::zeros((n, 5, 1), DType::F32, &Device::Cpu)?),
                uncertainty: Tensor::zeros((n, 4, 4), DType::F32, &Device::Cpu)?,
                score: Tensor::zeros(n, DType::F32, &Device::Cpu)?,
            })
        }
    }

    #[test]
    fn a_labeler_of_the_wrong_shape_is_an_error_not_a_panic() {
        let mut taps = FeatureTaps::new();
        taps.push(Tap::new("f", Tensor::zeros((2, 3, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap())
            .unwrap();
        let l = Labelers {
            keypoints: Some(Broken(LabelKind::Keypoints { count: 5 })),
            ..Labelers::default()
        };
        let e = l.label(&taps, 4).unwrap_err().to_string();
        assert!(e.contains("[2, 5, 1]") && e.contains("[2, 5, 2]"), "{e}");
    }
}
