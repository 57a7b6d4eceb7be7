//! The factory's throughput end to end: labelled images per second written to disk by
//! `generate_dataset` (generate with every tap, label segmentation with the
//! 10-member ensemble, score and filter per block, write image, mask, preview and
//! manifest), with a randomly initialised StyleGAN2 and ensemble of the published
//! sizes (the work does not depend on the weights). The stages are also timed alone in
//! the same run, per image, to show where the time goes.
//!
//! ```text
//! cargo run --release --example factory_speed -- --resolution 256 --channel-base 16384 --count 45
//! {"resolution":256,...,"images_per_second":...,"generate_s_per_image":...,"label_s_per_image":...}
//! ```

mod common;

use std::time::Instant;

use clap::Parser;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    /// Generator resolution.
    #[arg(long, default_value_t = 256)]
    resolution: usize,
    /// StyleGAN2 channel_base.
    #[arg(long, default_value_t = 16384)]
    channel_base: usize,
    /// Labelled images to write.
    #[arg(long, default_value_t = 45)]
    count: usize,
    /// Candidates per filtering block (the factory's default drops 10 % of each).
    #[arg(long, default_value_t = 50)]
    block: usize,
    /// Images per generator and labeler batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Segmentation classes.
    #[arg(long, default_value_t = 8)]
    classes: usize,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// The labelers' first-layer arithmetic: f32, or bf16 (on AMX's tiles where the CPU
    /// has them, else f32).
    #[arg(long, default_value_t = Precision::F32)]
    precision: Precision,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    labelgan::kernels::heap::keep_freed_memory();
    let dev = a.device.open()?;
    let (g, mut labelers) = common::random_factory(a.resolution, a.channel_base, a.classes, &dev)?;
    labelers.set_precision(a.precision);
    let features = g.spec().feature_taps();
    let members = labelers.segmentation.as_ref().map_or(0, |e| e.config.members);
    // The stages alone: one batch generated, then labelled (medians of 3 after a warm-up).
    let ws = g.map(&g.sample_z(a.batch, 1)?, None, Truncation::NONE)?;
    let mut taps = None;
    let gen_s = common::median_seconds(3, || {
        taps = Some(g.synthesize(&ws, NoiseMode::Const)?.taps.features());
        Ok(())
    })? / a.batch as f64;
    let taps = taps.expect("generated");
    let label_s = common::median_seconds(3, || {
        std::hint::black_box(labelers.label(&taps, a.resolution)?);
        Ok(())
    })? / a.batch as f64;
    // The whole factory into a fresh folder.
    let out = std::env::temp_dir().join(format!("labelgan-factory-speed-{}", std::process::id()));
    let fc = FactoryConfig {
        count: a.count,
        block: a.block,
        batch: a.batch,
        ..FactoryConfig::default()
    };
    let t = Instant::now();
    let written = generate_dataset(&g, &labelers, &fc, &out, &mut |_| true)?;
    let total = t.elapsed().as_secs_f64();
    let candidates = written.div_ceil(fc.keep_per_block()) * fc.block;
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "{}",
        serde_json::json!({
            "device": a.device.name(),
            "resolution": a.resolution,
            "channel_base": a.channel_base,
            "hypercolumn_dim": features.iter().map(|t| t.channels).sum::<usize>(),
            "members": members,
            "precision": a.precision.name(),
            "amx": a.precision == Precision::Bf16 && labelgan::kernels::amx::available(),
            "classes": a.classes,
            "images": written,
            "candidates": candidates,
            "seconds": (total * 100.0).round() / 100.0,
            "images_per_second": (written as f64 / total * 1000.0).round() / 1000.0,
            "generate_s_per_image": (gen_s * 1000.0).round() / 1000.0,
            "label_s_per_image": (label_s * 1000.0).round() / 1000.0,
            "peak_rss_mb": common::peak_rss_mb(),
        })
    );
    Ok(())
}
