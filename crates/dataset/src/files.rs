//! The files of one labelled image, the keypoint file, and how depth is stored.

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, RgbImage};

use labelgan_core::image_io::save_png;
use labelgan_core::io::write_atomic;
use labelgan_core::{Error, Result};

use crate::labels::ImageLabels;

/// Depth in [0, 1] to 16-bit values (`round(d * 65535)`).
pub fn depth_to_u16(depth: &[f32]) -> Vec<u16> {
    depth
        .iter()
        .map(|&d| (d.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect()
}

/// 16-bit depth values back to [0, 1] (`v / 65535`).
pub fn depth_from_u16(depth: &[u16]) -> Vec<f32> {
    depth.iter().map(|&v| v as f32 / 65535.0).collect()
}

/// A class-id mask as 8-bit ids; an id above 255 cannot be stored and is an error.
pub fn mask_to_u8(mask: &[u32]) -> Result<Vec<u8>> {
    mask.iter()
        .map(|&c| {
            u8::try_from(c).map_err(|_| {
                Error::invalid(format!(
                    "class id {c} does not fit an 8-bit mask (the dataset folder stores ids 0-255)"
                ))
            })
        })
        .collect()
}

/// Writes `images/NAME` and, for the labels present, `masks/NAME` (8-bit ids) and
/// `depth/NAME` (16-bit) under `dir`, each atomically. The sub-folders must exist.
/// Returns the image as an RGB buffer (for previews).
pub fn write_labelled_image(
    dir: &Path,
    name: &str,
    resolution: usize,
    rgb: &[u8],
    labels: &ImageLabels,
) -> Result<RgbImage> {
    let r = resolution as u32;
    labels.check(resolution)?;
    let img = RgbImage::from_raw(r, r, rgb.to_vec()).ok_or_else(|| {
        Error::invalid(format!(
            "{name}: expected a {resolution}x{resolution} RGB image ({} bytes), got {} bytes",
            3 * resolution * resolution,
            rgb.len()
        ))
    })?;
    save_png(&DynamicImage::ImageRgb8(img.clone()), &dir.join("images").join(name))?;
    if let Some(m) = &labels.mask {
        let g = GrayImage::from_raw(r, r, mask_to_u8(m)?).ok_or_else(|| Error::invalid("internal: mask size"))?;
        save_png(&DynamicImage::ImageLuma8(g), &dir.join("masks").join(name))?;
    }
    if let Some(d) = &labels.depth {
        let b: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_raw(r, r, depth_to_u16(d)).ok_or_else(|| Error::invalid("internal: depth size"))?;
        save_png(&DynamicImage::ImageLuma16(b), &dir.join("depth").join(name))?;
    }
    Ok(img)
}

/// Creates `dir` and the sub-folders named, removing the temporary files a killed
/// writer left in them (`NAME.tmpPID`, see `labelgan_core::io::write_atomic`).
pub fn create_folders(dir: &Path, subs: &[&str]) -> Result<()> {
    labelgan_core::io::remove_stale_temp_files(dir)?;
    for sub in subs {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        labelgan_core::io::remove_stale_temp_files(&p)?;
    }
    Ok(())
}

/// Writes `DIR/keypoints.json`: `meta`'s keys with `images` (one object per image,
/// each with at least `file` and `keypoints`) added, pretty-printed, atomically.
pub fn write_keypoint_file(dir: &Path, meta: serde_json::Value, images: Vec<serde_json::Value>) -> Result<()> {
    let mut m = match meta {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    m.insert("images".into(), images.into());
    let text = serde_json::to_string_pretty(&m).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&dir.join("keypoints.json"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_round_trips_within_half_a_step() {
        let d = [0.0, 0.25, 0.5, 1.0, 1.5, -0.1];
        let back = depth_from_u16(&depth_to_u16(&d));
        for (a, b) in d.iter().zip(&back) {
            assert!((a.clamp(0.0, 1.0) - b).abs() <= 0.5 / 65535.0 + 1e-7, "{a} -> {b}");
        }
    }

    #[test]
    fn class_ids_above_255_are_refused() {
        assert_eq!(mask_to_u8(&[0, 7, 255]).unwrap(), vec![0, 7, 255]);
        let e = mask_to_u8(&[3, 256]).unwrap_err().to_string();
        assert!(e.contains("256"), "{e}");
    }
}
