//! Labels inferred for the unlabelled images of a training set (S2GAN): a class and a
//! distribution over the classes per image, with the split they were made for, kept in
//! a safetensors file that a run reads for `labels.unlabelled = "inferred"`.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ndarray::Array2;

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Result};

/// How the labels were inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inference {
    /// A linear classifier on self-supervised features, fitted on the labelled images.
    LinearClassifier,
    /// k-means clusters of the features (no labels used; clusters are not classes).
    KMeans,
}

impl Inference {
    /// Its name in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Inference::LinearClassifier => "linear_classifier",
            Inference::KMeans => "kmeans",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [Inference::LinearClassifier, Inference::KMeans]
            .into_iter()
            .find(|i| i.name() == s)
    }
}

/// A class and a distribution per image of a training set.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredLabels {
    /// One class per image (labelled images keep their own).
    pub classes: Vec<u32>,
    /// A distribution over the classes per image, `[N, K]` (one-hot for labelled
    /// images).
    pub probabilities: Array2<f32>,
    /// How they were inferred.
    pub inference: Inference,
    /// The labelled share and the seed of the split they were inferred for.
    pub fraction: f64,
    /// See `fraction`.
    pub split_seed: u64,
}

impl InferredLabels {
    /// Images covered.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether no image is covered.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// Classes (columns of `probabilities`).
    pub fn class_count(&self) -> usize {
        self.probabilities.ncols()
    }

    /// Share of `images` whose inferred class is the true one (`truth`).
    pub fn accuracy(&self, truth: &[u32], images: &[usize]) -> Result<f64> {
        if truth.len() != self.len() {
            return Err(Error::invalid(format!(
                "{} true classes for {} inferred labels",
                truth.len(),
                self.len()
            )));
        }
        if images.is_empty() {
            return Err(Error::invalid("accuracy over no images"));
        }
        let right = images.iter().filter(|&&i| self.classes[i] == truth[i]).count();
        Ok(right as f64 / images.len() as f64)
    }

    /// Share of each cluster's images in its most common true class, weighted by
    /// cluster size (purity: how much the clusters follow the classes).
    pub fn purity(&self, truth: &[u32], images: &[usize], classes: usize) -> Result<f64> {
        if images.is_empty() || truth.len() != self.len() {
            return Err(Error::invalid("purity needs the true class of every image"));
        }
        let mut counts = vec![vec![0usize; classes]; self.class_count()];
        for &i in images {
            let t = truth[i] as usize;
            if t >= classes {
                return Err(Error::invalid(format!("class {t} of {classes}")));
            }
            counts[self.classes[i] as usize][t] += 1;
        }
        let majority: usize = counts.iter().map(|c| c.iter().max().copied().unwrap_or(0)).sum();
        Ok(majority as f64 / images.len() as f64)
    }

