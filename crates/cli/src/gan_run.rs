//! `labelgan train-gan`: a Compare GAN run (any architecture, StyleGAN2's included;
//! any loss, penalty and normalisation) on toy objects, toyworld faces or a folder,
//! scored at intervals when given an extractor.

use std::path::Path;

use candle_core::{Device, Tensor};
use labelgan_core::image_io::{file_names, image_files, load_images};
use labelgan_core::{Error, Result};
use labelgan_dataset::ClassLabels;
use labelgan_gan::scoring::{inferred_accuracy, score_average};
use labelgan_gan::{
    InferredLabels, LabelledSet, LabelsConfig, RealClasses, RunOptions, RunSummary, Trainer, TrainingConfig, train_run,
};
use labelgan_lpips::classifier::load_extractor;
use labelgan_metrics::{Features, extract};
use labelgan_toyworld::objects::object_batch;

use crate::device::DeviceArg;

/// Where a Compare GAN run's real images come from.
#[derive(Debug, Clone, Copy)]
pub struct DataArgs<'a> {
    /// A folder of images (and `classes.json`).
    pub data: Option<&'a Path>,
    /// The toy-object stream.
    pub objects: bool,
    /// The toyworld face stream.
    pub toyworld: bool,
    /// Seed of the built-in stream (scores use the next).
    pub stream_seed: u64,
}

/// What `train-gan --config` takes from its command line.
pub struct ConfigRun<'a> {
    /// The TOML file.
    pub config: &'a Path,
    /// `section.key=value` overrides.
    pub set: &'a [String],
    /// The training images.
    pub data: DataArgs<'a>,
    /// The run folder.
    pub out: &'a Path,
    /// Start over.
    pub restart: bool,
    /// Perceptual backbone for scores.
    pub extractor: Option<&'a Path>,
    /// Where to train.
    pub device: DeviceArg,
}

/// Scoring during training: the extractor, and the reference features per
/// (resolution, count), extracted once and shared by every run of a study.
pub struct Scoring {
    extractor: Box<dyn labelgan_core::FeatureExtractor>,
    fingerprint: String,
    reference: std::collections::HashMap<(usize, usize), Features>,
}

impl Scoring {
    /// Loads the perceptual backbone at `path`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            extractor: load_extractor(path, device)?,
            fingerprint: labelgan_core::record::fingerprint_path(path)?,
            reference: Default::default(),
        })
    }
}

/// Where real images come from: `f(start, n)` gives images `start..start + n` and their
/// classes (if known).
type Source = Box<dyn FnMut(u64, usize) -> Result<(Tensor, Option<RealClasses>)>>;

/// The images of a folder (its `images/` if it has one) and their classes from
/// `classes.json` if present.
pub(crate) fn load_folder(dir: &Path, resolution: usize) -> Result<(Tensor, Option<FolderClasses>)> {
    let images_dir = if dir.join("images").is_dir() {
        dir.join("images")
    } else {
        dir.to_path_buf()
    };
    let files = image_files(&images_dir)?;
    let images = load_images(&files, resolution)?;
    let classes = match ClassLabels::read(dir)? {
        Some(labels) => Some((labels.classes_of(dir, &file_names(&files))?, labels.classes.len())),
        None => None,
    };
    Ok((images, classes))
}

/// A folder's classes: each image's, and how many `classes.json` declares.
pub(crate) type FolderClasses = (Vec<u32>, usize);

/// Where a run's images come from.
struct Sources {
    /// The real images it trains on.
    train: Source,
    /// The images scores compare with.
    reference: Source,
    /// Whether the images' classes are known.
    has_classes: bool,
    /// The data's identity, for the run record.
    id: String,
    /// Some images that train without their label, with their true classes (a
    /// few-label run's): what co-training's inferred labels are scored on.
    unlabelled: Option<(Tensor, Vec<u32>)>,
}

