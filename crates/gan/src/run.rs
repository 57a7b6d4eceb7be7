//! A training run in a folder: the resolved config, checkpoints that resume, a log,
//! sample grids and scores at intervals, stopped cleanly on SIGINT/SIGTERM.
//!
//! ```text
//! OUT/config.toml              the resolved config
//! OUT/run.json                 settings and input fingerprints (a resume must match)
//! OUT/checkpoint.safetensors   everything a resume needs
//! OUT/generator.safetensors    G's average as a model file (StyleGAN2: the official layout)
//! OUT/samples.png              a grid from fixed latents (a row per class)
//! OUT/log.jsonl                losses and speed, every ~10 s
//! OUT/scores.csv               kimg, step and each score, at every eval interval
//! ```

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use labelgan_core::image_io::{contact_sheet, save_png, tensor_to_images};
use labelgan_core::{Error, Progress, Result, RunRecord, SplitMix64};

use crate::TrainingConfig;
use crate::trainer::{RealBatches, Trainer};
use labelgan_core::one_hot;

/// What a run writes into its folder (and `restart` removes).
pub const RUN_OUTPUTS: [&str; 7] = [
    "config.toml",
    "run.json",
    "checkpoint.safetensors",
    "generator.safetensors",
    "samples.png",
    "log.jsonl",
    "scores.csv",
];

/// Scores of the generator at a point of training, by name (e.g. `fid`, `kid`).
pub type Scorer<'a> = dyn FnMut(&Trainer) -> Result<Vec<(String, f64)>> + 'a;

/// Where and how a run writes.
#[derive(Debug, Clone)]
pub struct RunOptions<'a> {
    /// The run folder.
    pub out: &'a Path,
    /// Remove an earlier run's outputs first.
    pub restart: bool,
    /// Fingerprints of the inputs (the data), recorded and compared on resume.
    pub inputs: Vec<(String, String)>,
    /// A trained generator to start from (its export's layout), with a fresh D;
    /// ignored when resuming.
    pub init_generator: Option<&'a Path>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// G steps done.
    pub steps: u64,
    /// Real images shown to D.
    pub images: u64,
    /// The last scores written, if any.
    pub last_scores: Vec<(String, f64)>,
}

/// The record a resume must match: every setting but the training length (which may
/// grow) and the scoring interval, and the inputs.
fn record(config: &TrainingConfig, inputs: &[(String, String)]) -> Result<RunRecord> {
    let mut r = RunRecord::new().setting("config", config)?;
    r.settings.remove("config.train.kimg");
    r.settings.remove("config.eval.every_kimg");
    for (name, f) in inputs {
        r = r.input(name, f.clone());
    }
    Ok(r)
}

/// A grid of images from fixed latents: 8 per class, a row each, or 8 x 8.
fn samples(t: &Trainer, out: &Path) -> Result<()> {
    let m = &t.config.model;
    let rows = if m.conditional { m.classes.min(16) } else { 8 };
    let n = rows * 8;
    let z = SplitMix64::new(0x5a).normal_tensor(&[n, m.z_dim], &t.device())?;
    let y = if m.conditional {
        let classes: Vec<u32> = (0..n).map(|i| (i / 8) as u32).collect();
        Some(one_hot(&classes, m.classes, &t.device())?)
    } else {
        None
    };
    let images = tensor_to_images(&t.generate(&z, y.as_ref(), true)?)?;
    save_png(&contact_sheet(&images, 8, 2)?, &out.join("samples.png"))
}

fn snapshot(t: &Trainer, out: &Path) -> Result<()> {
    t.save(&out.join("checkpoint.safetensors"))?;
    t.export_generator(&out.join("generator.safetensors"))?;
    samples(t, out)
}

/// The kimg of the last row of `scores.csv` (`None` without one).
fn last_scored(path: &Path) -> Result<Option<f64>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse::<f64>().ok())
        .last())
}

