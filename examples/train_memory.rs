//! Training memory: one epoch of the 10-member labeler on `--pixels` sampled pixels per
//! image over `--images` images, with taps regenerated from a randomly initialised
//! StyleGAN2 (never held at full resolution) and random segmentation labels (8
//! classes). The published code materialises full-resolution hypercolumns of every
//! image (160 GB for 16 images at 512 px).
//!
//! ```text
//! cargo run --release --example train_memory -- --resolution 512 --channel-base 32768 --images 50 --pixels 20000
//! {"resolution":512,"channel_base":32768,"images":50,"pixels_per_image":20000,"dim":5504,"seconds":...,"peak_rss_mb":...}
//! ```

mod common;

use std::time::Instant;

use clap::Parser;
use labelgan::labeler::{GeneratorTaps, fit};
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 512)]
    resolution: usize,
    #[arg(long, default_value_t = 32768)]
    channel_base: usize,
    #[arg(long, default_value_t = 50)]
    images: usize,
    #[arg(long, default_value_t = 20_000)]
    pixels: usize,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// The labeler's `feature_budget_mb`: training rows gathered per group of images
    /// (default: the labeler's own default).
    #[arg(long)]
    feature_budget_mb: Option<usize>,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    let start = Instant::now();
    let dev = Device::Cpu;
    let gcfg = GeneratorConfig {
        img_resolution: a.resolution,
        channel_base: a.channel_base,
        ..Default::default()
    };
    let g = StyleGan2::random(&gcfg, 0, &dev)?;
    let ws = g.map(&g.sample_z(a.images, 1)?, None, Truncation::NONE)?;
    let keep: Vec<String> = g
        .spec()
        .taps
        .iter()
        .filter(|t| !t.name.ends_with("torgb"))
        .map(|t| t.name.clone())
        .collect();
    let dim: usize = g
        .spec()
        .taps
        .iter()
        .filter(|t| !t.name.ends_with("torgb"))
        .map(|t| t.channels)
        .sum();
    let source = GeneratorTaps {
        generator: &g,
        ws,
        noise: NoiseMode::Const,
        keep,
    };
    let mut rng = labelgan::core::SplitMix64::new(2);
    let n = a.resolution * a.resolution;
    let targets: Vec<ImageLabels> = (0..a.images)
        .map(|_| ImageLabels::mask((0..n).map(|_| rng.below(8) as u32).collect()))
        .collect();
    let mut cfg = LabelerConfig {
        pixels_per_image: a.pixels,
        max_epochs: a.epochs,
        ..LabelerConfig::new(Head::Segmentation { classes: 8 }, a.resolution)
    };
    if let Some(mb) = a.feature_budget_mb {
        cfg.feature_budget_mb = mb;
    }
    // The peak so far after each line shows which phase sets it.
    let (_, report) = fit(&cfg, &source, &targets, |line| {
        eprintln!("{line} (peak RSS so far {} MB)", common::peak_rss_mb())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "resolution": a.resolution,
            "channel_base": a.channel_base,
            "images": a.images,
            "pixels_per_image": a.pixels,
            "dim": dim,
            "epochs": report.epochs,
            "train_pixels": report.train_pixels,
            "feature_budget_mb": cfg.feature_budget_mb,
            "seconds": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "peak_rss_mb": common::peak_rss_mb(),
        })
    );
    Ok(())
}
