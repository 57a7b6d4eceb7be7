//! The rotation-trained backbone: it learns the task, round-trips through its file, and
//! serves as an LPIPS model.

use candle_core::{DType, Device, Tensor};
use labelgan_core::image_io::ImageSource;
use labelgan_lpips::rotation::{RotationConfig, RotationNet, train_rotation};
use labelgan_lpips::{Lpips, Weighting};

fn toy(seed: u64, start: u64, n: usize) -> Tensor {
    labelgan_toyworld::batch_tensor(seed, start, n, 32, &Device::Cpu).unwrap()
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("labelgan-rotation-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn learns_rotations_of_toy_faces_and_round_trips() {
    let cfg = RotationConfig {
        widths: vec![8, 8, 16, 16, 16],
        convs_per_slice: 1,
        resolution: 32,
        batch: 8,
        steps: 120,
        lr: 2e-3,
        seed: 3,
        eval_every: 0,
    };
    let holdout = toy(77, 0, 24);
    let before = RotationNet::new(cfg.clone(), &Device::Cpu)
        .unwrap()
        .accuracy(&holdout)
        .unwrap();
    let source = ImageSource::Stream(Box::new(|start, n| {
        labelgan_toyworld::batch_tensor(5, start, n, 32, &Device::Cpu)
    }));
    let mut losses = vec![];
    let net = train_rotation(&cfg, &source, &holdout, &Device::Cpu, &mut |p| losses.push(p.loss)).unwrap();
    let after = net.holdout_accuracy.unwrap();
    eprintln!(
        "held-out accuracy {before} -> {after}, loss {:?}",
        &losses[losses.len() - 3..]
    );
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    assert!(last < first * 0.8, "loss {first} -> {last}");
    assert!(
        after > 0.55 && after > before + 0.25,
        "held-out accuracy {before} -> {after}"
    );

    let dir = tmp_dir("roundtrip");
    let path = dir.join("rot.safetensors");
    net.save(&path).unwrap();
    let back = RotationNet::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.config, cfg);
    assert_eq!(back.accuracy(&holdout).unwrap(), after);
    let x = toy(9, 0, 2);
    let want = net.logits(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let got = back
        .logits(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(want, got);

    // The same file is an LPIPS model with uniform weights over the five taps.
    let lp = Lpips::load(&path, &Device::Cpu).unwrap();
    assert!(matches!(lp.weighting, Weighting::Uniform));
    assert_eq!(lp.channels(), &[8, 8, 16, 16, 16]);
    let (a, b) = (x.narrow(0, 0, 1).unwrap(), x.narrow(0, 1, 1).unwrap());
    let d_ab = lp.distance(&a, &b).unwrap().to_vec1::<f32>().unwrap()[0];
    let d_aa = lp.distance(&a, &a).unwrap().to_vec1::<f32>().unwrap()[0];
    let d_mem = net.lpips().distance(&a, &b).unwrap().to_vec1::<f32>().unwrap()[0];
    assert!(d_ab > 0.0 && d_aa.abs() < 1e-6, "{d_ab} {d_aa}");
    assert_eq!(d_ab, d_mem);
}

#[test]
fn bad_configs_and_files_are_errors() {
    let bad = RotationConfig {
        widths: vec![8, 8],
        ..RotationConfig::default()
    };
    assert!(RotationNet::new(bad, &Device::Cpu).is_err());
    let small = RotationConfig {
        resolution: 8,
        ..RotationConfig::default()
    };
    assert!(RotationNet::new(small, &Device::Cpu).is_err());
    let cfg = RotationConfig {
        resolution: 32,
        steps: 1,
        ..RotationConfig::default()
    };
    let wrong = Tensor::zeros((2, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let src = ImageSource::Images(toy(1, 0, 4));
    let e = train_rotation(&cfg, &src, &wrong, &Device::Cpu, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("held-out"), "{e}");
    let e = RotationNet::load(tmp_dir("bad").join("missing.safetensors"), &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("missing.safetensors"), "{e}");
}