/// Trains `config` in `opts.out` on `real` until `config.train.kimg`, resuming a
/// checkpoint there, scoring with `scorer` every `eval.every_kimg` (and at the end).
pub fn train_run(
    config: &TrainingConfig,
    opts: &RunOptions,
    real: &mut RealBatches,
    mut scorer: Option<&mut Scorer>,
    device: &candle_core::Device,
) -> Result<RunSummary> {
    config.validate()?;
    let out = opts.out;
    let _lock = labelgan_core::RunLock::acquire(out)?;
    if opts.restart {
        labelgan_core::io::remove_outputs(out, &RUN_OUTPUTS)?;
    }
    // Settings added since a run began read as their defaults (`TrainingConfig::default`).
    let defaults = record(&TrainingConfig::default(), &[])?;
    record(config, &opts.inputs)?.check_or_write_with_defaults(
        out,
        "run.json",
        "pass --restart to start over",
        &defaults,
    )?;
    labelgan_core::io::write_atomic(&out.join("config.toml"), config.to_toml()?.as_bytes())?;
    let ck = out.join("checkpoint.safetensors");
    let mut t = if ck.exists() {
        let t = Trainer::load(&ck, config, device)?;
        eprintln!(
            "resuming {} at step {} ({:.1} kimg)",
            ck.display(),
            t.step,
            t.images_seen() as f64 / 1000.0
        );
        t
    } else if let Some(path) = opts.init_generator {
        let file = labelgan_core::io::TensorFile::load(path, device)?;
        let state = file.tensors.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        eprintln!(
            "starting from the generator {} with a fresh discriminator (G rests for at most {} steps)",
            path.display(),
            config.train.g_warmup_steps
        );
        Trainer::with_generator(config, &state, device).map_err(|e| Error::format(path, e.to_string()))?
    } else {
        Trainer::new(config, device)?
    };
    let target = (config.train.kimg * 1000.0).round() as u64;
    let every = ((config.eval.every_kimg * 1000.0).round() as u64).max(1);
    let scores_path = out.join("scores.csv");
    let mut scored = last_scored(&scores_path)?.map(|k| (k * 1000.0).round() as u64);
    let log_path = out.join("log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let bar = Progress::new(target, "training", "images");
    bar.resume_at(t.images_seen());
    let (started, start_images) = (Instant::now(), t.images_seen());
    let (mut last_log, mut last_snap) = (Instant::now(), Instant::now());
    // Sums of the step reports' losses since the last log line, and their count.
    let (mut acc, mut count) = ([0f64; 6], 0usize);
    let mut last_scores = vec![];
    loop {
        let seen = t.images_seen();
        // Score at every interval boundary passed (and at the end), after a snapshot.
        let boundary = (seen / every) * every;
        let due = (boundary > 0 && scored.is_none_or(|s| s < boundary)) || (seen >= target && scored != Some(seen));
        if due {
            snapshot(&t, out)?;
            last_snap = Instant::now();
            if let Some(score) = scorer.as_deref_mut() {
                last_scores = score(&t)?;
                let new_file = !scores_path.exists();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&scores_path)
                    .map_err(|e| Error::io(&scores_path, e))?;
                let mut text = String::new();
                if new_file {
                    let names: Vec<&str> = last_scores.iter().map(|(n, _)| n.as_str()).collect();
                    text.push_str(&format!("kimg,step,{}\n", names.join(",")));
                }
                let values: Vec<String> = last_scores.iter().map(|(_, v)| format!("{v}")).collect();
                text.push_str(&format!("{},{},{}\n", seen as f64 / 1000.0, t.step, values.join(",")));
                f.write_all(text.as_bytes()).map_err(|e| Error::io(&scores_path, e))?;
                bar.println(&format!("{:.3} kimg: {}", seen as f64 / 1000.0, show(&last_scores)));
            }
            scored = Some(if seen >= target { seen } else { boundary });
        }
        if seen >= target {
            break;
        }
        if labelgan_core::stop::requested() {
            snapshot(&t, out)?;
            return Err(Error::Stopped(format!(
                "checkpoint at step {} ({:.1} kimg) saved in {}; rerun the same command to resume",
                t.step,
                seen as f64 / 1000.0,
                out.display()
            )));
        }
        let r = t.train_step(real)?;
        let values = [
            r.d_loss,
            r.g_loss,
            r.penalty,
            r.rotation_real,
            r.rotation_fake,
            r.class_loss,
        ];
        for (a, v) in acc.iter_mut().zip(values) {
            *a += v as f64;
        }
        count += 1;
        if last_log.elapsed().as_secs_f64() >= 10.0 || t.images_seen() >= target {
            let k = count.max(1) as f64;
            let mean = acc.map(|a| a / k);
            let rate = (t.images_seen() - start_images) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let line = format!(
                "{{\"step\":{},\"kimg\":{},\"loss_d\":{},\"loss_g\":{},\"penalty\":{},\"rotation_real\":{},\"rotation_fake\":{},\"class_loss\":{},\"gap_average\":{},\"img_per_s\":{rate},\"seconds\":{}}}\n",
                t.step,
                t.images_seen() as f64 / 1000.0,
                mean[0],
                mean[1],
                mean[2],
                mean[3],
                mean[4],
                mean[5],
                t.gap_average,
                started.elapsed().as_secs_f64()
            );
            log.write_all(line.as_bytes()).map_err(|e| Error::io(&log_path, e))?;
            let g = match t.g_started {
                Some(_) => format!("{:.3}", mean[1]),
                None => format!("resting (D gap {:.2})", t.gap_average),
            };
            let mut note = format!("step {} | D {:.3} | G {g} | penalty {:.4}", t.step, mean[0], mean[2]);
            let tr = &t.config.train;
            if tr.rotation_batch_fraction > 0 {
                note += &format!(" | rotation {:.3} / {:.3}", mean[3], mean[4]);
            }
            if tr.class_predictor {
                note += &format!(" | class {:.3}", mean[5]);
            }
            bar.note(note);
            (acc, count) = ([0f64; 6], 0);
            last_log = Instant::now();
        }
        bar.set(t.images_seen());
        if last_snap.elapsed().as_secs_f64() >= 600.0 {
            snapshot(&t, out)?;
            last_snap = Instant::now();
        }
    }
    bar.finish();
    Ok(RunSummary {
        steps: t.step,
        images: t.images_seen(),
        last_scores,
    })
}

fn show(scores: &[(String, f64)]) -> String {
    scores
        .iter()
        .map(|(n, v)| format!("{n} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}
