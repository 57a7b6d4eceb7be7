//! Toy objects: a class-labelled built-in domain for class-conditional GANs and
//! few-label training (S3GAN, Compare GAN).
//!
//! Ten classes ([`OBJECT_CLASSES`]) that differ in shape and structure: house, tree,
//! pine, mushroom, car, lamp, arrow, snowman, table, flag. Within a class the colours of
//! every part, the size, place, a small tilt, the facing (mirrored or not), the sky,
//! ground, horizon and an optional sun vary. Objects stand upright on the ground, so a
//! rotated image is told apart from an upright one (what rotation self-supervision
//! learns from). Each image also has a mask of the object (1) against the scene (0).
//!
//! ```
//! use labelgan_toyworld::objects::{OBJECT_CLASSES, sample_object};
//!
//! let o = sample_object(3, 0, 32); // seed 3, image 0, 32x32
//! assert!((o.class as usize) < OBJECT_CLASSES.len());
//! assert_eq!(o.rgb.len(), 32 * 32 * 3);
//! assert_eq!(o, sample_object(3, 0, 32)); // deterministic
//! ```

mod classes;
mod dataset;
mod scene;
mod shape;

pub use classes::{OBJECT_CLASSES, parts};
pub use dataset::{ObjectSummary, class_sheet, object_batch, write_object_dataset};
pub use scene::ObjectScene;
pub use shape::Shape;

use labelgan_core::{Error, Result, SplitMix64};

/// Smallest supported resolution.
pub const MIN_OBJECT_RESOLUTION: usize = 16;
/// Largest supported resolution.
pub const MAX_OBJECT_RESOLUTION: usize = 256;

/// Stream offset so that objects of seed S are not drawn from the faces' stream S.
const STREAM: u64 = 0x6f62_6a65_6374_7321;

/// One rendered object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToyObject {
    /// RGB bytes, row-major, `resolution^2 * 3`.
    pub rgb: Vec<u8>,
    /// 1 where the object is, 0 elsewhere.
    pub mask: Vec<u8>,
    /// Class index into [`OBJECT_CLASSES`].
    pub class: u32,
    /// Height and width.
    pub resolution: usize,
}

/// The scene of image `index` of stream `seed` (its class drawn uniformly).
pub fn object_scene(seed: u64, index: u64) -> ObjectScene {
    let mut rng = SplitMix64::derive(seed ^ STREAM, index);
    let class = rng.below(OBJECT_CLASSES.len() as u64) as usize;
    ObjectScene::random(class, &mut rng)
}

/// Image `index` of stream `seed` at `resolution` (independent of the images before
/// it), supersampled 4x4 (2x2 above 64 pixels).
pub fn sample_object(seed: u64, index: u64, resolution: usize) -> ToyObject {
    let scene = object_scene(seed, index);
    let ss = if resolution > 64 { 2 } else { 4 };
    let (rgb, mask) = scene.render(resolution, ss);
    ToyObject {
        rgb,
        mask,
        class: scene.class as u32,
        resolution,
    }
}

/// Checks that `resolution` is supported.
pub fn check_object_resolution(resolution: usize) -> Result<()> {
    if !(MIN_OBJECT_RESOLUTION..=MAX_OBJECT_RESOLUTION).contains(&resolution) {
        return Err(Error::invalid(format!(
            "toy objects render {MIN_OBJECT_RESOLUTION} to {MAX_OBJECT_RESOLUTION} pixels, got {resolution}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_balanced_and_images_vary_within_a_class() {
        let objects: Vec<ToyObject> = (0..400).map(|i| sample_object(1, i, 32)).collect();
        let mut counts = [0usize; 10];
        for o in &objects {
            counts[o.class as usize] += 1;
            let cover = o.mask.iter().filter(|&&m| m == 1).count();
            let name = OBJECT_CLASSES[o.class as usize];
            assert!((12..32 * 32 / 2).contains(&cover), "a {name} covers {cover} pixels");
        }
        assert!(counts.iter().all(|&c| (20..=60).contains(&c)), "{counts:?}");
        // Two pictures of one class differ (colours, place, size).
        let houses: Vec<&ToyObject> = objects.iter().filter(|o| o.class == 0).take(2).collect();
        assert_ne!(houses[0].rgb, houses[1].rgb);
        assert_ne!(sample_object(2, 0, 32), sample_object(1, 0, 32));
    }

    #[test]
    fn the_object_stands_inside_the_frame_at_64_pixels() {
        for i in 0..50 {
            let o = sample_object(5, i, 64);
            // Nothing of the object on the outermost rows and columns.
            let edge = (0..64).any(|k| o.mask[k] == 1 || o.mask[k * 64] == 1 || o.mask[k * 64 + 63] == 1);
            assert!(!edge, "image {i} touches the frame");
        }
    }
}
