//! The classes of a batch of real images, as far as they are known: every image's
//! (fully supervised), some images' (a labelled fraction: S2GAN-CO, S3GAN), or a
//! distribution per image (S2GAN's soft inferred labels). D's projection reads them as
//! rows `[n, classes]`: one-hot, all zero for an unlabelled image, or the distribution.

use candle_core::{DType, Device, Tensor};

use labelgan_core::{Error, Result, check_class, one_hot};

/// The classes of a batch of real images.
#[derive(Debug, Clone)]
pub enum RealClasses {
    /// One class per image.
    Ids(Vec<u32>),
    /// One class per image, `None` where the image has no label.
    Partial(Vec<Option<u32>>),
    /// A distribution over the classes per image, `[n, classes]`.
    Soft(Tensor),
}

impl From<Vec<u32>> for RealClasses {
    fn from(ids: Vec<u32>) -> Self {
        RealClasses::Ids(ids)
    }
}

impl RealClasses {
    /// How many images they label (or leave unlabelled).
    pub fn len(&self) -> Result<usize> {
        Ok(match self {
            RealClasses::Ids(v) => v.len(),
            RealClasses::Partial(v) => v.len(),
            RealClasses::Soft(t) => t.dim(0)?,
        })
    }

    /// Whether they cover no image.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Rows `[n, classes]` for D: one-hot, zero for an image without a label, or the
    /// given distribution (checked to be one: finite, non-negative, summing to 1).
    pub fn rows(&self, classes: usize, device: &Device) -> Result<Tensor> {
        match self {
            RealClasses::Ids(ids) => one_hot(ids, classes, device),
            RealClasses::Partial(ids) => {
                let mut v = vec![0f32; ids.len() * classes];
                for (i, id) in ids.iter().enumerate() {
                    if let Some(c) = *id {
                        check_class(c, classes)?;
                        v[i * classes + c as usize] = 1.0;
                    }
                }
                Ok(Tensor::from_vec(v, (ids.len(), classes), device)?)
            }
            RealClasses::Soft(t) => {
                let (n, k) = t.dims2()?;
                if k != classes {
                    return Err(Error::invalid(format!(
                        "soft labels over {k} classes for a model with {classes}"
                    )));
                }
                let rows = t.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                for (i, r) in rows.iter().enumerate() {
                    let sum: f32 = r.iter().sum();
                    if r.iter().any(|p| !p.is_finite() || *p < 0.0) || (sum - 1.0).abs() > 1e-3 {
                        return Err(Error::invalid(format!(
                            "soft label {i} of {n} is not a distribution (sum {sum})"
                        )));
                    }
                }
                Ok(t.to_dtype(DType::F32)?.to_device(device)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_each_kind() {
        let dev = Device::Cpu;
        let ids = RealClasses::from(vec![2, 0])
            .rows(3, &dev)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(ids, [[0., 0., 1.], [1., 0., 0.]]);
        let partial = RealClasses::Partial(vec![None, Some(1)])
            .rows(3, &dev)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(partial, [[0., 0., 0.], [0., 1., 0.]]);
        let soft = Tensor::new(&[[0.2f32, 0.8, 0.]], &dev).unwrap();
        assert_eq!(
            RealClasses::Soft(soft).rows(3, &dev).unwrap().to_vec2::<f32>().unwrap(),
            [[0.2, 0.8, 0.]]
        );
    }

    #[test]
    fn bad_classes_are_named() {
        let dev = Device::Cpu;
        let e = RealClasses::Partial(vec![Some(3)]).rows(3, &dev).unwrap_err();
        assert!(e.to_string().contains("class 3"), "{e}");
        let not_dist = Tensor::new(&[[0.5f32, 0.8, 0.]], &dev).unwrap();
        let e = RealClasses::Soft(not_dist).rows(3, &dev).unwrap_err();
        assert!(e.to_string().contains("not a distribution"), "{e}");
        let nan = Tensor::new(&[[f32::NAN, 1.0, 0.]], &dev).unwrap();
        assert!(RealClasses::Soft(nan).rows(3, &dev).is_err());
        assert!(
            RealClasses::Soft(Tensor::new(&[[1f32, 0.]], &dev).unwrap())
                .rows(3, &dev)
                .is_err()
        );
    }
}
