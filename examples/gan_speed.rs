//! Where a StyleGAN2 training step's time goes: generator and discriminator forward
//! and backward at a given size, and the R1 penalty, on the CPU.
//!
//! ```text
//! cargo run --release --example gan_speed -- --resolution 64 --channel-max 64 --batch 16
//! ```

use std::time::Instant;

use clap::Parser;
use labelgan::gan::{Penalty, loss::softplus};
use labelgan::prelude::*;
use labelgan::stylegan::discriminator::{Discriminator, DiscriminatorConfig};

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
    let cfg = GeneratorConfig {
        z_dim: 256,
        w_dim: 256,
        img_resolution: a.resolution,
        mapping_layers: 4,
        channel_base: a.channel_base,
        channel_max: a.channel_max,
        ..GeneratorConfig::default()
    };
    let mut g = StyleGan2::random(&cfg, 0, &Device::Cpu)?;
    g.thaw();
    let d = Discriminator::new(
        DiscriminatorConfig {
            resolution: a.resolution,
            img_channels: 3,
            channel_base: a.channel_base,
            channel_max: a.channel_max,
            mbstd_group: 4,
        },
        0,
        &Device::Cpu,
    )?;
    let z = g.sample_z(a.batch, 0)?;
    let time = |label: &str, f: &mut dyn FnMut() -> labelgan::core::Result<()>| -> labelgan::core::Result<()> {
        f()?;
        let s = Instant::now();
        f()?;
        eprintln!("{label:<28} {:8.3} s", s.elapsed().as_secs_f64());
        Ok(())
    };
    let ws = g.map(&z, None, Truncation::NONE)?;
    time("G forward", &mut || {
        g.image(&ws, NoiseMode::Random(1))?;
        Ok(())
    })?;
    let img = g.image(&ws, NoiseMode::Random(1))?;
    time("D forward", &mut || {
        d.forward(&img)?;
        Ok(())
    })?;
    time("D forward+backward", &mut || {
        softplus(&d.forward(&img.detach())?)?.mean_all()?.backward()?;
        Ok(())
    })?;
    time("G+D forward+backward", &mut || {
        let img = g.image(&ws, NoiseMode::Random(1))?;
        softplus(&d.forward(&img)?.neg()?)?.mean_all()?.backward()?;
        Ok(())
    })?;
    // A fresh thread sees CANDLE_GRAD_DO_NOT_DETACH, as the loop's penalty step does.
    let real = img.detach();
    std::thread::scope(|s| {
        s.spawn(|| {
            time("R1 penalty + backward", &mut || {
                let d_fn = |x: &Tensor| d.forward(x);
                let mut rng = labelgan::core::SplitMix64::new(0);
                Penalty::R1.value(&d_fn, &real, &real, &mut rng)?.backward()?;
                Ok(())
            })
        })
        .join()
        .expect("R1 timing thread panicked")
    })?;
    Ok(())
}
