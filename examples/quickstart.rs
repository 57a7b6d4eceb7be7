//! The whole job on the built-in domain: 16 labelled toyworld faces -> HandsOff
//! (invert with the shipped encoder, refine each inversion with 300 projector steps,
//! fit the pixel labelers on the generator's features, generate and label a filtered
//! synthetic dataset) -> UNets trained on it ->
//! evaluated on 500 held-out toyworld faces, beside two baselines: the same UNets on
//! the 16 labelled images alone (flips and shifts), and on 2,000 real labelled images
//! (the upper bound). Also the pixel labeler's own mIoU on the test faces (inverted with
//! the encoder).
//!
//! ```text
//! cargo run --release --example quickstart            # default: within 15 minutes on 2 cores
//! cargo run --release --example quickstart -- --full  # larger and slower
//! ```
//!
//! Writes OUT (default `quickstart/`): `labelled/`, `synthetic/` (the dataset, previews,
//! contact sheet), `results.md`; the last line printed is one JSON object.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use clap::Parser;
use labelgan::core::{Generator, Inverter, NoiseMode, PixelLabeler};
use labelgan::eval::unet::{Flip, UNetPrediction};
use labelgan::eval::{
    Confusion, DepthError, LabelledSet, Pck, Targets, TrainJob, UNet, UNetConfig, concurrent_workers, load_dataset,
    train_concurrently,
};
use labelgan::factory::pipeline::{
    FactoryConfig, FitOptions, PriorCalibration, calibrate_segmentation, fit_labelers, generate_dataset,
};
use labelgan::inversion::{Encoder, ProjectorConfig, project_in_batches};
use labelgan::lpips::Lpips;
use labelgan::prelude::*;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "quickstart")]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The larger version: more synthetic images, longer UNet training.
    #[arg(long)]
    full: bool,
    #[arg(long, default_value = "assets/toy_generator.safetensors")]
    generator: PathBuf,
    #[arg(long, default_value = "assets/toy_encoder.safetensors")]
    encoder: PathBuf,
    /// Labelled real images.
    #[arg(long, default_value_t = 16)]
    labelled: usize,
    /// Held-out test images.
    #[arg(long, default_value_t = 500)]
    test: usize,
    /// Synthetic images (default 500, --full 2000).
    #[arg(long)]
    synthetic: Option<usize>,
    /// UNet steps per model, for all three heads (default: 1000 for segmentation and
    /// 300 for keypoints and depth, the lengths from which their scores stop moving much
    /// (`docs/factory.md`); --full 2000).
    #[arg(long)]
    unet_steps: Option<usize>,
    /// Real labelled images for the upper-bound UNets.
    #[arg(long, default_value_t = 2000)]
    real: usize,
    /// Pixels sampled per labelled image to fit the labelers (default a quarter of
    /// them, --full all).
    #[arg(long)]
    labeler_pixels: Option<usize>,
    /// Most labeler epochs (default 10, --full 20).
    #[arg(long)]
    labeler_epochs: Option<usize>,
    /// Truncation psi of the synthetic images (1: none; lower trades variety for
    /// images nearer the average face).
    #[arg(long, default_value_t = 1.0)]
    psi: f64,
    /// Fraction of each block of 50 synthetic candidates dropped as most uncertain.
    #[arg(long, default_value_t = 0.1)]
    filter: f64,
    /// Train and score only the UNets on synthetic images (for comparing HandsOff
    /// settings on one seed; the baseline rows and keys are left out).
    #[arg(long)]
    skip_baselines: bool,
    /// Refine the labelled faces' encoder inversions by this many projector steps
    /// (LPIPS + MSE in W+, `docs/inversion.md`; 300 steps take about 8 s a face on 2
    /// cores). 0: the encoder's inversions as they are.
    #[arg(long, default_value_t = 300)]
    refine_steps: usize,
    /// Perceptual backbone for the refinement's LPIPS.
    #[arg(long, default_value = "assets/toy_perceptual.safetensors")]
    perceptual: PathBuf,
    /// Class-prior calibration of the segmentation labeler, in rounds: its class logits
    /// are shifted so that each class covers as large a share of generated images'
    /// pixels as of the 16 labelled masks (`docs/factory.md`). 0: off, the published
    /// HandsOff labeler as fitted.
    #[arg(long, default_value_t = 12)]
    calibrate_rounds: usize,
    /// Also train UNets on the synthetic images plus the labelled faces repeated this
    /// many times (a row of its own; 0: no such row). Not part of the papers' protocol:
    /// what a user holding both would train on (8 is what `docs/factory.md` reports).
    /// Off by default: its three UNets add about a sixth to the run's time.
    #[arg(long, default_value_t = 0)]
    mix_repeat: usize,
}

