//! Labels one image the way DatasetGAN/HandsOff users do, with labelgan's factored
//! path: random taps of StyleGAN2 shapes (b4.conv1 plus conv0 and conv1 of every later
//! block), a 10-member ensemble, 8 classes, majority vote and image score. The same
//! workload as the published method's anchor script, for a side-by-side run.
//!
//! ```text
//! cargo run --release --example label_speed -- --resolution 256 --channel-base 16384
//! {"resolution":256,"channel_base":16384,"dim":4480,"s_per_image":...,"peak_rss_mb":...}
//! ```
//! Seconds are the median of 3 timed runs after a warm-up, as in the anchor.

mod common;

use clap::Parser;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 256)]
    resolution: usize,
    #[arg(long, default_value_t = 16384)]
    channel_base: usize,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Output pixels per tile (default: the labeler's).
    #[arg(long)]
    tile_pixels: Option<usize>,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    let dev = a.device.open()?;
    let taps = common::random_taps_on(a.resolution, a.channel_base, 0, &dev)?;
    let mut cfg = LabelerConfig::new(Head::Segmentation { classes: 8 }, a.resolution);
    if let Some(t) = a.tile_pixels {
        cfg.tile_pixels = t;
    }
    let ens = Ensemble::init(&cfg, &taps.specs(), &dev)?;
    let prepared = ens.prepare(&dev)?;
    let s = common::median_seconds(a.repeats, || {
        let p = ens.predict_prepared(&prepared, &taps, 0)?;
        dev.synchronize()?;
        std::hint::black_box((p.classes, p.score));
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "device": a.device.name(),
            "resolution": a.resolution,
            "channel_base": a.channel_base,
            "dim": taps.total_channels(),
            "s_per_image": (s * 1000.0).round() / 1000.0,
            "peak_rss_mb": common::peak_rss_mb(),
        })
    );
    Ok(())
}
