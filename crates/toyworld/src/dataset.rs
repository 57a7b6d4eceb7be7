//! Writing toyworld folders, and batches as tensors for training.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use serde_json::json;

use labelgan_core::image_io::{contact_sheet, rgb_to_chw, save_png};
use labelgan_core::{Error, Result};
use labelgan_dataset::files::{create_folders, write_keypoint_file};
use labelgan_dataset::{colorize_mask, write_labelled_image};

use crate::render::{CLASSES, FAR, KEYPOINTS, ToyFace};
use crate::{check_resolution, sample};

/// Images `start..start + count` of stream `seed` as a `[count, 3, R, R]` f32 tensor in
/// [-1, 1] (`u8 / 127.5 - 1`), rendered on all cores.
pub fn batch_tensor(seed: u64, start: u64, count: usize, resolution: usize, device: &Device) -> Result<Tensor> {
    check_resolution(resolution)?;
    let faces = render_range(seed, start, count, resolution);
    let mut data = Vec::with_capacity(count * 3 * resolution * resolution);
    for f in &faces {
        rgb_to_chw(&f.rgb, &mut data);
    }
    Ok(Tensor::from_vec(data, (count, 3, resolution, resolution), device)?)
}

/// Faces `start..start + count` of stream `seed`, rendered on all cores.
fn render_range(seed: u64, start: u64, count: usize, resolution: usize) -> Vec<ToyFace> {
    crate::parallel::render_range(start, count, |i| sample(seed, i, resolution))
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    /// Images written.
    pub images: usize,
    /// Their height and width.
    pub resolution: usize,
    /// The folder.
    pub out: PathBuf,
    /// Pixel share of each class over the dataset.
    pub class_share: [f64; 8],
}

/// Writes `count` toy faces of stream `seed` to `out`: `images/NNNNN.png` (RGB),
/// `masks/NNNNN.png` (8-bit class ids), `depth/NNNNN.png` (16-bit, `round(d * 65535)`),
/// `keypoints.json`, and `contact_sheet.png` (image, mask, depth of the first 16).
/// Every file is written atomically. `progress(done, count)` is called as it goes.
pub fn write_dataset(
    out: &Path,
    seed: u64,
    count: usize,
    resolution: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<DatasetSummary> {
    check_resolution(resolution)?;
    if count == 0 {
        return Err(Error::invalid("--count must be at least 1"));
    }
    create_folders(out, &["images", "masks", "depth"])?;
    let width = 5.max(count.saturating_sub(1).to_string().len());
    let mut entries = Vec::with_capacity(count);
    let mut sheet = Vec::new();
    let mut class_pixels = [0u64; 8];
    const BLOCK: usize = 64;
    for start in (0..count).step_by(BLOCK) {
        let n = BLOCK.min(count - start);
        for (j, f) in render_range(seed, start as u64, n, resolution).into_iter().enumerate() {
            let i = start + j;
            let name = format!("{i:0width$}.png");
            write_labelled_image(out, &name, resolution, &f.rgb, &f.labels())?;
            for &c in &f.mask {
                class_pixels[c as usize] += 1;
            }
            entries.push(json!({
                "file": name,
                "index": i,
                "keypoints": f.keypoints,
                "visible": f.visible,
            }));
            if sheet.len() < 48 {
                sheet.extend(sheet_cells(&f)?);
            }
            progress(i + 1, count);
        }
    }
    let meta = json!({
        "seed": seed,
        "resolution": resolution,
        "classes": CLASSES,
        "keypoint_names": KEYPOINTS,
        "coordinates": "pixels, x right and y down, pixel centres at integers",
        "depth": format!("16-bit PNG: round(65535 * distance / {FAR}); background 65535"),
    });
    write_keypoint_file(out, meta, entries)?;
    save_png(
        &contact_sheet(&sheet, 6, 2)?,
        &out.join(labelgan_core::image_io::CONTACT_SHEET),
    )?;
    let total: u64 = class_pixels.iter().sum();
    Ok(DatasetSummary {
        images: count,
        resolution,
        out: out.to_path_buf(),
        class_share: class_pixels.map(|c| c as f64 / total.max(1) as f64),
    })
}

/// Image with keypoints marked, coloured mask, depth: each at least 128 pixels wide.
fn sheet_cells(f: &ToyFace) -> Result<[DynamicImage; 3]> {
    let r = f.resolution as u32;
    let zoom = 128u32.div_ceil(r).max(1);
    let up = |img: DynamicImage| img.resize(r * zoom, r * zoom, image::imageops::FilterType::Nearest);
    let mut rgb = RgbImage::from_raw(r, r, f.rgb.clone()).expect("size");
    for (k, p) in f.keypoints.iter().enumerate() {
        let (x, y) = (p[0].round() as i64, p[1].round() as i64);
        if x >= 0 && y >= 0 && (x as u32) < r && (y as u32) < r && f.visible[k] {
            rgb.put_pixel(x as u32, y as u32, Rgb([255, 255, 0]));
        }
    }
    let depth = GrayImage::from_fn(r, r, |x, y| {
        Luma([(255.0 * (1.0 - f.depth[(y * r + x) as usize]).clamp(0.0, 1.0)) as u8])
    });
    Ok([
        up(DynamicImage::ImageRgb8(rgb)),
        up(DynamicImage::ImageRgb8(colorize_mask(&f.mask, f.resolution)?)),
        up(DynamicImage::ImageLuma8(depth)).to_rgb8().into(),
    ])
}
