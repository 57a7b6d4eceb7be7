//! `labelgan evaluate`: is a dataset worth training on? Trains the small evaluation
//! UNet (`labelgan-eval`) on one labelled dataset folder, one model per label kind,
//! and scores it on another: mIoU and per-class IoU, PCK at 0.05 and 0.1 of the image
//! size, depth RMSE and AbsRel on the foreground.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use labelgan_core::{Error, Progress, Result};
use labelgan_dataset::{LabelledSet, load_dataset, resolution_of};
use labelgan_eval::{
    DownstreamConfig, DownstreamJob, Flip, HeadKind, Selection, UNetProgress, concurrent_workers, score, select_unets,
};

use crate::device::DeviceArg;
use crate::values;
use labelgan_core::io::check_output;

/// A label kind, one UNet each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadArg {
    /// Segmentation masks (`masks/`).
    Seg,
    /// Keypoints (`keypoints.json`).
    Kp,
    /// Depth maps (`depth/`).
    Depth,
}

impl From<HeadArg> for HeadKind {
    fn from(h: HeadArg) -> Self {
        match h {
            HeadArg::Seg => HeadKind::Segmentation,
            HeadArg::Kp => HeadKind::Keypoints,
            HeadArg::Depth => HeadKind::Depth,
        }
    }
}

