//! Writing toy-object folders (images, object masks, class labels) and batches as
//! tensors for training.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};

use labelgan_core::image_io::{contact_sheet, rgb_to_chw, save_png};
use labelgan_core::{Error, Result};
use labelgan_dataset::files::create_folders;
use labelgan_dataset::{ClassLabel, ClassLabels, ImageLabels, write_labelled_image};

use super::{OBJECT_CLASSES, ToyObject, check_object_resolution, object_scene, sample_object};

/// Images `start..start + count` of stream `seed` as `[count, 3, R, R]` in [-1, 1]
/// (`u8 / 127.5 - 1`) with their class ids, rendered on all cores.
pub fn object_batch(
    seed: u64,
    start: u64,
    count: usize,
    resolution: usize,
    device: &Device,
) -> Result<(Tensor, Vec<u32>)> {
    check_object_resolution(resolution)?;
    let objects = render_range(seed, start, count, resolution);
    let mut data = Vec::with_capacity(count * 3 * resolution * resolution);
    for o in &objects {
        rgb_to_chw(&o.rgb, &mut data);
    }
    let images = Tensor::from_vec(data, (count, 3, resolution, resolution), device)?;
    Ok((images, objects.iter().map(|o| o.class).collect()))
}

fn render_range(seed: u64, start: u64, count: usize, resolution: usize) -> Vec<ToyObject> {
    crate::parallel::render_range(start, count, |i| sample_object(seed, i, resolution))
}

/// What [`write_object_dataset`] wrote.
#[derive(Debug, Clone)]
pub struct ObjectSummary {
    /// Images written.
    pub images: usize,
    /// Their height and width.
    pub resolution: usize,
    /// The folder.
    pub out: PathBuf,
    /// Images per class.
    pub per_class: [usize; 10],
}

/// Writes `count` toy objects of stream `seed` to `out`: `images/NNNNN.png`,
/// `masks/NNNNN.png` (object 1, scene 0), `classes.json` (each image's class) and
/// `contact_sheet.png` ([`class_sheet`]: a row per class). Files are written
/// atomically; `progress(done, count)` is called as it goes.
pub fn write_object_dataset(
    out: &Path,
    seed: u64,
    count: usize,
    resolution: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<ObjectSummary> {
    check_object_resolution(resolution)?;
    if count == 0 {
        return Err(Error::invalid("--count must be at least 1"));
    }
    create_folders(out, &["images", "masks"])?;
    let width = 5.max(count.saturating_sub(1).to_string().len());
    let mut labels = Vec::with_capacity(count);
    let mut per_class = [0usize; 10];
    const BLOCK: usize = 256;
    for start in (0..count).step_by(BLOCK) {
        let n = BLOCK.min(count - start);
        for (j, o) in render_range(seed, start as u64, n, resolution).into_iter().enumerate() {
            let i = start + j;
            let name = format!("{i:0width$}.png");
            let mask = ImageLabels::mask(o.mask.iter().map(|&m| m as u32).collect());
            write_labelled_image(out, &name, resolution, &o.rgb, &mask)?;
            per_class[o.class as usize] += 1;
            labels.push(ClassLabel {
                file: name,
                class: o.class,
            });
            progress(i + 1, count);
        }
    }
    ClassLabels {
        classes: OBJECT_CLASSES.iter().map(|s| s.to_string()).collect(),
        images: labels,
    }
    .write(out)?;
    save_png(
        &class_sheet(seed, 8, resolution)?,
        &out.join(labelgan_core::image_io::CONTACT_SHEET),
    )?;
    Ok(ObjectSummary {
        images: count,
        resolution,
        out: out.to_path_buf(),
        per_class,
    })
}

/// A picture of every class: one row per class, the first `per_class` images of that
/// class in stream `seed`, each shown at least 64 pixels wide.
pub fn class_sheet(seed: u64, per_class: usize, resolution: usize) -> Result<DynamicImage> {
    check_object_resolution(resolution)?;
    let mut rows: Vec<Vec<u64>> = vec![Vec::new(); OBJECT_CLASSES.len()];
    let mut index = 0u64;
    while rows.iter().any(|r| r.len() < per_class) {
        let c = object_scene(seed, index).class;
        if rows[c].len() < per_class {
            rows[c].push(index);
        }
        index += 1;
    }
    let r = resolution as u32;
    let zoom = 64u32.div_ceil(r).max(1);
    let cells = rows
        .iter()
        .flatten()
        .map(|&i| {
            let o = sample_object(seed, i, resolution);
            let img = RgbImage::from_raw(r, r, o.rgb).ok_or_else(|| Error::invalid("internal: image size"))?;
            Ok(DynamicImage::ImageRgb8(img).resize(r * zoom, r * zoom, image::imageops::FilterType::Nearest))
        })
        .collect::<Result<Vec<_>>>()?;
    contact_sheet(&cells, per_class, 2)
}
