//! The dataset folder, written resumably.
//!
//! ```text
//! DIR/images/000000.png     RGB
//! DIR/masks/000000.png      8-bit class ids            (segmentation)
//! DIR/depth/000000.png      16-bit, round(65535 d)     (depth in [0, 1])
//! DIR/previews/000000.png   image with the mask blended in and keypoints marked
//! DIR/manifest.jsonl        one JSON object per image, in order
//! DIR/keypoints.json        every image's keypoints    (written by `finish`)
//! DIR/contact_sheet.png     the first 32 previews      (written by `finish`)
//! ```
//!
//! Each manifest line: `{"index", "image", "mask"?, "depth"?, "keypoints"?, "candidate",
//! "seed", "z", "score"}` (`candidate`: the latent's draw index; `z`: the latent).
//!
//! Safety: every file is written atomically (temporary file, then rename), and an
//! image's manifest line is appended (and flushed to disk) only after its files are in
//! place. The manifest is the record of what is done: on [`DatasetWriter::open`] a
//! partial last line (a kill in mid-append) is cut off, and files beyond the manifest
//! are simply rewritten, with the same bytes, when their image comes round again.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use labelgan_core::image_io::{contact_sheet, load_image, save_png};
use labelgan_core::io::{remove_stale_temp_files, write_atomic};
use labelgan_core::{Error, Result};
use labelgan_toyworld::{PALETTE, depth_to_u16};

/// One labelled image.
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
    pub mask: Option<Vec<u8>>,
    /// Depth in [0, 1] per pixel.
    pub depth: Option<Vec<f32>>,
    /// (x, y) in pixels.
    pub keypoints: Option<Vec<[f32; 2]>>,
    /// Image uncertainty score (mean of the 10 % most uncertain pixels).
    pub score: f32,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub index: usize,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub depth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keypoints: Option<Vec<[f32; 2]>>,
    pub candidate: u64,
    pub seed: u64,
    pub z: Vec<f32>,
    pub score: f32,
}

/// Writes a dataset folder image by image, resuming where the manifest ends.
#[derive(Debug)]
pub struct DatasetWriter {
    dir: PathBuf,
    resolution: usize,
    entries: Vec<Entry>,
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.jsonl")
}

impl DatasetWriter {
    /// Opens (or creates) `dir` for images of `resolution` pixels square, reading what
    /// an earlier run finished.
    pub fn open(dir: impl AsRef<Path>, resolution: usize) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        for sub in ["images", "masks", "depth", "previews"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            // A kill between writing a file and renaming it leaves its temporary.
            remove_stale_temp_files(&p)?;
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
                let e: Entry =
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
        Ok(Self {
            dir,
            resolution,
            entries,
        })
    }