/// Train the evaluation UNet on one dataset folder and score it on another.
///
/// Both folders have the layout that `labelgan factory` and `labelgan toyworld` write
/// (`docs/factory.md`, "The dataset folder"): DIR/images/*.png with DIR/masks/ (class ids), DIR/depth/
/// (16-bit, 65535 = background) and/or DIR/keypoints.json, matched by file name.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Dataset to train on (e.g. the output of `labelgan factory`).
    #[arg(long, value_name = "DIR")]
    train: PathBuf,
    /// Labelled dataset to score on (held-out real images).
    #[arg(long, value_name = "DIR")]
    test: PathBuf,
    /// Label kinds to train and score (default: every kind both folders have).
    #[arg(long, value_enum, value_delimiter = ',')]
    heads: Vec<HeadArg>,
    /// Training steps per model (batches of `--batch` images).
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Learning rate (default: 3e-3 for keypoints, 1e-2 otherwise).
    #[arg(long, value_parser = values::positive)]
    lr: Option<f64>,
    /// Channels per UNet level, comma-separated (the last is the bottleneck). Default:
    /// 12,24,48 for a UNet with a segmentation head, 8,16,32 for keypoints and depth
    /// (`labelgan_eval::SEGMENTATION_WIDTHS`, `DENSE_WIDTHS`).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Segmentation classes (default: the largest id in either folder's masks + 1).
    #[arg(long)]
    classes: Option<usize>,
    /// Class pairs that a horizontal flip swaps, e.g. `3:4` (left and right eye).
    /// Flips are used only when given (or with `--toyworld`).
    #[arg(long, value_delimiter = ',', value_name = "A:B")]
    flip_classes: Vec<String>,
    /// Keypoint pairs that a horizontal flip swaps, e.g. `0:1,3:4`.
    #[arg(long, value_delimiter = ',', value_name = "A:B")]
    flip_keypoints: Vec<String>,
    /// Toyworld's flip pairs (eye classes 3:4; keypoints 0:1 and 3:4).
    #[arg(long)]
    toyworld: bool,
    /// Random shifts of up to this many pixels.
    #[arg(long, default_value_t = 3)]
    shift: usize,
    /// One UNet with every head instead of one per kind (a third of the training time;
    /// the heads share features and `--lr`, default 1e-2).
    #[arg(long)]
    joint: bool,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Also train on this labelled folder, its images repeated REPEAT times (default 1):
    /// e.g. the few real labelled images beside a synthetic dataset. May be given more
    /// than once; a label kind is trained only if every training folder has it.
    #[arg(long, value_name = "DIR[:REPEAT]")]
    add_train: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mask id of unlabelled pixels: not trained on, not scored (`none`: every id is a
    /// class).
    #[arg(long, default_value = "255", value_parser = values::ignore_index)]
    ignore_index: values::IgnoreIndex,
    /// Validation set (labelled, never the --test set): each UNet's learning rate,
    /// widths and steps are chosen on it among --lr-factors x --width-factors (steps:
    /// the best of --evaluations scores per run).
    #[arg(long, value_name = "DIR")]
    val: Option<PathBuf>,
    /// Multiples of the default learning rate tried (needs --val for more than one).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    lr_factors: Vec<f64>,
    /// Multiples of the default widths tried (needs --val for more than one).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    width_factors: Vec<f64>,
    /// Validation scores per UNet training run (with --val).
    #[arg(long, default_value_t = 10)]
    evaluations: usize,
    /// Folder for the trained models (`KIND.safetensors`) and `results.json`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

/// `DIR` or `DIR:REPEAT` (a folder name may hold `:`; only a last part that parses as a
/// count is taken as one).
fn parse_add_train(spec: &str) -> Result<(PathBuf, usize)> {
    if let Some((dir, n)) = spec.rsplit_once(':')
        && let Ok(k) = n.parse::<usize>()
    {
        if !(1..=MAX_REPEAT).contains(&k) {
            return Err(Error::usage(format!(
                "--add-train {spec}: the repeat must be in 1..={MAX_REPEAT}"
            )));
        }
        return Ok((PathBuf::from(dir), k));
    }
    Ok((PathBuf::from(spec), 1))
}

fn pairs<T: std::str::FromStr>(specs: &[String], what: &str) -> Result<Vec<(T, T)>> {
    specs
        .iter()
        .map(|s| {
            let bad = || Error::usage(format!("--flip-{what} `{s}`: expected two indices as A:B"));
            let (a, b) = s.split_once(':').ok_or_else(bad)?;
            Ok((
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ))
        })
        .collect()
}

/// Most times one --add-train folder is repeated.
const MAX_REPEAT: usize = 10_000;
/// Most memory the training images may take once concatenated (8 GB).
const MAX_TRAIN_BYTES: f64 = 8e9;

pub fn run(a: EvaluateArgs) -> Result<()> {
    let flip = Flip {
        classes: pairs(&a.flip_classes, "classes")?,
        keypoints: pairs(&a.flip_keypoints, "keypoints")?,
    };
    let added = a
        .add_train
        .iter()
        .map(|s| parse_add_train(s))
        .collect::<Result<Vec<_>>>()?;
    if let Some(out) = &a.out {
        let mut inputs = vec![("--train", a.train.as_path()), ("--test", a.test.as_path())];
        inputs.extend(added.iter().map(|(p, _)| ("--add-train", p.as_path())));
        inputs.extend(a.val.as_deref().map(|p| ("--val", p)));
        check_output(("--out", out), &inputs)?;
    }
    let selection = Selection {
        lr_factors: a.lr_factors.clone(),
        width_factors: a.width_factors.clone(),
        evaluations: a.evaluations,
    };
    selection.validate().map_err(Error::into_usage)?;
    if a.val.is_none() && a.lr_factors.len() * a.width_factors.len() > 1 {
        return Err(Error::usage(
            "--lr-factors and --width-factors choose among settings on --val DIR: give it",
        ));
    }
    let started = Instant::now();
    let r = resolution_of(&a.train)?;
    // Every UNet setting is checked (sizes bounded) before anything is loaded.
    let probe = DownstreamConfig {
        steps: [a.steps; 3],
        batch: a.batch,
        lr: a.lr,
        widths: a.widths.clone(),
        shift: a.shift,
        classes: a.classes.unwrap_or(2),
        keypoints: 1,
        ..DownstreamConfig::default()
    };
    for h in HeadKind::ALL {
        probe.unet_config(&[h], r)?.validate().map_err(Error::into_usage)?;
    }
    if a.classes
        .is_some_and(|c| !(2..=labelgan_eval::unet::MAX_WIDTH).contains(&c))
    {
        return Err(Error::usage(format!(
            "--classes must be in 2..={}",
            labelgan_eval::unet::MAX_WIDTH
        )));
    }
    let device = a.device.open()?;
    // One run at a time writes --out (created here, once the settings are checked).
    let _lock = match &a.out {
        Some(dir) => Some(labelgan_core::RunLock::acquire(dir)?),
        None => None,
    };
    let rt = resolution_of(&a.test)?;
    if rt != r {
        return Err(Error::invalid(format!(
            "the training images are {r}x{r} but the test images {rt}x{rt}"
        )));
    }
    let mut train = load_dataset(&a.train, r, a.limit)?;
    if !added.is_empty() {
        let extra = added
            .iter()
            .map(|(dir, repeat)| {
                let (dir, repeat) = (dir.clone(), *repeat);
                let rd = resolution_of(&dir)?;
                if rd != r {
                    return Err(Error::invalid(format!(
                        "{}: images are {rd}x{rd} but the training images {r}x{r}",
                        dir.display()
                    )));
                }
                Ok((load_dataset(&dir, r, None)?, repeat))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut parts = vec![(&train, 1)];
        parts.extend(extra.iter().map(|(s, k)| (s, *k)));
        let images: usize = parts.iter().map(|(s, k)| s.len() * k).sum();
        let bytes = images as f64 * (3 * r * r * 4) as f64;
        if bytes > MAX_TRAIN_BYTES {
            return Err(Error::usage(format!(
                "--add-train makes {images} training images at {r} px ({:.0} GB); at most {:.0} GB is allowed: use smaller repeats",
                bytes / 1e9,
                MAX_TRAIN_BYTES / 1e9
            )));
        }
        train = LabelledSet::concat(&parts)?;
    }
    let test = load_dataset(&a.test, r, None)?;
    let val = match &a.val {
        Some(dir) => {
            let rv = resolution_of(dir)?;
            if rv != r {
                return Err(Error::invalid(format!(
                    "the training images are {r}x{r} but the validation images {rv}x{rv}"
                )));
            }
            Some(load_dataset(dir, r, None)?)
        }
        None => None,
    };
    let has = |set: &LabelledSet, h: HeadKind| h.present_in(&set.targets);
    let heads: Vec<HeadKind> = if a.heads.is_empty() {
        HeadKind::ALL
            .into_iter()
            .filter(|&h| has(&train, h) && has(&test, h))
            .collect()
    } else {
        let train_name = if a.add_train.is_empty() {
            a.train.display().to_string()
        } else {
            format!("{} with the --add-train folders", a.train.display())
        };
        let heads: Vec<HeadKind> = a.heads.iter().map(|&h| h.into()).collect();
        for &h in &heads {
            for (set, name) in [(&train, &train_name), (&test, &a.test.display().to_string())] {
                if !has(set, h) {
                    return Err(Error::invalid(format!(
                        "{name} has no {} labels (in every folder)",
                        h.name()
                    )));
                }
            }
        }
        heads
    };
    if heads.is_empty() {
        return Err(Error::invalid(format!(
            "{} and {} share no label kind (masks/, keypoints.json, depth/)",
            a.train.display(),
            a.test.display()
        )));
    }
    let mut cfg = DownstreamConfig {
        steps: [a.steps; 3],
        batch: a.batch,
        lr: a.lr,
        widths: a.widths.clone(),
        shift: a.shift,
        seed: a.seed,
        ignore_index: a.ignore_index.0,
        classes: a.classes.unwrap_or(0),
        ..DownstreamConfig::default()
    };
    cfg.infer_label_sizes(&heads, &train, &test)
        .map_err(|e| Error::invalid(format!("{} and {}: {e}", a.train.display(), a.test.display())))?;
    let mut flip = flip;
    if a.toyworld {
        flip = Flip::toyworld();
    }
    if let Some(&(x, y)) = flip.classes.iter().find(|p| p.0.max(p.1) as usize >= cfg.classes) {
        return Err(Error::invalid(format!(
            "flip pair {x}:{y}: only {} classes",
            cfg.classes
        )));
    }
    if let Some(&(x, y)) = flip.keypoints.iter().find(|p| p.0.max(p.1) >= cfg.keypoints) {
        return Err(Error::invalid(format!(
            "flip pair {x}:{y}: only {} keypoints",
            cfg.keypoints
        )));
    }
    let use_flip = a.toyworld || !a.flip_classes.is_empty() || !a.flip_keypoints.is_empty();
    cfg.flip = use_flip.then_some(flip);
    eprintln!(
        "training on {} images of {}{} ({r}x{r}), scoring on {} of {}",
        train.len(),
        a.train.display(),
        a.add_train.iter().map(|s| format!(" + {s}")).collect::<String>(),
        test.len(),
        a.test.display()
    );
    let groups: Vec<Vec<HeadKind>> = if a.joint {
        vec![heads]
    } else {
        heads.into_iter().map(|h| vec![h]).collect()
    };
    let names: Vec<String> = groups
        .iter()
        .map(|g| g.iter().map(|h| h.name()).collect::<Vec<_>>().join("+"))
        .collect();
    let jobs: Vec<DownstreamJob<'_>> = groups
        .iter()
        .zip(&names)
        .map(|(heads, name)| DownstreamJob {
            name: name.clone(),
            set: &train,
            heads: heads.clone(),
        })
        .collect();
    // On the CPU the models train side by side, one per core; on a GPU one after the
    // other.
    let combos = a.lr_factors.len() * a.width_factors.len();
    let bar = Progress::new((a.steps * jobs.len() * combos) as u64, "training UNets", "steps");
    let models = select_unets(
        &jobs,
        &cfg,
        &selection,
        val.as_ref(),
        concurrent_workers(&device),
        &device,
        &|p: &UNetProgress<'_>| {
            bar.inc(1);
            bar.note(format!("{} loss {:.4}", p.name, p.loss));
        },
    )?;
    bar.finish();
    if let Some(dir) = &a.out {
        for (m, name) in models.iter().zip(&names) {
            m.unet.save(dir.join(format!("{name}.safetensors")))?;
        }
    }
    let chosen: Vec<serde_json::Value> = models
        .iter()
        .zip(&names)
        .map(|(m, name)| {
            serde_json::json!({"model": name, "lr": m.lr, "widths": m.widths, "steps": m.steps,
                "val_score": m.score, "tried": m.tried})
        })
        .collect();
    let pairs: Vec<(&labelgan_eval::UNet, &[HeadKind])> = models
        .iter()
        .zip(&groups)
        .map(|(m, g)| (&m.unet, g.as_slice()))
        .collect();
    let scores = score(&pairs, &test, cfg.classes)?;
    let mut results = serde_json::json!({
        "train": a.train.display().to_string(), "test": a.test.display().to_string(),
        "add_train": a.add_train,
        "train_images": train.len(), "test_images": test.len(), "steps": a.steps,
    });
    let extra = serde_json::to_value(&scores).map_err(|e| Error::invalid(e.to_string()))?;
    for (k, v) in extra.as_object().into_iter().flatten() {
        if !v.is_null() {
            results[k] = v.clone();
        }
    }
    results["seconds"] = started.elapsed().as_secs_f64().into();
    // Every setting the UNets were trained with, saved with the run.
    results["config"] = serde_json::to_value(&cfg).map_err(|e| Error::invalid(e.to_string()))?;
    if a.val.is_some() {
        results["chosen_on_val"] = chosen.into();
    }
    if let Some(dir) = &a.out {
        let text = serde_json::to_string_pretty(&results).map_err(|e| Error::invalid(e.to_string()))?;
        labelgan_core::io::write_atomic(&dir.join("results.json"), text.as_bytes())?;
    }
    println!("{}", scores.table());
    println!("{results}");
    Ok(())
}
