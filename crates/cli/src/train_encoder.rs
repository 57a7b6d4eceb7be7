//! `labelgan train-encoder`: the inversion encoder, stage (a) on the generator's own
//! samples, stage (b) on real images with LPIPS; resumable.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::Args;
use labelgan_core::image_io::{load_image_folder, split_holdout};
use labelgan_core::{Error, Generator, Inverter, Progress, Result, RunRecord};
use labelgan_inversion::encoder::EncoderTrainer;
use labelgan_inversion::metrics::reconstruction;
use labelgan_inversion::{EncoderConfig, MeanInverter};
use labelgan_lpips::Lpips;
use labelgan_stylegan::StyleGan2;

use crate::device::DeviceArg;
use labelgan_core::io::check_output;

/// Train an encoder from images to a generator's W+ (resumes from OUT/checkpoint).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("real_source").required(true).args(["data", "toyworld"])))]
pub struct TrainEncoderArgs {
    #[arg(long, value_name = "G.safetensors")]
    generator: PathBuf,
    /// Perceptual backbone for stage (b)'s LPIPS.
    #[arg(long, value_name = "P.safetensors")]
    perceptual: PathBuf,
    /// Folder of real images for stage (b).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Real images for stage (b) from toyworld (`--toyworld-seed`).
    #[arg(long)]
    toyworld: bool,
    #[arg(long, default_value_t = 2000)]
    toyworld_seed: u64,
    /// Real images to use for stage (b) (toyworld) and how many of them to hold out.
    #[arg(long, default_value_t = 400)]
    real_images: usize,
    #[arg(long, default_value_t = 100)]
    holdout: usize,
    /// Output folder: checkpoint.safetensors (resumed with the same generator, LPIPS,
    /// images and seed; any difference is refused, naming it), encoder.safetensors,
    /// run.json (the settings).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Start over: remove the checkpoint, encoders and record in --out.
    #[arg(long)]
    restart: bool,
    /// Stage (a) steps (on resume: a new total, at least the steps already taken).
    #[arg(long)]
    steps_a: Option<usize>,
    /// Stage (b) steps (on resume likewise).
    #[arg(long)]
    steps_b: Option<usize>,
    #[arg(long)]
    batch_a: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Start from this encoder's weights (its architecture) instead of random ones, e.g.
    /// to retrain the encoder of a generator that was trained further. Ignored when
    /// resuming.
    #[arg(long, value_name = "E.safetensors")]
    init_encoder: Option<PathBuf>,
}

/// What `train-encoder` writes into --out, all of which --restart removes.
const OUTPUTS: [&str; 4] = [
    "checkpoint.safetensors",
    "encoder_stage_a.safetensors",
    "encoder.safetensors",
    "run.json",
];

/// Most images per stage-(a) step.
const MAX_BATCH: usize = 4096;
/// Most memory the real images may take (8 GB).
const MAX_REAL_BYTES: f64 = 8e9;

