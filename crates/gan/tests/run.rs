//! A run folder: config, record, checkpoint, samples, log and scores at every
//! interval; extending a finished run equals running to the longer length at once;
//! other settings are refused.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use labelgan_core::{Result, SplitMix64};
use labelgan_gan::{RealClasses, RunOptions, Trainer, TrainingConfig, train_run};

fn real(start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
    let x = SplitMix64::derive(7, start)
        .normal_tensor(&[n, 3, 16, 16], &Device::Cpu)?
        .tanh()?;
    let classes: Vec<u32> = (0..n as u64).map(|i| ((start + i) % 3) as u32).collect();
    Ok((x, Some(classes.into())))
}

fn config(kimg: f64) -> TrainingConfig {
    let mut c = common::tiny_sndcgan(3, 4);
    (c.train.kimg, c.eval.every_kimg) = (kimg, 0.016);
    c
}

/// A score that moves with the weights: the mean of 4 generated images.
fn score(t: &Trainer) -> Result<Vec<(String, f64)>> {
    let z = SplitMix64::new(1).normal_tensor(&[4, 8], &Device::Cpu)?;
    let y = labelgan_gan::one_hot(&[0, 1, 2, 0], 3, &Device::Cpu)?;
    let m = t.generate(&z, Some(&y), true)?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(vec![("mean".into(), m)])
}

fn run(dir: &Path, cfg: &TrainingConfig) -> Result<labelgan_gan::RunSummary> {
    let opts = RunOptions {
        out: dir,
        restart: false,
        inputs: vec![("data".into(), "synthetic-7".into())],
        init_generator: None,
    };
    train_run(cfg, &opts, &mut real, Some(&mut score), &Device::Cpu)
}

#[test]
fn a_run_writes_its_folder_resumes_and_refuses_other_settings() {
    let root = std::env::temp_dir().join(format!("labelgan-gan-run-{}", std::process::id()));
    let (a, b) = (root.join("a"), root.join("b"));
    let _ = std::fs::remove_dir_all(&root);
    // Straight to 48 images; and to 32, then extended to 48.
    let whole = run(&a, &config(0.048)).unwrap();
    assert_eq!((whole.steps, whole.images), (12, 48));
    run(&b, &config(0.032)).unwrap();
    let csv = std::fs::read_to_string(b.join("scores.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header and rows at 16 and 32 images: {csv}");
    run(&b, &config(0.048)).unwrap();
    for f in ["scores.csv", "checkpoint.safetensors", "samples.png", "config.toml"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between one run and a run extended"
        );
    }
    let csv = std::fs::read_to_string(a.join("scores.csv")).unwrap();
    assert!(csv.starts_with("kimg,step,mean\n0.016,4,"), "{csv}");
    assert_eq!(csv.lines().count(), 4);
    assert!(
        std::fs::read_to_string(a.join("log.jsonl"))
            .unwrap()
            .contains("\"loss_d\"")
    );
    // Another setting is refused and names it; a finished run reruns to nothing new.
    let mut other = config(0.048);
    other.train.g_lr = 1e-3;
    let err = run(&a, &other).unwrap_err().to_string();
    assert!(err.contains("config.train.g_lr") && err.contains("--restart"), "{err}");
    assert_eq!(run(&a, &config(0.048)).unwrap().steps, 12);
    assert_eq!(std::fs::read_to_string(a.join("scores.csv")).unwrap(), csv);
    std::fs::remove_dir_all(&root).unwrap();
}
