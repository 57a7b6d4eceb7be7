//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// `name` inside a per-process temporary folder for test file `tag`.
pub fn tmp_in(tag: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lg-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Writes a tiny random 32 px StyleGAN2 (z and w of 8, at most 8 channels) to `path`:
/// what the factory and bad-input tests run on.
pub fn tiny_generator(path: &std::path::Path) {
    let cfg = labelgan_stylegan::GeneratorConfig {
        z_dim: 8,
        w_dim: 8,
        img_resolution: 32,
        mapping_layers: 2,
        channel_base: 128,
        channel_max: 8,
        ..Default::default()
    };
    labelgan_stylegan::StyleGan2::random(&cfg, 2, &candle_core::Device::Cpu)
        .unwrap()
        .save(path)
        .unwrap();
}

/// Trains a tiny perceptual backbone (one step, 4 channels per slice) into `path`.
pub fn tiny_perceptual(path: &std::path::Path) {
    let o = labelgan(&[
        "train-perceptual",
        "--toyworld",
        "--out",
        path.to_str().unwrap(),
        "--resolution",
        "32",
        "--steps",
        "1",
        "--batch",
        "2",
        "--widths",
        "4,4,4,4,4",
        "--convs-per-slice",
        "1",
        "--holdout",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Starts `labelgan ARGS`, sends it `signal` (`-INT`, `-TERM`) `wait` after `ready`
/// appears, and returns its output (stderr captured).
pub fn signalled(args: &[String], ready: &std::path::Path, wait: std::time::Duration, signal: &str) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_labelgan"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ready.exists() && start.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(wait);
    Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs the `labelgan` binary.
pub fn labelgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelgan"))
        .args(args)
        .output()
        .expect("run labelgan")
}

/// A tiny conditional SNDCGAN config at 16 px for `train-gan --config`: 32 images of
/// training, scored every 16 on 24 images.
pub const TINY_SNDCGAN: &str = "[model]\narchitecture = \"sndcgan\"\nresolution = 16\ng_width = 16\nd_width = 4\nz_dim = 8\n\
     [train]\nbatch = 8\nkimg = 0.032\n[eval]\nevery_kimg = 0.016\nimages = 24\n";
