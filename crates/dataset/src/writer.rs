//! The dataset folder, written image by image and resumably.
//!
//! Each manifest line: `{"index", "image", "mask"?, "depth"?, "keypoints"?, "candidate",
//! "seed", "z", "score", "class"?}` (`candidate`: the latent's draw index; `z`: the
//! latent; `class`: a conditional generator's class, also in `classes.json`).
//!
//! Safety: every file is written atomically (temporary file, then rename), and an
//! image's manifest line is appended (and flushed to disk) only after its files are in
//! place. The manifest is the record of what is done: on [`DatasetWriter::open`] a
//! partial last line (a kill in mid-append) is cut off, and files beyond the manifest
//! are simply rewritten, with the same bytes, when their image comes round again.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use labelgan_core::image_io::{contact_sheet, load_image, save_png};
use labelgan_core::io::remove_stale_temp_files;
use labelgan_core::{Error, Result};

use crate::class_labels::{ClassLabel, ClassLabels};
use crate::files::{create_folders, write_keypoint_file, write_labelled_image};
use crate::labels::ImageLabels;
use crate::palette::preview;

/// One generated, labelled image and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Position in the dataset (0, 1, ...).
    pub index: usize,
    /// Draw index of the latent.
    pub candidate: u64,
    /// Seed the latent was drawn from.
    pub seed: u64,
    /// The latent z.
    pub z: Vec<f32>,
    /// Square RGB image, row-major, 3 bytes per pixel.
    pub rgb: Vec<u8>,
    /// Its labels.
    pub labels: ImageLabels,
    /// Image uncertainty score (mean of the 10 % most uncertain pixels).
    pub score: f32,
    /// The class a conditional generator made it for.
    pub class: Option<u32>,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Position in the dataset.
    pub index: usize,
    /// The image, relative to the folder.
    pub image: String,
    /// The mask, relative to the folder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask: Option<String>,
    /// The depth map, relative to the folder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub depth: Option<String>,
    /// (x, y) per keypoint, in pixels.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keypoints: Option<Vec<[f32; 2]>>,
    /// Draw index of the latent.
    pub candidate: u64,
    /// Seed the latent was drawn from.
    pub seed: u64,
    /// The latent z.
    pub z: Vec<f32>,
    /// Image uncertainty score.
    pub score: f32,
    /// The class a conditional generator made it for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class: Option<u32>,
    /// SHA-256 of the image, mask and depth files: a resume checks the files against it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
}

impl ManifestEntry {
    /// The entry's files (image, then mask and depth when present), relative to the
    /// folder.
    pub fn files(&self) -> Vec<&str> {
        [Some(self.image.as_str()), self.mask.as_deref(), self.depth.as_deref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The SHA-256 of the entry's files in `dir` (see [`ManifestEntry::sha256`]), or
    /// `None` if one is missing.
    pub fn hash_files(&self, dir: &Path) -> Result<Option<String>> {
        let mut parts = vec![];
        for f in self.files() {
            let p = dir.join(f);
            if !p.is_file() {
                return Ok(None);
            }
            parts.push(labelgan_core::record::fingerprint_path(&p)?);
        }
        Ok(Some(labelgan_core::record::fingerprint_parts(
            parts.iter().map(|s| s.as_bytes()),
        )))
    }
}

/// Writes a dataset folder image by image, resuming where the manifest ends.
#[derive(Debug)]
pub struct DatasetWriter {
    dir: PathBuf,
    resolution: usize,
    entries: Vec<ManifestEntry>,
    damaged: Vec<usize>,
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.jsonl")
}

impl DatasetWriter {
    /// Opens (or creates) `dir` for images of `resolution` pixels square, reading what
    /// an earlier run finished.
    pub fn open(dir: impl AsRef<Path>, resolution: usize) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        // Label folders are made on the first image that has that label, so that a
        // folder's presence says which labels the dataset has.
        create_folders(&dir, &["images", "previews"])?;
        for sub in ["images", "masks", "depth", "previews"] {
            // A kill between writing a file and renaming it leaves its temporary.
            if dir.join(sub).is_dir() {
                remove_stale_temp_files(&dir.join(sub))?;
            }
        }
        remove_stale_temp_files(&dir)?;
        let mp = manifest_path(&dir);
        let mut entries = vec![];
        if mp.exists() {
            let text = std::fs::read(&mp).map_err(|e| Error::io(&mp, e))?;
            // Only complete lines count; a kill in mid-append leaves a partial last one.
            let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete < text.len() {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&mp)
                    .map_err(|e| Error::io(&mp, e))?;
                f.set_len(complete as u64).map_err(|e| Error::io(&mp, e))?;
                f.sync_all().map_err(|e| Error::io(&mp, e))?;
            }
            for (k, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let e: ManifestEntry =
                    serde_json::from_slice(line).map_err(|e| Error::format(&mp, format!("line {}: {e}", k + 1)))?;
                if e.index != entries.len() {
                    return Err(Error::format(
                        &mp,
                        format!("line {} has index {}, expected {}", k + 1, e.index, entries.len()),
                    ));
                }
                entries.push(e);
            }
        }
        // Every finished image is checked against its record: a file deleted or
        // altered since is found here, and its image written again ([`Self::rewrite`]).
        let mut damaged = vec![];
        for e in &entries {
            let now = e.hash_files(&dir)?;
            let preview = dir.join("previews").join(Self::name(e.index));
            if now.is_none() || (e.sha256.is_some() && now != e.sha256) || !preview.is_file() {
                damaged.push(e.index);
            }
        }
        Ok(Self {
            dir,
            resolution,
            entries,
            damaged,
        })
    }

