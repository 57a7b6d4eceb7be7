//! Training speed of the evaluation UNet (the quickstart's slowest stage): steps per
//! second on toyworld faces, for one head or all three in one model.
//!
//! ```text
//! cargo run --release --example unet_speed -- --steps 40 --head seg
//! ```
//!
//! Prints one JSON line `{"head":..,"resolution":R,"batch":B,"steps":S,"steps_per_s":..}`.

use std::time::Instant;

use clap::Parser;
use labelgan::dataset::{Targets, load_dataset};
use labelgan::eval::unet::Flip;
use labelgan::eval::{UNet, UNetConfig};
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 40)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    resolution: usize,
    /// seg, kp, depth or all.
    #[arg(long, default_value = "seg")]
    head: String,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    labelgan::kernels::heap::keep_freed_memory();
    let a = Args::parse();
    let (seg, kp, depth) = match a.head.as_str() {
        "seg" => (true, false, false),
        "kp" => (false, true, false),
        "depth" => (false, false, true),
        "all" => (true, true, true),
        other => {
            return Err(labelgan::core::Error::invalid(format!(
                "unknown --head {other:?} (seg, kp, depth or all)"
            )));
        }
    };
    let dir = std::env::temp_dir().join(format!("labelgan-unet-speed-{}", std::process::id()));
    labelgan::toyworld::write_dataset(&dir, 0, 64, a.resolution, |_, _| {})?;
    let set = load_dataset(&dir, a.resolution, None);
    let _ = std::fs::remove_dir_all(&dir);
    let set = set?;
    let t = &set.targets;
    let targets = Targets {
        masks: if seg { t.masks.clone() } else { None },
        keypoints: if kp { t.keypoints.clone() } else { None },
        depth: if depth { t.depth.clone() } else { None },
    };
    let config = UNetConfig {
        resolution: a.resolution,
        widths: vec![8, 16, 32],
        classes: if seg { 8 } else { 0 },
        keypoints: if kp { 5 } else { 0 },
        depth,
        sigma: 2.0,
        lr: 1e-3,
        batch: a.batch,
        steps: a.steps,
        seed: 0,
        flip: Some(Flip::toyworld()),
        shift: 3,
        keypoint_loss: labelgan::eval::KeypointLoss::SpatialSoftmax,
        ignore_index: Some(255),
    };
    let mut unet = UNet::new(config, &Device::Cpu)?;
    let started = Instant::now();
    unet.train(&set.images, &targets, &mut |_, _| {})?;
    let s = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"head": a.head, "resolution": a.resolution, "batch": a.batch, "steps": a.steps,
            "steps_per_s": a.steps as f64 / s})
    );
    Ok(())
}
