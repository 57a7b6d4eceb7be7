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

/// Runs the `labelgan` binary.
pub fn labelgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelgan"))
        .args(args)
        .output()
        .expect("run labelgan")
}
