//! A finite training set whose images keep their labels as a [`LabelsConfig`] says,
//! visited in a seeded shuffled order, cycling: the real batches of any run on a finite
//! set (a folder's images, with or without classes, or a few-label run's share).

use candle_core::{Device, Tensor};

use labelgan_core::{EpochOrder, Error, Result, SplitMix64, select_rows};

use super::{InferredLabels, LabelSplit, LabelsConfig, Unlabelled};
use crate::real_classes::RealClasses;

/// What the run sees of the images' classes.
#[derive(Debug, Clone)]
enum Seen {
    /// A class, or none, per image.
    Classes(Vec<Option<u32>>),
    /// A distribution per image `[N, K]`.
    Soft(Tensor),
    /// Nothing: the images have no classes.
    Nothing,
}

/// Images, their classes, and which of them the run may read.
#[derive(Debug, Clone)]
pub struct LabelledSet {
    images: Tensor,
    /// Every image's true class, if known (what scores of inferred labels compare with).
    truth: Vec<u32>,
    seen: Seen,
    /// The images the run trains on, in visiting order.
    order: EpochOrder,
    split: LabelSplit,
}

impl LabelledSet {
    /// `images` `[N, 3, R, R]` with their true `classes` (of `k`), labelled as `labels`
    /// says (with `inferred` labels for `unlabelled = "inferred"`), visited in an order
    /// drawn from `order_seed`.
    pub fn new(
        images: Tensor,
        classes: &[u32],
        k: usize,
        labels: &LabelsConfig,
        inferred: Option<&InferredLabels>,
        order_seed: u64,
    ) -> Result<Self> {
        labels.validate()?;
        let n = images.dim(0)?;
        if classes.len() != n {
            return Err(Error::invalid(format!("{} classes for {n} images", classes.len())));
        }
        if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
            return Err(Error::invalid(format!("class {c} of {k}")));
        }
        let split = LabelSplit::new(n, labels.fraction, labels.seed)?;
        let seen = match (labels.unlabelled, inferred) {
            (Unlabelled::Random, _) => Seen::Classes(
                (0..n)
                    .map(|i| Some(SplitMix64::derive(labels.seed ^ 0x7261_6e64, i as u64).below(k as u64) as u32))
                    .collect(),
            ),
            (Unlabelled::Inferred, None) => {
                return Err(Error::invalid(
                    "labels.unlabelled = \"inferred\" needs the inferred labels",
                ));
            }
            (Unlabelled::Inferred, Some(inf)) => {
                inf.check_for(labels.fraction, labels.seed, n, k)?;
                match labels.soft {
                    true => {
                        let p = inf
                            .probabilities
                            .as_slice()
                            .ok_or_else(|| Error::invalid("inferred probabilities not in standard layout"))?;
                        Seen::Soft(Tensor::from_slice(p, (n, k), &Device::Cpu)?)
                    }
                    false => Seen::Classes(inf.classes.iter().map(|&c| Some(c)).collect()),
                }
            }
            _ => Seen::Classes((0..n).map(|i| split.is_labelled(i).then_some(classes[i])).collect()),
        };
        let order = EpochOrder::new(
            match labels.unlabelled {
                Unlabelled::Drop => split.labelled(),
                _ => (0..n).collect(),
            },
            order_seed,
        )?;
        Ok(Self {
            images,
            truth: classes.to_vec(),
            seen,
            order,
            split,
        })
    }

    /// Images without classes, all of them visited in an order drawn from `order_seed`.
    pub fn unlabelled(images: Tensor, order_seed: u64) -> Result<Self> {
        let n = images.dim(0)?;
        let order = EpochOrder::new((0..n).collect(), order_seed)?;
        Ok(Self {
            images,
            truth: Vec::new(),
            seen: Seen::Nothing,
            order,
            split: LabelSplit::new(n, 1.0, 0)?,
        })
    }

    /// Images `start..start + n` of the visiting order (cycling) and what the run sees
    /// of their classes.
    pub fn batch(&self, start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
        let idx = self.order.take(start, n);
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let x = select_rows(&self.images, &idx)?;
        let classes = match &self.seen {
            Seen::Classes(all) => {
                let seen: Vec<Option<u32>> = idx.iter().map(|&i| all[i]).collect();
                match seen.iter().all(Option::is_some) {
                    true => RealClasses::Ids(seen.into_iter().flatten().collect()),
                    false => RealClasses::Partial(seen),
                }
            }
            Seen::Soft(p) => RealClasses::Soft(p.index_select(&Tensor::new(ids.as_slice(), &Device::Cpu)?, 0)?),
            Seen::Nothing => return Ok((x, None)),
        };
        Ok((x, Some(classes)))
    }

    /// Which images keep their labels.
    pub fn split(&self) -> &LabelSplit {
        &self.split
    }

    /// Images the run trains on.
    pub fn training_images(&self) -> usize {
        self.order.len()
    }

    /// The first `max` images of the unlabelled share (in image order) and their true
    /// classes, which the run never sees: what labels inferred for them (co-training's
    /// predictions) are scored against. `None` when every image is labelled.
    pub fn unlabelled_sample(&self, max: usize) -> Result<Option<(Tensor, Vec<u32>)>> {
        let idx: Vec<usize> = self.split.unlabelled().into_iter().take(max).collect();
        if idx.is_empty() || self.truth.is_empty() {
            return Ok(None);
        }
        let x = select_rows(&self.images, &idx)?;
        Ok(Some((x, idx.iter().map(|&i| self.truth[i]).collect())))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;

    fn set(labels: &LabelsConfig) -> LabelledSet {
        let images = Tensor::arange(0f32, 20.0, &Device::Cpu)
            .unwrap()
            .reshape((20, 1, 1, 1))
            .unwrap()
            .broadcast_as((20, 3, 2, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        let classes: Vec<u32> = (0..20).map(|i| i % 4).collect();
        LabelledSet::new(images, &classes, 4, labels, None, 3).unwrap()
    }

    fn first_pixels(x: &Tensor) -> Vec<usize> {
        x.narrow(1, 0, 1)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(|v| v as usize)
            .collect()
    }

    #[test]
    fn a_set_without_classes_visits_like_a_labelled_one() {
        let labelled = set(&LabelsConfig::default());
        let plain = LabelledSet::unlabelled(labelled.images.clone(), 3).unwrap();
        for start in [0u64, 7, 19, 33] {
            let (a, ca) = labelled.batch(start, 5).unwrap();
            let (b, cb) = plain.batch(start, 5).unwrap();
            assert_eq!(first_pixels(&a), first_pixels(&b));
            assert!(matches!(ca, Some(RealClasses::Ids(_))) && cb.is_none());
        }
        assert!(plain.unlabelled_sample(5).unwrap().is_none());
    }

    #[test]
    fn the_unlabelled_sample_is_the_unlabelled_share_with_its_true_classes() {
        let labels = LabelsConfig {
            fraction: 0.25,
            ..LabelsConfig::default()
        };
        let s = set(&labels);
        let (x, truth) = s.unlabelled_sample(100).unwrap().unwrap();
        let want = s.split().unlabelled();
        assert_eq!(want.len(), 15);
        assert_eq!(first_pixels(&x), want);
        assert_eq!(truth, want.iter().map(|&i| (i % 4) as u32).collect::<Vec<_>>());
        assert_eq!(s.unlabelled_sample(4).unwrap().unwrap().1.len(), 4);
        assert!(set(&LabelsConfig::default()).unlabelled_sample(10).unwrap().is_none());
    }

    #[test]
    fn unlabelled_images_come_without_their_class() {
        let labels = LabelsConfig {
            fraction: 0.25,
            ..LabelsConfig::default()
        };
        let s = set(&labels);
        assert_eq!(s.training_images(), 20);
        let (x, c) = s.batch(0, 20).unwrap();
        let Some(RealClasses::Partial(seen)) = c else {
            panic!("{c:?}")
        };
        let images = first_pixels(&x);
        let mut visited = images.clone();
        visited.sort();
        assert_eq!(
            visited,
            (0..20).collect::<Vec<_>>(),
            "one epoch visits every image once"
        );
        for (img, c) in images.iter().zip(&seen) {
            match c {
                Some(c) => assert!(s.split().is_labelled(*img) && *c as usize == img % 4),
                None => assert!(!s.split().is_labelled(*img)),
            }
        }
        assert_eq!(seen.iter().filter(|c| c.is_some()).count(), 5);
        // Cycling: image 20 of the order is image 0 again.
        assert_eq!(first_pixels(&s.batch(20, 1).unwrap().0), images[..1]);
    }

    #[test]
    fn inferred_labels_fill_in_hard_or_soft() {
        let mut probabilities = ndarray::Array2::<f32>::zeros((20, 4));
        for i in 0..20 {
            probabilities[[i, 3 - i % 4]] = 1.0;
        }
        let inferred = InferredLabels {
            classes: (0..20).map(|i| 3 - i % 4).collect(),
            probabilities,
            inference: crate::few_labels::Inference::LinearClassifier,
            fraction: 0.25,
            split_seed: 0,
        };
        let images = Tensor::zeros((20, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let classes: Vec<u32> = (0..20).map(|i| i % 4).collect();
        let mut labels = LabelsConfig {
            fraction: 0.25,
            unlabelled: Unlabelled::Inferred,
            inferred: "inferred.safetensors".into(),
            ..LabelsConfig::default()
        };
        let hard = LabelledSet::new(images.clone(), &classes, 4, &labels, Some(&inferred), 0).unwrap();
        assert!(matches!(hard.batch(0, 4).unwrap().1, Some(RealClasses::Ids(_))));
        labels.soft = true;
        let soft = LabelledSet::new(images.clone(), &classes, 4, &labels, Some(&inferred), 0).unwrap();
        let Some(RealClasses::Soft(p)) = soft.batch(0, 4).unwrap().1 else {
            panic!()
        };
        assert_eq!(p.dims(), [4, 4]);
        // Labels inferred for another split are refused.
        labels.fraction = 0.5;
        let e = LabelledSet::new(images, &classes, 4, &labels, Some(&inferred), 0).unwrap_err();
        assert!(e.to_string().contains("labels.fraction = 0.25"), "{e}");
    }

    #[test]
    fn drop_trains_on_the_labelled_subset_and_random_relabels_all() {
        let dropped = set(&LabelsConfig {
            fraction: 0.25,
            unlabelled: Unlabelled::Drop,
            ..LabelsConfig::default()
        });
        assert_eq!(dropped.training_images(), 5);
        let (x, c) = dropped.batch(0, 10).unwrap();
        assert!(matches!(c, Some(RealClasses::Ids(_))));
        assert!(first_pixels(&x).iter().all(|&i| dropped.split().is_labelled(i)));

        let random = set(&LabelsConfig {
            unlabelled: Unlabelled::Random,
            ..LabelsConfig::default()
        });
        let (x, c) = random.batch(0, 20).unwrap();
        let Some(RealClasses::Ids(ids)) = c else { panic!() };
        let agree = first_pixels(&x)
            .iter()
            .zip(&ids)
            .filter(|(i, c)| **i % 4 == **c as usize)
            .count();
        assert!(agree < 15, "random labels agree with the classes on {agree} of 20");
        // Fixed per image: the second epoch sees the same labels.
        let Some(RealClasses::Ids(again)) = random.batch(20, 20).unwrap().1 else {
            panic!()
        };
        assert_eq!(ids, again);
    }
}