    /// Images in the manifest whose files are missing or differ from what was
    /// written (ascending): each must be written again with [`Self::rewrite`].
    pub fn damaged(&self) -> &[usize] {
        &self.damaged
    }

    /// Writes the files of image `s.index`, one the manifest holds (a damaged one), again.
    /// The sample must be the one recorded (same candidate and seed) and its files must
    /// come out byte-identical to the recorded ones; anything else is an error, since
    /// the folder would then mix two runs.
    pub fn rewrite(&mut self, s: &Sample) -> Result<()> {
        let e = self
            .entries
            .get(s.index)
            .ok_or_else(|| Error::invalid(format!("image {} is not in the manifest", s.index)))?
            .clone();
        if (e.candidate, e.seed) != (s.candidate, s.seed) {
            return Err(Error::invalid(format!(
                "image {} is candidate {} of seed {} in the manifest, not candidate {} of seed {}",
                s.index, e.candidate, e.seed, s.candidate, s.seed
            )));
        }
        let name = Self::name(s.index);
        self.write_files(&name, s)?;
        let now = e.hash_files(&self.dir)?;
        if e.sha256.is_some() && now != e.sha256 {
            return Err(Error::format(
                self.dir.join(&e.image),
                format!(
                    "image {} came out different when made again (the generator or labelers changed since it was written): start the dataset over",
                    s.index
                ),
            ));
        }
        self.damaged.retain(|&i| i != s.index);
        Ok(())
    }

    /// Writes the image, its labels and preview of `s` as `name` (atomically each).
    fn write_files(&self, name: &str, s: &Sample) -> Result<()> {
        let l = &s.labels;
        for (sub, present) in [("masks", l.mask.is_some()), ("depth", l.depth.is_some())] {
            if present {
                create_folders(&self.dir, &[sub])?;
            }
        }
        let img = write_labelled_image(&self.dir, name, self.resolution, &s.rgb, l)
            .map_err(|e| Error::invalid(format!("image {}: {e}", s.index)))?;
        let p = preview(img, l.mask.as_deref(), l.keypoints.as_deref());
        save_png(&DynamicImage::ImageRgb8(p), &self.dir.join("previews").join(name))
    }

    /// Images already written.
    pub fn done(&self) -> usize {
        self.entries.len()
    }

    /// The manifest so far.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File name of image `index`.
    pub fn name(index: usize) -> String {
        format!("{index:06}.png")
    }

    /// Writes `s`, which must be the next image (`s.index == done()`).
    pub fn write(&mut self, s: &Sample) -> Result<()> {
        if s.index != self.done() {
            return Err(Error::invalid(format!(
                "image {} written out of order: {} are done",
                s.index,
                self.done()
            )));
        }
        let name = Self::name(s.index);
        let l = &s.labels;
        self.write_files(&name, s)?;
        let mut entry = ManifestEntry {
            index: s.index,
            image: format!("images/{name}"),
            mask: l.mask.as_ref().map(|_| format!("masks/{name}")),
            depth: l.depth.as_ref().map(|_| format!("depth/{name}")),
            keypoints: l.keypoints.clone(),
            candidate: s.candidate,
            seed: s.seed,
            z: s.z.clone(),
            score: s.score,
            class: s.class,
            sha256: None,
        };
        entry.sha256 = entry.hash_files(&self.dir)?;
        self.append(entry)
    }

