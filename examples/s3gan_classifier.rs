//! Is a conditional generator's data worth it? The few-label image-level counterpart of
//! the quickstart: a classifier of the ten toy-object classes trained on the labelled
//! 10 % of the S3GAN run's training set alone, against the same classifier trained on
//! those images plus the generator's images of every class (labels from the
//! conditioning), both scored on held-out real objects, for several seeds.
//!
//! ```text
//! cargo run --release --example s3gan_classifier
//! cargo run --release --example s3gan_classifier -- --generator assets/toy_cgan_100.safetensors
//! ```
//!
//! The labelled images are the ones the S3GAN run kept its labels for (the first
//! `--images` objects of stream `--stream-seed`, the share `--fraction` drawn from
//! `--labels-seed`); the test images come from stream `--stream-seed + 2`, which neither
//! the GAN (trained on the stream, scored on the next) nor any setting here saw. No
//! setting is chosen on them: every classifier trains the same fixed number of steps.
//! The last line printed is one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use labelgan::eval::{ClassAugmentation, compare_class_augmentation, generated_images};
use labelgan::gan::study::mean_std;
use labelgan::gan::{LabelSplit, load_generator};
use labelgan::lpips::rotation::{RotationConfig, Task};
use labelgan::prelude::*;
use labelgan::toyworld::objects::{OBJECT_CLASSES, object_batch};

#[derive(Parser)]
struct Args {
    /// The conditional generator.
    #[arg(long, default_value = "assets/toy_s3gan_10.safetensors")]
    generator: PathBuf,
    /// Images of the GAN's training set, and the share of them labelled.
    #[arg(long, default_value_t = 10_000)]
    images: usize,
    #[arg(long, default_value_t = 0.1)]
    fraction: f64,
    #[arg(long, default_value_t = 0)]
    labels_seed: u64,
    /// Seed of the toy-object stream the GAN trained on.
    #[arg(long, default_value_t = 1000)]
    stream_seed: u64,
    /// Generated images (classes in turn).
    #[arg(long, default_value_t = 5000)]
    generated: usize,
    /// Share of each training batch that is generated.
    #[arg(long, default_value_t = 0.5)]
    generated_share: f64,
    /// Held-out test images.
    #[arg(long, default_value_t = 2000)]
    test: usize,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let started = Instant::now();
    let device = Device::Cpu;
    let g = load_generator(&a.generator, &device)?;
    let r = g.spec().resolution;
    let k = OBJECT_CLASSES.len();
    if g.spec().c_dim != k {
        return Err(Error::invalid(format!(
            "{} is conditional on {} classes; the toy objects have {k}",
            a.generator.display(),
            g.spec().c_dim
        )));
    }
    let (all, all_classes) = object_batch(a.stream_seed, 0, a.images, r, &device)?;
    let labelled = LabelSplit::new(a.images, a.fraction, a.labels_seed)?.labelled();
    let ids: Vec<u32> = labelled.iter().map(|&i| i as u32).collect();
    let lx = all.index_select(&Tensor::new(ids.as_slice(), &device)?, 0)?;
    let lc: Vec<u32> = labelled.iter().map(|&i| all_classes[i]).collect();
    let (tx, tc) = object_batch(a.stream_seed + 2, 0, a.test, r, &device)?;
    eprintln!("{} labelled real images; generating {} ...", lc.len(), a.generated);
    let (gx, gc) = generated_images(g.as_ref(), a.generated, 0)?;
    let cfg = ClassAugmentation {
        classifier: RotationConfig {
            task: Task::Classes(k),
            widths: vec![16, 32, 64, 128, 128],
            convs_per_slice: 1,
            resolution: r,
            batch: a.batch,
            steps: a.steps,
            lr: 1e-3,
            seed: 0,
            eval_every: 0,
        },
        generated: a.generated,
        generated_share: a.generated_share,
        latent_seed: 0,
        seeds: a.seeds.clone(),
    };
    let bar = Progress::new((2 * a.steps * a.seeds.len()) as u64, "classifiers", "steps");
    let mut done = 0u64;
    let report = compare_class_augmentation(
        &cfg,
        (&lx, &lc),
        (&gx, &gc),
        (&tx, &tc),
        &device,
        &mut |arm, seed, p| {
            done += 1;
            bar.set(done);
            if let Some(acc) = p.holdout_accuracy {
                bar.println(&format!("{arm} seed {seed}: test accuracy {acc:.4}"));
            }
        },
    )?;
    bar.finish();
    let round = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| (x as f64 * 1e4).round() / 1e4).collect() };
    let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&x| x as f64).collect() };
    let (ra, rs) = mean_std(&wide(&report.real_only));
    let (wa, ws) = mean_std(&wide(&report.with_generated));
    let line = serde_json::json!({
        "generator": a.generator.display().to_string(),
        "labelled": lc.len(),
        "generated": a.generated,
        "generated_share": a.generated_share,
        "test": a.test,
        "steps": a.steps,
        "seeds": a.seeds,
        "real_only": round(&report.real_only),
        "with_generated": round(&report.with_generated),
        "real_only_mean": ra,
        "real_only_std": rs,
        "with_generated_mean": wa,
        "with_generated_std": ws,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{line}");
    Ok(())
}
