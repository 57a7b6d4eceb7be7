//! `labelgan factory`: a generator and a few labelled images in, a filtered labelled
//! synthetic dataset out (HandsOff; or DatasetGAN with latents of labelled generated
//! images). Resumable: fitted labelers are kept in OUT/labelers and the dataset
//! continues where it stopped.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Generator, Inverter, Result};
use labelgan_eval::load_dataset;
use labelgan_factory::pipeline::{
    FactoryConfig, FitOptions, PriorCalibration, calibrate_segmentation, fit_labelers, generate_dataset,
};
use labelgan_inversion::{Encoder, LatentSpace, MeanInverter, ProjectorConfig, project_in_batches};
use labelgan_lpips::Lpips;
use labelgan_stylegan::StyleGan2;

use crate::device::DeviceArg;

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
    #[arg(long, value_name = "G.safetensors")]
    generator: PathBuf,
    /// Labelled images: DIR/images/*.png with DIR/masks/ (class ids), DIR/depth/
    /// (16-bit) and/or DIR/keypoints.json, matched by file name.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
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
    /// Output folder (resumed if it holds an unfinished run).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Images to write.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1.0)]
    psi: f64,
    /// Fraction of each block of candidates dropped as most uncertain.
    #[arg(long, default_value_t = 0.1)]
    filter: f64,
    #[arg(long, default_value_t = 50)]
    block: usize,
    /// Segmentation classes (default: the largest id in the masks + 1).
    #[arg(long)]
    classes: Option<usize>,
    /// Ensemble members per labeler.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Pixels sampled per labelled image to fit the labelers.
    #[arg(long, default_value_t = 20_000)]
    pixels_per_image: usize,
    #[arg(long, default_value_t = 20)]
    max_epochs: usize,
    /// Keypoint heatmap std in pixels.
    #[arg(long, default_value_t = 2.0)]
    sigma: f32,
    /// Class-prior calibration of the segmentation labeler, in rounds (0: off): its
    /// class logits are shifted so that each class covers as large a share of
    /// generated images' pixels as of the labelled masks (`docs/factory.md`).
    #[arg(long, default_value_t = 12)]
    calibrate_rounds: usize,
    /// Generated images the calibration measures the class shares on.
    #[arg(long, default_value_t = 64)]
    calibrate_images: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

fn latents(a: &FactoryArgs, g: &StyleGan2, images: &Tensor, device: &Device) -> Result<Tensor> {
    match a.method {
        Method::Datasetgan => {
            let path = a
                .latents
                .as_ref()
                .ok_or_else(|| Error::invalid("--method datasetgan needs --latents L.safetensors"))?;
            let ws = TensorFile::load(path, device)?.get("ws")?.clone();
            let s = g.spec();
            if ws.dims() != [images.dim(0)?, s.num_ws, s.w_dim] {
                return Err(Error::format(
                    path,
                    format!(
                        "`ws` is {:?}; expected [{}, {}, {}] for the labelled images",
                        ws.dims(),
                        images.dim(0)?,
                        s.num_ws,
                        s.w_dim
                    ),
                ));
            }
            Ok(ws)
        }
        Method::Handsoff => {
            let init = match &a.encoder {
                Some(p) => {
                    let e = Encoder::load(p, device)?;
                    e.check_generator(g)?;
                    e.invert(images)?
                }
                None => MeanInverter::new(g)?.invert(images)?,
            };
            if a.refine_steps == 0 {
                return Ok(init);
            }
            let lp = a
                .perceptual
                .as_ref()
                .ok_or_else(|| Error::invalid("--refine-steps needs --perceptual P.safetensors"))?;
            let lp = Lpips::load(lp, device)?;
            let cfg = ProjectorConfig {
                steps: a.refine_steps,
                space: LatentSpace::WPlus,
                ..ProjectorConfig::default()
            };
            project_in_batches(g, Some(&lp), images, &init, &cfg, 8, &mut |done, n| {
                eprintln!("refined {done}/{n} inversions")
            })
        }
    }
}

pub fn run(a: FactoryArgs) -> Result<()> {
    let device = a.device.open()?;
    let started = Instant::now();
    let g = StyleGan2::load(&a.generator, &device)?;
    let r = g.spec().resolution;
    let set = load_dataset(&a.data, r, None)?;
    let t = &set.targets;
    if t.masks.is_none() && t.keypoints.is_none() && t.depth.is_none() {
        return Err(Error::invalid(format!(
            "{} has no labels: expected masks/, depth/ or keypoints.json beside images/",
            a.data.display()
        )));
    }
    let images = set.images.to_device(&device)?;
    let options = FitOptions {
        classes: a.classes,
        members: a.members,
        pixels_per_image: a.pixels_per_image,
        max_epochs: a.max_epochs,
        sigma: a.sigma,
        seed: a.seed,
    };
    let mut labelers = fit_labelers(
        &g,
        t,
        &options,
        Some(&a.out.join("labelers")),
        &mut || {
            eprintln!("inverting {} labelled images ({:?})", set.names.len(), a.method);
            latents(&a, &g, &images, &device)
        },
        &mut |l| eprintln!("{l}"),
    )?;
    if let Some(masks) = &t.masks {
        let calibration = PriorCalibration {
            images: a.calibrate_images,
            rounds: a.calibrate_rounds,
            seed: a.seed,
            psi: a.psi,
            ..PriorCalibration::default()
        };
        let cache = a.out.join("labelers");
        if let Some(rep) = calibrate_segmentation(&g, &mut labelers, masks, &calibration, Some(&cache), &mut |l| {
            eprintln!("{l}")
        })? {
            eprintln!("{}", rep.summary());
        }
    }
    let cfg = FactoryConfig {
        count: a.count,
        seed: a.seed,
        psi: a.psi,
        filter_fraction: a.filter,
        block: a.block,
        ..FactoryConfig::default()
    };
    let mut last = Instant::now();
    let n = generate_dataset(&g, &labelers, &cfg, &a.out, &mut |p| {
        if last.elapsed().as_secs_f64() >= 2.0 || p.written == p.count {
            last = Instant::now();
            let width = 30;
            let filled = width * p.written / p.count.max(1);
            eprintln!(
                "[{}{}] {}/{} images | {:.2} img/s | ETA {:.0} s",
                "#".repeat(filled),
                "-".repeat(width - filled),
                p.written,
                p.count,
                p.rate,
                p.eta_seconds
            );
        }
        true
    })?;
    println!(
        "{}",
        serde_json::json!({"images": n, "out": a.out.display().to_string(), "seconds": started.elapsed().as_secs_f64()})
    );
    Ok(())
}
