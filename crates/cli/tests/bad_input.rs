//! Bad input across the commands, one table: every case must fail with exactly one
//! `error:` line that names what is wrong, with the documented exit status (2 for an
//! argument, 1 for data), and leave no output behind. Absurd sizes are refused before
//! anything is allocated (they used to abort with "memory allocation failed"), flags
//! before any expensive step.

mod common;

use std::path::Path;

struct Case {
    args: Vec<String>,
    code: i32,
    needle: &'static str,
}

fn case<S: AsRef<str>>(args: &[S], code: i32, needle: &'static str) -> Case {
    Case {
        args: args.iter().map(|s| s.as_ref().to_string()).collect(),
        code,
        needle,
    }
}

/// `base` followed by `extra`.
fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn check(cases: &[Case], out: &Path) {
    for c in cases {
        let _ = std::fs::remove_dir_all(out);
        let _ = std::fs::remove_file(out);
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let o = common::labelgan(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(c.code), "{:?}: {err}", c.args);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{:?}: one line expected: {err}",
            c.args
        );
        assert!(err.starts_with("error: "), "{:?}: {err}", c.args);
        assert!(err.contains(c.needle), "{:?}: `{}` not in {err}", c.args, c.needle);
        assert!(!out.exists(), "{:?} left {} behind", c.args, out.display());
    }
}

