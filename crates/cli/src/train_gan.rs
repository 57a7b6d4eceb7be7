//! `labelgan train-gan`: train a StyleGAN2 on a folder of images or on toyworld,
//! with checkpoints, resume, progress, sample grids and a log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use clap::Args;
use labelgan_core::image_io::{ImageSource, contact_sheet, load_image_folder, save_png, tensor_to_images};
use labelgan_core::{Error, Generator, NoiseMode, Progress, Result, Truncation};
use labelgan_stylegan::{GanConfig, Trainer};

use crate::device::DeviceArg;
use crate::values;
use labelgan_core::RunRecord;
use labelgan_core::io::check_output;

/// Train a StyleGAN2 generator (and discriminator) from scratch, or resume.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("data_source").required(true).args(["data", "toyworld", "objects"])))]
pub struct TrainGanArgs {
    /// Folder of training images (PNG/JPEG, all `--resolution` square; with
    /// --config, a dataset folder's `images/` and `classes.json` are read if present).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train on a fresh stream of toyworld faces instead.
    #[arg(long)]
    toyworld: bool,
    /// Train on a stream of toy objects with their classes (with --config).
    #[arg(long, requires = "config")]
    objects: bool,
    /// Seed of the toyworld (or objects) stream; scores use the next seed's stream.
    #[arg(long, default_value_t = 1000)]
    toyworld_seed: u64,
    /// A Compare GAN run instead of StyleGAN2: every option from this TOML file
    /// (`docs/compare_gan.md`); the StyleGAN2 flags do not apply.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["resolution", "r1_gamma", "g_lr", "init_generator", "g_warmup_gap"])]
    config: Option<PathBuf>,
    /// Override a setting of --config: `section.key=value` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", requires = "config")]
    set: Vec<String>,
    /// With --config: score FID, KID, precision and recall at every eval interval in
    /// this perceptual backbone's features (scores.csv).
    #[arg(long, value_name = "P.safetensors", requires = "config")]
    extractor: Option<PathBuf>,
    /// Image size (power of two; StyleGAN2 runs).
    #[arg(long, required_unless_present = "config")]
    resolution: Option<usize>,
    /// Output folder: checkpoint.safetensors (resumed if present, with the same
    /// settings and data; any difference is refused, naming it), generator.safetensors
    /// (G_ema, official layout), samples.png, log.jsonl, run.json (the settings).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Start over: remove the checkpoint, generator, samples, log and record in --out.
    #[arg(long)]
    restart: bool,
    /// Train until this many thousand real images have been shown to D.
    #[arg(long, default_value_t = 100.0, value_parser = values::positive)]
    kimg: f64,
    /// Minibatch size (a multiple of 4).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 4096)]
    channel_base: usize,
    #[arg(long, default_value_t = 128)]
    channel_max: usize,
    #[arg(long, default_value_t = 256)]
    z_dim: usize,
    #[arg(long, default_value_t = 256)]
    w_dim: usize,
    #[arg(long, default_value_t = 4)]
    mapping_layers: usize,
    /// R1 weight (default: 0.0002 * resolution^2 / batch).
    #[arg(long, value_parser = values::non_negative)]
    r1_gamma: Option<f64>,
    #[arg(long, default_value_t = 0.0025, value_parser = values::positive)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint, generator and samples every this many kimg (and every 10 minutes).
    #[arg(long, default_value_t = 2.0, value_parser = values::positive)]
    snapshot_kimg: f64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Start G (and G_ema) from this generator instead of a random one, with a fresh
    /// discriminator; the architecture flags must match it. Ignored when resuming.
    #[arg(long, value_name = "G.safetensors")]
    init_generator: Option<PathBuf>,
    /// Steps at the start in which only D trains (use with --init-generator); with
    /// --g-warmup-gap, the most such steps.
    #[arg(long, default_value_t = 0)]
    g_warmup_steps: u64,
    /// End the D-only warm-up as soon as D separates real from generated images by this
    /// margin (moving average of D(x) - D(G(z))), e.g. 2.
    #[arg(long, value_parser = values::non_negative)]
    g_warmup_gap: Option<f64>,
    /// Generator learning rate (default: --lr).
    #[arg(long, value_parser = values::positive)]
    g_lr: Option<f64>,
}

