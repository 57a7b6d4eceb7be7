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

/// Runs the `labelgan` binary.
pub fn labelgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelgan"))
        .args(args)
        .output()
        .expect("run labelgan")
}