/// A stream of toy objects with their classes.
fn object_stream(seed: u64, resolution: usize) -> Source {
    Box::new(move |start, n| {
        let (x, c) = object_batch(seed, start, n, resolution, &Device::Cpu)?;
        Ok((x, Some(c.into())))
    })
}

/// A finite set, visited in its seeded shuffled order.
fn set_source(set: LabelledSet) -> Source {
    Box::new(move |start, n| set.batch(start, n))
}

/// The real images of a run and the images its scores compare with: the built-in
/// streams (scored on the next seed's, held out), the first `labels.images` toy
/// objects for a few-label run, or a folder's images (scored on themselves).
fn sources(a: &DataArgs, cfg: &TrainingConfig) -> Result<Sources> {
    let (r, seed) = (cfg.model.resolution, a.stream_seed);
    let few = !cfg.labels.is_default();
    if a.toyworld {
        if few {
            return Err(Error::invalid(
                "[labels] settings need the images' classes: --objects, or --data DIR with classes.json",
            ));
        }
        labelgan_toyworld::check_resolution(r)?;
        let stream = |s: u64| -> Source {
            Box::new(move |start, n| Ok((labelgan_toyworld::batch_tensor(s, start, n, r, &Device::Cpu)?, None)))
        };
        return Ok(Sources {
            train: stream(seed),
            reference: stream(seed + 1),
            has_classes: false,
            id: format!("toyworld:{seed}"),
            unlabelled: None,
        });
    }
    if a.objects {
        let reference = object_stream(seed + 1, r);
        if !few {
            return Ok(Sources {
                train: object_stream(seed, r),
                reference,
                has_classes: true,
                id: format!("objects:{seed}"),
                unlabelled: None,
            });
        }
        let n = cfg.labels.images;
        if n == 0 {
            return Err(Error::invalid(
                "[labels] settings need a finite training set: set labels.images (e.g. 10000)",
            ));
        }
        let (x, c) = object_batch(seed, 0, n, r, &Device::Cpu)?;
        return labelled_sources(x, &c, cfg.model.classes, reference, format!("objects:{seed}:{n}"), cfg);
    }
    let dir = a
        .data
        .ok_or_else(|| Error::usage("give --data DIR, --objects or --toyworld"))?;
    let (images, classes) = load_folder(dir, r)?;
    let id = labelgan_core::record::fingerprint_path(dir)?;
    let Some((classes, declared)) = classes else {
        if few {
            return Err(Error::invalid(format!(
                "[labels] settings need the images' classes: {} has no classes.json",
                dir.display()
            )));
        }
        return Ok(Sources {
            train: set_source(LabelledSet::unlabelled(images.clone(), cfg.seed)?),
            reference: set_source(LabelledSet::unlabelled(images, cfg.seed)?),
            has_classes: false,
            id,
            unlabelled: None,
        });
    };
    if few && cfg.labels.images != 0 && cfg.labels.images != classes.len() {
        return Err(Error::invalid(format!(
            "labels.images is {}, but {} holds {} images (0 takes them all)",
            cfg.labels.images,
            dir.display(),
            classes.len()
        )));
    }
    // A conditional model's classes must be among its own.
    let k = if cfg.model.conditional {
        cfg.model.classes
    } else {
        declared
    };
    let all = LabelsConfig::default();
    let reference = set_source(LabelledSet::new(images.clone(), &classes, k, &all, None, cfg.seed)?);
    labelled_sources(images, &classes, k, reference, id, cfg)
}

/// The sources of a finite set `images` with true `classes` (of `k`), labelled as the
/// run's `[labels]` say.
fn labelled_sources(
    images: Tensor,
    classes: &[u32],
    k: usize,
    reference: Source,
    id: String,
    cfg: &TrainingConfig,
) -> Result<Sources> {
    let inferred = match cfg.labels.inferred.as_str() {
        "" => None,
        path => Some(InferredLabels::load(Path::new(path))?),
    };
    let set = LabelledSet::new(images, classes, k, &cfg.labels, inferred.as_ref(), cfg.seed)?;
    Ok(Sources {
        unlabelled: set.unlabelled_sample(cfg.eval.images)?,
        train: set_source(set),
        reference,
        has_classes: true,
        id,
    })
}