fn snapshot(t: &Trainer, out: &Path) -> Result<()> {
    t.save_checkpoint(out.join("checkpoint.safetensors"))?;
    let g = t.generator_ema()?;
    g.save(out.join("generator.safetensors"))?;
    let ws = g.map(&g.sample_z(64, 0)?, None, Truncation::NONE)?;
    let imgs = tensor_to_images(&g.image(&ws, NoiseMode::Const)?)?;
    save_png(&contact_sheet(&imgs, 8, 2)?, &out.join("samples.png"))
}

/// What `train-gan` writes into --out, all of which --restart removes.
const OUTPUTS: [&str; 5] = [
    "checkpoint.safetensors",
    "generator.safetensors",
    "samples.png",
    "log.jsonl",
    "run.json",
];

/// The settings a resume must share with the run it continues (not --kimg,
/// --snapshot-kimg or --device, which may change), and fingerprints of the inputs.
fn record(a: &TrainGanArgs, cfg: &GanConfig) -> Result<RunRecord> {
    let mut r = RunRecord::new().setting("config", cfg)?;
    if a.toyworld {
        r = r.setting("--toyworld-seed", &a.toyworld_seed)?;
    }
    if let Some(d) = &a.data {
        r = r.input_path("--data", d)?;
    }
    if let Some(g) = &a.init_generator {
        r = r.input_path("--init-generator", g)?;
    }
    Ok(r)
}

