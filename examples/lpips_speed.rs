//! LPIPS-VGG forward + backward with respect to the input image, batch 1, with random
//! (deterministic) weights: the counterpart of `tools/lpips_speed.py` (PyTorch, the
//! `lpips` package). Prints one JSON line with the median of `--repeats` runs.
//!
//! ```text
//! cargo run --release --example lpips_speed -- --size 256
//! ```

mod common;

use clap::Parser;
use labelgan::core::io::TensorFile;
use labelgan::lpips::Lpips;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Leave glibc's default heap behaviour (freed buffers go back to the kernel and
    /// come back as fresh zeroed pages) instead of `keep_freed_memory`, as the CLI sets.
    #[arg(long)]
    default_heap: bool,
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

fn main() -> labelgan::core::Result<()> {
    let a = Args::parse();
    if !a.default_heap {
        labelgan::kernels::heap::keep_freed_memory();
    }
    let dev = a.device.open()?;
    // The VGG weight shapes of the reference fixture, filled deterministically.
    let io = TensorFile::load("tests/fixtures/lpips/lpips_vgg_io.safetensors", &dev)?;
    let tensors = labelgan::lpips::detfill::fixture_model(&io, &dev)?;
    let m = Lpips::from_file(TensorFile {
        path: "<random vgg>".into(),
        tensors,
        metadata: Default::default(),
    })?;
    let mut rng = labelgan::core::SplitMix64::new(0);
    let x0 = rng.normal_tensor(&[1, 3, a.size, a.size], &dev)?.tanh()?;
    let x1 = rng.normal_tensor(&[1, 3, a.size, a.size], &dev)?.tanh()?;
    let s = common::median_seconds(a.repeats, || {
        let v = candle_core::Var::from_tensor(&x0)?;
        let grads = m.distance(v.as_tensor(), &x1)?.sum_all()?.backward()?;
        dev.synchronize()?;
        std::hint::black_box(grads.get(&v).map(|g| g.dims().to_vec()));
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({"impl": "labelgan", "device": a.device.name(), "size": a.size, "s_fwd_bwd": (s * 1e4).round() / 1e4, "peak_rss_mb": common::peak_rss_mb()})
    );
    Ok(())
}
