//! Images in and out: tensors to 8-bit PNGs, contact sheets, atomic file writes.
//!
//! Conversion follows the official StyleGAN2-ADA `generate.py`:
//! `u8 = clamp(x * 127.5 + 128, 0, 255)` truncated toward zero, so our PNGs of the same
//! raw output are byte-identical to theirs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GenericImage, ImageBuffer, Luma, Rgb};

use crate::io::write_atomic;
use crate::{Error, Result, SplitMix64};

/// Converts a batch `[N, C, H, W]` in about [-1, 1] (C = 1 or 3) to 8-bit images.
pub fn tensor_to_images(images: &Tensor) -> Result<Vec<DynamicImage>> {
    let (n, c, h, w) = images
        .dims4()
        .map_err(|_| Error::invalid(format!("images must be [N,C,H,W], got {:?}", images.dims())))?;
    if c != 1 && c != 3 {
        return Err(Error::invalid(format!("images must have 1 or 3 channels, got {c}")));
    }
    let u8s = images
        .to_dtype(DType::F32)?
        .affine(127.5, 128.0)?
        .clamp(0f32, 255f32)?
        .permute((0, 2, 3, 1))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per = h * w * c;
    let out = (0..n)
        .map(|i| {
            let px: Vec<u8> = u8s[i * per..(i + 1) * per].iter().map(|&v| v as u8).collect();
            if c == 3 {
                DynamicImage::ImageRgb8(
                    ImageBuffer::<Rgb<u8>, _>::from_raw(w as u32, h as u32, px).expect("size checked"),
                )
            } else {
                DynamicImage::ImageLuma8(
                    ImageBuffer::<Luma<u8>, _>::from_raw(w as u32, h as u32, px).expect("size checked"),
                )
            }
        })
        .collect();
    Ok(out)
}

/// Interleaved 8-bit RGB (`[H*W*3]`, as `RgbImage::as_raw`) to channel-major f32 in
/// [-1, 1] (`u8 / 127.5 - 1`), appended to `out` (`[3, H*W]`): the inverse of
/// [`tensor_to_images`] up to rounding.
pub fn rgb_to_chw(rgb: &[u8], out: &mut Vec<f32>) {
    for c in 0..3 {
        out.extend(rgb.iter().skip(c).step_by(3).map(|&v| v as f32 / 127.5 - 1.0));
    }
}

/// Encodes `img` as PNG and writes it atomically to `path`.
pub fn save_png(img: &DynamicImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::format(path, format!("PNG encoding failed: {e}")))?;
    write_atomic(path, buf.get_ref())
}

/// Reads a PNG (or any format the `image` crate knows), naming the file on failure.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    image::load_from_memory(&bytes).map_err(|e| Error::format(path, format!("not a readable image: {e}")))
}

/// Lays `images` out on a grid with `columns` columns and `pad` pixels of white between
/// cells. Cells are the size of the largest image.
pub fn contact_sheet(images: &[DynamicImage], columns: usize, pad: u32) -> Result<DynamicImage> {
    if images.is_empty() || columns == 0 {
        return Err(Error::invalid(
            "a contact sheet needs at least one image and one column",
        ));
    }
    let cw = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let ch = images.iter().map(|i| i.height()).max().unwrap_or(1);
    let cols = columns.min(images.len()) as u32;
    let rows = images.len().div_ceil(columns) as u32;
    let mut sheet = image::RgbImage::from_pixel(
        cols * cw + (cols + 1) * pad,
        rows * ch + (rows + 1) * pad,
        Rgb([255, 255, 255]),
    );
    for (k, img) in images.iter().enumerate() {
        let (r, c) = ((k / columns) as u32, (k % columns) as u32);
        let rgb = img.to_rgb8();
        sheet
            .copy_from(&rgb, pad + c * (cw + pad), pad + r * (ch + pad))
            .map_err(|e| Error::invalid(format!("contact sheet: {e}")))?;
    }
    Ok(DynamicImage::ImageRgb8(sheet))
}

/// Where real images come from.
pub enum ImageSource {
    /// A fixed set `[M, C, R, R]` in [-1, 1], sampled with replacement.
    Images(Tensor),
    /// A stream of fresh images: `f(start, count)` returns images `start..start+count`
    /// (for example the toyworld renderer).
    Stream(Box<dyn Fn(u64, usize) -> Result<Tensor> + Send>),
}

impl ImageSource {
    /// `n` images for draw `step` (the stream's images `step * n ..`, or `n` drawn with
    /// replacement from the set), on `device`.
    pub fn batch(&self, step: u64, n: usize, rng: &mut SplitMix64, device: &Device) -> Result<Tensor> {
        match self {
            ImageSource::Images(t) => {
                let m = t.dim(0)?;
                if m == 0 {
                    return Err(Error::invalid("the training image set is empty"));
                }
                let idx: Vec<u32> = (0..n).map(|_| rng.below(m as u64) as u32).collect();
                Ok(t.index_select(&Tensor::new(idx, t.device())?, 0)?.to_device(device)?)
            }
            ImageSource::Stream(f) => Ok(f(step * n as u64, n)?.to_device(device)?),
        }
    }
}