#[test]
fn every_command_refuses_bad_input_in_one_line_and_leaves_nothing() {
    let t = |n: &str| common::tmp_in("bad-input", n);
    let gp = t("g.safetensors");
    common::tiny_generator(&gp);
    let data = t("labelled");
    labelgan_toyworld::write_dataset(&data, 1, 3, 32, |_, _| {}).unwrap();
    let out = t("out");
    let (g, d, o) = (gp.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    // The same set with one pixel of a stray id: an inferred class count would be 201.
    let stray_dir = t("stray");
    labelgan_toyworld::write_dataset(&stray_dir, 1, 3, 32, |_, _| {}).unwrap();
    let mask_file = stray_dir.join("masks/00000.png");
    let mut mask = image::open(&mask_file).unwrap().into_luma8();
    mask.put_pixel(0, 0, image::Luma([200]));
    mask.save(&mask_file).unwrap();
    let stray = stray_dir.to_str().unwrap();

    // factory: settings checked before the generator is even loaded.
    let f = |extra: &[&str]| with(&["factory", "--generator", g, "--data", d, "--out", o], extra);
    let cases = [
        case(&f(&["--count", "1000000000000"]), 2, "count is 1000000000000"),
        case(&f(&["--block", "1000000"]), 2, "block is 1000000"),
        case(&f(&["--members", "1000000000"]), 2, "members is 1000000000"),
        case(&f(&["--pixels-per-image", "0"]), 2, "pixels per image is 0"),
        case(&f(&["--calibrate-images", "1000000000000"]), 2, "calibration images"),
        case(&f(&["--classes", "1000000000"]), 2, "classes is 1000000000"),
        case(&f(&["--max-epochs", "0"]), 2, "max epochs is 0"),
        case(
            &f(&["--feature-budget-mb", "1000000000000000"]),
            2,
            "feature budget (MB) is 1000000000000000",
        ),
        case(&f(&["--sigma", "NaN"]), 2, "--sigma"),
        case(&f(&["--psi", "inf"]), 2, "--psi"),
        case(&f(&["--filter", "1"]), 2, "--filter"),
        case(&f(&["--precision", "fp16"]), 2, "expected f32 or bf16"),
        case(&f(&["--ignore-index", "300"]), 2, "--ignore-index"),
        case(&f(&["--refine-steps", "5"]), 2, "--refine-steps needs --perceptual"),
        case(&f(&["--latents", g]), 2, "--latents is for --method datasetgan"),
        case(&f(&["--method", "datasetgan"]), 2, "needs --latents"),
        case(
            &["factory", "--generator", g, "--data", d, "--out", d],
            2,
            "is the input --data",
        ),
        case(
            &["factory", "--generator", "/no/G.safetensors", "--data", d, "--out", o],
            1,
            "/no/G.safetensors",
        ),
        case(&f(&["--classes", "3"]), 1, "masks hold class 7 but only 3 classes"),
        case(
            &["factory", "--generator", g, "--data", stray, "--out", o],
            1,
            "9 class ids (0, 1, 2, 3, 4, 5, 6, 7, 200) of 0..=200",
        ),
    ];
    check(&cases, &out);

    // train-gan: sizes and values before the folder is made.
    let tg = |extra: &[&str]| with(&["train-gan", "--toyworld", "--resolution", "32", "--out", o], extra);
    let cases = [
        case(&tg(&["--kimg", "NaN"]), 2, "--kimg"),
        case(&tg(&["--kimg=-1"]), 2, "--kimg"),
        case(&tg(&["--batch", "1000000000000"]), 2, "batch"),
        case(&tg(&["--batch", "6"]), 2, "multiple of 4"),
        case(&tg(&["--z-dim", "1000000000"]), 2, "z_dim is 1000000000"),
        case(&tg(&["--channel-max", "1000000000"]), 2, "channel_max is 1000000000"),
        case(&tg(&["--mapping-layers", "1000000"]), 2, "mapping_layers is 1000000"),
        case(&tg(&["--lr", "0"]), 2, "--lr"),
        case(
            &["train-gan", "--toyworld", "--resolution", "48", "--out", o],
            2,
            "power of two",
        ),
        case(
            &["train-gan", "--data", "/no/such/dir", "--resolution", "32", "--out", o],
            1,
            "/no/such/dir",
        ),
    ];
    check(&cases, &out);

    // train-perceptual (its --out is a file).
    let pf = t("p.safetensors");
    let p = pf.to_str().unwrap();
    let tp = |extra: &[&str]| {
        with(
            &[
                "train-perceptual",
                "--toyworld",
                "--resolution",
                "32",
                "--out",
                p,
                "--steps",
                "2",
            ],
            extra,
        )
    };
    let cases = [
        case(&tp(&["--widths", "1000000,8,8,8,8"]), 2, "widths"),
        case(&tp(&["--widths", "8,8"]), 2, "five positive channel counts"),
        case(&tp(&["--batch", "1000000000000"]), 2, "batch"),
        case(&tp(&["--holdout", "0"]), 2, "--holdout"),
        case(&tp(&["--holdout", "1000000000000"]), 2, "--holdout"),
        case(&tp(&["--lr", "NaN"]), 2, "--lr"),
        case(
            &[
                "train-perceptual",
                "--toyworld",
                "--resolution",
                "32",
                "--out",
                "/proc/labelgan.safetensors",
            ],
            2,
            "cannot write in /proc",
        ),
    ];
    check(&cases, &pf);

    // fid: a batch that would not fit is refused before any image is made.
    let cases = [
        case(
            &[
                "fid",
                "--perceptual",
                g,
                "--a",
                "toyworld:1",
                "--b",
                "toyworld:2",
                "--batch",
                "1000000000000",
            ],
            2,
            "--batch 1000000000000",
        ),
        case(
            &[
                "fid",
                "--perceptual",
                g,
                "--a",
                "toyworld:1",
                "--b",
                "toyworld:2",
                "--count",
                "1",
            ],
            2,
            "--count 1",
        ),
    ];
    check(&cases, &out);

    // metrics: settings before any feature is extracted; --save-features is the output.
    let m = |extra: &[&str]| {
        with(
            &[
                "metrics",
                "--a",
                "toyworld:1",
                "--b",
                "toyworld:2",
                "--extractor",
                g,
                "--save-features",
                o,
            ],
            extra,
        )
    };
    let cases = [
        case(&m(&["--kid-subset-size", "1"]), 2, "KID subset size is 1"),
        case(&m(&["--kid-subsets", "1000000000"]), 2, "KID subsets is 1000000000"),
        case(&m(&["--pr-k", "0"]), 2, "--pr-k 0"),
        case(&m(&["--count", "1"]), 2, "--count 1"),
        case(&m(&["--features-a", g]), 2, "either --a SET"),
        case(
            &["metrics", "--features-a", "/no/a.safetensors", "--features-b", g],
            1,
            "/no/a.safetensors",
        ),
    ];
    check(&cases, &out);

    // train-encoder.
    let te = |extra: &[&str]| {
        with(
            &[
                "train-encoder",
                "--generator",
                g,
                "--perceptual",
                g,
                "--toyworld",
                "--out",
                o,
            ],
            extra,
        )
    };
    let cases = [
        case(&te(&["--batch-a", "1000000000000"]), 2, "--batch-a"),
        case(
            &[
                "train-encoder",
                "--generator",
                g,
                "--perceptual",
                g,
                "--toyworld",
                "--out",
                g,
            ],
            2,
            "is the input --generator",
        ),
    ];
    check(&cases, &out);

    // A device this build or this machine lacks (a CPU build names the feature).
    let gen_on = |device: &str| {
        vec![
            "generate".to_string(),
            "--weights".into(),
            g.into(),
            "--count".into(),
            "1".into(),
            "--out".into(),
            o.into(),
            "--device".into(),
            device.into(),
        ]
    };
    let mut cases = vec![];
    if !labelgan_core::DeviceKind::Cuda.compiled() {
        cases.push(case(&gen_on("cuda"), 1, "build labelgan with `--features cuda`"));
    }
    if !labelgan_core::DeviceKind::Metal.compiled() {
        cases.push(case(&gen_on("metal"), 1, "build labelgan with `--features metal`"));
    }
    check(&cases, &out);
}
