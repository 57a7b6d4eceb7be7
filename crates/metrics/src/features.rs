//! A feature set: the `[N, D]` embeddings of N images that a metric compares, held on
//! the host in f64 (the sums over thousands of products that the metrics take lose
//! digits in f32).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use faer::{Mat, MatRef};
use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Result};

/// The safetensors key a feature file keeps its `[N, D]` tensor under.
pub const FEATURES_KEY: &str = "features";

/// `N` feature vectors of size `D`, all finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    rows: Mat<f64>,
}

impl Features {
    /// From row-major values (`values.len() == n * dim`); non-finite values are an error.
    pub fn from_rows(values: &[f64], n: usize, dim: usize) -> Result<Self> {
        if values.len() != n * dim {
            return Err(Error::invalid(format!(
                "features: {} values for {n} rows of {dim}",
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "features: row {} holds a NaN or infinity",
                i / dim.max(1)
            )));
        }
        Ok(Self {
            rows: Mat::from_fn(n, dim, |i, j| values[i * dim + j]),
        })
    }

    /// From a float tensor `[N, D]` on any device.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let (n, d) = t
            .dims2()
            .map_err(|_| Error::invalid(format!("features must be [N, D], got {:?}", t.dims())))?;
        if !t.dtype().is_float() {
            return Err(Error::invalid(format!(
                "features are {:?}, expected a float type",
                t.dtype()
            )));
        }
        let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        Self::from_rows(&values, n, d)
    }

    /// Reads the `features` tensor `[N, D]` of a safetensors file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let file = TensorFile::load(path.as_ref(), &Device::Cpu)?;
        let shape = file.get(FEATURES_KEY)?.dims().to_vec();
        if shape.len() != 2 {
            return Err(Error::format(
                path.as_ref(),
                format!("tensor `{FEATURES_KEY}` is {shape:?}, expected [N, D]"),
            ));
        }
        Self::from_tensor(&file.get_shaped(FEATURES_KEY, &shape)?)
            .map_err(|e| Error::format(path.as_ref(), e.to_string()))
    }

    /// Writes them as the `features` tensor (f32) of a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let values: Vec<f32> = (0..self.len())
            .flat_map(|i| (0..self.dim()).map(move |j| (i, j)))
            .map(|(i, j)| self.rows[(i, j)] as f32)
            .collect();
        let t = Tensor::from_vec(values, (self.len(), self.dim()), &Device::Cpu)?;
        save_safetensors(path, &BTreeMap::from([(FEATURES_KEY.to_string(), t)]), &BTreeMap::new())
    }

    /// Rows N.
    pub fn len(&self) -> usize {
        self.rows.nrows()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature size D.
    pub fn dim(&self) -> usize {
        self.rows.ncols()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Features {
        Features {
            rows: Mat::from_fn(indices.len(), self.dim(), |i, j| self.rows[(indices[i], j)]),
        }
    }

    /// Rows `start..start + n`.
    pub fn slice(&self, start: usize, n: usize) -> MatRef<'_, f64> {
        self.rows.as_ref().subrows(start, n)
    }

    /// All rows, `[N, D]`.
    pub fn matrix(&self) -> MatRef<'_, f64> {
        self.rows.as_ref()
    }

    /// Both sets have rows of one size, and at least `min` rows each.
    pub(crate) fn check_pair(a: &Features, b: &Features, min: usize, what: &str) -> Result<()> {
        if a.dim() != b.dim() {
            return Err(Error::invalid(format!(
                "{what}: the two feature sets have {} and {} dimensions",
                a.dim(),
                b.dim()
            )));
        }
        if a.len() < min || b.len() < min {
            return Err(Error::invalid(format!(
                "{what} needs at least {min} feature vectors per set, got {} and {}",
                a.len(),
                b.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file_and_refuses_bad_values() {
        let f = Features::from_rows(&[1.0, 2.0, 3.0, 4.5, 5.0, -6.0], 3, 2).unwrap();
        assert_eq!((f.len(), f.dim()), (3, 2));
        assert_eq!(f.select(&[2, 0]).matrix()[(0, 1)], -6.0);
        let dir = std::env::temp_dir().join(format!("labelgan-features-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.safetensors");
        f.save(&p).unwrap();
        assert_eq!(Features::load(&p).unwrap(), f);
        assert!(
            Features::from_rows(&[1.0, f64::NAN], 1, 2)
                .unwrap_err()
                .to_string()
                .contains("row 0")
        );
        assert!(Features::from_rows(&[1.0], 1, 2).is_err());
        let ints = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
        assert!(Features::from_tensor(&ints).unwrap_err().to_string().contains("U32"));
        let three = Tensor::zeros((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(Features::from_tensor(&three).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
