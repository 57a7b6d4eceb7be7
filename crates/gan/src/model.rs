//! What the training loop needs of a generator and a discriminator, whatever their
//! architecture.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;

use labelgan_core::{Result, SplitMix64, TapSpec};

use crate::BnMode;

/// A generator: latents (and classes) to images in [-1, 1].
pub trait GanGenerator {
    /// Latent size.
    fn z_dim(&self) -> usize;

    /// `z` `[N, z_dim]` and, for a conditional model, one-hot classes `y`
    /// `[N, classes]` to images `[N, 3, R, R]`.
    fn forward(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor>;

    /// The image and the feature maps that made it (each block's output), for a pixel
    /// labeler; [`GanGenerator::tap_specs`] describes them. Default: no maps.
    fn forward_taps(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<(Tensor, Vec<Tensor>)> {
        Ok((self.forward(z, y, mode)?, Vec::new()))
    }

    /// What [`GanGenerator::forward_taps`] returns besides the image, in order.
    fn tap_specs(&self) -> Vec<TapSpec> {
        Vec::new()
    }

    /// Images for a training step: [`GanGenerator::forward`] in training mode plus any
    /// randomness of the architecture's own, drawn from `rng` (StyleGAN2: style mixing
    /// and per-pixel noise); `track` on the generator's own step (StyleGAN2 follows
    /// the mean w there).
    fn forward_train(&self, z: &Tensor, y: Option<&Tensor>, rng: &mut SplitMix64, track: bool) -> Result<Tensor> {
        let _ = (rng, track);
        self.forward(z, y, BnMode::Train)
    }

    /// State that is not trained but must be saved (normalisation statistics), by name.
    fn buffers(&self) -> BTreeMap<String, Tensor>;

    /// Restores what [`GanGenerator::buffers`] returned (a missing or misshapen one
    /// is an error naming it).
    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()>;

    /// Writes the generator with trained weights `weights` (by name) as a model file
    /// the rest of labelgan loads, if the architecture has one (StyleGAN2: the official
    /// layout); `false` when it has none.
    fn export(&self, weights: &BTreeMap<String, Tensor>, path: &Path) -> Result<bool> {
        let _ = (weights, path);
        Ok(false)
    }
}

/// The classes D's projection term uses for a batch, given the batch's features
/// `φ(x)` `[N, F]`: fixed ones, or ones predicted from `φ(x)` (S2GAN-CO's co-training).
/// `None` for an unconditional discriminator.
pub type ProjectionClasses<'a> = dyn FnMut(&Tensor) -> Result<Option<Tensor>> + 'a;

/// What D computes for a batch: its logits and the features its heads read.
#[derive(Debug, Clone)]
pub struct DiscriminatorOutput {
    /// One logit per image `[N]`.
    pub logits: Tensor,
    /// The pooled features `φ(x)` `[N, F]` of the projection term, which auxiliary
    /// heads (rotation, class predictor) read too.
    pub features: Tensor,
}

/// A discriminator: images (and classes) to one logit per image.
pub trait GanDiscriminator {
    /// The width `F` of the features `φ(x)`.
    fn feature_dim(&self) -> usize;

    /// Images `[N, 3, R, R]` to logits and features, the projection's classes taken
    /// from `classes(φ(x))`; `training` steps the spectral norms' power iterations.
    fn forward_features(
        &self,
        x: &Tensor,
        classes: &mut ProjectionClasses,
        training: bool,
    ) -> Result<DiscriminatorOutput>;

    /// Images `[N, 3, R, R]` (and one-hot classes) to logits `[N]`; `training` steps
    /// the spectral norms' power iterations.
    fn forward(&self, x: &Tensor, y: Option<&Tensor>, training: bool) -> Result<Tensor> {
        Ok(self.forward_features(x, &mut |_| Ok(y.cloned()), training)?.logits)
    }

    /// Into how many interleaved groups a batch of `n` may be split for a gradient
    /// penalty without changing it (sample `i` in group `i % groups`): groups whose
    /// samples D never couples with another group's. 1 (the default): D couples none,
    /// or the penalty takes the batch whole.
    fn penalty_groups(&self, n: usize) -> usize {
        let _ = n;
        1
    }

    /// State that is not trained but must be saved (spectral norm vectors), by name.
    fn buffers(&self) -> BTreeMap<String, Tensor>;

    /// Restores what [`GanDiscriminator::buffers`] returned.
    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()>;
}
