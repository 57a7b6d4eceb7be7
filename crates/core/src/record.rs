//! [`RunRecord`]: what made a run folder, so that a resume never mixes two runs.
//!
//! Resuming is keyed on what a folder holds; a folder made with other settings or
//! other inputs would be continued silently with the new ones (images 0-2 from seed 0,
//! 3-5 from seed 1). A run therefore writes its record (settings, and a SHA-256
//! fingerprint per input) into its folder when it starts, and a later run into the same
//! folder compares: any difference is an error that names the setting and both values.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Settings (flattened to dotted names) and input fingerprints of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Setting name -> value.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Input name -> SHA-256 fingerprint (hex).
    pub inputs: BTreeMap<String, String>,
}

impl RunRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the setting `name`; a struct or map value adds one setting per field
    /// (`name.field`), so a difference names the field.
    pub fn setting(mut self, name: &str, value: &impl Serialize) -> Result<Self> {
        let v = serde_json::to_value(value).map_err(|e| Error::invalid(format!("setting {name}: {e}")))?;
        flatten(name, v, &mut self.settings);
        Ok(self)
    }

    /// Adds the fingerprint of input `name` (see [`fingerprint`]).
    pub fn input(mut self, name: &str, fingerprint: String) -> Self {
        self.inputs.insert(name.to_string(), fingerprint);
        self
    }

    /// Adds the fingerprint of the file or folder at `path` ([`fingerprint_path`]).
    pub fn input_path(self, name: &str, path: &Path) -> Result<Self> {
        let f = fingerprint_path(path)?;
        Ok(self.input(name, f))
    }

    /// The first difference from `earlier`, as (name, earlier value, this value).
    pub fn difference(&self, earlier: &RunRecord) -> Option<(String, String, String)> {
        let show = |v: Option<&serde_json::Value>| v.map_or("(not set)".to_string(), |v| v.to_string());
        let names = self.settings.keys().chain(earlier.settings.keys());
        for n in names {
            let (a, b) = (earlier.settings.get(n), self.settings.get(n));
            if !same_value(a, b) {
                return Some((n.clone(), show(a), show(b)));
            }
        }
        let short = |v: Option<&String>| v.map_or("(none)".to_string(), |v| v.chars().take(12).collect());
        for n in self.inputs.keys().chain(earlier.inputs.keys()) {
            let (a, b) = (earlier.inputs.get(n), self.inputs.get(n));
            if a != b {
                return Some((format!("input {n}"), short(a), short(b)));
            }
        }
        None
    }

    /// Records this run in `dir/file`, or, when the folder already holds a record,
    /// checks that this run is the same: a difference is an error naming the setting
    /// and both values. `restart_hint` says how to start over (e.g. "pass --restart").
    pub fn check_or_write(&self, dir: &Path, file: &str, restart_hint: &str) -> Result<()> {
        self.check_or_write_with_defaults(dir, file, restart_hint, &RunRecord::new())
    }

    /// As [`RunRecord::check_or_write`], with a setting missing from an earlier record
    /// read as its value in `defaults`: a run begun before a setting existed resumes
    /// when the setting is left at its default.
    pub fn check_or_write_with_defaults(
        &self,
        dir: &Path,
        file: &str,
        restart_hint: &str,
        defaults: &RunRecord,
    ) -> Result<()> {
        let path = dir.join(file);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let mut earlier: RunRecord =
                serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("run record: {e}")))?;
            for (k, v) in &defaults.settings {
                earlier.settings.entry(k.clone()).or_insert_with(|| v.clone());
            }
            return match self.difference(&earlier) {
                None => Ok(()),
                Some((name, was, now)) => Err(Error::invalid(format!(
                    "{} was made with {name} = {was}, this run has {now}: use the same settings to resume, or {restart_hint}",
                    dir.display()
                ))),
            };
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(&path, text.as_bytes())
    }
}

/// Equal, with floats compared to a relative 1e-12 (JSON need not give back a float's
/// last bit).
fn same_value(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> bool {
    match (a, b) {
        (Some(serde_json::Value::Number(x)), Some(serde_json::Value::Number(y))) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        _ => a == b,
    }
}

fn flatten(name: &str, v: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{name}.{k}"), v, out);
            }
        }
        other => {
            out.insert(name.to_string(), other);
        }
    }
}

