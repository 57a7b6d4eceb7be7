//! Bring your own GAN: a small generator that is not StyleGAN (a linear stem and two
//! upsampling convolutions, written here with candle), implemented behind labelgan's
//! `Generator` trait, with a trivial `Inverter` of its own (the nearest of a bank of
//! its samples), run through HandsOff fitting on 12 labelled images and through the
//! factory into a dataset folder. It uses `labelgan::prelude` only, as a crate outside
//! the workspace would.
//!
//! The "real" labelled images are samples of the generator whose latents are then
//! forgotten; their ground truth is a rule on the pixels (class 1 where red exceeds
//! green). The labeler never sees the rule, only 12 masks, and is scored on the
//! images the factory generated afterwards.
//!
//! ```text
//! cargo run --release --example custom_generator [-- --out DIR]
//! ```
//! The last line printed is JSON: `images`, `pixel_accuracy` (the factory's masks
//! against the rule on its images), `majority_class` (the accuracy of always answering
//! the commoner class), `out`.

use std::path::PathBuf;

use labelgan::prelude::*;

const RES: usize = 16;
const Z: usize = 8;

/// The custom generator: z (= w) -> Linear -> 16x4x4 -> up -> conv 3x3 -> ReLU (tap
/// `up8`) -> up -> conv 3x3 -> ReLU (tap `up16`) -> conv 1x1 -> tanh (the image).
struct TinyGan {
    spec: GeneratorSpec,
    w_avg: Tensor,
    stem: (Tensor, Tensor),
    convs: [(Tensor, Tensor); 3],
}

impl TinyGan {
    fn new(seed: u64) -> Result<Self> {
        let mut rng = SplitMix64::new(seed);
        let dev = Device::Cpu;
        let mut param = |shape: &[usize], fan_in: usize| -> Result<Tensor> {
            Ok((rng.normal_tensor(shape, &dev)? / (fan_in as f64).sqrt())?)
        };
        let conv = |p: &mut dyn FnMut(&[usize], usize) -> Result<Tensor>, o: usize, i: usize, k: usize| {
            Ok::<_, Error>((p(&[o, i, k, k], i * k * k)?, (p(&[1, o, 1, 1], 1)? * 0.1)?))
        };
        let stem = (
            param(&[Z, 16 * 4 * 4], Z)?,
            Tensor::zeros(16 * 4 * 4, DType::F32, &dev)?,
        );
        let convs = [
            conv(&mut param, 16, 16, 3)?,
            conv(&mut param, 8, 16, 3)?,
            conv(&mut param, 3, 8, 1)?,
        ];
        let spec = GeneratorSpec {
            z_dim: Z,
            c_dim: 0,
            w_dim: Z,
            num_ws: 1,
            resolution: RES,
            img_channels: 3,
            taps: vec![
                TapSpec::feature("up8", 8, 16),
                TapSpec::feature("up16", 16, 8),
                TapSpec {
                    role: TapRole::Output,
                    ..TapSpec::feature("rgb", 16, 3)
                },
            ],
        };
        Ok(Self {
            spec,
            w_avg: Tensor::zeros(Z, DType::F32, &dev)?,
            stem,
            convs,
        })
    }
}

