//! Where a GAN training step's time goes: generator and discriminator forward and
//! backward at a given size, on the CPU.
//!
//! ```text
//! cargo run --release --example gan_speed -- --resolution 64 --channel-max 64 --batch 16
//! ```

use std::time::Instant;

use clap::Parser;
use labelgan::prelude::*;
use labelgan::stylegan::{GanConfig, Trainer, train::softplus};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 64)]
    resolution: usize,
    #[arg(long, default_value_t = 4096)]
    channel_base: usize,
    #[arg(long, default_value_t = 64)]
    channel_max: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Reuse freed heap memory (`labelgan_kernels::heap::keep_freed_memory`), as the CLI does.
    #[arg(long)]
    keep_freed_memory: bool,
    /// Run on a worker of a rayon pool, as `labelgan train-gan` does.
    #[arg(long)]
    in_pool: bool,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    // As the CLI. SAFETY: no other thread exists yet.
    let pool = unsafe { labelgan::gan::second_order::r1_training_pool()? };
    if a.in_pool { pool.install(|| run(a)) } else { run(a) }
}

fn run(a: Args) -> labelgan::core::Result<()> {
    if a.keep_freed_memory {
        labelgan::kernels::heap::keep_freed_memory();
    }
    let cfg = GanConfig {
        batch: a.batch,
        channel_base: a.channel_base,
        channel_max: a.channel_max,
        d_channel_base: a.channel_base,
        d_channel_max: a.channel_max,
        ..GanConfig::small(a.resolution)
    };
    let t = Trainer::new(cfg, &Device::Cpu)?;
    let z = t.g.sample_z(a.batch, 0)?;
    let time = |label: &str, f: &mut dyn FnMut() -> labelgan::core::Result<()>| -> labelgan::core::Result<()> {
        f()?;
        let s = Instant::now();
        f()?;
        eprintln!("{label:<28} {:8.3} s", s.elapsed().as_secs_f64());
        Ok(())
    };
    let ws = t.g.map(&z, None, Truncation::NONE)?;
    time("G forward", &mut || {
        t.g.image(&ws, NoiseMode::Random(1))?;
        Ok(())
    })?;
    let img = t.g.image(&ws, NoiseMode::Random(1))?;
    time("D forward", &mut || {
        t.d.forward(&img)?;
        Ok(())
    })?;
    time("D forward+backward", &mut || {
        softplus(&t.d.forward(&img.detach())?)?.mean_all()?.backward()?;
        Ok(())
    })?;
    time("G+D forward+backward", &mut || {
        let img = t.g.image(&ws, NoiseMode::Random(1))?;
        softplus(&t.d.forward(&img)?.neg()?)?.mean_all()?.backward()?;
        Ok(())
    })?;
    // A fresh thread sees CANDLE_GRAD_DO_NOT_DETACH, as the trainer's R1 step does.
    std::thread::scope(|s| {
        s.spawn(|| {
            time("R1 penalty + backward", &mut || {
                t.r1_penalty(&img.detach())?.backward()?;
                Ok(())
            })
        })
        .join()
        .expect("R1 timing thread panicked")
    })?;
    Ok(())
}
