//! The traits that the pipelines compose.
//!
//! Small on purpose: inference only. Training lives in each crate's own `fit`/`train`
//! functions with a config struct. Any GAN that can return feature maps can be a
//! [`Generator`] and reuse the rest of labelgan.

use candle_core::{Device, Tensor};

use crate::{FeatureTaps, LabelKind, NoiseMode, Prediction, Result, SplitMix64, TapSpec, Truncation};

/// The static shape of a generator.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSpec {
    /// Dimension of the input latent z.
    pub z_dim: usize,
    /// Dimension of the conditioning label c (0 = unconditional).
    pub c_dim: usize,
    /// Dimension of the intermediate latent w.
    pub w_dim: usize,
    /// Number of w vectors the synthesis network reads.
    pub num_ws: usize,
    /// Output height and width.
    pub resolution: usize,
    /// Output channels (3 for RGB).
    pub img_channels: usize,
    /// The taps `synthesize` returns, in order, each with its [`crate::TapRole`].
    pub taps: Vec<TapSpec>,
}

impl GeneratorSpec {
    /// The taps a pixel labeler reads ([`crate::TapRole::Feature`]), in order.
    pub fn feature_taps(&self) -> Vec<TapSpec> {
        self.taps.iter().filter(|t| t.role.is_feature()).cloned().collect()
    }
}

/// An image and the feature maps that made it.
#[derive(Debug, Clone)]
pub struct Synthesis {
    /// `[N, img_channels, resolution, resolution]`, about [-1, 1], not clamped.
    pub image: Tensor,
    /// Every layer's output at native resolution.
    pub taps: FeatureTaps,
}

/// A generator with a mapping from z to w and a synthesis from w to images.
///
/// Four methods are required; the rest have defaults that a generator may override
/// when it can do better (StyleGAN2 renders [`Generator::image`] without keeping taps).
/// A generator without a separate w space can use `num_ws = 1`, `w_dim = z_dim` and
/// an identity `map` (see `examples/custom_generator.rs`).
pub trait Generator {
    /// Dimensions and taps.
    fn spec(&self) -> &GeneratorSpec;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// z `[N, z_dim]` (and c `[N, c_dim]` for a conditional model) to ws
    /// `[N, num_ws, w_dim]`, truncated as asked ([`Truncation::apply`] does it for any
    /// generator with a [`Generator::w_avg`]).
    fn map(&self, z: &Tensor, c: Option<&Tensor>, truncation: Truncation) -> Result<Tensor>;

    /// ws `[N, num_ws, w_dim]` to the image and every tap.
    fn synthesize(&self, ws: &Tensor, noise: NoiseMode) -> Result<Synthesis>;

    /// The average w `[w_dim]`: the centre of truncation and the mean-latent
    /// inversion's answer. `None` (the default) when the generator tracks none.
    fn w_avg(&self) -> Option<&Tensor> {
        None
    }

    /// The image alone, `[N, img_channels, resolution, resolution]`. Default:
    /// [`Generator::synthesize`] with the taps dropped.
    fn image(&self, ws: &Tensor, noise: NoiseMode) -> Result<Tensor> {
        Ok(self.synthesize(ws, noise)?.image)
    }

    /// `n` latents z ~ N(0, I) from `seed`, `[n, z_dim]` on [`Generator::device`].
    /// Latent `i` depends only on `seed` and `i`, so a larger count extends a smaller
    /// one.
    fn sample_z(&self, n: usize, seed: u64) -> Result<Tensor> {
        Ok(SplitMix64::new(seed).normal_tensor(&[n, self.spec().z_dim], self.device())?)
    }

    /// The class image `seed` of [`Generator::seeded_images`] is made for: `seed` mod
    /// `c_dim` (classes in turn); `None` for an unconditional generator.
    fn seeded_class(&self, seed: u64) -> Option<u32> {
        let c = self.spec().c_dim as u64;
        (c > 0).then(|| (seed % c) as u32)
    }

    /// Images of latent seeds `first_seed .. first_seed + n`, clamped to [-1, 1]: image
    /// `i` is made from `sample_z(1, first_seed + i)`, random noise of the same seed
    /// and, for a conditional generator, the class [`Generator::seeded_class`]. Any
    /// range of seeds gives the same image for the same seed.
    fn seeded_images(&self, first_seed: u64, n: usize, truncation: Truncation) -> Result<Tensor> {
        let c_dim = self.spec().c_dim;
        let imgs = (first_seed..first_seed + n as u64)
            .map(|seed| {
                let c = self
                    .seeded_class(seed)
                    .map(|k| crate::one_hot(&[k], c_dim, self.device()))
                    .transpose()?;
                let ws = self.map(&self.sample_z(1, seed)?, c.as_ref(), truncation)?;
                self.image(&ws, NoiseMode::Random(seed))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&imgs, 0)?.clamp(-1f32, 1f32)?)
    }
}

/// Images to latents: the inverse of a generator's synthesis.
pub trait Inverter {
    /// Images `[N, C, H, W]` in [-1, 1] to ws `[N, num_ws, w_dim]`.
    fn invert(&self, images: &Tensor) -> Result<Tensor>;
}

/// Feature maps to dense labels.
pub trait PixelLabeler {
    /// What this labeler predicts.
    fn kind(&self) -> &LabelKind;

    /// Labels, per-pixel uncertainty and per-image score for a batch of taps.
    fn predict(&self, taps: &FeatureTaps) -> Result<Prediction>;
}

/// Images to the feature vectors that generative-model metrics compare (FID, KID,
/// precision and recall) and, for a classifier, class probabilities (Inception Score).
pub trait FeatureExtractor {
    /// Length of one image's feature vector.
    fn dim(&self) -> usize;

    /// Images `[N, 3, H, W]` in [-1, 1] to features `[N, dim]`. An extractor that needs
    /// one input size resizes to it itself, and documents how (resizing moves FID).
    fn features(&self, images: &Tensor) -> Result<Tensor>;

    /// Class probabilities `[N, classes]` (rows summing to 1), or `None` (the
    /// default) for an extractor without a classifier head.
    fn class_probabilities(&self, images: &Tensor) -> Result<Option<Tensor>> {
        let _ = images;
        Ok(None)
    }
}

impl<E: FeatureExtractor + ?Sized> FeatureExtractor for Box<E> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn features(&self, images: &Tensor) -> Result<Tensor> {
        (**self).features(images)
    }
    fn class_probabilities(&self, images: &Tensor) -> Result<Option<Tensor>> {
        (**self).class_probabilities(images)
    }
}

impl<G: Generator + ?Sized> Generator for &G {
    fn spec(&self) -> &GeneratorSpec {
        (**self).spec()
    }
    fn device(&self) -> &Device {
        (**self).device()
    }
    fn map(&self, z: &Tensor, c: Option<&Tensor>, t: Truncation) -> Result<Tensor> {
        (**self).map(z, c, t)
    }
    fn synthesize(&self, ws: &Tensor, noise: NoiseMode) -> Result<Synthesis> {
        (**self).synthesize(ws, noise)
    }
    fn w_avg(&self) -> Option<&Tensor> {
        (**self).w_avg()
    }
    fn image(&self, ws: &Tensor, noise: NoiseMode) -> Result<Tensor> {
        (**self).image(ws, noise)
    }
    fn sample_z(&self, n: usize, seed: u64) -> Result<Tensor> {
        (**self).sample_z(n, seed)
    }
}
