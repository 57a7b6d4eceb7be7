//! Files: atomic writes and safetensors with metadata.
//!
//! Every file labelgan writes goes through [`write_atomic`], so that a crash, a kill or a
//! full disk leaves either the old file or the new one, never half of one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Removes the temporary files that [`write_atomic`] leaves in `dir` when a process is
/// killed between writing and renaming (`NAME.tmpPID`); returns how many. Call it when
/// resuming work in a folder.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for e in entries {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if is_temp_file(&p) && p.is_file() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Whether `p` is named as [`write_atomic`]'s temporary files are (`NAME.tmpPID`).
pub fn is_temp_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once(".tmp"))
        .is_some_and(|(stem, pid)| !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the files and folders `names` from `dir` (those that exist; nothing else):
/// what `--restart` does with the outputs a command writes.
pub fn remove_outputs(dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let p = dir.join(name);
        let res = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if p.exists() {
            std::fs::remove_file(&p)
        } else {
            Ok(())
        };
        res.map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}

/// Every file under `dir`, recursively, as paths relative to it (sorted), but the run
/// lock (a process id, not data) and, unless `temporaries`, [`write_atomic`]'s
/// temporary files.
pub fn files_under(dir: &Path, temporaries: bool) -> Result<Vec<String>> {
    fn walk(root: &Path, d: &Path, temporaries: bool, out: &mut Vec<String>) -> Result<()> {
        for e in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let p = e.map_err(|e| Error::io(d, e))?.path();
            if p.file_name().is_some_and(|n| n == crate::lock::LOCK_FILE) || (!temporaries && is_temp_file(&p)) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, temporaries, out)?;
            } else {
                out.push(p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = vec![];
    walk(dir, dir, temporaries, &mut out)?;
    out.sort();
    Ok(out)
}

/// Refuses an output path that is one of the inputs, or a folder that holds one or
/// lies inside one: writing there would overwrite or mix into what the run reads
/// (`generate --out` equal to `--weights`, `factory --out` equal to `--data`). Each
/// path comes with the flag that named it, for the message. Call before any work.
pub fn check_output(output: (&str, &Path), inputs: &[(&str, &Path)]) -> Result<()> {
    let (out_flag, out) = output;
    let out_abs = absolute(out);
    for &(flag, input) in inputs {
        let inp = absolute(input);
        let clash = if out_abs == inp {
            Some("is")
        } else if inp.starts_with(&out_abs) {
            Some("holds")
        } else if out_abs.starts_with(&inp) && inp.is_dir() {
            Some("lies inside")
        } else {
            None
        };
        if let Some(how) = clash {
            return Err(Error::usage(format!(
                "{out_flag} {} {how} the input {flag} {}: choose another output path",
                out.display(),
                input.display()
            )));
        }
    }
    check_writable(out_flag, &out_abs)
}

/// Fails unless `out` can be written: the nearest folder at or above it that exists
/// must be a folder this process can create files in (a probe file is made and
/// removed). Nothing is created.
fn check_writable(flag: &str, out: &Path) -> Result<()> {
    let mut dir = out;
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => return Ok(()),
        }
    }
    if dir == out && out.is_file() {
        // An output file that exists is replaced: its folder must be writable.
        dir = out.parent().unwrap_or(out);
    }
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "{flag} {}: {} is a file, not a folder",
            out.display(),
            dir.display()
        )));
    }
    let probe = dir.join(format!(".labelgan-probe.tmp{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::usage(format!(
            "{flag} {}: cannot write in {} ({e})",
            out.display(),
            dir.display()
        ))),
    }
}

/// `p` made absolute, `.` and `..` folded, and symbolic links resolved as far as the
/// path exists (the missing tail appended as written).
fn absolute(p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = std::env::current_dir().map_or_else(|_| p.to_path_buf(), |cwd| cwd.join(p));
    let mut lexical = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut tail = vec![];
    let mut head = lexical.clone();
    loop {
        if let Ok(c) = head.canonicalize() {
            let mut out = c;
            out.extend(tail.iter().rev());
            return out;
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = parent.to_path_buf();
            }
            _ => return lexical,
        }
    }
}

pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// The tensors and string metadata of one safetensors file, remembering its path so
/// that every error names it.
#[derive(Debug, Clone)]
pub struct TensorFile {
    /// Where the tensors came from.
    pub path: PathBuf,
    /// Tensors by name, in the file's dtype.
    pub tensors: HashMap<String, Tensor>,
    /// The `__metadata__` map (empty when absent).
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads `path` onto `device`. A float tensor holding a NaN or an infinity is an
    /// error naming it: no model, latent or image file in labelgan has a use for one,
    /// and a NaN weight otherwise surfaces much later as black images or a distance of 0.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let not_st =
            |e: safetensors::SafeTensorError| Error::format(path, format!("not a valid safetensors file: {e}"));
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(not_st)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(not_st)?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if let Some(i) = first_non_finite(&view) {
                return Err(Error::format(
                    path,
                    format!("tensor `{name}` holds a non-finite value (NaN or infinity) at flat index {i}"),
                ));
            }
            let t = view
                .load(device)
                .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
            tensors.insert(name, t);
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// The tensor `key`, or [`Error::MissingKey`].
    pub fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| Error::MissingKey {
            file: self.path.clone(),
            key: key.to_string(),
            expected: None,
        })
    }

    /// The tensor `key` as f32 with exactly `shape`, or an error naming the key and
    /// both shapes. An integer tensor is refused, not converted (a `U8` or `I32` array
    /// where weights or latents belong is a mistake, not data).
    pub fn get_shaped(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| Error::MissingKey {
            file: self.path.clone(),
            key: key.to_string(),
            expected: Some(shape.to_vec()),
        })?;
        if t.dims() != shape {
            return Err(Error::ShapeMismatch {
                file: self.path.clone(),
                key: key.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        if !t.dtype().is_float() {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor `{key}` is {:?}, expected a float type (F32, F16, BF16 or F64)",
                    t.dtype()
                ),
            ));
        }
        Ok(t.to_dtype(candle_core::DType::F32)?)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The shape of `key`, if present.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.dims())
    }
}

/// The flat index of the first NaN or infinity of a float tensor's raw little-endian
/// data (`None` for integer tensors and finite ones).
fn first_non_finite(view: &safetensors::tensor::TensorView<'_>) -> Option<usize> {
    use safetensors::Dtype;
    let data = view.data();
    let find = |width: usize, finite: &dyn Fn(&[u8]) -> bool| data.chunks_exact(width).position(|b| !finite(b));
    match view.dtype() {
        Dtype::F32 => find(4, &|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        Dtype::F64 => find(8, &|b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).is_finite()
        }),
        Dtype::F16 => find(2, &|b| half::f16::from_le_bytes([b[0], b[1]]).is_finite()),
        Dtype::BF16 => find(2, &|b| half::bf16::from_le_bytes([b[0], b[1]]).is_finite()),
        _ => None,
    }
}

/// Writes `tensors` (and `metadata`) as one safetensors file, atomically. The bytes
/// depend only on the contents: tensors and metadata keys are written in sorted order
/// (the `safetensors` crate writes metadata in hash order, which breaks "same seed,
/// same bytes").
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes =
        serialize_safetensors(tensors, metadata).map_err(|e| Error::format(path, format!("cannot serialize: {e}")))?;
    write_atomic(path, &bytes)
}

/// The safetensors encoding of `tensors` and `metadata` (little-endian data, header
/// padded with spaces to a multiple of 8).
pub fn serialize_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    use candle_core::DType;
    let mut entries = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let t = t.to_device(&Device::Cpu)?.flatten_all()?;
        let start = data.len();
        let dtype = match t.dtype() {
            DType::F32 => {
                data.extend(t.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()));
                "F32"
            }
            DType::F16 => {
                data.extend(t.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()));
                "F16"
            }
            DType::BF16 => {
                data.extend(t.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()));
                "BF16"
            }
            DType::F64 => {
                data.extend(t.to_vec1::<f64>()?.iter().flat_map(|v| v.to_le_bytes()));
                "F64"
            }
            DType::U8 => {
                data.extend(t.to_vec1::<u8>()?);
                "U8"
            }
            DType::U32 => {
                data.extend(t.to_vec1::<u32>()?.iter().flat_map(|v| v.to_le_bytes()));
                "U32"
            }
            DType::I64 => {
                data.extend(t.to_vec1::<i64>()?.iter().flat_map(|v| v.to_le_bytes()));
                "I64"
            }
            d => return Err(Error::invalid(format!("tensor `{name}`: dtype {d:?} cannot be saved"))),
        };
        entries.insert(
            name.clone(),
            header_entry(dtype, tensors[name].dims(), start as u64, data.len() as u64),
        );
    }
    let mut out = safetensors_header(metadata, entries)?;
    out.extend(data);
    Ok(out)
}

