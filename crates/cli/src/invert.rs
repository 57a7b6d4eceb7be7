//! `labelgan invert`: real images to latents (w_avg, the encoder, and/or per-image
//! optimisation), with reconstructions, a contact sheet and a JSON summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use labelgan_core::image_io::{contact_sheet, file_names, image_files, load_images, save_png, tensor_to_images};
use labelgan_core::io::save_safetensors;
use labelgan_core::{Error, Generator, Inverter, NoiseMode, Result};
use labelgan_inversion::metrics::reconstruction;
use labelgan_inversion::{Encoder, LatentSpace, MeanInverter, ProjectorConfig, project};
use labelgan_lpips::Lpips;
use labelgan_stylegan::StyleGan2;

use crate::device::DeviceArg;
use labelgan_core::io::check_output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Every image from w_avg (the baseline).
    Mean,
    /// The trained encoder (`--encoder`).
    Encoder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Space {
    W,
    Wplus,
}

/// Invert a folder of images into a generator's latent space.
#[derive(Debug, Args)]
pub struct InvertArgs {
    #[arg(long, value_name = "G.safetensors")]
    generator: PathBuf,
    /// Folder of images (PNG/JPEG at the generator's resolution).
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Output folder: latents.safetensors, reconstructions/, sheet.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Method::Mean)]
    method: Method,
    #[arg(long, value_name = "E.safetensors")]
    encoder: Option<PathBuf>,
    /// Perceptual backbone for LPIPS (the refinement loss and the reported figure).
    #[arg(long, value_name = "P.safetensors")]
    perceptual: Option<PathBuf>,
    /// Per-image optimisation steps after the start (0: none).
    #[arg(long, default_value_t = 0)]
    refine_steps: usize,
    #[arg(long, value_enum, default_value_t = Space::Wplus)]
    space: Space,
    /// Images optimised together.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: InvertArgs) -> Result<()> {
    let mut inputs = vec![("--generator", a.generator.as_path()), ("--images", a.images.as_path())];
    inputs.extend(a.encoder.as_deref().map(|p| ("--encoder", p)));
    inputs.extend(a.perceptual.as_deref().map(|p| ("--perceptual", p)));
    check_output(("--out", &a.out), &inputs)?;
    let device = a.device.open()?;
    let g = StyleGan2::load(&a.generator, &device)?;
    let r = g.spec().resolution;
    let files = image_files(&a.images)?;
    let images = load_images(&files, r)?.to_device(&device)?;
    let lpips = a.perceptual.as_ref().map(|p| Lpips::load(p, &device)).transpose()?;
    if a.refine_steps > 0 && lpips.is_none() {
        eprintln!("note: no --perceptual: refining with MSE and the latent regulariser only");
    }
    let inverter: Box<dyn Inverter> = match a.method {
        Method::Mean => Box::new(MeanInverter::new(&g)?),
        Method::Encoder => {
            let path = a
                .encoder
                .as_ref()
                .ok_or_else(|| Error::invalid("--method encoder needs --encoder E.safetensors"))?;
            let e = Encoder::load(path, &device)?;
            e.check_generator(&g)?;
            Box::new(e)
        }
    };
    std::fs::create_dir_all(a.out.join("reconstructions")).map_err(|e| Error::io(&a.out, e))?;
    let started = Instant::now();
    let n = files.len();
    let mut all_ws = vec![];
    for s in (0..n).step_by(a.batch.max(1)) {
        let k = a.batch.max(1).min(n - s);
        let x = images.narrow(0, s, k)?;
        let mut ws = inverter.invert(&x)?;
        if a.refine_steps > 0 {
            let cfg = ProjectorConfig {
                steps: a.refine_steps,
                space: match a.space {
                    Space::W => LatentSpace::W,
                    Space::Wplus => LatentSpace::WPlus,
                },
                lpips_weight: if lpips.is_some() { 10.0 } else { 0.0 },
                ..ProjectorConfig::default()
            };
            let mut last = Instant::now();
            ws = project(&g, lpips.as_ref(), &x, &ws, &cfg, &mut |t, l| {
                if last.elapsed().as_secs_f64() >= 10.0 {
                    last = Instant::now();
                    eprintln!("images {}..{}: step {t}/{} loss {l:.4}", s, s + k, cfg.steps);
                }
            })?
            .ws;
        }
        all_ws.push(ws.detach());
        eprintln!(
            "inverted {}/{n} images ({:.1} s)",
            s + k,
            started.elapsed().as_secs_f64()
        );
    }
    let ws = Tensor::cat(&all_ws, 0)?;
    let seconds = started.elapsed().as_secs_f64();
    // Reconstructions with constant noise, as optimised.
    let mut recon = vec![];
    for s in (0..n).step_by(16) {
        recon.push(g.image(&ws.narrow(0, s, 16.min(n - s))?, NoiseMode::Const)?);
    }
    let recon = Tensor::cat(&recon, 0)?.clamp(-1f32, 1f32)?;
    let names = file_names(&files);
    let recon_imgs = tensor_to_images(&recon)?;
    for (img, name) in recon_imgs.iter().zip(&names) {
        let stem = std::path::Path::new(name).with_extension("png");
        save_png(img, &a.out.join("reconstructions").join(stem))?;
    }
    // Sheet: input and reconstruction side by side, four pairs per row.
    let inputs = tensor_to_images(&images)?;
    let pairs: Vec<_> = inputs.into_iter().zip(recon_imgs).flat_map(|(i, r)| [i, r]).collect();
    save_png(&contact_sheet(&pairs, 8, 2)?, &a.out.join("sheet.png"))?;
    let meta = BTreeMap::from([
        ("files".to_string(), serde_json::to_string(&names).unwrap_or_default()),
        ("generator".to_string(), a.generator.display().to_string()),
    ]);
    save_safetensors(
        a.out.join("latents.safetensors"),
        &BTreeMap::from([("ws".to_string(), ws.to_device(&Device::Cpu)?)]),
        &meta,
    )?;
    let m = reconstruction(&recon, &images, lpips.as_ref())?;
    let line = serde_json::json!({
        "images": n,
        "mse": m.mse,
        "psnr": m.psnr,
        "lpips": m.lpips,
        "s_per_image": seconds / n as f64,
    });
    println!("{line}");
    Ok(())
}
