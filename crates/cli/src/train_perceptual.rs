//! `labelgan train-perceptual`: a VGG-style backbone trained by predicting rotations,
//! for LPIPS on domains without ImageNet weights.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use clap::Args;
use labelgan_core::image_io::{ImageSource, load_image_folder, split_holdout};
use labelgan_core::{Error, Generator, Progress, Result, Truncation};
use labelgan_lpips::rotation::{RotationConfig, RotationProgress, Task, train_rotation};
use labelgan_stylegan::StyleGan2;

use crate::device::DeviceArg;
use crate::values;
use labelgan_core::io::check_output;

/// Train a perceptual backbone without labels (rotation prediction), usable as
/// `labelgan lpips --weights`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("image_source").required(true).args(["data", "toyworld", "generator"])))]
pub struct TrainPerceptualArgs {
    /// Folder of training images (PNG/JPEG, all `--resolution` square); `--holdout` of
    /// them (chosen by `--seed`) are kept for the accuracy figure.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train on a fresh stream of toyworld faces (held-out faces from another seed).
    #[arg(long)]
    toyworld: bool,
    /// Train on a stream of images from this generator (held-out: other latents).
    #[arg(long, value_name = "G.safetensors")]
    generator: Option<PathBuf>,
    /// Output: the backbone under LPIPS's VGG names plus the rotation head.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    /// Square image size.
    #[arg(long, default_value_t = 64)]
    resolution: usize,
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Images per step (each shown in four rotations).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Channels of the five slices.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,128")]
    widths: Vec<usize>,
    /// 3x3 convs per slice.
    #[arg(long, default_value_t = 2)]
    convs_per_slice: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = values::positive)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out images for the rotation accuracy.
    #[arg(long, default_value_t = 500)]
    holdout: usize,
    /// Measure held-out accuracy every this many steps.
    #[arg(long, default_value_t = 250)]
    eval_every: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: TrainPerceptualArgs) -> Result<()> {
    let mut inputs = vec![];
    inputs.extend(a.data.as_deref().map(|p| ("--data", p)));
    inputs.extend(a.generator.as_deref().map(|p| ("--generator", p)));
    check_output(("--out", &a.out), &inputs)?;
    let device = a.device.open()?;
    let r = a.resolution;
    let config = RotationConfig {
        task: Task::Rotation,
        widths: a.widths.clone(),
        convs_per_slice: a.convs_per_slice,
        resolution: r,
        batch: a.batch,
        steps: a.steps,
        lr: a.lr,
        seed: a.seed,
        eval_every: a.eval_every,
    };
    config.validate().map_err(Error::into_usage)?;
    check_holdout(a.holdout, r)?;
    let (source, holdout) = if a.toyworld {
        labelgan_toyworld::check_resolution(r)?;
        let seed = a.seed;
        let holdout = labelgan_toyworld::batch_tensor(seed.wrapping_add(0x4859), 0, a.holdout, r, &Device::Cpu)?;
        let stream = ImageSource::Stream(Box::new(move |start, n| {
            labelgan_toyworld::batch_tensor(seed, start, n, r, &Device::Cpu)
        }));
        (stream, holdout)
    } else if let Some(path) = &a.generator {
        let g = Arc::new(StyleGan2::load(path, &Device::Cpu)?);
        if g.spec().resolution != r {
            return Err(Error::invalid(format!(
                "{} makes {} px images, not --resolution {r}",
                path.display(),
                g.spec().resolution
            )));
        }
        eprintln!("rendering {} held-out images from {}", a.holdout, path.display());
        // Held out: latent seeds far from the training stream's.
        let holdout = g.seeded_images(u64::MAX / 2, a.holdout, Truncation::NONE)?;
        let stream = ImageSource::Stream(Box::new(move |start, n| g.seeded_images(start, n, Truncation::NONE)));
        (stream, holdout)
    } else {
        let dir = a.data.as_ref().expect("clap requires one image source");
        let all = load_image_folder(dir, r)?;
        let n = all.dim(0)?;
        if n <= a.holdout {
            return Err(Error::invalid(format!(
                "{} holds {n} images; --holdout {} leaves none to train on",
                dir.display(),
                a.holdout
            )));
        }
        let (holdout, train) = split_holdout(&all, a.holdout, a.seed)?;
        (ImageSource::Images(train), holdout)
    };
    let holdout = holdout.to_device(&device)?;
    let started = Instant::now();
    let bar = Progress::new(a.steps as u64, "rotation pre-training", "steps");
    let net = train_rotation(&config, &source, &holdout, &device, &mut |p| show_progress(&bar, p))?;
    bar.finish();
    net.save(&a.out)?;
    let line = serde_json::json!({
        "steps": a.steps,
        "holdout_images": a.holdout,
        "holdout_accuracy": net.holdout_accuracy,
        "seconds": started.elapsed().as_secs_f64(),
        "out": a.out.display().to_string(),
    });
    println!("{line}");
    Ok(())
}

/// One training step on the bar: loss, batch accuracy and speed, and the held-out
/// accuracy when measured (shared with `train-classifier`).
pub(crate) fn show_progress(bar: &Progress, p: &RotationProgress) {
    bar.note(format!(
        "loss {:.3}, batch acc {:.2}, {:.1} img/s",
        p.loss, p.train_accuracy, p.images_per_second
    ));
    bar.set(p.step as u64);
    if let Some(h) = p.holdout_accuracy {
        bar.println(&format!("step {}/{}: held-out accuracy {h:.3}", p.step, p.steps));
    }
}

/// The held-out images are held in memory: `holdout` of them at `r` px bounded (at least
/// one, at most 4 GB) before they are made (shared with `train-classifier`).
pub(crate) fn check_holdout(holdout: usize, r: usize) -> Result<()> {
    if holdout == 0 || holdout as f64 * (3 * r * r * 4) as f64 > 4e9 {
        return Err(Error::usage(format!(
            "--holdout must be at least 1 and its images fit in 4 GB ({} at {r} px)",
            (4e9 / (3 * r * r * 4) as f64) as usize
        )));
    }
    Ok(())
}