pub fn run(a: TrainGanArgs) -> Result<()> {
    if let Some(config) = &a.config {
        return crate::gan_run::run(&crate::gan_run::ConfigRun {
            config,
            set: &a.set,
            data: crate::gan_run::DataArgs {
                data: a.data.as_deref(),
                objects: a.objects,
                toyworld: a.toyworld,
                stream_seed: a.toyworld_seed,
            },
            out: &a.out,
            restart: a.restart,
            extractor: a.extractor.as_deref(),
            device: a.device,
        });
    }
    let resolution = a.resolution.ok_or_else(|| Error::usage("--resolution is required"))?;
    let mut inputs = vec![];
    inputs.extend(a.data.as_deref().map(|p| ("--data", p)));
    inputs.extend(a.init_generator.as_deref().map(|p| ("--init-generator", p)));
    check_output(("--out", &a.out), &inputs)?;
    let mut cfg = GanConfig {
        batch: a.batch,
        z_dim: a.z_dim,
        w_dim: a.w_dim,
        mapping_layers: a.mapping_layers,
        channel_base: a.channel_base,
        channel_max: a.channel_max,
        d_channel_base: a.channel_base,
        d_channel_max: a.channel_max,
        g_lr: a.g_lr.unwrap_or(a.lr),
        d_lr: a.lr,
        seed: a.seed,
        ..GanConfig::small(resolution)
    };
    cfg.r1_gamma = a
        .r1_gamma
        .unwrap_or(0.0002 * (resolution * resolution) as f64 / a.batch.max(1) as f64);
    cfg.ema_kimg = a.batch as f64 * 10.0 / 32.0;
    cfg.g_warmup_steps = a.g_warmup_steps;
    cfg.g_warmup_gap = a.g_warmup_gap;
    if a.init_generator.is_some() {
        // G_ema starts as the trained generator: average over the full half-life from
        // the start instead of ramping up from G's latest step.
        cfg.ema_rampup = None;
    }
    // Every setting is checked before the folder is made or anything allocated.
    cfg.validate().map_err(Error::into_usage)?;
    if a.toyworld {
        labelgan_toyworld::check_resolution(resolution).map_err(Error::into_usage)?;
    }
    let source = if a.toyworld {
        let (seed, r) = (a.toyworld_seed, resolution);
        ImageSource::Stream(Box::new(move |start, n| {
            labelgan_toyworld::batch_tensor(seed, start, n, r, &Device::Cpu)
        }))
    } else {
        let dir = a.data.as_ref().expect("clap requires --data or --toyworld");
        ImageSource::Images(load_image_folder(dir, resolution)?)
    };
    let device = a.device.open()?;
    // One run at a time in the folder (created here): a second is refused.
    let _lock = labelgan_core::RunLock::acquire(&a.out)?;
    if a.restart {
        labelgan_core::io::remove_outputs(&a.out, &OUTPUTS)?;
    }
    // A resume continues the run with the same settings and inputs, or is refused.
    record(&a, &cfg)?.check_or_write(&a.out, "run.json", "pass --restart to start over")?;
    let ck = a.out.join("checkpoint.safetensors");
    let mut t = if ck.exists() {
        let t = Trainer::load_checkpoint(&ck, &device)?;
        eprintln!(
            "resuming {} at step {} ({:.1} kimg)",
            ck.display(),
            t.step,
            t.nimg as f64 / 1000.0
        );
        t
    } else {
        match &a.init_generator {
            Some(p) => {
                let g = labelgan_stylegan::StyleGan2::load(p, &device)?;
                eprintln!(
                    "starting from the generator {} with a fresh discriminator ({} D-only steps first)",
                    p.display(),
                    a.g_warmup_steps
                );
                Trainer::from_generator(cfg, &g, &device)?
            }
            None => Trainer::new(cfg, &device)?,
        }
    };
    if t.config.resolution != resolution {
        return Err(Error::invalid(format!(
            "the checkpoint in {} is for {} px, not --resolution {}",
            a.out.display(),
            t.config.resolution,
            resolution
        )));
    }
    let target = (a.kimg * 1000.0) as u64;
    let snap_every = ((a.snapshot_kimg * 1000.0) as u64).max(1);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.out.join("log.jsonl"))
        .map_err(|e| Error::io(a.out.join("log.jsonl"), e))?;
    let start = Instant::now();
    let (start_nimg, mut last_print, mut last_snap) = (t.nimg, Instant::now(), Instant::now());
    // Images shown to D, towards `--kimg`; the note carries the losses of the last ~10 s.
    let bar = Progress::new(target, "training", "images");
    bar.set(t.nimg);
    let mut next_snap = (t.nimg / snap_every + 1) * snap_every;
    let mut acc = (0f64, 0f64, 0f64, 0f64, 0usize);
    let mut r1 = None;
    while t.nimg < target {
        if labelgan_core::stop::requested() {
            snapshot(&t, &a.out)?;
            return Err(Error::Stopped(format!(
                "checkpoint at step {} ({:.1} kimg) saved in {}; rerun the same command to resume",
                t.step,
                t.nimg as f64 / 1000.0,
                a.out.display()
            )));
        }
        let l = t.step(&source)?;
        acc = (
            acc.0 + l.g as f64,
            acc.1 + l.d as f64,
            acc.2 + l.real_score as f64,
            acc.3 + l.fake_score as f64,
            acc.4 + 1,
        );
        r1 = l.r1.or(r1);
        let done = t.nimg >= target;
        if last_print.elapsed().as_secs_f64() >= 10.0 || done {
            let k = acc.4.max(1) as f64;
            let rate = (t.nimg - start_nimg) as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let line = serde_json::json!({
                "step": t.step, "kimg": t.nimg as f64 / 1000.0, "loss_g": acc.0 / k, "loss_d": acc.1 / k,
                "real_score": acc.2 / k, "fake_score": acc.3 / k, "r1": r1, "img_per_s": rate,
                "seconds": start.elapsed().as_secs_f64(), "gap_average": t.gap_average, "g_started": t.g_started,
            });
            let g_loss = if t.g_started.is_some() {
                format!("{:.3}", acc.0 / k)
            } else {
                format!("held (gap {:.2})", t.gap_average)
            };
            bar.note(format!(
                "step {} | G {} | D {:.3} | D(x) {:+.2} D(G(z)) {:+.2} | R1 {}",
                t.step,
                g_loss,
                acc.1 / k,
                acc.2 / k,
                acc.3 / k,
                r1.map_or("-".into(), |v| format!("{v:.4}")),
            ));
            bar.set(t.nimg);
            writeln!(log, "{line}").map_err(|e| Error::io(a.out.join("log.jsonl"), e))?;
            acc = (0.0, 0.0, 0.0, 0.0, 0);
            last_print = Instant::now();
        }
        if t.nimg >= next_snap || done || last_snap.elapsed().as_secs_f64() >= 600.0 {
            snapshot(&t, &a.out)?;
            next_snap = (t.nimg / snap_every + 1) * snap_every;
            last_snap = Instant::now();
        }
    }
    bar.finish();
    snapshot(&t, &a.out)?;
    println!(
        "trained to {:.1} kimg ({} steps); generator: {}",
        t.nimg as f64 / 1000.0,
        t.step,
        a.out.join("generator.safetensors").display()
    );
    Ok(())
}
