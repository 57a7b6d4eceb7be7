//! Loading, saving and bad input: errors that name the key and both shapes, a
//! save/load round trip that reproduces outputs bit for bit, determinism of random
//! noise, conditional models.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Generator, NoiseMode, Truncation};
use labelgan_stylegan::{GeneratorConfig, StyleGan2};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stylegan2/sg2_res32.safetensors")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lg-sg-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn tiny() -> GeneratorConfig {
    GeneratorConfig {
        z_dim: 16,
        w_dim: 16,
        img_resolution: 16,
        mapping_layers: 2,
        channel_base: 128,
        channel_max: 16,
        ..Default::default()
    }
}

fn edited(f: impl FnOnce(&mut TensorFile)) -> String {
    let mut file = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    f(&mut file);
    StyleGan2::from_file(&file).unwrap_err().to_string()
}

#[test]
fn missing_and_misshaped_keys_are_named() {
    let e = edited(|f| {
        f.tensors.remove("synthesis.b16.conv1.affine.bias");
    });
    assert!(
        e.contains("synthesis.b16.conv1.affine.bias") && e.contains("[128]"),
        "{e}"
    );
    let e = edited(|f| {
        let t = Tensor::zeros((64, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        f.tensors.insert("synthesis.b8.conv1.weight".into(), t);
    });
    assert!(
        e.contains("synthesis.b8.conv1.weight") && e.contains("[64, 3, 3, 3]") && e.contains("[128, 128, 3, 3]"),
        "{e}"
    );
    let e = edited(|f| {
        f.metadata.insert("init_kwargs".into(), "{not json".into());
    });
    assert!(e.contains("init_kwargs"), "{e}");
    let e = edited(|f| {
        f.metadata.insert("init_kwargs".into(), r#"{"z_dim": 512}"#.into());
    });
    assert!(e.contains("z_dim") && e.contains("512") && e.contains("64"), "{e}");
    let e = StyleGan2::load("/nonexistent/G.safetensors", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/G.safetensors"), "{e}");
}

#[test]
fn defaults_apply_without_init_kwargs() {
    let mut file = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    file.metadata.clear();
    let g = StyleGan2::from_file(&file).unwrap();
    assert_eq!(g.runtime_kwargs().conv_clamp, None);
    assert_eq!(g.runtime_kwargs().mapping_lr_multiplier, 0.01);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let g = StyleGan2::load(fixture(), &Device::Cpu).unwrap();
    let dev = Device::Cpu;
    assert!(
        g.map(
            &Tensor::zeros((2, 63), candle_core::DType::F32, &dev).unwrap(),
            None,
            Truncation::NONE
        )
        .is_err()
    );
    let nan = Tensor::new(&[[f32::NAN; 64]], &dev).unwrap();
    let e = g.map(&nan, None, Truncation::NONE).unwrap_err().to_string();
    assert!(e.contains("non-finite"), "{e}");
    let c = Tensor::zeros((1, 3), candle_core::DType::F32, &dev).unwrap();
    assert!(g.map(&g.sample_z(1, 0).unwrap(), Some(&c), Truncation::NONE).is_err());
    let ws = Tensor::zeros((1, 7, 64), candle_core::DType::F32, &dev).unwrap();
    let e = g.synthesize(&ws, NoiseMode::Const).unwrap_err().to_string();
    assert!(e.contains("[N, 8, 64]"), "{e}");
}

#[test]
fn save_load_roundtrip_is_bit_identical() {
    let g = StyleGan2::load(fixture(), &Device::Cpu).unwrap();
    let p = tmp("roundtrip.safetensors");
    g.save(&p).unwrap();
    let h = StyleGan2::load(&p, &Device::Cpu).unwrap();
    let ws = g.map(&g.sample_z(2, 5).unwrap(), None, Truncation::psi(0.8)).unwrap();
    let ws2 = h.map(&h.sample_z(2, 5).unwrap(), None, Truncation::psi(0.8)).unwrap();
    assert_eq!(
        ws.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        ws2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let a = g
        .image(&ws, NoiseMode::Const)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = h
        .image(&ws, NoiseMode::Const)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a, b);
    // Same keys as the official state dict.
    let orig = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    let saved = TensorFile::load(&p, &Device::Cpu).unwrap();
    let mut k1: Vec<_> = orig.tensors.keys().collect();
    let mut k2: Vec<_> = saved.tensors.keys().collect();
    k1.sort();
    k2.sort();
    assert_eq!(k1, k2);
}

#[test]
fn f16_weights_load() {
    let file = TensorFile::load(fixture(), &Device::Cpu).unwrap();
    let half: std::collections::BTreeMap<String, Tensor> = file
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.to_dtype(candle_core::DType::F16).unwrap()))
        .collect();
    let p = tmp("half.safetensors");
    let meta = std::collections::BTreeMap::from([("init_kwargs".to_string(), file.metadata["init_kwargs"].clone())]);
    save_safetensors(&p, &half, &meta).unwrap();
    let g = StyleGan2::load(&p, &Device::Cpu).unwrap();
    let img = g
        .image(
            &g.map(&g.sample_z(1, 0).unwrap(), None, Truncation::NONE).unwrap(),
            NoiseMode::Const,
        )
        .unwrap();
    assert_eq!(img.dims(), &[1, 3, 32, 32]);
}

#[test]
fn random_noise_is_deterministic_and_seed_dependent() {
    let cfg = GeneratorConfig { ..tiny() };
    let mut g = StyleGan2::random(&cfg, 1, &Device::Cpu).unwrap();
    // Give the noise some strength so that it shows.
    for b in &mut g.synthesis.blocks {
        b.conv1.noise_strength = Tensor::new(0.5f32, &Device::Cpu).unwrap();
    }
    let ws = g.map(&g.sample_z(2, 0).unwrap(), None, Truncation::NONE).unwrap();
    let run = |m| {
        g.image(&ws, m)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(run(NoiseMode::Random(3)), run(NoiseMode::Random(3)));
    assert_ne!(run(NoiseMode::Random(3)), run(NoiseMode::Random(4)));
    assert_ne!(run(NoiseMode::Random(3)), run(NoiseMode::None));
}

#[test]
fn conditional_and_odd_sized_generators_build_and_run() {
    for cfg in [
        GeneratorConfig { c_dim: 5, ..tiny() },
        GeneratorConfig {
            img_resolution: 4,
            ..tiny()
        },
        GeneratorConfig {
            img_resolution: 64,
            img_channels: 1,
            z_dim: 8,
            w_dim: 24,
            channel_base: 256,
            channel_max: 32,
            ..tiny()
        },
    ] {
        let g = StyleGan2::random(&cfg, 7, &Device::Cpu).unwrap();
        let z = g.sample_z(2, 0).unwrap();
        let c = (cfg.c_dim > 0).then(|| Tensor::ones((2, cfg.c_dim), candle_core::DType::F32, &Device::Cpu).unwrap());
        if cfg.c_dim > 0 {
            assert!(g.map(&z, None, Truncation::NONE).is_err(), "conditional model needs c");
        }
        let ws = g
            .map(
                &z,
                c.as_ref(),
                Truncation {
                    psi: 0.5,
                    cutoff: Some(2),
                },
            )
            .unwrap();
        assert_eq!(ws.dims(), &[2, cfg.num_ws(), cfg.w_dim]);
        let out = g.synthesize(&ws, NoiseMode::None).unwrap();
        assert_eq!(
            out.image.dims(),
            &[2, cfg.img_channels, cfg.img_resolution, cfg.img_resolution]
        );
        // init_kwargs written back describe the same architecture.
        let p = tmp(&format!("cfg{}.safetensors", cfg.img_resolution * 100 + cfg.c_dim));
        g.save(&p).unwrap();
        assert_eq!(StyleGan2::load(&p, &Device::Cpu).unwrap().spec(), g.spec());
    }
}

#[test]
fn truncation_cutoff_only_touches_the_first_layers() {
    let g = StyleGan2::load(fixture(), &Device::Cpu).unwrap();
    let z = g.sample_z(3, 9).unwrap();
    let full = g.map(&z, None, Truncation::NONE).unwrap();
    let cut = g
        .map(
            &z,
            None,
            Truncation {
                psi: 0.3,
                cutoff: Some(3),
            },
        )
        .unwrap();
    let tail = (full.narrow(1, 3, 5).unwrap() - cut.narrow(1, 3, 5).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(tail.to_scalar::<f32>().unwrap(), 0.0);
    let head = (full.narrow(1, 0, 3).unwrap() - cut.narrow(1, 0, 3).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(head.to_scalar::<f32>().unwrap() > 0.0);
}

#[test]
fn frozen_kernels_give_the_same_images_as_derived_ones() {
    let g = StyleGan2::load(fixture(), &Device::Cpu).unwrap();
    let mut thawed = g.clone();
    for b in &mut thawed.synthesis.blocks {
        if let Some(c0) = &mut b.conv0 {
            c0.thaw();
        }
    }
    let ws = g.map(&g.sample_z(2, 1).unwrap(), None, Truncation::NONE).unwrap();
    let a = g.image(&ws, NoiseMode::Const).unwrap();
    let b = thawed.image(&ws, NoiseMode::Const).unwrap();
    assert_eq!(labelgan_core::max_abs_diff(&a, &b).unwrap(), 0.0);
}
