//! `labelgan generate`: latents in (or sampled from a seed), images and ws out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use labelgan_core::image_io::{contact_sheet, save_png, tensor_to_images};
use labelgan_core::io::TensorFile;
use labelgan_core::safetensors_stream::SafetensorsStream;
use labelgan_core::{Error, Generator, NoiseMode, Progress, Result, Truncation};
use labelgan_dataset::{ClassLabel, ClassLabels};
use labelgan_factory::candidate_class;
use labelgan_gan::load_generator;

use crate::device::DeviceArg;
use crate::values;
use labelgan_core::io::check_output;

/// Images shown on the contact sheet at most.
const SHEET_MAX: usize = 64;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NoiseArg {
    /// The generator's stored noise buffers (reproducible).
    Const,
    /// Fresh Gaussian noise from `--noise-seed` (default: `--seed`).
    Random,
    /// No noise.
    None,
}

/// Generate images from a generator: StyleGAN2 (official layout) or one that
/// `labelgan train-gan` exported (`RUN/generator.safetensors`).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["latents", "count"])))]
pub struct GenerateArgs {
    /// Generator weights: StyleGAN2 (official G_ema layout) or a `train-gan` export.
    #[arg(long, value_name = "G.safetensors")]
    weights: PathBuf,
    /// Latents to render: `z` [N, z_dim] (plus `c` [N, c_dim] for a conditional
    /// model) or `ws` [N, num_ws, w_dim] (mapping and truncation skipped).
    #[arg(long, value_name = "IN.safetensors", conflicts_with_all = ["count", "seed"])]
    latents: Option<PathBuf>,
    /// Number of images to sample from `--seed`.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// Seed of the sampled latents (default 0).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// For a conditional generator with --count: every image of class K (default:
    /// classes in turn). The classes go to --out as `c` and to --png-dir as
    /// classes.json.
    #[arg(long, value_name = "K", conflicts_with = "latents")]
    class: Option<u32>,
    /// Write `ws` [N, num_ws, w_dim] and `img` [N, C, H, W] (raw f32 output) here.
    #[arg(long, value_name = "OUT.safetensors", required_unless_present = "png_dir")]
    out: Option<PathBuf>,
    /// Truncation psi (1 = none).
    #[arg(long, value_name = "P", default_value_t = 1.0, value_parser = values::finite)]
    truncation_psi: f64,
    /// Truncate only the first K ws.
    #[arg(long, value_name = "K")]
    truncation_cutoff: Option<usize>,
    /// Noise inputs.
    #[arg(long, value_enum, default_value_t = NoiseArg::Const)]
    noise: NoiseArg,
    /// Seed of `--noise random` (default: `--seed`, or 0).
    #[arg(long, value_name = "S")]
    noise_seed: Option<u64>,
    /// Also write 8-bit PNGs and a contact sheet into this folder.
    #[arg(long, value_name = "DIR")]
    png_dir: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, value_name = "B", default_value_t = 8)]
    batch_size: usize,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

/// Most images one command writes.
const MAX_COUNT: usize = 100_000_000;
/// Most images per forward pass.
const MAX_BATCH: usize = 4096;

/// What to render: z sampled batch by batch (with classes), given z (and c), or given ws.
enum Source {
    /// `n` latents from one stream, drawn as they are rendered (never all in memory),
    /// with class `class` or classes in turn for a conditional generator.
    Sampled {
        n: usize,
        rng: labelgan_core::SplitMix64,
        class: Option<u32>,
    },
    Z {
        z: Tensor,
        c: Option<Tensor>,
    },
    Ws(Tensor),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Sampled { n, .. } => *n,
            Source::Z { z, .. } => z.dims()[0],
            Source::Ws(ws) => ws.dims()[0],
        }
    }

    /// The classes of images `b0..b0 + len` of a conditional generator (`[len, c_dim]`
    /// one-hot), when the source knows them.
    fn classes(&self, g: &dyn Generator, b0: usize, len: usize) -> Result<Option<Tensor>> {
        let c_dim = g.spec().c_dim;
        match self {
            Source::Sampled { class, .. } if c_dim > 0 => {
                // Image i is made like the factory's candidate i.
                let ids = (b0..b0 + len)
                    .map(|i| {
                        candidate_class(g, *class, i as u64)?
                            .ok_or_else(|| Error::invalid("internal: a conditional generator without a class"))
                    })
                    .collect::<Result<Vec<u32>>>()?;
                Ok(Some(labelgan_core::one_hot(&ids, c_dim, g.device())?))
            }
            Source::Z { c, .. } => Ok(c.as_ref().map(|c| c.narrow(0, b0, len)).transpose()?),
            _ => Ok(None),
        }
    }

    /// Whether the images have classes: sampled from a conditional generator, or given
    /// with `c`.
    fn has_classes(&self, c_dim: usize) -> bool {
        match self {
            Source::Sampled { .. } => c_dim > 0,
            Source::Z { c, .. } => c.is_some(),
            Source::Ws(_) => false,
        }
    }

    /// The ws of images `b0..b0 + len` (called in order).
    fn ws(&mut self, g: &dyn Generator, b0: usize, len: usize, truncation: Truncation) -> Result<Tensor> {
        let c = self.classes(g, b0, len)?;
        match self {
            // The same stream as `Generator::sample_z(n, seed)`, drawn in pieces.
            Source::Sampled { rng, .. } => {
                let z = rng.normal_tensor(&[len, g.spec().z_dim], g.device())?;
                g.map(&z, c.as_ref(), truncation)
            }
            Source::Z { z, .. } => g.map(&z.narrow(0, b0, len)?, c.as_ref(), truncation),
            Source::Ws(ws) => Ok(ws.narrow(0, b0, len)?),
        }
    }
}

