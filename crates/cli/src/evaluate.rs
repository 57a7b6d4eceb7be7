//! `labelgan evaluate`: is a dataset worth training on? Trains the small evaluation
//! UNet (`labelgan-eval`) on one labelled dataset folder, one model per label kind,
//! and scores it on another: mIoU and per-class IoU, PCK at 0.05 and 0.1 of the image
//! size, depth RMSE and AbsRel on the foreground.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use labelgan_core::{Error, Result};
use labelgan_eval::unet::{Flip, UNetPrediction};
use labelgan_eval::{
    Confusion, DepthError, KeypointLoss, LabelledSet, Pck, Targets, TrainJob, UNet, UNetConfig, concurrent_workers,
    default_widths, load_dataset, train_concurrently,
};

use crate::device::DeviceArg;

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

impl HeadArg {
    fn name(self) -> &'static str {
        match self {
            HeadArg::Seg => "segmentation",
            HeadArg::Kp => "keypoints",
            HeadArg::Depth => "depth",
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
    #[arg(long)]
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
    /// Folder for the trained models (`KIND.safetensors`) and `results.json`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

/// `DIR` or `DIR:REPEAT` (a folder name may hold `:`; only a last part that parses as a
/// count is taken as one).
fn parse_add_train(spec: &str) -> Result<(PathBuf, usize)> {
    if let Some((dir, n)) = spec.rsplit_once(':') {
        if let Ok(k) = n.parse::<usize>() {
            if k == 0 {
                return Err(Error::invalid(format!(
                    "--add-train {spec}: the repeat must be at least 1"
                )));
            }
            return Ok((PathBuf::from(dir), k));
        }
    }
    Ok((PathBuf::from(spec), 1))
}

fn pairs<T: std::str::FromStr>(specs: &[String], what: &str) -> Result<Vec<(T, T)>> {
    specs
        .iter()
        .map(|s| {
            let bad = || Error::invalid(format!("--flip-{what} `{s}`: expected two indices as A:B"));
            let (a, b) = s.split_once(':').ok_or_else(bad)?;
            Ok((
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ))
        })
        .collect()
}

/// Side of the first image in `dir/images`.
fn resolution_of(dir: &Path) -> Result<usize> {
    let files = labelgan_core::image_io::image_files(&dir.join("images"))?;
    let first = files
        .first()
        .ok_or_else(|| Error::invalid(format!("{}: no images", dir.join("images").display())))?;
    let img = labelgan_core::image_io::load_image(first)?;
    if img.width() != img.height() {
        return Err(Error::format(
            first,
            format!(
                "image is {}x{}, the UNet takes square images",
                img.width(),
                img.height()
            ),
        ));
    }
    Ok(img.width() as usize)
}

fn has(set: &LabelledSet, head: HeadArg) -> bool {
    let t = &set.targets;
    match head {
        HeadArg::Seg => t.masks.is_some(),
        HeadArg::Kp => t.keypoints.is_some(),
        HeadArg::Depth => t.depth.is_some(),
    }
}

/// Scores `head` of `preds` against `tt`, adding a table row and JSON keys.
fn score(
    head: HeadArg,
    tt: &Targets,
    preds: &[UNetPrediction],
    classes: usize,
    r: usize,
    table: &mut String,
    results: &mut serde_json::Value,
) -> Result<()> {
    match head {
        HeadArg::Seg => {
            let mut c = Confusion::new(classes);
            for (truth, p) in tt.masks.as_ref().expect("checked").iter().zip(preds) {
                c.add(truth, p.classes.as_ref().expect("a segmentation head"))?;
            }
            let rep = c.report();
            let per: Vec<String> = rep
                .iou
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{k}: {}", v.map_or("-".into(), |v| format!("{v:.3}"))))
                .collect();
            *table += &format!("| mIoU | {:.3} ({}) |\n", rep.miou, per.join(", "));
            results["miou"] = rep.miou.into();
            results["iou"] = serde_json::to_value(&rep.iou).map_err(|e| Error::invalid(e.to_string()))?;
            results["pixel_accuracy"] = rep.pixel_accuracy.into();
        }
        HeadArg::Kp => {
            let mut k = Pck::new(&[0.05, 0.1]);
            for (truth, p) in tt.keypoints.as_ref().expect("checked").iter().zip(preds) {
                k.add(truth, p.keypoints.as_ref().expect("a keypoint head"), r)?;
            }
            let v = k.report();
            *table += &format!("| PCK@0.05 | {:.3} |\n| PCK@0.1 | {:.3} |\n", v[0], v[1]);
            results["pck05"] = v[0].into();
            results["pck10"] = v[1].into();
        }
        HeadArg::Depth => {
            let mut d = DepthError::default();
            for (truth, p) in tt.depth.as_ref().expect("checked").iter().zip(preds) {
                d.add_foreground(truth, p.depth.as_ref().expect("a depth head"))?;
            }
            let rep = d.report();
            *table += &format!(
                "| depth RMSE (foreground) | {:.4} |\n| depth AbsRel | {:.3} |\n",
                rep.rmse, rep.abs_rel
            );
            results["depth_rmse"] = rep.rmse.into();
            results["depth_abs_rel"] = rep.abs_rel.into();
        }
    }
    Ok(())
}

pub fn run(a: EvaluateArgs) -> Result<()> {
    let started = Instant::now();
    let device = a.device.open()?;
    let r = resolution_of(&a.train)?;
    let rt = resolution_of(&a.test)?;
    if rt != r {
        return Err(Error::invalid(format!(
            "the training images are {r}x{r} but the test images {rt}x{rt}"
        )));
    }
    let mut train = load_dataset(&a.train, r, a.limit)?;
    if !a.add_train.is_empty() {
        let extra = a
            .add_train
            .iter()
            .map(|spec| {
                let (dir, repeat) = parse_add_train(spec)?;
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
        train = LabelledSet::concat(&parts)?;
    }
    let test = load_dataset(&a.test, r, None)?;
    let heads: Vec<HeadArg> = if a.heads.is_empty() {
        [HeadArg::Seg, HeadArg::Kp, HeadArg::Depth]
            .into_iter()
            .filter(|&h| has(&train, h) && has(&test, h))
            .collect()
    } else {
        let train_name = if a.add_train.is_empty() {
            a.train.display().to_string()
        } else {
            format!("{} with the --add-train folders", a.train.display())
        };
        for &h in &a.heads {
            for (set, name) in [(&train, &train_name), (&test, &a.test.display().to_string())] {
                if !has(set, h) {
                    return Err(Error::invalid(format!(
                        "{name} has no {} labels (in every folder)",
                        h.name()
                    )));
                }
            }
        }
        a.heads.clone()
    };
    if heads.is_empty() {
        return Err(Error::invalid(format!(
            "{} and {} share no label kind (masks/, keypoints.json, depth/)",
            a.train.display(),
            a.test.display()
        )));
    }
    let max_class = |s: &LabelledSet| {
        s.targets
            .masks
            .as_ref()
            .and_then(|m| m.iter().flat_map(|v| v.iter()).copied().max())
    };
    let found = max_class(&train).max(max_class(&test)).map_or(0, |c| c as usize + 1);
    let classes = a.classes.unwrap_or(found);
    if heads.contains(&HeadArg::Seg) && found > classes {
        return Err(Error::invalid(format!(
            "the masks hold class {} but --classes is {classes}",
            found - 1
        )));
    }
    let keypoints = train
        .targets
        .keypoints
        .as_ref()
        .and_then(|k| k.first())
        .map_or(0, Vec::len);
    let test_kp = test.targets.keypoints.as_ref().filter(|_| heads.contains(&HeadArg::Kp));
    if let Some((bad, k)) = test_kp.and_then(|tk| tk.iter().enumerate().find(|(_, k)| k.len() != keypoints)) {
        return Err(Error::invalid(format!(
            "{}: image {} has {} keypoints, the training images {keypoints}",
            a.test.join("keypoints.json").display(),
            test.names[bad],
            k.len()
        )));
    }
    let mut flip = Flip {
        classes: pairs(&a.flip_classes, "classes")?,
        keypoints: pairs(&a.flip_keypoints, "keypoints")?,
    };
    if a.toyworld {
        flip = Flip::toyworld();
    }
    let use_flip = a.toyworld || !a.flip_classes.is_empty() || !a.flip_keypoints.is_empty();
    if let Some(&(x, y)) = flip.classes.iter().find(|p| p.0.max(p.1) as usize >= classes) {
        return Err(Error::invalid(format!("flip pair {x}:{y}: only {classes} classes")));
    }
    if let Some(&(x, y)) = flip.keypoints.iter().find(|p| p.0.max(p.1) >= keypoints) {
        return Err(Error::invalid(format!("flip pair {x}:{y}: only {keypoints} keypoints")));
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    eprintln!(
        "training on {} images of {}{} ({r}x{r}), scoring on {} of {}",
        train.names.len(),
        a.train.display(),
        a.add_train.iter().map(|s| format!(" + {s}")).collect::<String>(),
        test.names.len(),
        a.test.display()
    );

    let mut results = serde_json::json!({
        "train": a.train.display().to_string(), "test": a.test.display().to_string(),
        "add_train": a.add_train,
        "train_images": train.names.len(), "test_images": test.names.len(), "steps": a.steps,
    });
    let mut table = String::from("| kind | score |\n| --- | --- |\n");
    let groups: Vec<Vec<HeadArg>> = if a.joint {
        vec![heads]
    } else {
        heads.into_iter().map(|h| vec![h]).collect()
    };
    let t = &train.targets;
    let targets: Vec<Targets> = groups
        .iter()
        .map(|group| Targets {
            masks: t.masks.clone().filter(|_| group.contains(&HeadArg::Seg)),
            keypoints: t.keypoints.clone().filter(|_| group.contains(&HeadArg::Kp)),
            depth: t.depth.clone().filter(|_| group.contains(&HeadArg::Depth)),
        })
        .collect();
    let names: Vec<String> = groups
        .iter()
        .map(|g| g.iter().map(|h| h.name()).collect::<Vec<_>>().join("+"))
        .collect();
    let jobs = groups
        .iter()
        .zip(&targets)
        .map(|(group, targets)| {
            let with = |h: HeadArg| group.contains(&h);
            let cfg = UNetConfig {
                resolution: r,
                widths: a.widths.clone().unwrap_or_else(|| default_widths(with(HeadArg::Seg))),
                classes: if with(HeadArg::Seg) { classes } else { 0 },
                keypoints: if with(HeadArg::Kp) { keypoints } else { 0 },
                depth: with(HeadArg::Depth),
                sigma: 2.0,
                lr: a.lr.unwrap_or(if group[..] == [HeadArg::Kp] { 3e-3 } else { 1e-2 }),
                batch: a.batch,
                steps: a.steps,
                seed: a.seed + group[0] as u64,
                flip: use_flip.then(|| flip.clone()),
                shift: a.shift,
                keypoint_loss: KeypointLoss::SpatialSoftmax,
            };
            Ok(TrainJob {
                unet: UNet::new(cfg, &device)?,
                images: &train.images,
                targets,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // On the CPU the models train side by side, one per core; on a GPU one after the
    // other.
    let workers = concurrent_workers(&device);
    let t0 = Instant::now();
    let last = std::sync::Mutex::new(Instant::now());
    let steps = a.steps;
    let models = train_concurrently(jobs, workers, &|job, s, loss| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed().as_secs_f64() > 10.0 || s == steps {
            *last = Instant::now();
            let rate = s as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "  {}: step {s}/{steps}, loss {loss:.4}, {rate:.1} steps/s, ETA {:.0} s",
                names[job],
                (steps - s) as f64 / rate.max(1e-9)
            );
        }
    })?;
    for ((group, unet), name) in groups.iter().zip(&models).zip(&names) {
        if let Some(dir) = &a.out {
            unet.save(dir.join(format!("{name}.safetensors")))?;
        }
        let preds = unet.predict(&test.images)?;
        for head in group.iter().copied() {
            score(head, &test.targets, &preds, classes, r, &mut table, &mut results)?;
        }
    }
    results["seconds"] = started.elapsed().as_secs_f64().into();
    if let Some(dir) = &a.out {
        let text = serde_json::to_string_pretty(&results).map_err(|e| Error::invalid(e.to_string()))?;
        labelgan_core::io::write_atomic(&dir.join("results.json"), text.as_bytes())?;
    }
    println!("{table}");
    println!("{results}");
    Ok(())
}
