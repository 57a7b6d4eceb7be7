//! The inversion table of `docs/inversion.md`: reconstruction quality and time on
//! held-out toyworld faces for `w_avg`, the encoder after stage (a), after stage (b),
//! and stage (b) plus projector steps.
//!
//! ```text
//! cargo run --release --example inversion_table -- --generator assets/toy_generator.safetensors \
//!   --encoder-a runs/encoder/encoder_stage_a.safetensors --encoder-b assets/toy_encoder.safetensors \
//!   --perceptual assets/toy_perceptual.safetensors --count 100 --steps 100,500
//! ```
//!
//! Held-out faces come from toyworld seed 9000 (never used in training). Prints a
//! Markdown table and, last, one JSON line with every row.

use std::path::PathBuf;
use std::time::Instant;

mod common;

use clap::Parser;
use labelgan::core::Inverter;
use labelgan::inversion::metrics::{Reconstruction, reconstruction};
use labelgan::inversion::{Encoder, MeanInverter, ProjectorConfig, project_in_batches};
use labelgan::lpips::Lpips;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    generator: PathBuf,
    #[arg(long)]
    encoder_a: Option<PathBuf>,
    #[arg(long)]
    encoder_b: Option<PathBuf>,
    #[arg(long)]
    perceptual: PathBuf,
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// Projector steps after stage (b), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    steps: Vec<usize>,
    #[arg(long, default_value_t = 9000)]
    toyworld_seed: u64,
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

fn main() -> labelgan::core::Result<()> {
    labelgan::kernels::heap::keep_freed_memory();
    let a = Args::parse();
    let dev = Device::Cpu;
    let g = StyleGan2::load(&a.generator, &dev)?;
    let lp = Lpips::load(&a.perceptual, &dev)?;
    let r = g.spec().resolution;
    let x = labelgan::toyworld::batch_tensor(a.toyworld_seed, 0, a.count, r, &dev)?;
    let render = |ws: &Tensor| common::render(&g, ws);
    let mut rows: Vec<(String, Reconstruction, f64)> = vec![];
    let mut run = |name: String, inv: &dyn Inverter| -> labelgan::core::Result<Tensor> {
        let t = Instant::now();
        let ws = inv.invert(&x)?;
        let secs = t.elapsed().as_secs_f64() / a.count as f64;
        let m = reconstruction(&render(&ws)?, &x, Some(&lp))?;
        eprintln!("{name}: {m:?}");
        rows.push((name, m, secs));
        Ok(ws)
    };
    run("w_avg".into(), &MeanInverter::new(&g)?)?;
    if let Some(p) = &a.encoder_a {
        run("encoder, stage (a)".into(), &Encoder::load(p, &dev)?)?;
    }
    let mut start = None;
    if let Some(p) = &a.encoder_b {
        let e = Encoder::load(p, &dev)?;
        let t = Instant::now();
        start = Some((run("encoder, stage (b)".into(), &e)?, t.elapsed().as_secs_f64()));
    }
    let (init, enc_secs) = match start {
        Some(s) => s,
        None => (MeanInverter::new(&g)?.invert(&x)?, 0.0),
    };
    for &steps in &a.steps {
        let cfg = ProjectorConfig {
            steps,
            ..ProjectorConfig::default()
        };
        let t = Instant::now();
        let ws = project_in_batches(&g, Some(&lp), &x, &init, &cfg, a.batch, &mut |done, n| {
            eprintln!("projector {steps} steps: {done}/{n} images")
        })?;
        let secs = (t.elapsed().as_secs_f64() + enc_secs) / a.count as f64;
        let m = reconstruction(&render(&ws)?, &x, Some(&lp))?;
        let from = if a.encoder_b.is_some() { "stage (b)" } else { "w_avg" };
        let name = format!("{from} + {steps} projector steps");
        eprintln!("{name}: {m:?}, {secs:.3} s/image");
        rows.push((name, m, secs));
    }
    println!("| method | MSE | PSNR (dB) | LPIPS | s / image |\n| --- | --- | --- | --- | --- |");
    for (name, m, s) in &rows {
        println!(
            "| {name} | {:.4} | {:.2} | {:.4} | {s:.3} |",
            m.mse,
            m.psnr,
            m.lpips.unwrap_or(f32::NAN)
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|(n, m, s)| serde_json::json!({"method": n, "mse": m.mse, "psnr": m.psnr, "lpips": m.lpips, "s_per_image": s}))
        .collect();
    println!("{}", serde_json::json!({"images": a.count, "rows": json}));
    Ok(())
}