fn read_latents(path: &Path, g: &dyn Generator, device: &Device) -> Result<Source> {
    let f = TensorFile::load(path, device)?;
    let spec = g.spec();
    let f32 = |t: &Tensor| t.to_dtype(candle_core::DType::F32);
    if let Some(ws) = f.tensors.get("ws") {
        if f.contains("z") {
            return Err(Error::format(path, "holds both `z` and `ws`: keep one"));
        }
        let n = ws.dims().first().copied().unwrap_or(0);
        let ws = f.get_shaped("ws", &[n, spec.num_ws, spec.w_dim])?;
        return Ok(Source::Ws(ws));
    }
    let z = f.tensors.get("z").ok_or_else(|| {
        let msg = format!(
            "holds neither `z` [N, {}] nor `ws` [N, {}, {}] (found: {})",
            spec.z_dim,
            spec.num_ws,
            spec.w_dim,
            f.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        Error::format(path, msg)
    })?;
    let n = z.dims().first().copied().unwrap_or(0);
    let z = f.get_shaped("z", &[n, spec.z_dim])?;
    let c = match (spec.c_dim, f.tensors.get("c")) {
        (0, None) => None,
        (0, Some(_)) => return Err(Error::format(path, "holds `c`, but the generator is unconditional")),
        (d, Some(_)) => Some(f.get_shaped("c", &[n, d])?),
        (d, None) => {
            return Err(Error::MissingKey {
                file: path.into(),
                key: "c".into(),
                expected: Some(vec![n, d]),
            });
        }
    };
    Ok(Source::Z {
        z: f32(&z)?,
        c: c.map(|c| f32(&c)).transpose()?,
    })
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let mut inputs = vec![("--weights", a.weights.as_path())];
    inputs.extend(a.latents.as_deref().map(|p| ("--latents", p)));
    for (flag, out) in [("--out", &a.out), ("--png-dir", &a.png_dir)] {
        if let Some(out) = out {
            check_output((flag, out), &inputs)?;
        }
    }
    if !(1..=MAX_BATCH).contains(&a.batch_size) {
        return Err(Error::usage(format!("--batch-size must be in 1..={MAX_BATCH}")));
    }
    if a.count.is_some_and(|n| !(1..=MAX_COUNT).contains(&n)) {
        return Err(Error::usage(format!("--count must be in 1..={MAX_COUNT}")));
    }
    let device = a.device.open()?;
    let g = load_generator(&a.weights, &device)?;
    let g = g.as_ref();
    let spec = g.spec().clone();
    let truncation = Truncation {
        psi: a.truncation_psi,
        cutoff: a.truncation_cutoff,
    };
    if let Some(k) = a.truncation_cutoff
        && k > spec.num_ws
    {
        return Err(Error::usage(format!(
            "--truncation-cutoff {k} exceeds the generator's {} ws",
            spec.num_ws
        )));
    }
    let mut source = match (&a.latents, a.count) {
        (Some(p), _) => read_latents(p, g, &device)?,
        (None, Some(n)) => {
            match (a.class, spec.c_dim) {
                (Some(_), 0) => return Err(Error::usage("--class: the generator is unconditional")),
                (Some(k), c) if k as usize >= c => {
                    return Err(Error::usage(format!("--class {k}: the generator has classes 0..{c}")));
                }
                _ => {}
            }
            Source::Sampled {
                n,
                rng: labelgan_core::SplitMix64::new(a.seed.unwrap_or(0)),
                class: a.class,
            }
        }
        (None, None) => return Err(Error::invalid("give --latents or --count")),
    };
    if matches!(source, Source::Ws(_)) && !truncation.is_identity() {
        eprintln!("note: the latents are ws, so mapping and truncation are skipped");
    }
    let noise = match a.noise {
        NoiseArg::Const => NoiseMode::Const,
        NoiseArg::None => NoiseMode::None,
        NoiseArg::Random => NoiseMode::Random(a.noise_seed.or(a.seed).unwrap_or(0)),
    };
    if let Some(dir) = &a.png_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // A killed earlier run may have left `NAME.png.tmpPID` files.
        labelgan_core::io::remove_stale_temp_files(dir)?;
    }
    let n = source.len();
    let has_classes = source.has_classes(spec.c_dim);
    let mut labels = Vec::new();
    // `ws` and `img` stream to --out batch by batch (a million images would not fit in
    // memory); the file appears under its name only once complete.
    let mut stream = match &a.out {
        Some(out) => {
            let mut shapes = BTreeMap::from([
                ("ws".to_string(), vec![n, spec.num_ws, spec.w_dim]),
                (
                    "img".to_string(),
                    vec![n, spec.img_channels, spec.resolution, spec.resolution],
                ),
            ]);
            if has_classes {
                shapes.insert("c".to_string(), vec![n, spec.c_dim]);
            }
            let meta = BTreeMap::from([
                ("generator".to_string(), a.weights.display().to_string()),
                ("truncation_psi".to_string(), a.truncation_psi.to_string()),
                ("truncation_cutoff".to_string(), format!("{:?}", a.truncation_cutoff)),
                ("noise".to_string(), format!("{noise:?}")),
            ]);
            Some(SafetensorsStream::create(out, &shapes, &meta)?)
        }
        None => None,
    };
    let mut sheet = Vec::new();
    let start = Instant::now();
    let bar = Progress::new(n as u64, "generating", "images");
    for b0 in (0..n).step_by(a.batch_size) {
        // On SIGINT/SIGTERM: the PNGs written so far stay, --out (incomplete) is not
        // written.
        labelgan_core::stop::check(&format!("{b0} of {n} images rendered; --out not written"))?;
        let len = a.batch_size.min(n - b0);
        let ws = source.ws(g, b0, len, truncation)?;
        let classes = source.classes(g, b0, len)?;
        // A distinct noise draw per batch (the same for the same --batch-size).
        let noise = match noise {
            NoiseMode::Random(s) => NoiseMode::Random(labelgan_core::SplitMix64::derive(s, b0 as u64).next_u64()),
            m => m,
        };
        let img = g.image(&ws, noise)?.to_device(&Device::Cpu)?;
        if let Some(dir) = &a.png_dir {
            let ids = classes.as_ref().map(|c| c.argmax(1)?.to_vec1::<u32>()).transpose()?;
            for (k, im) in tensor_to_images(&img)?.into_iter().enumerate() {
                let file = format!("{:06}.png", b0 + k);
                save_png(&im, &dir.join(&file))?;
                if let Some(ids) = &ids {
                    labels.push(ClassLabel { file, class: ids[k] });
                }
                if sheet.len() < SHEET_MAX {
                    sheet.push(im);
                }
            }
        }
        if let Some(st) = stream.as_mut() {
            st.append("ws", &ws)?;
            st.append("img", &img)?;
            if let Some(c) = &classes {
                st.append("c", &c.to_dtype(candle_core::DType::F32)?)?;
            }
        }
        if n > a.batch_size {
            bar.inc(len as u64);
        }
    }
    bar.finish();
    if let Some(dir) = &a.png_dir {
        let cols = (sheet.len() as f64).sqrt().ceil() as usize;
        save_png(
            &contact_sheet(&sheet, cols, 2)?,
            &dir.join(labelgan_core::image_io::CONTACT_SHEET),
        )?;
        if has_classes {
            ClassLabels {
                classes: ClassLabels::numbered_names(spec.c_dim),
                images: labels,
            }
            .write(dir)?;
        }
    }
    if let Some(st) = stream {
        st.finish()?;
    }
    eprintln!(
        "wrote {n} images ({}x{}) in {:.2} s{}{}",
        spec.resolution,
        spec.resolution,
        start.elapsed().as_secs_f64(),
        a.out
            .as_ref()
            .map(|p| format!(", latents and images to {}", p.display()))
            .unwrap_or_default(),
        a.png_dir
            .as_ref()
            .map(|p| format!(", PNGs to {}", p.display()))
            .unwrap_or_default(),
    );
    Ok(())
}