const CLASSES: usize = 8;

fn unet_config(r: usize, head: usize, steps: usize, seed: u64) -> UNetConfig {
    UNetConfig {
        resolution: r,
        widths: labelgan::eval::default_widths(head == 0),
        classes: if head == 0 { CLASSES } else { 0 },
        keypoints: if head == 1 { 5 } else { 0 },
        depth: head == 2,
        sigma: 2.0,
        // With the cosine schedule and class-balanced loss: 2000-real mIoU 0.68 after
        // 400 steps against 0.29 at 1e-3 without them (200 test faces). Keypoints on 16
        // faces: PCK@0.1 0.84-0.92 at 3e-3 over three seeds, one of 0.35 at 1e-2.
        lr: if head == 1 { 3e-3 } else { 1e-2 },
        batch: 16,
        steps,
        seed,
        flip: Some(Flip::toyworld()),
        shift: 3,
        // 2000-real PCK@0.1 1.00 against 0.21 for heatmap regression (`KeypointLoss`).
        keypoint_loss: labelgan::eval::KeypointLoss::SpatialSoftmax,
    }
}

const HEADS: [&str; 3] = ["seg", "kp", "depth"];

/// The three UNets (segmentation, keypoints, depth) for each of `sets`, trained
/// `workers` at a time (each on one core), the longest first. `started` times the log.
fn train_unets(
    sets: &[(&str, &LabelledSet)],
    r: usize,
    steps: [usize; 3],
    seed: u64,
    workers: usize,
    started: Instant,
) -> Result<Vec<[UNet; 3]>> {
    let targets: Vec<[Targets; 3]> = sets
        .iter()
        .map(|(_, set)| {
            let t = &set.targets;
            [0, 1, 2].map(|head| Targets {
                masks: if head == 0 { t.masks.clone() } else { None },
                keypoints: if head == 1 { t.keypoints.clone() } else { None },
                depth: if head == 2 { t.depth.clone() } else { None },
            })
        })
        .collect();
    // (set, head), the longest first, so that the last to finish is a short one.
    let mut order: Vec<(usize, usize)> = (0..sets.len()).flat_map(|s| (0..3).map(move |h| (s, h))).collect();
    order.sort_by_key(|&(s, h)| (std::cmp::Reverse(steps[h]), h, s));
    let jobs = order
        .iter()
        .map(|&(s, h)| {
            Ok(TrainJob {
                unet: UNet::new(unet_config(r, h, steps[h], seed + h as u64), &Device::Cpu)?,
                images: &sets[s].1.images,
                targets: &targets[s][h],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let last = std::sync::Mutex::new(Instant::now());
    let trained = train_concurrently(jobs, workers, &|job, step, loss| {
        let (s, h) = order[job];
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if step == steps[h] {
            eprintln!(
                "  UNet[{}, {}] trained ({} steps, loss {loss:.4}) at {:.0} s",
                sets[s].0,
                HEADS[h],
                steps[h],
                started.elapsed().as_secs_f64()
            );
        } else if last.elapsed().as_secs_f64() > 15.0 {
            *last = Instant::now();
            eprintln!(
                "  UNet[{}, {}] step {step}/{} loss {loss:.4}",
                sets[s].0, HEADS[h], steps[h]
            );
        }
    })?;
    let mut out: Vec<[Option<UNet>; 3]> = sets.iter().map(|_| [None, None, None]).collect();
    for (&(s, h), u) in order.iter().zip(trained) {
        out[s][h] = Some(u);
    }
    out.into_iter()
        .map(|models| match models {
            [Some(a), Some(b), Some(c)] => Ok([a, b, c]),
            _ => Err(labelgan::core::Error::invalid("internal: a UNet is missing")),
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Scores {
    miou: f64,
    pck05: f64,
    pck10: f64,
    rmse: f64,
    abs_rel: f64,
}

/// Depth is scored on the face (true depth below the far plane).
fn score(models: &[UNet; 3], test: &LabelledSet, r: usize) -> Result<Scores> {
    let t = &test.targets;
    let p: Vec<Vec<UNetPrediction>> = models.iter().map(|m| m.predict(&test.images)).collect::<Result<_>>()?;
    let (mut c, mut k, mut d) = (Confusion::new(CLASSES), Pck::new(&[0.05, 0.1]), DepthError::default());
    let (masks, kps, depth) = (
        t.masks.as_ref().expect("masks"),
        t.keypoints.as_ref().expect("keypoints"),
        t.depth.as_ref().expect("depth"),
    );
    for (i, ((seg, kp), dp)) in p[0].iter().zip(&p[1]).zip(&p[2]).enumerate() {
        c.add(&masks[i], seg.classes.as_ref().expect("classes"))?;
        k.add(&kps[i], kp.keypoints.as_ref().expect("kp"), r)?;
        d.add_foreground(&depth[i], dp.depth.as_ref().expect("depth"))?;
    }
    let (pck, dr) = (k.report(), d.report());
    Ok(Scores {
        miou: c.report().miou,
        pck05: pck[0],
        pck10: pck[1],
        rmse: dr.rmse,
        abs_rel: dr.abs_rel,
    })
}

fn need(path: &Path, what: &str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(labelgan::core::Error::invalid(format!(
            "{} not found: the {what} (see docs/training.md and docs/inversion.md for the commands that make it)",
            path.display()
        )))
    }
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
    labelgan::core::heap::keep_freed_memory();
    let a = Args::parse();
    let started = Instant::now();
    need(&a.generator, "toy generator")?;
    need(&a.encoder, "toy encoder")?;
    if a.refine_steps > 0 {
        need(&a.perceptual, "perceptual backbone")?;
    }
    let dev = Device::Cpu;
    let g = StyleGan2::load(&a.generator, &dev)?;
    let enc = Encoder::load(&a.encoder, &dev)?;
    enc.check_generator(&g)?;
    let r = g.spec().resolution;
    let synthetic = a.synthetic.unwrap_or(if a.full { 2000 } else { 500 });
    // At 300 steps the segmentation UNets were short of converged, the one on 16 faces
    // most: on seed 0 it went 0.44 -> 0.69 mIoU from 300 to 1000 steps, the one on 500
    // synthetic faces 0.38 -> 0.49 (`labelgan evaluate`, docs/factory.md).
    let steps: [usize; 3] = match (a.unet_steps, a.full) {
        (Some(n), _) => [n; 3],
        (None, true) => [2000; 3],
        (None, false) => [1000, 300, 300],
    };
    std::fs::create_dir_all(&a.out).map_err(|e| labelgan::core::Error::io(&a.out, e))?;

    // Data: labelled, held-out test, and many real images for the upper bound, from
    // disjoint toyworld seeds.
    eprintln!("[{:.0} s] writing toyworld sets", started.elapsed().as_secs_f64());
    let write = |name: &str, seed: u64, n: usize| common::toyworld_set(&a.out.join(name), seed, n, r);
    let labelled = write("labelled", 1000 + a.seed, a.labelled)?;
    let test = write("test", 9000, a.test)?;
    let real = if a.skip_baselines {
        None
    } else {
        Some(write(&format!("real{}", a.real), 5000 + a.seed, a.real)?)
    };

    // HandsOff: invert, fit the labelers, generate; then the labeler's own test score.
    let handsoff = || -> Result<(LabelledSet, f64)> {
        eprintln!(
            "[{:.0} s] HandsOff: inverting and fitting the labelers",
            started.elapsed().as_secs_f64()
        );
        let options = FitOptions {
            members: 10,
            // A quarter of each image's pixels and 10 epochs by default (about 2 minutes
            // for the three heads on 2 cores); --full takes every pixel for 20.
            pixels_per_image: a
                .labeler_pixels
                .unwrap_or(if a.full { r * r } else { (r * r / 4).max(1) }),
            max_epochs: a.labeler_epochs.unwrap_or(if a.full { 20 } else { 10 }),
            seed: a.seed,
            ..FitOptions::default()
        };
        let labelers = fit_labelers(
            &g,
            &labelled.targets,
            &options,
            Some(&a.out.join("synthetic").join("labelers")),
            &mut || {
                let w0 = enc.invert(&labelled.images)?;
                if a.refine_steps == 0 {
                    return Ok(w0);
                }
                let lp = Lpips::load(&a.perceptual, &dev)?;
                let cfg = ProjectorConfig {
                    steps: a.refine_steps,
                    ..ProjectorConfig::default()
                };
                eprintln!(
                    "  refining {} inversions, {} steps",
                    labelled.images.dims()[0],
                    a.refine_steps
                );
                project_in_batches(&g, Some(&lp), &labelled.images, &w0, &cfg, 16, &mut |_, _| {})
            },
            &mut |l| eprintln!("  {l}"),
        )?;
        eprintln!(
            "[{:.0} s] generating {synthetic} labelled images",
            started.elapsed().as_secs_f64()
        );
        let mut labelers = labelers;
        let calibration = PriorCalibration {
            rounds: a.calibrate_rounds,
            seed: a.seed,
            psi: a.psi,
            ..PriorCalibration::default()
        };
        let masks = labelled.targets.masks.as_ref().expect("toyworld has masks");
        let cache = a.out.join("synthetic").join("labelers");
        if let Some(rep) = calibrate_segmentation(&g, &mut labelers, masks, &calibration, Some(&cache), &mut |l| {
            eprintln!("  {l}")
        })? {
            eprintln!("  {}", rep.summary().replace('\n', "\n  "));
        }
        let fc = FactoryConfig {
            count: synthetic,
            seed: a.seed,
            psi: a.psi,
            filter_fraction: a.filter,
            ..FactoryConfig::default()
        };
        let mut last = Instant::now();
        generate_dataset(&g, &labelers, &fc, &a.out.join("synthetic"), &mut |p| {
            if last.elapsed().as_secs_f64() > 10.0 || p.written == p.count {
                last = Instant::now();
                eprintln!(
                    "  {}/{} images, {:.1} img/s, ETA {:.0} s",
                    p.written, p.count, p.rate, p.eta_seconds
                );
            }
            true
        })?;
        let synth = load_dataset(&a.out.join("synthetic"), r, None)?;

        // The labeler's own quality on the test faces, through the encoder.
        let seg = labelers.segmentation.as_ref().expect("toyworld has masks");
        let mut c = Confusion::new(CLASSES);
        for s in (0..a.test).step_by(16) {
            let n = 16.min(a.test - s);
            let ws = enc.invert(&test.images.narrow(0, s, n)?)?;
            let taps = g.synthesize(&ws, NoiseMode::Const)?.taps.convs();
            let pred = seg.predict(&taps)?;
            let labelgan::core::Labels::Segmentation(cls) = pred.labels else {
                unreachable!("a segmentation ensemble")
            };
            let cls = cls.flatten_from(1)?.to_vec2::<u32>()?;
            for (j, v) in cls.iter().enumerate() {
                c.add(&test.targets.masks.as_ref().expect("masks")[s + j], v)?;
            }
        }
        let miou_labeler = c.report().miou;
        Ok((synth, miou_labeler))
    };

    // The baselines' UNets do not depend on HandsOff: they train on one core of their
    // own from the start, beside the inversion, fitting and generation, which keep the
    // second core only about a sixth busy on average (seed 0: 487 s of CPU time in the
    // first 419 s). Each UNet trains to the same weights on any thread
    // (`train_concurrently`), so the table does not depend on this schedule. An error in
    // HandsOff is reported once the baselines' training ends.
    let (few, many) = (format!("{} real", a.labelled), format!("{} real", a.real));
    let baseline_sets: Vec<(&str, &LabelledSet)> = match &real {
        Some(real) => vec![(few.as_str(), &labelled), (many.as_str(), real)],
        None => Vec::new(),
    };
    let has_mixed = !a.skip_baselines && a.mix_repeat > 0;
    let (rows, miou_labeler) = std::thread::scope(|sc| -> Result<(Vec<(String, Scores)>, f64)> {
        let baselines = if baseline_sets.is_empty() {
            None
        } else {
            eprintln!("  training the baselines' UNets ({few}, {many}) on one core meanwhile");
            Some(sc.spawn(|| train_unets(&baseline_sets, r, steps, a.seed, 1, started)))
        };
        let (synth, miou_labeler) = handsoff()?;
        eprintln!(
            "[{:.0} s] training UNets on the synthetic images",
            started.elapsed().as_secs_f64()
        );
        let mixed = if has_mixed {
            Some(LabelledSet::concat(&[(&synth, 1), (&labelled, a.mix_repeat)])?)
        } else {
            None
        };
        let mix_name = format!("synthetic + {} real x{}", a.labelled, a.mix_repeat);
        // (set name for the log, row name, set)
        let mut sets: Vec<(&str, String, &LabelledSet)> =
            vec![("synthetic", format!("HandsOff synthetic ({synthetic})"), &synth)];
        if let Some(m) = &mixed {
            sets.push((
                &mix_name,
                format!("HandsOff synthetic + {} real (x{})", a.labelled, a.mix_repeat),
                m,
            ));
        }
        let named: Vec<(&str, &LabelledSet)> = sets.iter().map(|(n, _, s)| (*n, *s)).collect();
        let mut models = train_unets(&named, r, steps, a.seed, concurrent_workers(&Device::Cpu), started)?;
        if let Some(handle) = baselines {
            let trained = handle
                .join()
                .map_err(|_| labelgan::core::Error::invalid("the baselines' UNet training thread panicked"))??;
            models.extend(trained);
            for (name, set) in &baseline_sets {
                sets.push((name, name.to_string(), set));
            }
        }
        let rows = models
            .iter()
            .zip(&sets)
            .map(|(m, (_, name, _))| Ok((name.clone(), score(m, &test, r)?)))
            .collect::<Result<_>>()?;
        Ok((rows, miou_labeler))
    })?;
    let row = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    let seconds = started.elapsed().as_secs_f64();
    let mut md = format!(
        "# quickstart results (seed {}, {} test faces, {synthetic} synthetic images at psi {}, UNet steps: {} segmentation, {} keypoints, {} depth; widths {:?} segmentation, {:?} keypoints and depth)\n\n\
         | UNet trained on | mIoU | PCK@0.05 | PCK@0.1 | depth RMSE | depth AbsRel |\n| --- | --- | --- | --- | --- | --- |\n",
        a.seed,
        a.test,
        a.psi,
        steps[0],
        steps[1],
        steps[2],
        labelgan::eval::SEGMENTATION_WIDTHS,
        labelgan::eval::DENSE_WIDTHS
    );
    for (name, s) in &rows {
        md += &format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.4} | {:.3} |\n",
            s.miou, s.pck05, s.pck10, s.rmse, s.abs_rel
        );
    }
    md += &format!("\nPixel labeler on the test faces (inverted with the encoder): mIoU {miou_labeler:.3}.\n");
    md += &format!("\nTotal time {seconds:.0} s.\n");
    labelgan::core::io::write_atomic(&a.out.join("results.md"), md.as_bytes())?;
    println!("{md}");
    let mut line = serde_json::json!({
        "miou_handsoff": rows[0].1.miou, "miou_labeler": miou_labeler, "pck10_handsoff": rows[0].1.pck10,
        "depth_rmse_handsoff": rows[0].1.rmse, "seconds": seconds,
    });
    if let (Some(f), Some(m)) = (row(&few), row(&many)) {
        line["miou_16_real"] = f.miou.into();
        line["miou_2000_real"] = m.miou.into();
        line["pck10_16_real"] = f.pck10.into();
        line["depth_rmse_16_real"] = f.rmse.into();
    }
    if let Some(x) = rows.get(1).filter(|_| has_mixed) {
        line["miou_handsoff_plus_real"] = x.1.miou.into();
        line["pck10_handsoff_plus_real"] = x.1.pck10.into();
        line["depth_rmse_handsoff_plus_real"] = x.1.rmse.into();
    }
    println!("{line}");
    Ok(())
}
