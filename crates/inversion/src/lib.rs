//! # labelgan-inversion
//!
//! HandsOff labels a real image by inverting it into the generator's latent space and
//! pairing its label with the features of `G(inverted latent)`: the better the
//! inversion, the better the labels. Two [`Inverter`]s and a refiner:
//!
//! - [`MeanInverter`]: every image to `w_avg`, the baseline every method must beat;
//! - [`ClassMeanInverter`]: for a conditional generator, each image to its own class's
//!   mean latent;
//! - [`encoder::Encoder`]: a ResNet-style encoder from images to W+ offsets from
//!   `w_avg`, trained first on the generator's own samples (latent loss, stage a), then
//!   briefly fine-tuned on real images with LPIPS + MSE through the frozen generator
//!   (stage b, stopped early on a held-out set);
//! - [`projector::project`]: per-image latent optimisation in W or W+ from any start,
//!   Adam with a cosine schedule on `10 LPIPS + MSE + |w - w_init|^2`, keeping each
//!   image's best step.
//!
//! [`metrics`] measures reconstructions (MSE, PSNR, LPIPS).

pub mod class_mean;
pub mod encoder;
pub mod metrics;
pub mod projector;

use candle_core::Tensor;
use labelgan_core::{Error, Generator, Inverter, Result};

pub use class_mean::ClassMeanInverter;
pub use encoder::{Encoder, EncoderConfig};
pub use projector::{LatentSpace, ProjectorConfig, project, project_in_batches};

/// Inverts every image to the generator's `w_avg` (in every layer).
#[derive(Debug, Clone)]
pub struct MeanInverter {
    ws: Tensor,
}

impl MeanInverter {
    /// The inverter of `g`; fails when the generator tracks no `w_avg`.
    pub fn new<G: Generator + ?Sized>(g: &G) -> Result<Self> {
        let s = g.spec();
        let w_avg = g.w_avg().ok_or_else(|| {
            Error::invalid("the mean inverter needs the generator's w_avg, and this generator has none")
        })?;
        Ok(Self {
            ws: w_avg.reshape((1, 1, s.w_dim))?.repeat((1, s.num_ws, 1))?,
        })
    }
}

impl Inverter for MeanInverter {
    fn invert(&self, images: &Tensor) -> Result<Tensor> {
        let n = images
            .dims4()
            .map_err(|_| Error::invalid(format!("images must be [N, C, H, W], got {:?}", images.dims())))?
            .0;
        Ok(self.ws.repeat((n, 1, 1))?)
    }
}
