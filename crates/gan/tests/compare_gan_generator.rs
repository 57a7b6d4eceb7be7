//! A trained Compare GAN generator as a file and as a `labelgan_core::Generator`: it
//! renders what the trainer renders, exporting leaves the run untouched, and bad files
//! and bad latents are refused by name.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use common::checkpoint_values as state;
use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Generator, NoiseMode, Result, SplitMix64, Truncation, max_abs_diff};
use labelgan_gan::compare_gan_generator::CompareGanGenerator;
use labelgan_gan::{Architecture, RealClasses, Trainer, TrainingConfig, one_hot};

fn real(start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
    let x = SplitMix64::derive(3, start)
        .normal_tensor(&[n, 3, 16, 16], &Device::Cpu)?
        .tanh()?;
    Ok((x, Some(RealClasses::Ids((0..n as u32).map(|i| i % 4).collect()))))
}

fn trained(cfg: &TrainingConfig, steps: usize) -> Trainer {
    let mut t = Trainer::new(cfg, &Device::Cpu).unwrap();
    for _ in 0..steps {
        t.train_step(&mut real).unwrap();
    }
    t
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("labelgan-cgg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn latents(n: usize, classes: usize) -> (Tensor, Tensor) {
    let z = SplitMix64::new(9).normal_tensor(&[n, 8], &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..n as u32).map(|i| i % classes as u32).collect();
    (z, one_hot(&ids, classes, &Device::Cpu).unwrap())
}

#[test]
fn without_an_average_it_renders_what_the_trainer_renders() {
    for arch in [Architecture::Sndcgan, Architecture::ResnetCifar] {
        let mut cfg = common::tiny_sndcgan(4, 8);
        cfg.model.architecture = arch;
        if arch == Architecture::ResnetCifar {
            (cfg.model.resolution, cfg.model.g_width, cfg.model.d_width) = (32, 8, 8);
        }
        let t = {
            let mut t = Trainer::new(&cfg, &Device::Cpu).unwrap();
            let res = cfg.model.resolution;
            let mut data = |s: u64, n: usize| -> Result<(Tensor, Option<RealClasses>)> {
                let x = SplitMix64::derive(3, s)
                    .normal_tensor(&[n, 3, res, res], &Device::Cpu)?
                    .tanh()?;
                Ok((x, Some(RealClasses::Ids((0..n as u32).map(|i| i % 4).collect()))))
            };
            for _ in 0..3 {
                t.train_step(&mut data).unwrap();
            }
            t
        };
        let path = dir("plain").join(format!("{arch:?}.safetensors"));
        t.export_generator(&path).unwrap();
        let g = CompareGanGenerator::load(&path, &Device::Cpu).unwrap();
        assert_eq!(g.model(), &cfg.model);
        let (z, y) = latents(6, 4);
        let ws = g.map(&z, Some(&y), Truncation::NONE).unwrap();
        assert_eq!(ws.dims(), [6, 1, 12]);
        let s = g.synthesize(&ws, NoiseMode::Const).unwrap();
        let want = t.generate(&z, Some(&y), true).unwrap();
        // No average: the trainer evaluates with the moving averages too.
        let want_eval = t.generate(&z, Some(&y), false).unwrap();
        assert_eq!(max_abs_diff(&want, &want_eval).unwrap(), 0.0);
        assert!(max_abs_diff(&s.image, &want).unwrap() < 1e-6, "{arch:?}");
        assert!(max_abs_diff(&g.image(&ws, NoiseMode::Const).unwrap(), &s.image).unwrap() < 1e-6);
        // The taps are what the spec says, each the size it claims.
        assert!(!g.spec().taps.is_empty());
        assert_eq!(s.taps.specs(), g.spec().taps, "{arch:?}");
        for tap in s.taps.iter() {
            assert_eq!(tap.tensor.dims()[0], 6);
        }
    }
}

#[test]
fn exporting_the_average_uses_its_own_statistics_and_leaves_the_run_alone() {
    let mut cfg = common::tiny_sndcgan(4, 8);
    cfg.train.ema_decay = 0.9;
    let t = trained(&cfg, 4);
    let before = state(&t);
    let (z, y) = latents(8, 4);
    let plain_before = t.generate(&z, Some(&y), false).unwrap();
    let d = dir("avg");
    t.export_generator(&d.join("a.safetensors")).unwrap();
    t.export_generator(&d.join("b.safetensors")).unwrap();
    // Nothing of the run moved: weights, buffers, the average.
    assert_eq!(state(&t), before);
    assert_eq!(
        max_abs_diff(&t.generate(&z, Some(&y), false).unwrap(), &plain_before).unwrap(),
        0.0
    );
    // The same run exports the same bytes.
    assert_eq!(
        std::fs::read(d.join("a.safetensors")).unwrap(),
        std::fs::read(d.join("b.safetensors")).unwrap()
    );
    // Its batch-norm statistics are not the moving averages of the trained weights.
    let file = TensorFile::load(d.join("a.safetensors"), &Device::Cpu).unwrap();
    let exported = file.get("buffer.norm0.moving_mean").unwrap();
    let moving = &before["g_buffer.norm0.moving_mean"];
    let moving = Tensor::new(moving.as_slice(), &Device::Cpu).unwrap();
    assert!(max_abs_diff(exported, &moving).unwrap() > 1e-4);
    // And the images are close to the average's with each batch's own statistics
    // (balanced classes, as the standing statistics were taken).
    let g = CompareGanGenerator::load(d.join("a.safetensors"), &Device::Cpu).unwrap();
    let image = g
        .image(&g.map(&z, Some(&y), Truncation::NONE).unwrap(), NoiseMode::Const)
        .unwrap();
    let batch_stats = t.generate(&z, Some(&y), true).unwrap();
    let mean_diff = (image - batch_stats)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(mean_diff < 0.1, "{mean_diff}");
}

#[test]
fn truncation_scales_z_and_keeps_the_class() {
    let t = trained(&common::tiny_sndcgan(4, 8), 1);
    let path = dir("trunc").join("g.safetensors");
    t.export_generator(&path).unwrap();
    let g = CompareGanGenerator::load(&path, &Device::Cpu).unwrap();
    let (z, y) = latents(3, 4);
    let ws = g.map(&z, Some(&y), Truncation::psi(0.5)).unwrap();
    let want = Tensor::cat(&[&(&z * 0.5).unwrap(), &y], 1)
        .unwrap()
        .unsqueeze(1)
        .unwrap();
    assert!(max_abs_diff(&ws, &want).unwrap() < 1e-7);
}

#[test]
fn bad_files_and_latents_are_refused_by_name() {
    let t = trained(&common::tiny_sndcgan(4, 8), 1);
    let d = dir("bad");
    let path = d.join("g.safetensors");
    t.export_generator(&path).unwrap();
    let g = CompareGanGenerator::load(&path, &Device::Cpu).unwrap();
    let (z, _) = latents(2, 4);
    let err = g.map(&z, None, Truncation::NONE).unwrap_err().to_string();
    assert!(err.contains("conditional on 4 classes"), "{err}");
    let wrong = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let err = g.map(&z, Some(&wrong), Truncation::NONE).unwrap_err().to_string();
    assert!(err.contains("c must be [2, 4]"), "{err}");
    let err = g
        .synthesize(
            &Tensor::zeros((2, 1, 5), DType::F32, &Device::Cpu).unwrap(),
            NoiseMode::Const,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("ws must be [N, 1, 12]"), "{err}");

    // A file of another kind, and one with a tensor missing.
    let file = TensorFile::load(&path, &Device::Cpu).unwrap();
    let other = d.join("other.safetensors");
    let tensors: BTreeMap<String, Tensor> = file.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    save_safetensors(&other, &tensors, &BTreeMap::new()).unwrap();
    let err = CompareGanGenerator::load(&other, &Device::Cpu).unwrap_err().to_string();
    assert!(
        err.contains("other.safetensors") && err.contains("not a labelgan Compare GAN generator"),
        "{err}"
    );
    let mut missing = tensors.clone();
    missing.remove("weight.out.weight");
    let meta: BTreeMap<String, String> = file.metadata.clone().into_iter().collect();
    save_safetensors(&other, &missing, &meta).unwrap();
    let err = CompareGanGenerator::load(&other, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("other.safetensors") && err.contains("out.weight"), "{err}");
}
