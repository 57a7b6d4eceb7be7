//! StyleGAN2 in the one training loop: conditional, lazy R1, the half-life average
//! with its ramp-up, style mixing and noise; a run stopped, saved and resumed ends with
//! the same bytes as an unbroken one; the exported generator (official layout) makes
//! the loop's own images; a run from a trained generator rests G while D catches up;
//! R1's gradient through StyleGAN2's discriminator against finite differences.

mod common;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use common::checkpoint_values as state;
use labelgan_core::{Generator, NoiseMode, Result, SplitMix64, Truncation};
use labelgan_gan::{Architecture, Loss, Penalty, RealClasses, Trainer, TrainingConfig};

fn real(start: u64, n: usize) -> Result<(Tensor, Option<RealClasses>)> {
    let x = SplitMix64::derive(7, start)
        .normal_tensor(&[n, 3, 16, 16], &Device::Cpu)?
        .tanh()?;
    let classes: Vec<u32> = (0..n as u64).map(|i| ((start + i) % 3) as u32).collect();
    Ok((x, Some(classes.into())))
}

fn config() -> TrainingConfig {
    let mut c = TrainingConfig::default();
    let m = &mut c.model;
    (m.architecture, m.resolution, m.classes, m.z_dim, m.g_width, m.d_width) =
        (Architecture::Stylegan2, 16, 3, 8, 16, 16);
    let s = &mut m.stylegan2;
    (
        s.w_dim,
        s.mapping_layers,
        s.g_channel_base,
        s.d_channel_base,
        s.mbstd_group,
    ) = (8, 2, 128, 128, 2);
    let t = &mut c.train;
    (t.loss, t.penalty, t.penalty_weight, t.penalty_interval) = (Loss::NonSaturating, Penalty::R1, 0.5, 2);
    (t.batch, t.g_lr, t.d_lr, t.g_betas, t.d_betas) = (4, 0.0025, 0.0025, [0.0, 0.99], [0.0, 0.99]);
    (t.ema_half_life_kimg, t.ema_rampup) = (0.01, 0.5);
    c
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn trains_resumes_exports_and_rests() {
    // SAFETY: first thing in this test binary's only test, before any other thread.
    unsafe { labelgan_gan::second_order::prepare_r1_environment() }.unwrap();
    let dir = std::env::temp_dir().join(format!("labelgan-gan-sg2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config();
    let dev = Device::Cpu;

    let mut whole = Trainer::new(&cfg, &dev).unwrap();
    assert!(whole.discriminator_vars().contains_key("projection.weight"));
    assert!(whole.generator_vars().contains_key("mapping.embed.weight"));
    let losses: Vec<_> = (0..4).map(|_| whole.train_step(&mut real).unwrap()).collect();
    // Lazy R1: on updates 0 and 2 only.
    let on: Vec<bool> = losses.iter().map(|l| l.penalty > 0.0).collect();
    assert_eq!(on, [true, false, true, false], "{losses:?}");
    assert!(losses.iter().all(|l| l.d_loss.is_finite() && l.g_loss.is_finite()));

    let ck = dir.join("ck.safetensors");
    let mut first = Trainer::new(&cfg, &dev).unwrap();
    first.train_step(&mut real).unwrap();
    first.train_step(&mut real).unwrap();
    first.save(&ck).unwrap();
    let mut resumed = Trainer::load(&ck, &cfg, &dev).unwrap();
    resumed.train_step(&mut real).unwrap();
    resumed.train_step(&mut real).unwrap();
    let (a, b) = (state(&whole), state(&resumed));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{k} differs after a resume");
    }
    assert!(a.contains_key("g_buffer.mapping.w_avg") && a.keys().any(|k| k.starts_with("g_average.")));

    // The export is an official-layout generator that makes the loop's average images.
    let g_path = dir.join("g.safetensors");
    whole.export_generator(&g_path).unwrap();
    let g = labelgan_stylegan::StyleGan2::load(&g_path, &dev).unwrap();
    let z = SplitMix64::new(3).normal_tensor(&[2, 8], &dev).unwrap();
    let y = labelgan_gan::one_hot(&[0, 2], 3, &dev).unwrap();
    let exported = g
        .image(&g.map(&z, Some(&y), Truncation::NONE).unwrap(), NoiseMode::Const)
        .unwrap();
    assert_eq!(exported.dims(), &[2, 3, 16, 16]);
    // The loaded generator runs the fused inference passes, the loop its differentiable
    // ones: the same numbers up to summation order.
    let e = labelgan_core::max_abs_diff(&exported, &whole.generate(&z, Some(&y), true).unwrap()).unwrap();
    assert!(
        e < 1e-4,
        "the exported generator's images differ from the loop's by {e}"
    );
    assert_eq!(flat(&g.mapping.w_avg), a["g_buffer.mapping.w_avg"]);

    // From a trained generator with a fresh D: G rests for 2 steps, then trains.
    let file = labelgan_core::io::TensorFile::load(&g_path, &dev).unwrap();
    let trained: BTreeMap<String, Tensor> = file.tensors.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
    let mut rest = cfg.clone();
    rest.train.g_warmup_steps = 2;
    let mut t = Trainer::with_generator(&rest, &trained, &dev).unwrap();
    let w = |t: &Trainer| flat(t.generator_vars()["synthesis.b8.conv0.weight"].as_tensor());
    let start = w(&t);
    assert_eq!(start, flat(&trained["synthesis.b8.conv0.weight"]));
    t.train_step(&mut real).unwrap();
    t.train_step(&mut real).unwrap();
    assert_eq!(w(&t), start, "G rests during the warm-up");
    assert_eq!(t.g_started, None);
    t.train_step(&mut real).unwrap();
    assert_eq!(t.g_started, Some(2));
    assert_ne!(w(&t), start, "then trains");

    // A generator of another architecture is refused, naming the tensor.
    let mut wider = cfg.clone();
    wider.model.g_width = 32;
    let err = Trainer::with_generator(&wider, &trained, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("synthesis.") && err.contains("is [16"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();

    // R1 through StyleGAN2's discriminator (its own convolutions and resampling):
    // d(R1)/d(theta) by autograd, second order, against central differences in f64, on
    // a fresh thread (which keeps the graph of gradients).
    std::thread::scope(|s| s.spawn(r1_gradient_matches_finite_differences).join().unwrap());
    // R1 taken in minibatch-std groups (what the loop does for StyleGAN2) equals the
    // whole batch at once.
    std::thread::scope(|s| s.spawn(r1_by_groups_equals_the_whole_batch).join().unwrap());
}

/// A StyleGAN2 discriminator small enough for second-order checks: 8 px, 8 channels,
/// minibatch-std groups of 2, weights from `seed`.
fn tiny_discriminator(seed: u64) -> labelgan_stylegan::discriminator::Discriminator {
    use labelgan_stylegan::discriminator::{Discriminator, DiscriminatorConfig};
    let config = DiscriminatorConfig {
        resolution: 8,
        img_channels: 3,
        channel_base: 64,
        channel_max: 8,
        mbstd_group: 2,
    };
    Discriminator::new(config, seed, &Device::Cpu).unwrap()
}

fn r1_by_groups_equals_the_whole_batch() {
    let dev = Device::Cpu;
    let d = tiny_discriminator(5);
    let real = SplitMix64::new(6).normal_tensor(&[8, 3, 8, 8], &dev).unwrap();
    let d_fn = |x: &Tensor, _: Option<&Tensor>| d.forward(x);
    let vars = d.params();
    let run = |groups| {
        Penalty::R1
            .gradients(&d_fn, (&real, &real, None), groups, 2.0, &vars, &mut SplitMix64::new(0))
            .unwrap()
    };
    let (whole, by_group) = (run(1), run(4));
    assert!(
        (whole.0 - by_group.0).abs() <= 1e-5 * whole.0.abs().max(1e-6),
        "{} vs {}",
        whole.0,
        by_group.0
    );
    assert_eq!(
        whole.1.keys().collect::<Vec<_>>(),
        by_group.1.keys().collect::<Vec<_>>()
    );
    for (name, a) in &whole.1 {
        let e = labelgan_core::max_rel_diff(&by_group.1[name], a, 1e-12).unwrap();
        assert!(e < 1e-3, "{name}: relative difference {e}");
    }
    // Groups that split minibatch-std statistics would not match: 8 groups of 1.
    let wrong = run(8);
    assert!(
        (wrong.0 - whole.0).abs() > 1e-4 * whole.0.abs(),
        "the grouping is visible"
    );
}

fn r1_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let d = tiny_discriminator(3).to_dtype(candle_core::DType::F64).unwrap();
    let real = SplitMix64::new(4)
        .normal_tensor(&[4, 3, 8, 8], &dev)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let r1 = || {
        let d_fn = |x: &Tensor| d.forward(x);
        Penalty::R1.value(&d_fn, &real, &real, &mut SplitMix64::new(0)).unwrap()
    };
    let grads = r1().backward().unwrap();
    for name in ["b8.conv1.weight", "b8.fromrgb.weight", "b4.fc.weight", "b8.skip.weight"] {
        let var = &d.params()[name];
        let g = grads.get(var).unwrap_or_else(|| panic!("no R1 gradient for {name}"));
        let base = var.as_tensor().detach().copy().unwrap();
        let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let gflat = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut rng = SplitMix64::new(9);
        for _ in 0..3 {
            let i = rng.below(flat.len() as u64) as usize;
            let eps = 1e-4;
            let at = |delta: f64| {
                let mut v = flat.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, base.dims(), &dev).unwrap()).unwrap();
                r1().to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&base).unwrap();
            let err = (fd - gflat[i]).abs() / (fd.abs().max(gflat[i].abs()).max(1e-6));
            assert!(
                err < 1e-4,
                "{name}[{i}]: autograd {} vs finite differences {fd} (rel {err})",
                gflat[i]
            );
        }
    }
}