pub fn run(a: TrainEncoderArgs) -> Result<()> {
    let mut inputs = vec![
        ("--generator", a.generator.as_path()),
        ("--perceptual", a.perceptual.as_path()),
    ];
    inputs.extend(a.data.as_deref().map(|p| ("--data", p)));
    inputs.extend(a.init_encoder.as_deref().map(|p| ("--init-encoder", p)));
    check_output(("--out", &a.out), &inputs)?;
    if a.batch_a.is_some_and(|b| !(1..=MAX_BATCH).contains(&b)) {
        return Err(Error::usage(format!("--batch-a must be in 1..={MAX_BATCH}")));
    }
    let device = a.device.open()?;
    let g = StyleGan2::load(&a.generator, &device)?;
    let lpips = Lpips::load(&a.perceptual, &device)?;
    let r = g.spec().resolution;
    // The real images are held in memory: bounded before they are made.
    let bytes = a.real_images as f64 * (3 * r * r * 4) as f64;
    if a.toyworld && bytes > MAX_REAL_BYTES {
        return Err(Error::usage(format!(
            "--real-images {} at {r} px needs {:.0} GB of memory; at most {} fit in {:.0} GB",
            a.real_images,
            bytes / 1e9,
            (MAX_REAL_BYTES / (3 * r * r * 4) as f64) as usize,
            MAX_REAL_BYTES / 1e9
        )));
    }
    let real = if a.toyworld {
        labelgan_toyworld::batch_tensor(a.toyworld_seed, 0, a.real_images, r, &Device::Cpu)?
    } else {
        let dir = a.data.as_ref().expect("clap requires --data or --toyworld");
        load_image_folder(dir, r)?
    };
    let n = real.dim(0)?;
    if n <= a.holdout {
        return Err(Error::invalid(format!(
            "{n} real images; --holdout {} leaves none for stage (b)",
            a.holdout
        )));
    }
    let (holdout, train) = split_holdout(&real, a.holdout, a.seed)?;
    let (holdout, train) = (holdout.to_device(&device)?, train.to_device(&device)?);
    // One run at a time in the folder (created here): a second is refused.
    let _lock = labelgan_core::RunLock::acquire(&a.out)?;
    if a.restart {
        labelgan_core::io::remove_outputs(&a.out, &OUTPUTS)?;
    }
    // A resume continues the run with the same generator, LPIPS, images and seed, or
    // is refused (the steps may change, as below).
    let mut record = RunRecord::new()
        .setting("--seed", &a.seed)?
        .setting("--batch-a", &a.batch_a)?
        .setting("--holdout", &a.holdout)?
        .input_path("--generator", &a.generator)?
        .input_path("--perceptual", &a.perceptual)?;
    record = match &a.data {
        Some(d) => record.input_path("--data", d)?,
        None => record
            .setting("--toyworld-seed", &a.toyworld_seed)?
            .setting("--real-images", &a.real_images)?,
    };
    if let Some(p) = &a.init_encoder {
        record = record.input_path("--init-encoder", p)?;
    }
    record.check_or_write(&a.out, "run.json", "pass --restart to start over")?;
    let ck = a.out.join("checkpoint.safetensors");
    let mut t = if ck.exists() {
        let mut t = EncoderTrainer::load_checkpoint(&ck, &g)?;
        eprintln!("resuming {} in stage {} at step {}", ck.display(), t.stage, t.step);
        // New totals end a stage early or extend it; the learning rates are constant
        // and each step's batch depends only on the seed and step, so the result is
        // that of a run started with these totals. A stage cannot end before the steps
        // it has already taken.
        // A finished stage cannot be changed any more: say so instead of ignoring it.
        let cfg = &mut t.encoder.config;
        let finished = |stage: &str| match stage {
            "a" => t.stage != "a",
            _ => t.stage == "done",
        };
        for (stage, flag, total) in [
            ("a", a.steps_a, &mut cfg.stage_a.steps),
            ("b", a.steps_b, &mut cfg.stage_b.steps),
        ] {
            if let Some(s) = flag {
                if s != *total && finished(stage) {
                    return Err(Error::invalid(format!(
                        "--steps-{stage} {s}: stage ({stage}) of {} finished after {} steps and cannot \
                         be changed; start a new run in another folder with --init-encoder {}",
                        ck.display(),
                        *total,
                        a.out.join("encoder.safetensors").display()
                    )));
                }
                if t.stage == stage && s < t.step {
                    return Err(Error::invalid(format!(
                        "--steps-{stage} {s}: the checkpoint is already at step {} of stage ({stage})",
                        t.step
                    )));
                }
                *total = s;
            }
        }
        t
    } else {
        let mut cfg = EncoderConfig::for_generator(&g);
        cfg.seed = a.seed;
        if let Some(s) = a.steps_a {
            cfg.stage_a.steps = s;
        }
        if let Some(s) = a.steps_b {
            cfg.stage_b.steps = s;
        }
        if let Some(b) = a.batch_a {
            cfg.stage_a.batch = b;
        }
        match &a.init_encoder {
            Some(p) => {
                let init = labelgan_inversion::Encoder::load(p, &device)?;
                // The architecture comes from the initial encoder; steps, batch, seed
                // and learning rates from the flags.
                cfg.stem = init.config.stem;
                cfg.widths = init.config.widths.clone();
                cfg.head_channels = init.config.head_channels;
                eprintln!("starting from the weights of {}", p.display());
                EncoderTrainer::from_encoder(cfg, &g, &init)?
            }
            None => EncoderTrainer::new(cfg, &g)?,
        }
    };
    let report = |name: &str, ws: &Tensor| -> Result<()> {
        let rec = g.image(ws, labelgan_core::NoiseMode::Const)?;
        let m = reconstruction(&rec, &holdout, Some(&lpips))?;
        eprintln!(
            "held-out ({} images) {name}: mse {:.4} psnr {:.2} lpips {:.4}",
            m.images,
            m.mse,
            m.psnr,
            m.lpips.unwrap_or(f32::NAN)
        );
        Ok(())
    };
    report("w_avg", &MeanInverter::new(&g)?.invert(&holdout)?)?;
    let started = Instant::now();
    let mut bar: Option<(char, Progress)> = None;
    let mut show = |p: &labelgan_inversion::encoder::EncoderProgress| {
        if bar.as_ref().is_none_or(|(s, _)| *s != p.stage) {
            if let Some((_, b)) = &bar {
                b.finish();
            }
            bar = Some((
                p.stage,
                Progress::new(p.steps as u64, &format!("encoder stage {}", p.stage), "steps"),
            ));
        }
        let Some((_, b)) = &bar else { return };
        b.note(format!("loss {:.4}, {:.1} img/s", p.loss, p.images_per_second));
        b.set(p.step as u64);
        if let Some(h) = p.holdout_loss {
            b.println(&format!(
                "stage {} step {}/{}: held-out loss {h:.4} at {:.0} s",
                p.stage,
                p.step,
                p.steps,
                started.elapsed().as_secs_f64()
            ));
        }
        if p.step == p.steps {
            b.finish();
        }
    };
    let after_a = a.out.join("encoder_stage_a.safetensors");
    if t.stage == "a" {
        t.run_stage_a(&g, Some(&ck), a.checkpoint_every, &mut show)?;
        t.encoder.save(&after_a)?;
        report("encoder after stage (a)", &t.encoder.invert(&holdout)?)?;
    }
    t.run_stage_b(&g, &lpips, &train, &holdout, Some(&ck), a.checkpoint_every, &mut show)?;
    report("encoder after stage (b)", &t.encoder.invert(&holdout)?)?;
    let path = a.out.join("encoder.safetensors");
    t.encoder.save(&path)?;
    println!(
        "{}",
        serde_json::json!({"encoder": path.display().to_string(), "encoder_stage_a": after_a.display().to_string(),
                           "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}