/// Runs the config path of `train-gan`.
pub fn run(a: &ConfigRun) -> Result<()> {
    let cfg = TrainingConfig::load(Some(a.config), a.set)?;
    let mut inputs = vec![("--config", a.config)];
    inputs.extend(a.data.data.map(|p| ("--data", p)));
    labelgan_core::io::check_output(("--out", a.out), &inputs)?;
    let device = a.device.open()?;
    let mut scoring = a.extractor.map(|p| Scoring::load(p, &device)).transpose()?;
    let summary = train_config(&a.data, &cfg, a.out, a.restart, scoring.as_mut(), None, &device)?;
    print_summary(&summary, a.out);
    Ok(())
}

/// The line a finished run prints.
pub fn print_summary(summary: &RunSummary, out: &Path) {
    let generator = out.join("generator.safetensors");
    println!(
        "trained to {:.1} kimg ({} steps) in {}{}{}",
        summary.images as f64 / 1000.0,
        summary.steps,
        out.display(),
        if generator.exists() {
            format!("; generator: {}", generator.display())
        } else {
            String::new()
        },
        if summary.last_scores.is_empty() {
            String::new()
        } else {
            format!(
                "; {}",
                summary
                    .last_scores
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
}

/// Trains (or resumes) `cfg` in `out` on `data`, scored at every eval interval when
/// given `scoring`, starting from the generator `init_generator` when given.
pub fn train_config(
    data: &DataArgs,
    cfg: &TrainingConfig,
    out: &Path,
    restart: bool,
    scoring: Option<&mut Scoring>,
    init_generator: Option<&Path>,
    device: &Device,
) -> Result<RunSummary> {
    let Sources {
        train: mut real,
        reference: mut reference_source,
        has_classes,
        id: data_id,
        unlabelled,
    } = sources(data, cfg)?;
    if cfg.model.conditional && !has_classes {
        return Err(Error::invalid(
            "model.conditional needs class labels: --objects, or --data with classes.json (or --set model.conditional=false)",
        ));
    }
    let mut inputs = vec![("data".to_string(), data_id)];
    if let Some(s) = &scoring {
        inputs.push(("--extractor".into(), s.fingerprint.clone()));
    }
    if let Some(g) = init_generator {
        inputs.push(("--init-generator".into(), labelgan_core::record::fingerprint_path(g)?));
    }
    if !cfg.labels.inferred.is_empty() {
        let path = Path::new(&cfg.labels.inferred);
        inputs.push(("labels.inferred".into(), labelgan_core::record::fingerprint_path(path)?));
    }
    let opts = RunOptions {
        out,
        restart,
        inputs,
        init_generator,
    };
    let Some(scoring) = scoring else {
        return train_run(cfg, &opts, &mut real, None, device);
    };
    // Reference features: the held-out stream (or, for a folder, its own images, read
    // through the same shuffled order), extracted at the first score, once the run's
    // record has been checked.
    let n = cfg.eval.images;
    let key = (cfg.model.resolution, n);
    let mut scorer = |t: &Trainer| -> Result<Vec<(String, f64)>> {
        let Scoring {
            extractor, reference, ..
        } = &mut *scoring;
        let reference = match reference.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut images =
                    |s: usize, k: usize| -> Result<Tensor> { Ok(reference_source(s as u64, k)?.0.to_device(device)?) };
                e.insert(extract(extractor, n, 50, "reference features", &mut images)?.0)
            }
        };
        let mut scores = score_average(t, extractor, reference, n, device)?;
        if let Some((x, truth)) = &unlabelled {
            scores.extend(inferred_accuracy(t, x, truth)?.map(|a| ("inferred_accuracy".to_string(), a)));
        }
        Ok(scores)
    };
    train_run(cfg, &opts, &mut real, Some(&mut scorer), device)
}
