//! [`SafetensorsStream`]: a safetensors file of f32 tensors written batch by batch, for
//! outputs too large to hold in memory (`labelgan generate --count 1000000 --out F`).
//!
//! The shapes are known up front, so the header (and every tensor's place in the file)
//! is written first and each batch goes straight to its place. The file is written
//! under a temporary name and renamed when complete; an error or a drop before
//! [`SafetensorsStream::finish`] removes the temporary, so no partial file is left
//! under the final name. The bytes equal [`crate::io::serialize_safetensors`]'s.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::io::{header_entry, safetensors_header};
use crate::{Error, Result};

struct Region {
    start: u64,
    len: u64,
    written: u64,
    /// Shape without the first (row) dimension.
    row_shape: Vec<usize>,
}

/// A safetensors file of f32 tensors, filled row block by row block.
pub struct SafetensorsStream {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    regions: BTreeMap<String, Region>,
}

impl SafetensorsStream {
    /// Creates `path` (under a temporary name) for f32 tensors of these shapes (name ->
    /// shape); each is then filled by [`Self::append`] in row order.
    pub fn create(
        path: &Path,
        shapes: &BTreeMap<String, Vec<usize>>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut entries = serde_json::Map::new();
        let mut offset = 0u64;
        let mut regions = BTreeMap::new();
        for (name, shape) in shapes {
            let len = shape
                .iter()
                .try_fold(4u64, |a, &d| a.checked_mul(d as u64))
                .ok_or_else(|| Error::invalid(format!("tensor `{name}` of shape {shape:?} is too large")))?;
            entries.insert(name.clone(), header_entry("F32", shape, offset, offset + len));
            regions.insert(
                name.clone(),
                Region {
                    start: offset,
                    len,
                    written: 0,
                    row_shape: shape.get(1..).unwrap_or_default().to_vec(),
                },
            );
            offset += len;
        }
        let header = safetensors_header(metadata, entries)?;
        let data_start = header.len() as u64;
        for r in regions.values_mut() {
            r.start += data_start;
        }
        let tmp = crate::io::temp_path(path);
        let mut s = Self {
            path: path.to_path_buf(),
            tmp: tmp.clone(),
            file: None,
            regions,
        };
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(f);
        w.write_all(&header).map_err(|e| Error::io(&tmp, e))?;
        s.file = Some(w);
        Ok(s)
    }

    /// Appends the rows of `t` (its shape without the first dimension must be the
    /// tensor's) to tensor `name`.
    pub fn append(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let r = self
            .regions
            .get_mut(name)
            .ok_or_else(|| Error::invalid(format!("no tensor `{name}` in {}", self.path.display())))?;
        if t.dims().get(1..) != Some(r.row_shape.as_slice()) {
            return Err(Error::invalid(format!(
                "rows of shape {:?} appended to `{name}`, whose rows are {:?}",
                t.dims().get(1..).unwrap_or_default(),
                r.row_shape
            )));
        }
        let bytes: Vec<u8> = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        if r.written + bytes.len() as u64 > r.len {
            return Err(Error::invalid(format!(
                "more rows appended to `{name}` than its shape holds"
            )));
        }
        let pos = r.start + r.written;
        r.written += bytes.len() as u64;
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Error::invalid("internal: the stream is closed"))?;
        f.seek(SeekFrom::Start(pos))
            .and_then(|_| f.write_all(&bytes))
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Checks that every tensor is complete, flushes to disk and renames the file to
    /// its final name.
    pub fn finish(mut self) -> Result<()> {
        if let Some((name, r)) = self.regions.iter().find(|(_, r)| r.written != r.len) {
            return Err(Error::invalid(format!(
                "tensor `{name}` holds {} of its {} bytes",
                r.written, r.len
            )));
        }
        let w = self
            .file
            .take()
            .ok_or_else(|| Error::invalid("internal: the stream is closed"))?;
        let f = w.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for SafetensorsStream {
    fn drop(&mut self) {
        // Not finished (an error, or stopped): no partial file stays behind.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_equals_serialized_and_an_unfinished_stream_leaves_nothing() {
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("lg-st-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ws = Tensor::arange(0f32, 30.0, &dev).unwrap().reshape((5, 3, 2)).unwrap();
        let img = Tensor::arange(0f32, 20.0, &dev).unwrap().reshape((5, 4)).unwrap();
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let shapes = BTreeMap::from([("ws".to_string(), vec![5, 3, 2]), ("img".to_string(), vec![5, 4])]);
        let p = dir.join("s.safetensors");
        let mut s = SafetensorsStream::create(&p, &shapes, &meta).unwrap();
        for b in [0, 2, 4] {
            let n = 2.min(5 - b);
            s.append("img", &img.narrow(0, b, n).unwrap()).unwrap();
            s.append("ws", &ws.narrow(0, b, n).unwrap()).unwrap();
        }
        assert!(s.append("ws", &ws.narrow(0, 0, 1).unwrap()).is_err(), "overflow");
        assert!(
            s.append("img", &ws.narrow(0, 0, 1).unwrap()).is_err(),
            "wrong row shape"
        );
        s.finish().unwrap();
        let whole = BTreeMap::from([("ws".to_string(), ws.clone()), ("img".to_string(), img.clone())]);
        let want = crate::io::serialize_safetensors(&whole, &meta).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), want);

        let q = dir.join("t.safetensors");
        let mut s = SafetensorsStream::create(&q, &shapes, &meta).unwrap();
        s.append("img", &img).unwrap();
        assert!(s.finish().unwrap_err().to_string().contains("`ws` holds 0"));
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
