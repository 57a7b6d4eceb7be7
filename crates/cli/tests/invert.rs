//! `labelgan train-encoder` and `labelgan invert` end to end with a tiny random
//! generator: files and the JSON summary are written, refinement lowers the error, the
//! encoder trains and resumes, and mistakes fail with messages that name them.

mod common;

use candle_core::Device;
use common::labelgan;
use labelgan_core::Generator;
use labelgan_core::image_io::{save_png, tensor_to_images};
use labelgan_stylegan::{GeneratorConfig, StyleGan2};
use serde_json::Value;

fn last_json(o: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn train_encoder_then_invert() {
    let t = |n: &str| common::tmp_in("invert", n);
    let cfg = GeneratorConfig {
        z_dim: 16,
        w_dim: 16,
        img_resolution: 32,
        mapping_layers: 2,
        channel_base: 256,
        channel_max: 16,
        ..Default::default()
    };
    let g = StyleGan2::random(&cfg, 3, &Device::Cpu).unwrap();
    let gp = t("g.safetensors");
    g.save(&gp).unwrap();
    // Targets: the generator's own images, so a perfect inversion exists.
    let imgs_dir = t("images");
    std::fs::create_dir_all(&imgs_dir).unwrap();
    let ws = g
        .map(&g.sample_z(4, 11).unwrap(), None, labelgan_core::Truncation::NONE)
        .unwrap();
    let x = g.image(&ws, labelgan_core::NoiseMode::Const).unwrap();
    for (i, im) in tensor_to_images(&x).unwrap().iter().enumerate() {
        save_png(im, &imgs_dir.join(format!("img{i}.png"))).unwrap();
    }
    let p = t("p.safetensors");
    common::tiny_perceptual(&p);
    let (gs, ps, is) = (gp.to_str().unwrap(), p.to_str().unwrap(), imgs_dir.to_str().unwrap());

    let out_mean = t("out_mean");
    let mean = last_json(&labelgan(&[
        "invert",
        "--generator",
        gs,
        "--images",
        is,
        "--out",
        out_mean.to_str().unwrap(),
        "--perceptual",
        ps,
    ]));
    assert_eq!(mean["images"], 4);
    assert!(
        mean["lpips"].as_f64().is_some() && mean["s_per_image"].as_f64().is_some(),
        "{mean}"
    );
    for f in [
        "latents.safetensors",
        "sheet.png",
        "reconstructions/img0.png",
        "reconstructions/img3.png",
    ] {
        assert!(out_mean.join(f).exists(), "{f} missing");
    }
    let lat = labelgan_core::io::TensorFile::load(out_mean.join("latents.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(lat.shape("ws"), Some(&[4usize, g.spec().num_ws, 16][..]));
    assert!(lat.metadata["files"].contains("img3.png"));

    let out_ref = t("out_ref");
    let refined = last_json(&labelgan(&[
        "invert",
        "--generator",
        gs,
        "--images",
        is,
        "--out",
        out_ref.to_str().unwrap(),
        "--perceptual",
        ps,
        "--refine-steps",
        "30",
        "--space",
        "w",
    ]));
    assert!(
        refined["mse"].as_f64().unwrap() < mean["mse"].as_f64().unwrap(),
        "refined {refined} vs mean {mean}"
    );

    let enc_dir = t("enc");
    let args = [
        "train-encoder",
        "--generator",
        gs,
        "--perceptual",
        ps,
        "--toyworld",
        "--real-images",
        "10",
        "--holdout",
        "4",
        "--out",
        enc_dir.to_str().unwrap(),
        "--steps-a",
        "4",
        "--steps-b",
        "2",
        "--batch-a",
        "4",
    ];
    let j = last_json(&labelgan(&args));
    assert!(enc_dir.join("encoder.safetensors").exists() && enc_dir.join("encoder_stage_a.safetensors").exists());
    assert!(j["seconds"].as_f64().is_some());
    // Run again: the checkpoint says done; it resumes without training and says so.
    let again = labelgan(&args);
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming"));
    // Asking a finished run for more steps is an error that says what to do instead.
    for (flag, n) in [("--steps-b", "5"), ("--steps-a", "6")] {
        let mut more = args;
        let i = more.iter().position(|a| *a == flag).unwrap();
        more[i + 1] = n;
        let o = labelgan(&more);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag} {n}: {err}");
        assert!(err.contains("finished") && err.contains("--init-encoder"), "{err}");
    }
    let enc = enc_dir.join("encoder.safetensors");
    let out_enc = t("out_enc");
    let e = last_json(&labelgan(&[
        "invert",
        "--generator",
        gs,
        "--images",
        is,
        "--out",
        out_enc.to_str().unwrap(),
        "--method",
        "encoder",
        "--encoder",
        enc.to_str().unwrap(),
    ]));
    assert_eq!(e["images"], 4);
    assert!(e["lpips"].is_null());

    // Mistakes.
    let o = labelgan(&[
        "invert",
        "--generator",
        gs,
        "--images",
        is,
        "--out",
        out_enc.to_str().unwrap(),
        "--method",
        "encoder",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--encoder"));
    let o = labelgan(&[
        "invert",
        "--generator",
        gs,
        "--images",
        "/no/such/dir",
        "--out",
        out_enc.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"));
}