    /// Writes them to `path` (`classes` `[N]` u32, `probabilities` `[N, K]` f32, the
    /// split and the method in the metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, k) = self.probabilities.dim();
        let tensors = BTreeMap::from([
            (
                "classes".to_string(),
                Tensor::new(self.classes.as_slice(), &Device::Cpu)?,
            ),
            (
                "probabilities".to_string(),
                Tensor::from_slice(
                    self.probabilities
                        .as_slice()
                        .ok_or_else(|| Error::invalid("probabilities not in standard layout"))?,
                    (n, k),
                    &Device::Cpu,
                )?,
            ),
        ]);
        let meta = BTreeMap::from([
            ("inference".to_string(), self.inference.name().to_string()),
            ("fraction".to_string(), self.fraction.to_string()),
            ("split_seed".to_string(), self.split_seed.to_string()),
        ]);
        save_safetensors(path, &tensors, &meta)
    }

    /// Reads what [`Self::save`] wrote; a missing or misshapen tensor, or a class
    /// out of range, is an error naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let file = TensorFile::load(path, &Device::Cpu)?;
        let bad = |msg: String| Error::format(path, msg);
        let get = |name: &str| {
            file.tensors
                .get(name)
                .ok_or_else(|| bad(format!("no `{name}` tensor: not inferred labels")))
        };
        let classes_t = get("classes")?;
        if classes_t.dtype() != DType::U32 || classes_t.rank() != 1 {
            return Err(bad(format!(
                "`classes` is {:?} {:?}, expected u32 [N]",
                classes_t.dtype(),
                classes_t.dims()
            )));
        }
        let classes = classes_t.to_vec1::<u32>()?;
        let p = get("probabilities")?;
        let (n, k) = p
            .dims2()
            .map_err(|_| bad(format!("`probabilities` is {:?}, expected [N, K]", p.dims())))?;
        if n != classes.len() || k == 0 {
            return Err(bad(format!(
                "`probabilities` is [{n}, {k}] for {} classes",
                classes.len()
            )));
        }
        if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
            return Err(bad(format!("class {c} of {k}")));
        }
        let values = p.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad("`probabilities` holds NaN or infinity".into()));
        }
        let meta = |key: &str| {
            file.metadata
                .get(key)
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        let inference = Inference::from_name(meta("inference")?)
            .ok_or_else(|| bad(format!("unknown inference `{}`", file.metadata["inference"])))?;
        let fraction = meta("fraction")?
            .parse()
            .map_err(|_| bad("metadata `fraction` is not a number".into()))?;
        let split_seed = meta("split_seed")?
            .parse()
            .map_err(|_| bad("metadata `split_seed` is not a number".into()))?;
        Ok(Self {
            classes,
            probabilities: Array2::from_shape_vec((n, k), values).map_err(|e| bad(e.to_string()))?,
            inference,
            fraction,
            split_seed,
        })
    }

    /// Checks that they were made for `split` of `n` images over `classes` (a file
    /// for another split would hand labels to the wrong images).
    pub fn check_for(&self, fraction: f64, split_seed: u64, n: usize, classes: usize) -> Result<()> {
        if self.len() != n || self.class_count() != classes {
            return Err(Error::invalid(format!(
                "the inferred labels cover {} images over {} classes, the run has {n} over {classes}",
                self.len(),
                self.class_count()
            )));
        }
        if self.inference == Inference::LinearClassifier && (self.fraction != fraction || self.split_seed != split_seed)
        {
            return Err(Error::invalid(format!(
                "the inferred labels were made for labels.fraction = {} and labels.seed = {}, the run has {fraction} and {split_seed}",
                self.fraction, self.split_seed
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> InferredLabels {
        InferredLabels {
            classes: vec![1, 0, 2],
            probabilities: Array2::from_shape_vec((3, 3), vec![0.2, 0.7, 0.1, 1., 0., 0., 0., 0.4, 0.6]).unwrap(),
            inference: Inference::LinearClassifier,
            fraction: 0.1,
            split_seed: 4,
        }
    }

    #[test]
    fn files_round_trip_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("labelgan-inferred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inferred.safetensors");
        let l = labels();
        l.save(&path).unwrap();
        assert_eq!(InferredLabels::load(&path).unwrap(), l);
        let other = dir.join("other.safetensors");
        save_safetensors(
            &other,
            &BTreeMap::from([("x".to_string(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())]),
            &BTreeMap::new(),
        )
        .unwrap();
        let e = InferredLabels::load(&other).unwrap_err().to_string();
        assert!(
            e.contains("no `classes` tensor") && e.contains("other.safetensors"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn another_split_is_refused() {
        let l = labels();
        l.check_for(0.1, 4, 3, 3).unwrap();
        let e = l.check_for(0.2, 4, 3, 3).unwrap_err().to_string();
        assert!(e.contains("labels.fraction = 0.1"), "{e}");
        assert!(l.check_for(0.1, 4, 4, 3).is_err());
        assert_eq!(l.accuracy(&[1, 1, 2], &[0, 1, 2]).unwrap(), 2.0 / 3.0);
        assert_eq!(l.purity(&[0, 1, 1], &[0, 1, 2], 2).unwrap(), 1.0);
    }
}
