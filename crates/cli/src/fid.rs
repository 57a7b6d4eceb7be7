//! `labelgan fid`: the Frechet distance between two image sets in the feature space of
//! a perceptual backbone (each tap's spatial mean, concatenated).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Args;
use labelgan_core::image_io::{image_files, load_image, load_images};
use labelgan_core::{Error, Result, Truncation};
use labelgan_lpips::Lpips;
use labelgan_metrics::FeatureStats;
use labelgan_stylegan::StyleGan2;

use crate::device::DeviceArg;
use crate::values;

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
    /// Images per set (toyworld and generators; folders use all their images).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Image size for toyworld sets (generators and folders have their own).
    #[arg(long, default_value_t = 64)]
    resolution: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Truncation psi for generator sets.
    #[arg(long, default_value_t = 1.0, value_parser = values::finite)]
    psi: f64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

enum Set {
    Folder(Tensor),
    Toyworld(u64),
    Generator(Box<StyleGan2>),
}

impl Set {
    fn parse(spec: &str, device: &Device) -> Result<Self> {
        if let Some(seed) = spec.strip_prefix("toyworld:") {
            let seed = seed
                .parse()
                .map_err(|_| Error::invalid(format!("`{spec}`: the toyworld seed must be an integer")))?;
            Ok(Set::Toyworld(seed))
        } else if let Some(path) = spec.strip_prefix("generator:") {
            Ok(Set::Generator(Box::new(StyleGan2::load(path, device)?)))
        } else {
            let dir = Path::new(spec);
            if !dir.is_dir() {
                return Err(Error::invalid(format!(
                    "`{spec}` is not a folder, `toyworld:SEED` or `generator:G.safetensors`"
                )));
            }
            // Folders must hold square images of one size; take it from the first.
            let files = image_files(dir)?;
            let r = load_image(&files[0])?.width() as usize;
            Ok(Set::Folder(load_images(&files, r)?))
        }
    }

    fn len(&self, count: usize) -> Result<usize> {
        Ok(match self {
            Set::Folder(t) => t.dim(0)?,
            _ => count,
        })
    }

    fn images(&self, start: usize, n: usize, a: &FidArgs, device: &Device) -> Result<Tensor> {
        match self {
            Set::Folder(t) => Ok(t.narrow(0, start, n)?.to_device(device)?),
            Set::Toyworld(seed) => labelgan_toyworld::batch_tensor(*seed, start as u64, n, a.resolution, device),
            Set::Generator(g) => g.seeded_images(start as u64, n, Truncation::psi(a.psi)),
        }
    }
}

fn stats(name: &str, set: &Set, lp: &Lpips, a: &FidArgs, device: &Device) -> Result<FeatureStats> {
    let n = set.len(a.count)?;
    let mut st = FeatureStats::new(lp.channels().iter().sum());
    let started = Instant::now();
    let mut last = Instant::now();
    for start in (0..n).step_by(a.batch.max(1)) {
        let k = a.batch.max(1).min(n - start);
        let x = set.images(start, k, a, device)?;
        st.add(&lp.pooled_features(&x)?)?;
        if last.elapsed().as_secs_f64() >= 10.0 {
            last = Instant::now();
            eprintln!(
                "{name}: {}/{n} images ({:.0} s)",
                start + k,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(st)
}

pub fn run(a: FidArgs) -> Result<()> {
    if !(1..=4096).contains(&a.batch) || !(2..=100_000_000).contains(&a.count) {
        return Err(Error::usage(format!(
            "--batch {} must be in 1..=4096 and --count {} in 2..=100000000",
            a.batch, a.count
        )));
    }
    let device = a.device.open()?;
    let lp = Lpips::load(&a.perceptual, &device)?;
    let (sa, sb) = (Set::parse(&a.a, &device)?, Set::parse(&a.b, &device)?);
    let started = Instant::now();
    let st_a = stats(&a.a, &sa, &lp, &a, &device)?;
    let st_b = stats(&a.b, &sb, &lp, &a, &device)?;
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
