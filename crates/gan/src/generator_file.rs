//! Any generator model file labelgan reads, as a [`Generator`]: a Compare GAN
//! generator that `labelgan train-gan` exported, or StyleGAN2 in the official layout.

use std::path::Path;

use candle_core::Device;

use labelgan_core::io::TensorFile;
use labelgan_core::{Generator, Result};
use labelgan_stylegan::StyleGan2;

use crate::compare_gan_generator::{CompareGanGenerator, is_compare_gan_generator};

/// A generator of either kind.
pub type AnyGenerator = Box<dyn Generator + Send + Sync>;

/// Reads the generator at `path` onto `device`, whichever kind the file holds (told by
/// its `format` metadata).
pub fn load_generator(path: impl AsRef<Path>, device: &Device) -> Result<AnyGenerator> {
    let file = TensorFile::load(path, device)?;
    Ok(if is_compare_gan_generator(&file) {
        Box::new(CompareGanGenerator::from_file(&file)?)
    } else {
        Box::new(StyleGan2::from_file(&file)?)
    })
}
