//! The encoder's stage (a) training step (sample mixed latents, render them with the
//! generator, encode, latent MSE, backward, Adam) on the toy generator's sizes, timed
//! after a warm-up: the counterpart of `tools/encoder_step_speed.py` (the same encoder
//! in PyTorch on the official generator). Prints one JSON line.
//!
//! ```text
//! cargo run --release --example encoder_speed -- --steps 10
//! ```

use std::time::Instant;

use clap::Parser;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Images per step.
    #[arg(long, default_value_t = 16)]
    batch: usize,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    labelgan::kernels::heap::keep_freed_memory();
    // The toy generator's sizes (configs/stylegan2/toy64.toml), random weights.
    let g = StyleGan2::random(
        &GeneratorConfig {
            z_dim: 256,
            w_dim: 256,
            img_resolution: 64,
            mapping_layers: 4,
            channel_base: 1024,
            channel_max: 64,
            ..GeneratorConfig::default()
        },
        0,
        &Device::Cpu,
    )?;
    let mut cfg = EncoderConfig::for_generator(&g);
    cfg.stage_a.batch = a.batch;
    let mut t = EncoderTrainer::new(cfg.clone(), &g)?;
    for _ in 0..a.warmup {
        t.step_a(&g)?;
    }
    let started = Instant::now();
    for _ in 0..a.steps {
        t.step_a(&g)?;
    }
    let s = started.elapsed().as_secs_f64() / a.steps.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "framework": "labelgan (candle)",
            "resolution": cfg.resolution,
            "widths": cfg.widths,
            "batch": a.batch,
            "steps": a.steps,
            "seconds_per_step": s,
            "images_per_second": a.batch as f64 / s,
        })
    );
    Ok(())
}
