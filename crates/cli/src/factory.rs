//! `labelgan factory`: a generator and a few labelled images in, a filtered labelled
//! synthetic dataset out (HandsOff; or DatasetGAN with latents of labelled generated
//! images). Resumable: fitted labelers are kept in OUT/labelers and the dataset
//! continues where it stopped.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Inverter, Progress, Result, Shard};
use labelgan_dataset::{ClassLabels, LabelledSet, load_dataset};
use labelgan_factory::{
    FactoryConfig, FactoryEvent, FactoryRun, FitOptions, PriorCalibration, Refinement, candidate_class, check_latents,
    clear_run, copy_labelers, run_factory,
};
use labelgan_gan::load_generator;
use labelgan_inversion::{ClassMeanInverter, Encoder, MeanInverter};
use labelgan_labeler::Precision;
use labelgan_lpips::Lpips;

use crate::device::DeviceArg;
use crate::values;
use labelgan_core::io::check_output;
use labelgan_core::record::fingerprint_path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Labelled real images, inverted into the generator (`--encoder`, refinement).
    Handsoff,
    /// Labelled generated images whose latents are in `--latents`.
    Datasetgan,
}

/// Make a labelled synthetic dataset from a generator and a few labelled images.
#[derive(Debug, Args)]
pub struct FactoryArgs {
    /// A StyleGAN2 or an exported Compare GAN generator (conditional ones write a
    /// class-labelled dataset: `class` in the manifest, `classes.json`).
    #[arg(long, value_name = "G.safetensors")]
    generator: PathBuf,
    /// Labelled images: DIR/images/*.png with DIR/masks/ (class ids), DIR/depth/
    /// (16-bit) and/or DIR/keypoints.json, matched by file name. For a conditional
    /// generator without --encoder, DIR/classes.json too: HandsOff starts each image's
    /// inversion at its class's mean latent.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// For a conditional generator: every image of class K (default: classes in turn).
    #[arg(long, value_name = "K")]
    class: Option<u32>,
    /// Make only this machine's share of the dataset (its own resumable folder; join
    /// the N folders with `labelgan merge`). `docs/scaling.md`.
    #[arg(long, value_name = "K/N", conflicts_with = "shards")]
    shard: Option<Shard>,
    /// As --shard, with K from the cluster scheduler's 0-based array index
    /// (JOB_COMPLETION_INDEX of a Kubernetes Indexed Job, SLURM_ARRAY_TASK_ID).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Label with these fitted labelers (the `labelers/` folder of a run with
    /// --count 0), copied into OUT/labelers, instead of fitting them here.
    #[arg(long, value_name = "DIR")]
    labelers: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Method::Handsoff)]
    method: Method,
    /// HandsOff: the inversion encoder (default: start from w_avg).
    #[arg(long, value_name = "E.safetensors")]
    encoder: Option<PathBuf>,
    /// HandsOff: perceptual backbone for the refinement's LPIPS.
    #[arg(long, value_name = "P.safetensors")]
    perceptual: Option<PathBuf>,
    /// HandsOff: projector steps after the encoder (0: none).
    #[arg(long, default_value_t = 0)]
    refine_steps: usize,
    /// DatasetGAN: `ws` [N, num_ws, w_dim] of the labelled images, in file-name order
    /// (`labelgan generate --out` writes them).
    #[arg(long, value_name = "L.safetensors")]
    latents: Option<PathBuf>,
    /// Output folder (resumed if it holds a run with the same settings and inputs;
    /// any difference is refused, naming it).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Start over: remove what an earlier run wrote into --out (its images, labels,
    /// labelers, manifest and record; nothing else) before running.
    #[arg(long)]
    restart: bool,
    /// Images to write.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0, value_parser = values::finite)]
    psi: f64,
    /// Fraction of each block of candidates dropped as most uncertain.
    #[arg(long, default_value_t = 0.1, value_parser = values::fraction)]
    filter: f64,
    #[arg(long, default_value_t = 50)]
    block: usize,
    /// Segmentation classes (default: the largest id in the masks + 1).
    #[arg(long)]
    classes: Option<usize>,
    /// Mask id of unlabelled pixels: never fitted, not a class (`none`: every id is a
    /// class).
    #[arg(long, default_value = "255", value_parser = values::ignore_index)]
    ignore_index: values::IgnoreIndex,
    /// Ensemble members per labeler.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Pixels sampled per labelled image to fit the labelers.
    #[arg(long, default_value_t = 20_000)]
    pixels_per_image: usize,
    #[arg(long, default_value_t = 20)]
    max_epochs: usize,
    /// Memory for the labelers' training rows (f16) gathered at a time, in MB (images
    /// are fitted in groups that fit, one image at least; a 512 px fit peaks at about
    /// 1.5 GB plus the rows: 1.9 GB with the default).
    #[arg(long, default_value_t = labelgan_labeler::config::DEFAULT_FEATURE_BUDGET_MB)]
    feature_budget_mb: usize,
    /// Keypoint heatmap std in pixels.
    #[arg(long, default_value_t = 2.0, value_parser = values::positive_f32)]
    sigma: f32,
    /// Class-prior calibration of the segmentation labeler, in rounds (0: off): its
    /// class logits are shifted so that each class covers as large a share of
    /// generated images' pixels as of the labelled masks (`docs/factory.md`).
    #[arg(long, default_value_t = 12)]
    calibrate_rounds: usize,
    /// Generated images the calibration measures the class shares on.
    #[arg(long, default_value_t = 64)]
    calibrate_images: usize,
    /// The labelers' first-layer arithmetic while labelling: f32, or bf16 (features and
    /// weights rounded to bf16, sums in f32) on Intel AMX's tiles where the CPU has
    /// them, labelling in about two thirds of the f32 time (docs/performance.md: the
    /// figures, and how labels change).
    #[arg(long, default_value_t = Precision::F32)]
    precision: Precision,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: FactoryArgs) -> Result<()> {
    let shard = match (a.shard, a.shards) {
        (Some(s), _) => Some(s),
        (None, Some(n)) => Some(Shard::from_scheduler(n, |v| std::env::var(v).ok())?),
        (None, None) => None,
    };
    let mut inputs = vec![("--generator", a.generator.as_path()), ("--data", a.data.as_path())];
    inputs.extend(a.labelers.as_deref().map(|p| ("--labelers", p)));
    inputs.extend(a.encoder.as_deref().map(|p| ("--encoder", p)));
    inputs.extend(a.perceptual.as_deref().map(|p| ("--perceptual", p)));
    inputs.extend(a.latents.as_deref().map(|p| ("--latents", p)));
    check_output(("--out", &a.out), &inputs)?;
    // Every setting and flag combination is checked before anything is loaded or
    // written.
    match (a.method, &a.latents, &a.encoder) {
        (Method::Datasetgan, None, _) => return Err(Error::usage("--method datasetgan needs --latents L.safetensors")),
        (Method::Datasetgan, _, Some(_)) => {
            return Err(Error::usage(
                "--encoder is for --method handsoff; DatasetGAN reads --latents",
            ));
        }
        (Method::Handsoff, Some(_), _) => return Err(Error::usage("--latents is for --method datasetgan")),
        _ => {}
    }
    if a.refine_steps > 0 && a.perceptual.is_none() {
        return Err(Error::usage("--refine-steps needs --perceptual P.safetensors"));
    }
    let mut run = FactoryRun {
        fit: FitOptions {
            classes: a.classes,
            members: a.members,
            pixels_per_image: a.pixels_per_image,
            max_epochs: a.max_epochs,
            sigma: a.sigma,
            seed: a.seed,
            ignore_index: a.ignore_index.0,
            feature_budget_mb: a.feature_budget_mb,
        },
        calibration: PriorCalibration {
            images: a.calibrate_images,
            rounds: a.calibrate_rounds,
            ..PriorCalibration::default()
        },
        dataset: FactoryConfig {
            count: a.count,
            seed: a.seed,
            psi: a.psi,
            filter_fraction: a.filter,
            block: a.block,
            class: a.class,
            shard,
            precision: a.precision,
            ..FactoryConfig::default()
        },
        inputs: Default::default(),
    };
    run.validate().map_err(Error::into_usage)?;
    // Inputs the library cannot fingerprint itself: the inverter's and LPIPS's files.
    for (name, path) in [("encoder", &a.encoder), ("perceptual", &a.perceptual)] {
        if let Some(p) = path.as_ref().filter(|_| a.method == Method::Handsoff) {
            run.inputs.insert(name.to_string(), fingerprint_path(p)?);
        }
    }
    if a.restart {
        clear_run(&a.out)?;
    }
    if let Some(dir) = &a.labelers {
        copy_labelers(dir, &a.out)?;
    }
    let device = a.device.open()?;
    let started = Instant::now();
    let loaded = load_generator(&a.generator, &device)?;
    let g = loaded.as_ref();
    candidate_class(&g, a.class, 0).map_err(|e| Error::usage(format!("--class: {e}")))?;
    let r = g.spec().resolution;
    let set = load_dataset(&a.data, r, None)?;
    if set.targets.is_empty() {
        return Err(Error::invalid(format!(
            "{} has no labels: expected masks/, depth/ or keypoints.json beside images/",
            a.data.display()
        )));
    }
    let encoder = match &a.encoder {
        Some(p) => {
            let e = Encoder::load(p, &device)?;
            e.check_generator(&g)?;
            Some(e)
        }
        None => None,
    };
    let lpips = match (&a.perceptual, a.refine_steps) {
        (Some(p), n) if n > 0 => Some(Lpips::load(p, &device)?),
        _ => None,
    };
    // Without an encoder: the mean latent, of each image's class for a conditional
    // generator.
    let mean: Option<Box<dyn Inverter>> = match (a.method, &encoder) {
        (Method::Handsoff, None) if g.spec().c_dim > 0 => Some(Box::new(ClassMeanInverter::new(
            &g,
            &classes_of(&a.data, &set)?,
            CLASS_MEAN_SAMPLES,
            a.seed,
        )?)),
        (Method::Handsoff, None) => Some(Box::new(MeanInverter::new(&g)?)),
        _ => None,
    };
    let method = match (a.method, &a.latents) {
        (Method::Datasetgan, Some(path)) => {
            let ws = TensorFile::load(path, &device)?.get("ws")?.clone();
            // Named by file here; the library checks again, naming the role.
            check_latents(&g, &ws, set.len(), "`ws`").map_err(|e| Error::format(path, e.to_string()))?;
            labelgan_factory::Method::DatasetGan { ws }
        }
        _ => labelgan_factory::Method::HandsOff {
            inverter: encoder
                .as_ref()
                .map(|e| e as &dyn Inverter)
                .or(mean.as_deref())
                .ok_or_else(|| Error::invalid("internal: HandsOff without an inverter"))?,
            refine: lpips.as_ref().map(|l| Refinement::new(l, a.refine_steps)),
        },
    };
    let out = run_factory(&g, &method, &set, &run, &a.out, &mut print_events("generating"))?;
    labelgan_core::stop::check(&format!(
        "{} images{} are in {}; rerun the same command to resume",
        out.images,
        shard.map_or(format!(" of {}", a.count), |s| format!(" of shard {s}")),
        a.out.display()
    ))?;
    let mut line = serde_json::json!({"images": out.images, "out": a.out.display().to_string(), "seconds": started.elapsed().as_secs_f64()});
    if let Some(s) = shard {
        line["shard"] = s.to_string().into();
    }
    println!("{line}");
    Ok(())
}