/// SHA-256 (hex) of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 (hex) of several byte slices, each prefixed by its length (so that the
/// split between them counts).
pub fn fingerprint_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// SHA-256 (hex) of a tensor: its dtype, shape and values (as f32 little-endian for
/// float tensors, u32 for integer ones).
pub fn fingerprint_tensor(t: &candle_core::Tensor) -> Result<String> {
    let dims: Vec<u8> = t.dims().iter().flat_map(|d| (*d as u64).to_le_bytes()).collect();
    let flat = t.flatten_all()?;
    let values: Vec<u8> = if t.dtype().is_float() {
        let v = flat.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else {
        let v = flat.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?;
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    };
    Ok(fingerprint_parts([
        format!("{:?}", t.dtype()).as_bytes(),
        &dims,
        &values,
    ]))
}

/// SHA-256 (hex) of a file's bytes, or of a folder: every file under it (but the run
/// lock and temporary files) with its relative path, in path order.
pub fn fingerprint_path(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    if path.is_dir() {
        for rel in crate::io::files_under(path, false)? {
            h.update(rel.as_bytes());
            h.update([0]);
            hash_file(&path.join(&rel), &mut h)?;
        }
    } else {
        hash_file(path, &mut h)?;
    }
    Ok(hex(&h.finalize()))
}

fn hash_file(p: &Path, h: &mut Sha256) -> Result<()> {
    let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(p, e))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    h.update(len.to_le_bytes());
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Opts {
        seed: u64,
        psi: f64,
        inner: Inner,
    }
    #[derive(Serialize)]
    struct Inner {
        members: usize,
    }

    fn record(seed: u64, members: usize, generator: &str) -> RunRecord {
        let o = Opts {
            seed,
            psi: 0.7,
            inner: Inner { members },
        };
        RunRecord::new()
            .setting("run", &o)
            .unwrap()
            .input("generator", fingerprint(generator.as_bytes()))
    }

    #[test]
    fn a_resume_with_other_settings_or_inputs_is_refused_naming_both_values() {
        let dir = std::env::temp_dir().join(format!("labelgan-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        record(0, 10, "g")
            .check_or_write(&dir, "run.json", "pass --restart")
            .unwrap();
        // The same run resumes.
        record(0, 10, "g")
            .check_or_write(&dir, "run.json", "pass --restart")
            .unwrap();
        let e = record(1, 10, "g")
            .check_or_write(&dir, "run.json", "pass --restart")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run.seed = 0, this run has 1") && e.contains("--restart"),
            "{e}"
        );
        let e = record(0, 3, "g")
            .check_or_write(&dir, "run.json", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("run.inner.members = 10, this run has 3"), "{e}");
        let e = record(0, 10, "h")
            .check_or_write(&dir, "run.json", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("input generator"), "{e}");
        // A setting the earlier record lacks: its default resumes, anything else names it.
        let later = record(0, 10, "g").setting("added", &5).unwrap();
        let defaults = RunRecord::new().setting("added", &5).unwrap();
        later
            .check_or_write_with_defaults(&dir, "run.json", "x", &defaults)
            .unwrap();
        let e = record(0, 10, "g")
            .setting("added", &6)
            .unwrap()
            .check_or_write_with_defaults(&dir, "run.json", "x", &defaults)
            .unwrap_err()
            .to_string();
        assert!(e.contains("added = 5, this run has 6"), "{e}");
        let e = later.check_or_write(&dir, "run.json", "x").unwrap_err().to_string();
        assert!(e.contains("added = (not set), this run has 5"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fingerprints_see_content_and_names() {
        let dir = std::env::temp_dir().join(format!("labelgan-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.png"), b"one").unwrap();
        let f0 = fingerprint_path(&dir).unwrap();
        std::fs::write(dir.join(crate::lock::LOCK_FILE), b"123").unwrap();
        assert_eq!(fingerprint_path(&dir).unwrap(), f0, "the lock is not data");
        std::fs::write(dir.join("sub/a.png"), b"two").unwrap();
        let f1 = fingerprint_path(&dir).unwrap();
        assert_ne!(f0, f1);
        std::fs::rename(dir.join("sub/a.png"), dir.join("sub/b.png")).unwrap();
        assert_ne!(fingerprint_path(&dir).unwrap(), f1);
        assert_ne!(
            fingerprint_parts([&b"ab"[..], b"c"]),
            fingerprint_parts([&b"a"[..], b"bc"])
        );
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
