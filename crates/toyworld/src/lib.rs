//! # labelgan-toyworld
//!
//! A built-in domain of procedural "toy faces" with exact labels, so that labelgan's
//! whole pipeline (train a GAN, invert, label, evaluate) runs on something real
//! without downloads, and label quality is measured against ground truth.
//!
//! Every face is drawn from a seeded stream: head position, scale, roll, yaw and pitch
//! (features move and foreshorten on the head sphere), skin, hair and eye colours, four
//! hair styles, open or closed mouth and smile, light direction with Lambertian shading
//! from the surface normals, and a textured background. Images are anti-aliased by
//! supersampling. Labels: 8-class segmentation ([`CLASSES`]), 5 keypoints
//! ([`KEYPOINTS`]) and depth. The same seed and index give the same bytes.
//!
//! [`objects`] is a second domain, of ten object classes with image-level labels, for
//! class-conditional GANs.
//!
//! ```
//! use labelgan_toyworld::{CLASSES, sample};
//!
//! let face = sample(7, 0, 64); // seed 7, image 0, 64x64
//! assert_eq!(face.rgb.len(), 64 * 64 * 3);
//! assert!(face.mask.iter().all(|&c| (c as usize) < CLASSES.len()));
//! assert_eq!(face.rgb, sample(7, 0, 64).rgb); // deterministic
//! ```

mod dataset;
mod face;
pub mod objects;
mod parallel;
mod render;

pub use dataset::{DatasetSummary, batch_tensor, write_dataset};
pub use face::{Background, Face, HairStyle, Pattern};
pub use render::{CLASSES, FAR, KEYPOINTS, Sample, Scene, ToyFace, render, render_with};

use labelgan_core::{Error, Result, SplitMix64};

/// Smallest supported resolution.
pub const MIN_RESOLUTION: usize = 32;
/// Largest supported resolution.
pub const MAX_RESOLUTION: usize = 256;

/// Image `index` of the toyworld stream `seed`, at `resolution` pixels (independent of
/// how many images are drawn before it).
pub fn sample(seed: u64, index: u64, resolution: usize) -> ToyFace {
    let mut rng = SplitMix64::derive(seed, index);
    render(&Face::random(&mut rng), resolution)
}

/// Checks that `resolution` is supported.
pub fn check_resolution(resolution: usize) -> Result<()> {
    if !(MIN_RESOLUTION..=MAX_RESOLUTION).contains(&resolution) {
        return Err(Error::invalid(format!(
            "toyworld renders {MIN_RESOLUTION} to {MAX_RESOLUTION} pixels, got {resolution}"
        )));
    }
    Ok(())
}