    /// Images already written.
    pub fn done(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File name of image `index`.
    pub fn name(index: usize) -> String {
        format!("{index:06}.png")
    }

    /// Writes `s`, which must be the next image (`s.index == done()`).
    pub fn write(&mut self, s: &Sample) -> Result<()> {
        let r = self.resolution;
        if s.index != self.done() {
            return Err(Error::invalid(format!(
                "image {} written out of order: {} are done",
                s.index,
                self.done()
            )));
        }
        if s.rgb.len() != 3 * r * r {
            return Err(Error::invalid(format!("image {}: expected {r}x{r} RGB", s.index)));
        }
        let name = Self::name(s.index);
        let ru = r as u32;
        let img = RgbImage::from_raw(ru, ru, s.rgb.clone()).ok_or_else(|| Error::invalid("internal: image size"))?;
        save_png(
            &DynamicImage::ImageRgb8(img.clone()),
            &self.dir.join("images").join(&name),
        )?;
        let mut entry = Entry {
            index: s.index,
            image: format!("images/{name}"),
            mask: None,
            depth: None,
            keypoints: s.keypoints.clone(),
            candidate: s.candidate,
            seed: s.seed,
            z: s.z.clone(),
            score: s.score,
        };
        let mut preview = img;
        if let Some(m) = &s.mask {
            let g = GrayImage::from_raw(ru, ru, m.clone())
                .ok_or_else(|| Error::invalid(format!("image {}: mask is not {r}x{r}", s.index)))?;
            save_png(&DynamicImage::ImageLuma8(g), &self.dir.join("masks").join(&name))?;
            entry.mask = Some(format!("masks/{name}"));
            for (px, &c) in preview.pixels_mut().zip(m) {
                if c != 0 {
                    let col = PALETTE[c as usize % PALETTE.len()];
                    for (v, c) in px.0.iter_mut().zip(col) {
                        *v = ((*v as u16 + c as u16) / 2) as u8;
                    }
                }
            }
        }
        if let Some(d) = &s.depth {
            let b: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(ru, ru, depth_to_u16(d))
                .ok_or_else(|| Error::invalid(format!("image {}: depth is not {r}x{r}", s.index)))?;
            save_png(&DynamicImage::ImageLuma16(b), &self.dir.join("depth").join(&name))?;
            entry.depth = Some(format!("depth/{name}"));
        }
        if let Some(kps) = &s.keypoints {
            for &[x, y] in kps {
                mark(&mut preview, x, y);
            }
        }
        save_png(
            &DynamicImage::ImageRgb8(preview),
            &self.dir.join("previews").join(&name),
        )?;
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

    /// Writes `keypoints.json` (with `meta` merged in) and the contact sheet.
    pub fn finish(&self, meta: serde_json::Value) -> Result<()> {
        let mut m = match meta {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let images: Vec<_> = self
            .entries
            .iter()
            .map(|e| serde_json::json!({"file": Self::name(e.index), "index": e.index, "keypoints": e.keypoints}))
            .collect();
        m.insert("resolution".into(), self.resolution.into());
        m.insert("images".into(), images.into());
        let text = serde_json::to_string_pretty(&m).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&self.dir.join("keypoints.json"), text.as_bytes())?;
        let previews = self
            .entries
            .iter()
            .take(32)
            .map(|e| load_image(&self.dir.join("previews").join(Self::name(e.index))))
            .collect::<Result<Vec<_>>>()?;
        if !previews.is_empty() {
            save_png(&contact_sheet(&previews, 8, 2)?, &self.dir.join("contact_sheet.png"))?;
        }
        Ok(())
    }
}

/// Every file under `dir` (recursively) as (relative path, bytes), sorted by path: what
/// the resume tests compare between an interrupted and an uninterrupted run.
#[doc(hidden)]
pub fn folder_contents(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        for e in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let p = e.map_err(|e| Error::io(d, e))?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                out.push((rel, std::fs::read(&p).map_err(|e| Error::io(&p, e))?));
            }
        }
        Ok(())
    }
    let mut out = vec![];
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// A white cross with a black outline at (x, y).
fn mark(img: &mut RgbImage, x: f32, y: f32) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for (d, col) in [(2i64, [0u8, 0, 0]), (1, [255, 255, 255])] {
        for t in -d..=d {
            for (px, py) in [(cx + t, cy), (cx, cy + t)] {
                if (0..w).contains(&px) && (0..h).contains(&py) {
                    img.put_pixel(px as u32, py as u32, Rgb(col));
                }
            }
        }
    }
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
            mask: Some((0..r * r).map(|k| ((k + i) % 8) as u8).collect()),
            depth: Some((0..r * r).map(|k| k as f32 / 64.0).collect()),
            keypoints: Some(vec![[1.0, 2.5], [7.0, 0.0]]),
            score: 0.25 * i as f32,
        }
    }

    #[test]
    fn resumes_after_a_partial_line_to_the_same_bytes() {
        let base = std::env::temp_dir().join(format!("lg-factory-ds-{}", std::process::id()));
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
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_corrupt_manifest_is_named() {
        let d = std::env::temp_dir().join(format!("lg-factory-bad-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("manifest.jsonl"), b"{not json}\n").unwrap();
        let e = DatasetWriter::open(&d, 8).unwrap_err().to_string();
        assert!(e.contains("manifest.jsonl") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
