//! `labelgan generate` end to end: the binary reproduces the official generator's
//! outputs from the reference latents, writes PNGs and contact sheets, reads its own
//! output back, and fails with one clear line on bad input.

mod common;

use common::labelgan;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelgan_core::io::TensorFile;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    labelgan_core::max_abs_diff(a, b).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stylegan2")
        .join(name)
}

fn weights() -> String {
    fixture("sg2_res32.safetensors").display().to_string()
}

fn tmp(name: &str) -> PathBuf {
    common::tmp_in("cli", name)
}

fn ok(args: &[&str]) {
    let o = labelgan(args);
    assert!(
        o.status.success(),
        "labelgan {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs a failing command; returns its stderr, checked to be exactly one line.
fn fails(args: &[&str], code: i32) -> String {
    let o = labelgan(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(code), "labelgan {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected, got: {err}");
    err
}

fn load(p: &Path) -> TensorFile {
    TensorFile::load(p, &Device::Cpu).unwrap()
}

#[test]
fn reproduces_the_reference_cases_from_z() {
    let io = load(&fixture("sg2_res32_io.safetensors"));
    let io_path = fixture("sg2_res32_io.safetensors").display().to_string();
    // case0: psi 1, const noise (the defaults).
    let out = tmp("case0.safetensors");
    ok(&[
        "generate",
        "--weights",
        &weights(),
        "--latents",
        &io_path,
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "3",
    ]);
    let got = load(&out);
    assert!(max_abs_diff(got.get("ws").unwrap(), io.get("case0.ws").unwrap()) < 1e-4);
    assert!(max_abs_diff(got.get("img").unwrap(), io.get("case0.img").unwrap()) < 1e-4);
    // case2: psi 0.5, cutoff 4, no noise.
    let out2 = tmp("case2.safetensors");
    ok(&[
        "generate",
        "--weights",
        &weights(),
        "--latents",
        &io_path,
        "--out",
        out2.to_str().unwrap(),
        "--truncation-psi",
        "0.5",
        "--truncation-cutoff",
        "4",
        "--noise",
        "none",
    ]);
    let got2 = load(&out2);
    assert!(max_abs_diff(got2.get("img").unwrap(), io.get("case2.img").unwrap()) < 1e-4);
    // Feeding the output back (it holds ws) renders the same images.
    let again = tmp("again.safetensors");
    ok(&[
        "generate",
        "--weights",
        &weights(),
        "--latents",
        out2.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--noise",
        "none",
    ]);
    assert_eq!(
        max_abs_diff(load(&again).get("img").unwrap(), got2.get("img").unwrap()),
        0.0
    );
}

#[test]
fn seeds_pngs_and_contact_sheet() {
    let dir = tmp("pngs");
    let out5 = tmp("s5.safetensors");
    ok(&[
        "generate",
        "--weights",
        &weights(),
        "--count",
        "5",
        "--seed",
        "3",
        "--png-dir",
        dir.to_str().unwrap(),
        "--out",
        out5.to_str().unwrap(),
        "--batch-size",
        "2",
    ]);
    for i in 0..5 {
        assert!(dir.join(format!("{i:06}.png")).exists());
    }
    let sheet = image::open(dir.join("contact_sheet.png")).unwrap();
    assert_eq!((sheet.width(), sheet.height()), (3 * 32 + 4 * 2, 2 * 32 + 3 * 2));
    // The PNG is the official 8-bit conversion of the raw output.
    let img = load(&out5).get("img").unwrap().clone();
    let png = image::open(dir.join("000004.png")).unwrap().to_rgb8();
    let raw = img
        .get(4)
        .unwrap()
        .permute((1, 2, 0))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want: Vec<u8> = raw
        .iter()
        .map(|v| (v * 127.5 + 128.0).clamp(0.0, 255.0) as u8)
        .collect();
    assert_eq!(png.into_raw(), want);
    // A smaller count with the same seed renders the same latents (a prefix; batch
    // composition changes float rounding only).
    let out3 = tmp("s3.safetensors");
    ok(&[
        "generate",
        "--weights",
        &weights(),
        "--count",
        "3",
        "--seed",
        "3",
        "--out",
        out3.to_str().unwrap(),
    ]);
    let a = load(&out3).get("img").unwrap().clone();
    assert!(max_abs_diff(&a, &img.narrow(0, 0, 3).unwrap()) < 1e-4);
    // Without --seed the latents come from seed 0.
    let w = weights();
    let render = |name: &str, seed: &[&str]| {
        let out = tmp(name);
        ok(&[
            &[
                "generate",
                "--weights",
                &w,
                "--count",
                "2",
                "--out",
                out.to_str().unwrap(),
            ],
            seed,
        ]
        .concat());
        load(&out).get("img").unwrap().clone()
    };
    let (default, zero) = (
        render("d0.safetensors", &[]),
        render("s0.safetensors", &["--seed", "0"]),
    );
    assert_eq!(max_abs_diff(&default, &zero), 0.0);
    // Random noise: deterministic in its seed.
    let r1 = tmp("r1.safetensors");
    let r2 = tmp("r2.safetensors");
    for r in [&r1, &r2] {
        ok(&[
            "generate",
            "--weights",
            &weights(),
            "--count",
            "2",
            "--seed",
            "1",
            "--noise",
            "random",
            "--out",
            r.to_str().unwrap(),
        ]);
    }
    assert!(
        std::fs::read(&r1).unwrap() == std::fs::read(&r2).unwrap(),
        "same seed, different bytes"
    );
}

#[test]
fn bad_input_gets_one_clear_line() {
    let w = weights();
    let out = tmp("never.safetensors");
    let o = out.to_str().unwrap();
    // Arguments (exit 2).
    assert!(fails(&["generate", "--weights", &w, "--count", "2", "--seed", "1"], 2).contains("--out"));
    assert!(fails(&["generate", "--weights", &w, "--out", o], 2).contains("--latents"));
    assert!(
        fails(
            &[
                "generate",
                "--weights",
                &w,
                "--count",
                "2",
                "--seed",
                "1",
                "--out",
                o,
                "--noise",
                "loud"
            ],
            2
        )
        .contains("loud")
    );
    // Files and values (exit 1).
    assert!(
        fails(
            &[
                "generate",
                "--weights",
                "/no/such/G.safetensors",
                "--count",
                "1",
                "--seed",
                "1",
                "--out",
                o
            ],
            1
        )
        .contains("/no/such/G.safetensors")
    );
    let corrupt = tmp("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}").unwrap();
    assert!(
        fails(
            &[
                "generate",
                "--weights",
                corrupt.to_str().unwrap(),
                "--count",
                "1",
                "--seed",
                "1",
                "--out",
                o
            ],
            1
        )
        .contains("corrupt.safetensors")
    );
    let wrong = tmp("wrong_z.safetensors");
    let mut m = std::collections::BTreeMap::new();
    m.insert(
        "z".to_string(),
        Tensor::zeros((2, 63), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    labelgan_core::io::save_safetensors(&wrong, &m, &Default::default()).unwrap();
    let e = fails(
        &[
            "generate",
            "--weights",
            &w,
            "--latents",
            wrong.to_str().unwrap(),
            "--out",
            o,
        ],
        1,
    );
    assert!(
        e.contains("`z`") && e.contains("[2, 63]") && e.contains("[2, 64]"),
        "{e}"
    );
    // Counts and sizes out of bounds are argument errors, refused before any work.
    for (flag, v) in [
        ("--count", "0"),
        ("--count", "1000000000000"),
        ("--batch-size", "0"),
        ("--batch-size", "1000000000000"),
    ] {
        let mut args = vec!["generate", "--weights", &w, "--count", "2", "--out", o];
        if flag == "--count" {
            args[4] = v;
        } else {
            args.extend([flag, v]);
        }
        assert!(fails(&args, 2).contains(flag), "{flag} {v}");
    }
    // The output may not be an input: the generator is left as it was.
    let before = std::fs::read(&w).unwrap();
    assert!(fails(&["generate", "--weights", &w, "--count", "1", "--out", &w], 2).contains("is the input --weights"));
    assert_eq!(std::fs::read(&w).unwrap(), before);
    assert!(
        fails(
            &[
                "generate",
                "--weights",
                &w,
                "--count",
                "1",
                "--seed",
                "1",
                "--out",
                o,
                "--truncation-psi",
                "NaN"
            ],
            2
        )
        .contains("psi")
    );
    assert!(
        fails(
            &[
                "generate",
                "--weights",
                &w,
                "--count",
                "1",
                "--seed",
                "1",
                "--out",
                o,
                "--truncation-cutoff",
                "99"
            ],
            2
        )
        .contains("99")
    );
    assert!(!out.exists(), "a failed run must not leave an output file");
}

/// The README's first command: the shipped toy generator (at most 10 MB) makes 64 toy
/// faces of 64x64 and a contact sheet, and different seeds give different faces.
#[test]
fn shipped_toy_generator_makes_64_faces() {
    let asset = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/toy_generator.safetensors");
    let size = std::fs::metadata(&asset)
        .expect("assets/toy_generator.safetensors is committed")
        .len();
    assert!(size <= 10 << 20, "{size} bytes");
    let dir = tmp("toy_generator_pngs");
    let _ = std::fs::remove_dir_all(&dir);
    ok(&[
        "generate",
        "--weights",
        asset.to_str().unwrap(),
        "--count",
        "64",
        "--seed",
        "0",
        "--png-dir",
        dir.to_str().unwrap(),
    ]);
    let first = image::open(dir.join("000000.png")).unwrap().to_rgb8();
    let last = image::open(dir.join("000063.png")).unwrap().to_rgb8();
    assert_eq!(first.dimensions(), (64, 64));
    assert!(dir.join("contact_sheet.png").exists());
    let differ = first.pixels().zip(last.pixels()).filter(|(a, b)| a != b).count();
    assert!(differ > 64 * 64 / 2, "seeds 0 and 63 give nearly the same image");
}