    /// Appends image `e` of the dataset folder `from` as the next image: its files and
    /// preview copied under the next name, its manifest line renumbered (what joining
    /// the shards of a dataset does). The copies must match `e`'s recorded SHA-256.
    pub fn append_from(&mut self, from: &Path, e: &ManifestEntry) -> Result<()> {
        let name = Self::name(self.done());
        let rename = |rel: &str| -> String {
            match rel.rsplit_once('/') {
                Some((sub, _)) => format!("{sub}/{name}"),
                None => name.clone(),
            }
        };
        let entry = ManifestEntry {
            index: self.done(),
            image: rename(&e.image),
            mask: e.mask.as_deref().map(rename),
            depth: e.depth.as_deref().map(rename),
            ..e.clone()
        };
        let preview = |dir: &Path, index: usize| dir.join("previews").join(Self::name(index));
        let pairs = e
            .files()
            .into_iter()
            .zip(entry.files())
            .map(|(a, b)| (from.join(a), self.dir.join(b)))
            .chain([(preview(from, e.index), preview(&self.dir, entry.index))]);
        for (src, dst) in pairs {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|err| Error::io(parent, err))?;
            }
            let bytes = std::fs::read(&src).map_err(|err| Error::io(&src, err))?;
            labelgan_core::io::write_atomic(&dst, &bytes)?;
        }
        if entry.hash_files(&self.dir)? != e.sha256 {
            return Err(Error::format(
                from.join(&e.image),
                format!("image {}'s files differ from its manifest line", e.index),
            ));
        }
        self.append(entry)
    }

    /// Appends `entry`'s manifest line, once its files are in place.
    fn append(&mut self, entry: ManifestEntry) -> Result<()> {
        // The manifest line last: the image is done once it is on disk.
        let mut line = serde_json::to_string(&entry).map_err(|e| Error::invalid(e.to_string()))?;
        line.push('\n');
        let mp = manifest_path(&self.dir);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&mp)
            .map_err(|e| Error::io(&mp, e))?;
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&mp, e))?;
        f.sync_data().map_err(|e| Error::io(&mp, e))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Writes `classes.json` (the format of [`ClassLabels`]) with the class of every
    /// image, `names` naming the ids; an image without a class is an error.
    pub fn write_class_labels(&self, names: Vec<String>) -> Result<()> {
        let images = self
            .entries
            .iter()
            .map(|e| {
                let class = e
                    .class
                    .ok_or_else(|| Error::invalid(format!("image {} has no class", e.index)))?;
                Ok(ClassLabel {
                    file: Self::name(e.index),
                    class,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        ClassLabels { classes: names, images }.write(&self.dir)
    }

    /// Writes `keypoints.json` (with `meta` merged in) and the contact sheet.
    pub fn finish(&self, meta: serde_json::Value) -> Result<()> {
        let mut meta = match meta {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let images: Vec<_> = self
            .entries
            .iter()
            .map(|e| serde_json::json!({"file": Self::name(e.index), "index": e.index, "keypoints": e.keypoints}))
            .collect();
        meta.insert("resolution".into(), self.resolution.into());
        write_keypoint_file(&self.dir, meta.into(), images)?;
        let previews = self
            .entries
            .iter()
            .take(32)
            .map(|e| load_image(&self.dir.join("previews").join(Self::name(e.index))))
            .collect::<Result<Vec<_>>>()?;
        if !previews.is_empty() {
            save_png(
                &contact_sheet(&previews, 8, 2)?,
                &self.dir.join(labelgan_core::image_io::CONTACT_SHEET),
            )?;
        }
        Ok(())
    }
}

/// Every file under `dir` (recursively) as (relative path, bytes), sorted by path, but
/// the run lock: what the resume tests compare between an interrupted and an
/// uninterrupted run, and merging compares between shards' labelers.
pub fn folder_contents(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    labelgan_core::io::files_under(dir, true)?
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            Ok((rel, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Sample {
        let r = 8;
        Sample {
            index: i,
            candidate: 3 * i as u64,
            seed: 9,
            z: vec![i as f32, -0.5],
            rgb: (0..3 * r * r).map(|k| (k * 7 + i) as u8).collect(),
            labels: ImageLabels {
                mask: Some((0..r * r).map(|k| ((k + i) % 8) as u32).collect()),
                depth: Some((0..r * r).map(|k| k as f32 / 64.0).collect()),
                keypoints: Some(vec![[1.0, 2.5], [7.0, 0.0]]),
            },
            score: 0.25 * i as f32,
            class: None,
        }
    }

    #[test]
    fn resumes_after_a_partial_line_to_the_same_bytes() {
        let base = std::env::temp_dir().join(format!("lg-dataset-ds-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        let _ = std::fs::remove_dir_all(&base);
        let mut w = DatasetWriter::open(&a, 8).unwrap();
        for i in 0..5 {
            w.write(&sample(i)).unwrap();
        }
        w.finish(serde_json::json!({"seed": 9})).unwrap();

        let mut w = DatasetWriter::open(&b, 8).unwrap();
        for i in 0..3 {
            w.write(&sample(i)).unwrap();
        }
        // A kill after image 3's files and half of its manifest line.
        w.write(&sample(3)).unwrap();
        let mp = b.join("manifest.jsonl");
        let text = std::fs::read(&mp).unwrap();
        let cut = text.len() - 20;
        std::fs::write(&mp, &text[..cut]).unwrap();
        // ... and with a temporary file of a write that never got renamed.
        std::fs::write(b.join("images").join("000004.png.tmp4242"), b"half a png").unwrap();
        let mut w = DatasetWriter::open(&b, 8).unwrap();
        assert!(!b.join("images").join("000004.png.tmp4242").exists());
        assert_eq!(w.done(), 3);
        assert!(w.write(&sample(4)).is_err(), "out of order");
        for i in 3..5 {
            w.write(&sample(i)).unwrap();
        }
        w.finish(serde_json::json!({"seed": 9})).unwrap();
        assert_eq!(folder_contents(&a).unwrap(), folder_contents(&b).unwrap());
        let reopened = DatasetWriter::open(&a, 8).unwrap();
        let e = &reopened.entries()[4];
        assert_eq!((e.candidate, e.mask.as_deref()), (12, Some("masks/000004.png")));
        // What was written reads back as the same labels.
        let set = crate::load_dataset(&a, 8, None).unwrap();
        assert_eq!(set.targets.image(2), sample(2).labels.clone().with_depth_quantised());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn classes_go_to_the_manifest_and_classes_json() {
        let d = std::env::temp_dir().join(format!("lg-dataset-classes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut w = DatasetWriter::open(&d, 8).unwrap();
        for i in 0..3 {
            w.write(&Sample {
                class: Some(2 - i as u32),
                ..sample(i)
            })
            .unwrap();
        }
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        w.write_class_labels(names.clone()).unwrap();
        let labels = ClassLabels::read(&d).unwrap().unwrap();
        assert_eq!(labels.classes, names);
        let read: Vec<(String, u32)> = labels.images.into_iter().map(|l| (l.file, l.class)).collect();
        assert_eq!(
            read,
            [("000000.png", 2), ("000001.png", 1), ("000002.png", 0)].map(|(f, c)| (f.to_string(), c))
        );
        assert_eq!(DatasetWriter::open(&d, 8).unwrap().entries()[1].class, Some(1));
        // A class the names do not cover, or an image without a class, is refused.
        assert!(w.write_class_labels(names[..2].to_vec()).is_err());
        w.write(&sample(3)).unwrap();
        let e = w.write_class_labels(names).unwrap_err().to_string();
        assert!(e.contains("image 3 has no class"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_corrupt_manifest_is_named() {
        let d = std::env::temp_dir().join(format!("lg-dataset-bad-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("manifest.jsonl"), b"{not json}\n").unwrap();
        let e = DatasetWriter::open(&d, 8).unwrap_err().to_string();
        assert!(e.contains("manifest.jsonl") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    impl ImageLabels {
        fn with_depth_quantised(mut self) -> Self {
            self.depth = self.depth.map(|d| crate::depth_from_u16(&crate::depth_to_u16(&d)));
            self
        }
    }
}
