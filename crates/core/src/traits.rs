//! The three traits that the pipelines compose.
//!
//! Small on purpose: inference only. Training lives in each crate's own `fit`/`train`
//! functions with a config struct. Any GAN that can return feature maps can be a
//! [`Generator`] and reuse the rest of labelgan.

use candle_core::{Device, Tensor};

use crate::{FeatureTaps, LabelKind, NoiseMode, Prediction, Result, TapSpec, Truncation};

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
    /// The taps `synthesize` returns, in order.
    pub taps: Vec<TapSpec>,
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
pub trait Generator {
    /// Dimensions and taps.
    fn spec(&self) -> &GeneratorSpec;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// z `[N, z_dim]` (and c `[N, c_dim]` for a conditional model) to ws
    /// `[N, num_ws, w_dim]`, truncated as asked.
    fn map(&self, z: &Tensor, c: Option<&Tensor>, truncation: Truncation) -> Result<Tensor>;

    /// ws `[N, num_ws, w_dim]` to the image and every tap.
    fn synthesize(&self, ws: &Tensor, noise: NoiseMode) -> Result<Synthesis>;
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
}
