//! `labelgan train-gan`: train a StyleGAN2 on a folder of images or on toyworld (its
//! flags), or any Compare GAN config (`--config`), in the one training loop of
//! `labelgan-gan`, with checkpoints, resume, progress, sample grids and a log.

use std::path::PathBuf;

use clap::Args;
use labelgan_core::io::check_output;
use labelgan_core::{Error, Result};
use labelgan_gan::{Architecture, Init, Loss, Penalty, TrainingConfig};

use crate::device::DeviceArg;
use crate::values;

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
    /// (G_ema, official layout), samples.png, log.jsonl, config.toml and run.json (the
    /// settings).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Start over: remove the checkpoint, generator, samples, log, scores and record in --out.
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

/// The StyleGAN2 run the flags describe, as a Compare GAN config (validated): the
/// non-saturating loss, lazy R1 every 16 D steps at weight `gamma / 2`, Adam (0, 0.99),
/// the StyleGAN2-ADA `auto` rules for gamma (`0.0002 r^2 / batch`) and the average's
/// half-life (`batch * 10 / 32` kimg, ramped up over 5 % of the images unless starting
/// from a trained generator), style mixing 0.9.
pub fn stylegan2_config(a: &TrainGanArgs, resolution: usize) -> Result<TrainingConfig> {
    let mut c = TrainingConfig {
        seed: a.seed,
        ..TrainingConfig::default()
    };
    let m = &mut c.model;
    m.architecture = Architecture::Stylegan2;
    (m.resolution, m.conditional, m.z_dim, m.init) = (resolution, false, a.z_dim, Init::Default);
    (m.g_width, m.d_width) = (a.channel_max, a.channel_max);
    let s = &mut m.stylegan2;
    (s.w_dim, s.mapping_layers) = (a.w_dim, a.mapping_layers);
    (s.g_channel_base, s.d_channel_base) = (a.channel_base, a.channel_base);
    let t = &mut c.train;
    let gamma = a
        .r1_gamma
        .unwrap_or(0.0002 * (resolution * resolution) as f64 / a.batch.max(1) as f64);
    (t.loss, t.penalty, t.penalty_weight, t.penalty_interval) = (Loss::NonSaturating, Penalty::R1, gamma / 2.0, 16);
    (t.batch, t.d_steps, t.g_lr, t.d_lr) = (a.batch, 1, a.g_lr.unwrap_or(a.lr), a.lr);
    (t.g_betas, t.d_betas) = ([0.0, 0.99], [0.0, 0.99]);
    (t.ema_decay, t.ema_half_life_kimg) = (0.0, a.batch as f64 * 10.0 / 32.0);
    // From a trained generator the average starts as it: no ramp-up from G's latest step.
    t.ema_rampup = if a.init_generator.is_some() { 0.0 } else { 0.05 };
    (t.g_warmup_steps, t.g_warmup_gap) = (a.g_warmup_steps, a.g_warmup_gap.unwrap_or(0.0));
    t.kimg = a.kimg;
    c.eval.every_kimg = a.snapshot_kimg;
    c.validate()?;
    Ok(c)
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
    // Every setting is checked before the folder is made or anything allocated.
    let cfg = stylegan2_config(&a, resolution).map_err(Error::into_usage)?;
    if a.toyworld {
        labelgan_toyworld::check_resolution(resolution).map_err(Error::into_usage)?;
    }
    let mut inputs = vec![];
    inputs.extend(a.data.as_deref().map(|p| ("--data", p)));
    inputs.extend(a.init_generator.as_deref().map(|p| ("--init-generator", p)));
    check_output(("--out", &a.out), &inputs)?;
    let data = crate::gan_run::DataArgs {
        data: a.data.as_deref(),
        objects: false,
        toyworld: a.toyworld,
        stream_seed: a.toyworld_seed,
    };
    let device = a.device.open()?;
    let summary = crate::gan_run::train_config(
        &data,
        &cfg,
        &a.out,
        a.restart,
        None,
        a.init_generator.as_deref(),
        &device,
    )?;
    crate::gan_run::print_summary(&summary, &a.out);
    Ok(())
}
