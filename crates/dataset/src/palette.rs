//! Display colours of the classes, masks as pictures, and previews.

use image::{ImageBuffer, Rgb, RgbImage};

use labelgan_core::{Error, Result};

/// Display colours of the classes (background black); ids beyond wrap around.
pub const PALETTE: [[u8; 3]; 8] = [
    [0, 0, 0],
    [230, 180, 140],
    [120, 70, 30],
    [40, 120, 240],
    [240, 200, 40],
    [150, 60, 170],
    [40, 190, 90],
    [220, 40, 50],
];

fn colour(class: u32) -> [u8; 3] {
    PALETTE[class as usize % PALETTE.len()]
}

/// A class-id mask (`resolution²` ids, row-major) as an RGB picture.
pub fn colorize_mask<T: Copy + Into<u32>>(mask: &[T], resolution: usize) -> Result<RgbImage> {
    if mask.len() != resolution * resolution {
        return Err(Error::invalid(format!(
            "a {resolution}x{resolution} mask needs {} class ids, got {}",
            resolution * resolution,
            mask.len()
        )));
    }
    let r = resolution as u32;
    Ok(ImageBuffer::from_fn(r, r, |x, y| {
        Rgb(colour(mask[(y * r + x) as usize].into()))
    }))
}

/// `image` with `mask` blended in (half and half, background left as is) and each
/// keypoint marked with a white cross outlined in black.
pub fn preview(mut image: RgbImage, mask: Option<&[u32]>, keypoints: Option<&[[f32; 2]]>) -> RgbImage {
    if let Some(m) = mask {
        for (px, &c) in image.pixels_mut().zip(m) {
            if c != 0 {
                for (v, c) in px.0.iter_mut().zip(colour(c)) {
                    *v = ((*v as u16 + c as u16) / 2) as u8;
                }
            }
        }
    }
    for &[x, y] in keypoints.unwrap_or_default() {
        mark(&mut image, x, y);
    }
    image
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

    #[test]
    fn preview_blends_classes_and_marks_keypoints() {
        let img = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
        let mut mask = vec![0u32; 64];
        mask[0] = 3;
        let p = preview(img, Some(&mask), Some(&[[5.0, 5.0]]));
        assert_eq!(p.get_pixel(0, 0).0, [70, 110, 170]);
        assert_eq!(p.get_pixel(1, 0).0, [100, 100, 100]);
        assert_eq!(p.get_pixel(5, 5).0, [255, 255, 255]);
        assert_eq!(p.get_pixel(7, 5).0, [0, 0, 0]);
        assert!(colorize_mask(&mask, 7).is_err());
        assert_eq!(colorize_mask(&mask, 8).unwrap().get_pixel(0, 0).0, PALETTE[3]);
    }
}