impl Generator for TinyGan {
    fn spec(&self) -> &GeneratorSpec {
        &self.spec
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
    fn w_avg(&self) -> Option<&Tensor> {
        Some(&self.w_avg)
    }
    /// No mapping network: w is z, truncated toward 0.
    fn map(&self, z: &Tensor, _c: Option<&Tensor>, t: Truncation) -> Result<Tensor> {
        t.apply(&z.unsqueeze(1)?, &self.w_avg)
    }
    fn synthesize(&self, ws: &Tensor, _noise: NoiseMode) -> Result<Synthesis> {
        let n = ws.dim(0)?;
        let x = ws.squeeze(1)?.matmul(&self.stem.0)?.broadcast_add(&self.stem.1)?;
        let x = x.reshape((n, 16, 4, 4))?;
        let conv = |x: &Tensor, (w, b): &(Tensor, Tensor)| -> Result<Tensor> {
            let pad = w.dim(3)? / 2;
            Ok(x.conv2d(w, pad, 1, 1, 1)?.broadcast_add(b)?)
        };
        let up8 = conv(&x.upsample_nearest2d(8, 8)?, &self.convs[0])?.relu()?;
        let up16 = conv(&up8.upsample_nearest2d(16, 16)?, &self.convs[1])?.relu()?;
        let rgb = conv(&up16, &self.convs[2])?;
        let mut taps = FeatureTaps::new();
        taps.push(Tap::new("up8", up8)?)?;
        taps.push(Tap::new("up16", up16)?)?;
        taps.push(Tap::with_role("rgb", rgb.clone(), TapRole::Output)?)?;
        Ok(Synthesis {
            image: rgb.tanh()?,
            taps,
        })
    }
}

/// A trivial inverter: the latent of the nearest (in pixels) of a bank of samples.
struct NearestSample {
    ws: Tensor,
    images: Tensor,
}

impl NearestSample {
    fn new(g: &TinyGan, bank: usize, seed: u64) -> Result<Self> {
        let ws = g.map(&g.sample_z(bank, seed)?, None, Truncation::NONE)?;
        let images = g.image(&ws, NoiseMode::Const)?.flatten_from(1)?;
        Ok(Self { ws, images })
    }
}

impl Inverter for NearestSample {
    fn invert(&self, images: &Tensor) -> Result<Tensor> {
        let x = images.flatten_from(1)?;
        // |x - b|^2 up to |x|^2, which does not change the nearest.
        let d = self
            .images
            .sqr()?
            .sum(1)?
            .unsqueeze(0)?
            .broadcast_sub(&(x.matmul(&self.images.t()?)? * 2.0)?)?;
        Ok(self.ws.index_select(&d.argmin(1)?, 0)?)
    }
}

/// The ground truth: class 1 where red exceeds green.
fn rule(images: &Tensor) -> Result<Vec<Vec<u32>>> {
    let red_minus_green = (images.narrow(1, 0, 1)? - images.narrow(1, 1, 1)?)?.flatten_from(1)?;
    Ok(red_minus_green
        .to_vec2::<f32>()?
        .into_iter()
        .map(|v| v.into_iter().map(|d| u32::from(d > 0.0)).collect())
        .collect())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map_or_else(|| PathBuf::from("out/custom_generator"), PathBuf::from);
    let g = TinyGan::new(7)?;

    // 12 "real" labelled images: samples whose latents are forgotten.
    let real = g.image(&g.map(&g.sample_z(12, 1)?, None, Truncation::NONE)?, NoiseMode::Const)?;
    let masks = rule(&real)?;
    let labelled = LabelledSet {
        images: real,
        targets: Targets {
            masks: Some(masks),
            ..Targets::default()
        },
        names: (0..12).map(|i| format!("{i:02}.png")).collect(),
    };

    // HandsOff: invert (nearest sample, then 150 pixel-loss projector steps), fit,
    // calibrate, generate 64 images.
    let inverter = NearestSample::new(&g, 512, 2)?;
    let refine = Refinement {
        lpips: None,
        config: ProjectorConfig {
            steps: 150,
            lr: 0.05,
            lpips_weight: 0.0,
            reg_weight: 0.01,
            ..ProjectorConfig::default()
        },
        batch: 12,
    };
    let run = FactoryRun {
        fit: FitOptions {
            members: 4,
            pixels_per_image: RES * RES,
            ..FitOptions::default()
        },
        dataset: FactoryConfig {
            count: 64,
            block: 16,
            ..FactoryConfig::default()
        },
        ..FactoryRun::default()
    };
    let method = Method::HandsOff {
        inverter: &inverter,
        refine: Some(refine),
    };
    let made = run_factory(&g, &method, &labelled, &run, &out, &mut |e| {
        if let FactoryEvent::Log(l) = e {
            eprintln!("{l}");
        }
        true
    })?;

    // Score the factory's masks against the rule on the images it wrote.
    let set = load_dataset(&out, RES, None)?;
    let truth = rule(&set.images)?;
    let predicted = set
        .targets
        .masks
        .as_ref()
        .ok_or_else(|| Error::invalid("no masks written"))?;
    let (mut right, mut ones, mut all) = (0usize, 0usize, 0usize);
    for (t, p) in truth.iter().zip(predicted) {
        right += t.iter().zip(p).filter(|(a, b)| a == b).count();
        ones += t.iter().filter(|&&c| c == 1).count();
        all += t.len();
    }
    let majority = ones.max(all - ones) as f64 / all.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "images": made.images,
            "pixel_accuracy": right as f64 / all.max(1) as f64,
            "majority_class": majority,
            "out": out.display().to_string(),
        })
    );
    Ok(())
}
