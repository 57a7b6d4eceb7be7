//! `labelgan fid`: the Frechet distance between two image sets in the feature space of
//! a perceptual backbone (each tap's spatial mean, concatenated), with statistics
//! streamed so that any count fits. `labelgan metrics` reports it beside KID,
//! precision and recall.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use labelgan_core::{FeatureExtractor, Result};
use labelgan_lpips::Lpips;
use labelgan_metrics::FeatureStats;

use crate::device::DeviceArg;
use crate::image_set::{ImageSet, ImageSetArgs};

/// Frechet distance between two image sets, in a perceptual net's feature space.
///
/// A set is a folder of images, `toyworld:SEED` (toyworld faces 0..COUNT of that seed)
/// or `generator:G.safetensors` (latent seeds 0..COUNT, random noise).
#[derive(Debug, Args)]
pub struct FidArgs {
    /// Backbone whose pooled taps are the features (e.g. from `train-perceptual`).
    #[arg(long, value_name = "P.safetensors")]
    perceptual: PathBuf,
    /// First image set.
    #[arg(long, value_name = "SET")]
    a: String,
    /// Second image set.
    #[arg(long, value_name = "SET")]
    b: String,
    #[command(flatten)]
    images: ImageSetArgs,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: FidArgs) -> Result<()> {
    a.images.validate()?;
    let device = a.device.open()?;
    let lp = Lpips::load(&a.perceptual, &device)?;
    let (sa, sb) = (ImageSet::parse(&a.a, &device)?, ImageSet::parse(&a.b, &device)?);
    let started = Instant::now();
    let stats = |name: &str, set: &ImageSet| -> Result<FeatureStats> {
        let mut st = FeatureStats::new(lp.dim());
        set.extract_each(name, &lp, &a.images, &device, &mut |f, _| st.add(f))?;
        Ok(st)
    };
    let (st_a, st_b) = (stats(&a.a, &sa)?, stats(&a.b, &sb)?);
    let fd = st_a.frechet_distance(&st_b)?;
    let line = serde_json::json!({
        "fd": fd,
        "a": a.a,
        "b": a.b,
        "images_a": st_a.count,
        "images_b": st_b.count,
        "dims": st_a.dim,
        "perceptual": a.perceptual.display().to_string(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{line}");
    Ok(())
}
