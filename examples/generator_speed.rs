//! Seconds per image of a randomly initialised StyleGAN2 generator (z_dim = w_dim = 512,
//! 8 mapping layers, channel_max 512, fp32, const noise): mapping + synthesis with every
//! tap kept, as labelling needs them.
//!
//! ```text
//! cargo run --release --example generator_speed -- --resolution 256 --channel-base 16384 --batch 1
//! {"resolution":256,"channel_base":16384,"batch":1,"s_per_image":...}
//! ```
//! Reports the median of `--repeats` timed runs after one warm-up run.

mod common;

use clap::Parser;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    /// Output resolution (power of two, 4..=1024).
    #[arg(long, default_value_t = 256)]
    resolution: usize,
    /// StyleGAN2 channel_base.
    #[arg(long, default_value_t = 16384)]
    channel_base: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
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
    let device = a.device.open()?;
    let config = GeneratorConfig {
        img_resolution: a.resolution,
        channel_base: a.channel_base,
        ..Default::default()
    };
    let g = StyleGan2::random(&config, 0, &device)?;
    let z = g.sample_z(a.batch, 1)?;
    let s = common::median_seconds(a.repeats, || {
        let ws = g.map(&z, None, Truncation::NONE)?;
        let out = g.synthesize(&ws, NoiseMode::Const)?;
        device.synchronize()?;
        std::hint::black_box(out);
        Ok(())
    })? / a.batch as f64;
    println!(
        "{}",
        serde_json::json!({"device": a.device.name(), "resolution": a.resolution, "channel_base": a.channel_base, "batch": a.batch, "s_per_image": (s * 1e4).round() / 1e4})
    );
    Ok(())
}