/// The preview labelgan writes beside images (`generate --png-dir`, toyworld, the
/// factory): never an input image.
pub const CONTACT_SHEET: &str = "contact_sheet.png";

/// The PNG and JPEG files directly in `dir`, sorted by name, but [`CONTACT_SHEET`] (an
/// error if none). Names that differ only in case (`a.png`, `a.PNG`) are refused: on
/// many file systems they are one file, and outputs named after them would overwrite
/// each other.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
                && p.file_name().is_some_and(|n| n != CONTACT_SHEET)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid(format!("{} holds no PNG or JPEG images", dir.display())));
    }
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if let Some(other) = seen.insert(name, f) {
            return Err(Error::invalid(format!(
                "{} and {} differ only in case; rename one",
                other.display(),
                f.display()
            )));
        }
    }
    Ok(files)
}

/// Splits `images` `[N, ...]` into `holdout` images and the rest, chosen by a
/// permutation drawn from `seed` (each part in that permuted order, on the CPU).
pub fn split_holdout(images: &Tensor, holdout: usize, seed: u64) -> Result<(Tensor, Tensor)> {
    let n = images.dim(0)?;
    if holdout > n {
        return Err(Error::invalid(format!("cannot hold out {holdout} of {n} images")));
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let pick = |idx: &[u32]| -> Result<Tensor> { Ok(images.index_select(&Tensor::new(idx, images.device())?, 0)?) };
    Ok((pick(&order[..holdout])?, pick(&order[holdout..])?))
}

/// The file names (without folders) of `files`, in order.
pub fn file_names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Every PNG or JPEG directly in `dir` (sorted by name) as `[N, 3, R, R]` in [-1, 1];
/// an error names any image that is not `resolution` square or does not decode.
pub fn load_image_folder(dir: &Path, resolution: usize) -> Result<Tensor> {
    load_images(&image_files(dir)?, resolution)
}

/// `files` as `[N, 3, R, R]` in [-1, 1]; an error names any image that is not
/// `resolution` square or does not decode.
pub fn load_images(files: &[PathBuf], resolution: usize) -> Result<Tensor> {
    let r = resolution;
    let mut data = Vec::with_capacity(files.len() * 3 * r * r);
    for f in files {
        let img = load_image(f)?.to_rgb8();
        if (img.width() as usize, img.height() as usize) != (r, r) {
            return Err(Error::format(
                f,
                format!("is {}x{}, expected {r}x{r}", img.width(), img.height()),
            ));
        }
        rgb_to_chw(img.as_raw(), &mut data);
    }
    Ok(Tensor::from_vec(data, (files.len(), 3, r, r), &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn conversion_matches_official_rounding() {
        // -1 -> 0.5 -> 0, 0 -> 128, 1 -> 255.5 -> 255, 0.5 -> 191.75 -> 191.
        let t = Tensor::new(&[-1f32, 0.0, 1.0, 0.5], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 2))
            .unwrap();
        let img = &tensor_to_images(&t).unwrap()[0];
        assert_eq!(img.to_luma8().into_raw(), vec![0, 128, 255, 191]);
    }

    /// The contact sheet is not an input image; names equal but for case are refused.
    #[test]
    fn image_files_skip_the_sheet_and_refuse_case_twins() {
        let dir = std::env::temp_dir().join(format!("lg-core-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in ["b.png", "a.jpg", CONTACT_SHEET, "notes.txt"] {
            std::fs::write(dir.join(n), b"").unwrap();
        }
        let names: Vec<_> = image_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["a.jpg", "b.png"]);
        std::fs::write(dir.join("B.PNG"), b"").unwrap();
        let e = image_files(&dir).unwrap_err().to_string();
        assert!(e.contains("differ only in case"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sheet_and_atomic_write() {
        let dir = std::env::temp_dir().join(format!("lg-core-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Tensor::zeros((5, 3, 4, 6), DType::F32, &Device::Cpu).unwrap();
        let imgs = tensor_to_images(&t).unwrap();
        let sheet = contact_sheet(&imgs, 2, 1).unwrap();
        assert_eq!((sheet.width(), sheet.height()), (2 * 6 + 3, 3 * 4 + 4));
        let p = dir.join("a.png");
        save_png(&sheet, &p).unwrap();
        assert_eq!(load_image(&p).unwrap().width(), 15);
        let bad = dir.join("bad.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let err = load_image(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
