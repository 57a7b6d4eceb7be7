//! `labelgan toyworld`: write a folder of procedural toy faces with exact labels.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use labelgan_core::{Progress, Result};
use labelgan_toyworld::{CLASSES, write_dataset};

/// Render labelled toy faces: images, masks, depth maps, keypoints, a contact sheet.
#[derive(Debug, Args)]
pub struct ToyworldArgs {
    /// Number of images.
    #[arg(long)]
    count: usize,
    /// Seed of the stream (image i depends only on the seed and i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (created; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Image size in pixels (32 to 256).
    #[arg(long, default_value_t = 64)]
    resolution: usize,
}

pub fn run(a: ToyworldArgs) -> Result<()> {
    let start = Instant::now();
    let bar = Progress::new(a.count as u64, "toyworld", "images");
    let summary = write_dataset(&a.out, a.seed, a.count, a.resolution, |done, _| bar.set(done as u64))?;
    bar.finish();
    let shares: Vec<String> = CLASSES
        .iter()
        .zip(summary.class_share)
        .map(|(n, s)| format!("{n} {:.1}%", 100.0 * s))
        .collect();
    eprintln!("class pixels: {}", shares.join(", "));
    println!(
        "wrote {} images ({}x{}) to {} in {:.1} s",
        summary.images,
        summary.resolution,
        summary.resolution,
        summary.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
