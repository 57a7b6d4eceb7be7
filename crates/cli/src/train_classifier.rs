//! `labelgan train-classifier`: the class-domain classifier (the rotation backbone's
//! architecture with a class head), the extractor for FID, KID, the Inception Score and
//! class consistency on domains without ImageNet weights.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Args;
use labelgan_core::io::check_output;
use labelgan_core::{EpochOrder, Error, Progress, Result, select_rows};
use labelgan_lpips::classifier::train_classifier;
use labelgan_lpips::rotation::{RotationConfig, Task};
use labelgan_toyworld::objects::object_batch;

use crate::device::DeviceArg;
use crate::values;

/// Train an image classifier on labelled images (toy objects, or a folder with
/// `classes.json`), usable as `labelgan metrics --extractor`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("image_source").required(true).args(["data", "objects"])))]
pub struct TrainClassifierArgs {
    /// Dataset folder: `images/` (or the folder itself) and `classes.json`;
    /// `--holdout` of its images (chosen by `--seed`) are kept for the accuracy.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train on a fresh stream of toy objects (held out: another seed's).
    #[arg(long)]
    objects: bool,
    /// Output: the backbone under LPIPS's VGG names plus the class head.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    /// Square image size.
    #[arg(long, default_value_t = 32)]
    resolution: usize,
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Channels of the five slices.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,128")]
    widths: Vec<usize>,
    /// 3x3 convs per slice.
    #[arg(long, default_value_t = 1)]
    convs_per_slice: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = values::positive)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out images for the accuracy.
    #[arg(long, default_value_t = 1000)]
    holdout: usize,
    /// Measure held-out accuracy every this many steps.
    #[arg(long, default_value_t = 500)]
    eval_every: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: TrainClassifierArgs) -> Result<()> {
    let inputs: Vec<(&str, &std::path::Path)> = a.data.as_deref().map(|p| ("--data", p)).into_iter().collect();
    check_output(("--out", &a.out), &inputs)?;
    let r = a.resolution;
    crate::train_perceptual::check_holdout(a.holdout, r)?;
    // Settings checked before any image is made (the class count is the data's).
    let mut config = RotationConfig {
        task: Task::Classes(2),
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
    type Batches = Box<dyn FnMut(u64, usize) -> Result<(Tensor, Vec<u32>)>>;
    let (classes, mut batches, held_out, held_out_classes): (usize, Batches, Tensor, Vec<u32>) = if a.objects {
        let seed = a.seed;
        let (h, hc) = object_batch(seed.wrapping_add(0x4859), 0, a.holdout, r, &Device::Cpu)?;
        let stream: Batches = Box::new(move |start, n| object_batch(seed, start, n, r, &Device::Cpu));
        (labelgan_toyworld::objects::OBJECT_CLASSES.len(), stream, h, hc)
    } else {
        let dir = a.data.as_deref().expect("clap requires one image source");
        let (images, classes) = crate::gan_run::load_folder(dir, r)?;
        let (classes, k) = classes.ok_or_else(|| {
            Error::invalid(format!(
                "{} has no classes.json to train a classifier on",
                dir.display()
            ))
        })?;
        let n = images.dim(0)?;
        if n <= a.holdout {
            return Err(Error::invalid(format!(
                "{} holds {n} images; --holdout {} leaves none to train on",
                dir.display(),
                a.holdout
            )));
        }
        // The held-out images first in one shuffled order, the rest visited in it.
        let order = EpochOrder::new((0..n).collect(), a.seed)?.take(0, n);
        let pick = move |idx: &[usize]| -> Result<(Tensor, Vec<u32>)> {
            Ok((select_rows(&images, idx)?, idx.iter().map(|&i| classes[i]).collect()))
        };
        let (h, hc) = pick(&order[..a.holdout])?;
        let train = order[a.holdout..].to_vec();
        let stream: Batches = Box::new(move |start, n| {
            let idx: Vec<usize> = (0..n).map(|i| train[(start as usize + i) % train.len()]).collect();
            pick(&idx)
        });
        (k, stream, h, hc)
    };
    config.task = Task::Classes(classes);
    config.validate()?;
    let device = a.device.open()?;
    let held_out = held_out.to_device(&device)?;
    let started = Instant::now();
    let bar = Progress::new(a.steps as u64, "classifier training", "steps");
    let net = train_classifier(
        &config,
        &mut *batches,
        &held_out,
        &held_out_classes,
        &device,
        &mut |p| crate::train_perceptual::show_progress(&bar, p),
    )?;
    bar.finish();
    net.save(&a.out)?;
    let line = serde_json::json!({
        "classes": classes,
        "steps": a.steps,
        "holdout_images": a.holdout,
        "holdout_accuracy": net.holdout_accuracy,
        "seconds": started.elapsed().as_secs_f64(),
        "out": a.out.display().to_string(),
    });
    println!("{line}");
    Ok(())
}