/// Latents averaged per class for the class-mean inversion.
const CLASS_MEAN_SAMPLES: usize = 1000;

/// The classes of `set`'s images (in its order) from `data/classes.json`.
fn classes_of(data: &std::path::Path, set: &LabelledSet) -> Result<Vec<u32>> {
    let labels = ClassLabels::read(data)?.ok_or_else(|| {
        Error::usage(format!(
            "{}: no classes.json; a conditional generator's HandsOff inversion starts each image at its class's mean latent (or give --encoder)",
            data.display()
        ))
    })?;
    labels.classes_of(data, &set.names)
}

/// Moves the bar over `count` images (made on first use) to `done`, finishing it there.
pub fn show_images(bar: &mut Option<Progress>, label: &str, done: usize, count: usize) {
    let b = bar.get_or_insert_with(|| Progress::new(count as u64, label, "images"));
    b.set(done as u64);
    if done == count {
        b.finish();
    }
}

/// Prints a factory run's log lines and a progress bar over the images it writes; stops
/// the run after the image at hand when a stop was requested (SIGINT/SIGTERM).
pub fn print_events(label: &str) -> impl FnMut(FactoryEvent<'_>) -> bool {
    let label = label.to_string();
    let mut bar: Option<Progress> = None;
    move |e| {
        match e {
            FactoryEvent::Log(l) => eprintln!("{l}"),
            FactoryEvent::Written(p) => show_images(&mut bar, &label, p.written, p.count),
        }
        !labelgan_core::stop::requested()
    }
}