/// One tensor's entry in a safetensors header: its dtype, shape and byte range in the
/// data section.
pub(crate) fn header_entry(dtype: &str, shape: &[usize], begin: u64, end: u64) -> serde_json::Value {
    serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, end]})
}

/// The bytes before a safetensors file's data: the header's length (u64,
/// little-endian), then the header (`metadata` and the tensors' `entries`) as JSON,
/// padded with spaces to a multiple of 8.
pub(crate) fn safetensors_header(
    metadata: &BTreeMap<String, String>,
    mut entries: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>> {
    if !metadata.is_empty() {
        entries.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).map_err(|e| Error::invalid(e.to_string()))?,
        );
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(entries)).map_err(|e| Error::invalid(e.to_string()))?;
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + h.len());
    out.extend((h.len() as u64).to_le_bytes());
    out.extend(h);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_named_errors() {
        let dir = std::env::temp_dir().join(format!("lg-core-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.safetensors");
        let mut m = BTreeMap::new();
        m.insert(
            "x".to_string(),
            Tensor::arange(0f32, 6.0, &Device::Cpu)
                .unwrap()
                .reshape((2, 3))
                .unwrap(),
        );
        m.insert(
            "h".to_string(),
            Tensor::new(&[1.5f32, -2.0], &Device::Cpu)
                .unwrap()
                .to_dtype(candle_core::DType::F16)
                .unwrap(),
        );
        let meta = BTreeMap::from([("k".to_string(), "v".to_string()), ("a".to_string(), "b".to_string())]);
        save_safetensors(&p, &m, &meta).unwrap();
        // Deterministic bytes, readable by the reference reader.
        assert_eq!(serialize_safetensors(&m, &meta).unwrap(), std::fs::read(&p).unwrap());
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("h").unwrap().dtype(), safetensors::Dtype::F16);
        let f = TensorFile::load(&p, &Device::Cpu).unwrap();
        assert_eq!(f.metadata["k"], "v");
        assert_eq!(
            f.get_shaped("h", &[2]).unwrap().to_vec1::<f32>().unwrap(),
            vec![1.5, -2.0]
        );
        assert_eq!(
            f.get_shaped("x", &[2, 3]).unwrap().to_vec2::<f32>().unwrap()[1],
            vec![3.0, 4.0, 5.0]
        );
        let e = f.get_shaped("x", &[3, 2]).unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("[2, 3]") && e.contains("[3, 2]"), "{e}");
        let e = f.get_shaped("y", &[1]).unwrap_err().to_string();
        assert!(e.contains("missing tensor `y`") && e.contains("a.safetensors"), "{e}");
        std::fs::write(dir.join("bad.safetensors"), b"garbage!garbage").unwrap();
        let e = TensorFile::load(dir.join("bad.safetensors"), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
        // NaN and infinities are refused on load, naming the tensor; integers where a
        // float is expected are refused, not converted.
        for (dtype, bad) in [
            (candle_core::DType::F32, f32::NAN),
            (candle_core::DType::F16, f32::INFINITY),
        ] {
            let t = Tensor::new(&[0.5f32, bad, 1.0], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            save_safetensors(
                dir.join("nan.safetensors"),
                &BTreeMap::from([("w".to_string(), t)]),
                &BTreeMap::new(),
            )
            .unwrap();
            let e = TensorFile::load(dir.join("nan.safetensors"), &Device::Cpu)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("nan.safetensors") && e.contains("`w`") && e.contains("index 1"),
                "{e}"
            );
        }
        let ints = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        save_safetensors(
            dir.join("int.safetensors"),
            &BTreeMap::from([("ws".to_string(), ints)]),
            &BTreeMap::new(),
        )
        .unwrap();
        let f = TensorFile::load(dir.join("int.safetensors"), &Device::Cpu).unwrap();
        let e = f.get_shaped("ws", &[2]).unwrap_err().to_string();
        assert!(e.contains("`ws` is U32, expected a float type"), "{e}");
        // Outputs that are, hold or lie inside an input are refused, naming both flags.
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let w = dir.join("int.safetensors");
        for (out, want) in [
            (w.clone(), "is the input --weights"),
            (dir.join("sub/../int.safetensors"), "is the input --weights"),
            (data.clone(), "is the input --data"),
            (data.join("new"), "lies inside the input --data"),
            (dir.clone(), "holds the input"),
        ] {
            let e = check_output(("--out", &out), &[("--weights", &w), ("--data", &data)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("--out"), "{out:?}: {e}");
        }
        assert!(check_output(("--out", &dir.join("fresh/x")), &[("--weights", &w), ("--data", &data)]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
