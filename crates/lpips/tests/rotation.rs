//! The rotation-trained backbone: it learns the task, round-trips through its file, and
//! serves as an LPIPS model.

use candle_core::{DType, Device, Tensor};
use labelgan_core::FeatureExtractor;
use labelgan_core::image_io::ImageSource;
use labelgan_lpips::classifier::{class_accuracy, load_extractor, train_classifier};
use labelgan_lpips::rotation::{RotationConfig, RotationNet, Task, train_rotation};
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
        task: Task::Rotation,
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

#[test]
fn a_classifier_learns_the_object_classes_and_loads_as_an_extractor() {
    let cfg = RotationConfig {
        task: Task::Classes(10),
        widths: vec![8, 8, 16, 16, 16],
        convs_per_slice: 1,
        resolution: 16,
        batch: 16,
        steps: 600,
        lr: 3e-3,
        seed: 1,
        eval_every: 0,
    };
    let dev = Device::Cpu;
    let (held_out, classes) = labelgan_toyworld::objects::object_batch(50, 0, 200, 16, &dev).unwrap();
    let mut batches = |start: u64, n: usize| labelgan_toyworld::objects::object_batch(4, start, n, 16, &dev);
    let before = class_accuracy(&RotationNet::new(cfg.clone(), &dev).unwrap(), &held_out, &classes).unwrap();
    let net = train_classifier(&cfg, &mut batches, &held_out, &classes, &dev, &mut |_| {}).unwrap();
    let after = net.holdout_accuracy.unwrap();
    eprintln!("held-out class accuracy {before} -> {after}");
    // Ten classes: chance is 0.1.
    assert!(after > 0.3 && after > before + 0.15, "{before} -> {after}");
    assert!(net.accuracy(&held_out).is_err(), "not a rotation net");

    let path = tmp_dir("classifier").join("c.safetensors");
    net.save(&path).unwrap();
    let ex = load_extractor(&path, &dev).unwrap();
    assert_eq!(ex.dim(), 8 + 8 + 16 + 16 + 16);
    let x = held_out.narrow(0, 0, 5).unwrap();
    let p = ex
        .class_probabilities(&x)
        .unwrap()
        .expect("a classifier has class probabilities");
    assert_eq!(p.dims(), [5, 10]);
    for row in p.to_vec2::<f32>().unwrap() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let f = ex.features(&x).unwrap();
    assert_eq!(f.dims(), [5, 64]);
    // A rotation net's file is an LPIPS backbone: features, no classes.
    let rot = RotationNet::new(
        RotationConfig {
            resolution: 16,
            ..RotationConfig::default()
        },
        &dev,
    )
    .unwrap();
    let rot_path = tmp_dir("classifier").join("r.safetensors");
    rot.save(&rot_path).unwrap();
    assert!(
        load_extractor(&rot_path, &dev)
            .unwrap()
            .class_probabilities(&x)
            .unwrap()
            .is_none()
    );
    // Labels out of range are named.
    let mut bad = |start: u64, n: usize| {
        let (x, _) = labelgan_toyworld::objects::object_batch(4, start, n, 16, &dev)?;
        Ok((x, vec![12; n]))
    };
    let e = train_classifier(&cfg, &mut bad, &held_out, &classes, &dev, &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("class 12 of a classifier with 10 classes"),
        "{e}"
    );
}
