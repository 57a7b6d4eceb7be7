//! The training loop: a run stopped, saved and resumed ends with the same bytes as an
//! unbroken one (weights, buffers, the weight average), with a penalty on a thread of
//! its own; a checkpoint refuses another config, naming the setting.

mod common;

use candle_core::{Device, Tensor};
use common::checkpoint_values as state;
use labelgan_core::{Result, SplitMix64};
use labelgan_gan::{Penalty, RealClasses, Trainer, TrainingConfig};

/// Deterministic "real" images and classes for image indices `start..start + n`.
fn real(start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
    let x = SplitMix64::derive(99, start)
        .normal_tensor(&[n, 3, 16, 16], &Device::Cpu)?
        .tanh()?;
    let classes: Vec<u32> = (0..n as u64).map(|i| ((start + i) % 4) as u32).collect();
    Ok((x, Some(classes.into())))
}

fn config() -> TrainingConfig {
    let mut c = common::tiny_sndcgan(4, 4);
    c.train.d_steps = 2;
    c.train.penalty = Penalty::WganGp;
    c.train.penalty_weight = 1.0;
    c.train.ema_decay = 0.9;
    c
}

#[test]
fn resumes_bit_exactly_and_refuses_another_config() {
    // SAFETY: first thing in this test binary's only test, before any other thread.
    unsafe { labelgan_gan::second_order::prepare_r1_environment() }.unwrap();
    let cfg = config();
    let mut whole = Trainer::new(&cfg, &Device::Cpu).unwrap();
    let mut losses = vec![];
    for _ in 0..4 {
        losses.push(whole.train_step(&mut real).unwrap());
    }
    assert!(
        losses.iter().all(|l| l.penalty > 0.0 && l.d_loss.is_finite()),
        "{losses:?}"
    );
    assert_eq!(whole.images_seen(), 4 * 2 * 4);

    let dir = std::env::temp_dir().join(format!("labelgan-gan-trainer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let mut first = Trainer::new(&cfg, &Device::Cpu).unwrap();
    for _ in 0..2 {
        first.train_step(&mut real).unwrap();
    }
    first.save(&ckpt).unwrap();
    let mut resumed = Trainer::load(&ckpt, &cfg, &Device::Cpu).unwrap();
    assert_eq!(resumed.step, 2);
    for _ in 0..2 {
        resumed.train_step(&mut real).unwrap();
    }
    let (a, b) = (state(&whole), state(&resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{k} differs after a resume");
    }
    assert!(a.keys().any(|k| k.starts_with("g_average.")) && a.keys().any(|k| k.contains("sn_u")));

    // Same seed, same start; another seed, other weights.
    let w = |t: &Trainer| state(t)["g.dense.weight"].clone();
    assert_eq!(
        w(&Trainer::new(&cfg, &Device::Cpu).unwrap()),
        w(&Trainer::new(&cfg, &Device::Cpu).unwrap())
    );
    let mut other = cfg.clone();
    other.seed = 1;
    assert_ne!(
        w(&Trainer::new(&cfg, &Device::Cpu).unwrap()),
        w(&Trainer::new(&other, &Device::Cpu).unwrap())
    );

    // Orthogonal init: the networks' weight matrices start orthonormal.
    let mut ortho = cfg.clone();
    ortho.model.init = labelgan_gan::Init::Orthogonal;
    let t = Trainer::new(&ortho, &Device::Cpu).unwrap();
    for (name, vars) in [
        ("dense.weight", t.generator_vars()),
        ("conv2.weight", t.discriminator_vars()),
    ] {
        let m = vars[name].as_tensor();
        let m = m.reshape((m.dim(0).unwrap(), ())).unwrap();
        let (r, c) = m.dims2().unwrap();
        let gram = if r <= c {
            m.matmul(&m.t().unwrap())
        } else {
            m.t().unwrap().matmul(&m)
        }
        .unwrap();
        let eye = Tensor::eye(r.min(c), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = (gram - eye)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-4, "{name} [{r}, {c}] is {err} from orthonormal");
    }

    // Another config is refused, naming the setting.
    let mut changed = cfg.clone();
    changed.train.d_lr = 1e-3;
    let err = Trainer::load(&ckpt, &changed, &Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("config.train.d_lr") && err.contains("ckpt.safetensors"),
        "{err}"
    );
    // The weight average is what `generate` uses when asked.
    let z = SplitMix64::new(5).normal_tensor(&[2, 8], &Device::Cpu).unwrap();
    let y = labelgan_gan::one_hot(&[1, 3], 4, &Device::Cpu).unwrap();
    let (avg, raw) = (
        whole.generate(&z, Some(&y), true).unwrap(),
        whole.generate(&z, Some(&y), false).unwrap(),
    );
    assert_eq!(avg.dims(), &[2, 3, 16, 16]);
    let diff = (avg - &raw)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 0.0, "the average differs from the current weights");
    // Generating with the average leaves the weights as they were.
    assert_eq!(
        raw.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        whole
            .generate(&z, Some(&y), false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
