//! Compare GAN training speed: full training steps (D step, then G step) of a config,
//! on random real images, timed after warm-up; the counterpart of
//! `tools/compare_gan_speed.py` (the same networks in PyTorch). Prints one JSON line.
//!
//! ```text
//! cargo run --release --example compare_gan_speed -- --set train.batch=64
//! bash tools/compare_gan_speed.sh        # both, side by side
//! ```

use std::time::Instant;

use clap::Parser;
use labelgan::core::SplitMix64;
use labelgan::gan::{RealClasses, Trainer, TrainingConfig};
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    /// A training config (default: the conditional CIFAR ResNet, hinge, SN in D).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// `section.key=value` overrides.
    #[arg(long)]
    set: Vec<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Leave glibc's default heap behaviour (freed buffers go back to the kernel and
    /// come back as fresh zeroed pages) instead of `keep_freed_memory`, as the CLI sets.
    #[arg(long)]
    default_heap: bool,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    if !a.default_heap {
        labelgan::kernels::heap::keep_freed_memory();
    }
    // As `labelgan train-gan`. SAFETY: no other thread exists yet.
    let pool = unsafe { labelgan::gan::second_order::r1_training_pool()? };
    pool.install(|| run(a))
}

fn run(a: Args) -> labelgan::core::Result<()> {
    let cfg = TrainingConfig::load(a.config.as_deref(), &a.set)?;
    let m = cfg.model.clone();
    let mut t = Trainer::new(&cfg, &Device::Cpu)?;
    let n = cfg.train.batch;
    let real = SplitMix64::new(1)
        .normal_tensor(&[n, 3, m.resolution, m.resolution], &Device::Cpu)?
        .tanh()?;
    let mut batches = |_start: u64, k: usize| -> labelgan::core::Result<(Tensor, Option<RealClasses>)> {
        Ok((
            real.narrow(0, 0, k)?,
            Some(RealClasses::Ids((0..k).map(|i| (i % m.classes) as u32).collect())),
        ))
    };
    for _ in 0..a.warmup {
        t.train_step(&mut batches)?;
    }
    let started = Instant::now();
    for _ in 0..a.steps {
        t.train_step(&mut batches)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let images = (a.steps * n * cfg.train.d_steps) as f64;
    println!(
        "{}",
        serde_json::json!({
            "framework": "labelgan (candle)",
            "architecture": format!("{:?}", m.architecture),
            "batch": n,
            "g_width": m.g_width,
            "d_width": m.d_width,
            "loss": format!("{:?}", cfg.train.loss),
            "steps": a.steps,
            "seconds_per_step": seconds / a.steps as f64,
            "images_per_second": images / seconds,
        })
    );
    Ok(())
}
