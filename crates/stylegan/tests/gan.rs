//! GAN training: the R1 penalty's gradient against finite differences, the
//! discriminator's pieces against direct computations, losses that move as they should
//! in a few steps, and checkpoint -> resume -> the same run.
//!
//! Own `main` (harness = false): `CANDLE_GRAD_DO_NOT_DETACH` must be in the environment
//! before any thread runs a backward pass, which only a single-threaded start can
//! guarantee.

use candle_core::{DType, Device, Tensor};
use labelgan_core::{Generator, NoiseMode, SplitMix64, Truncation};
use labelgan_stylegan::discriminator::{Discriminator, DiscriminatorConfig};
use labelgan_stylegan::train::{ImageSource, r1_penalty, softplus};
use labelgan_stylegan::{GanConfig, Trainer};

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    let tests: &[(&str, fn())] = &[
        ("softplus_is_stable", softplus_is_stable),
        ("fast_conv_gradients_equal_candles", fast_conv_gradients_equal_candles),
        (
            "resampling_matrices_match_the_filters",
            resampling_matrices_match_the_filters,
        ),
        (
            "r1_gradient_matches_finite_differences",
            r1_gradient_matches_finite_differences,
        ),
        (
            "r1_by_groups_equals_the_whole_batch",
            r1_by_groups_equals_the_whole_batch,
        ),
        (
            "minibatch_std_matches_a_direct_computation",
            minibatch_std_matches_a_direct_computation,
        ),
        (
            "discriminator_learns_and_generator_follows",
            discriminator_learns_and_generator_follows,
        ),
        ("checkpoint_resume_is_the_same_run", checkpoint_resume_is_the_same_run),
        ("bad_configs_are_named", bad_configs_are_named),
        ("continues_from_a_trained_generator", continues_from_a_trained_generator),
    ];
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for (name, f) in tests {
        if !filter.is_empty() && !filter.iter().any(|p| name.contains(p.as_str())) {
            continue;
        }
        let t = std::time::Instant::now();
        f();
        println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
    }
}

fn tiny_d(res: usize) -> DiscriminatorConfig {
    DiscriminatorConfig {
        resolution: res,
        img_channels: 3,
        channel_base: 64,
        channel_max: 8,
        mbstd_group: 2,
    }
}

fn tiny(res: usize) -> GanConfig {
    GanConfig {
        z_dim: 16,
        w_dim: 16,
        mapping_layers: 2,
        channel_base: 64,
        channel_max: 16,
        d_channel_base: 64,
        d_channel_max: 16,
        batch: 4,
        ..GanConfig::small(res)
    }
}

fn softplus_is_stable() {
    let x = Tensor::new(&[-100f32, -1.0, 0.0, 2.0, 100.0], &Device::Cpu).unwrap();
    let y = softplus(&x).unwrap().to_vec1::<f32>().unwrap();
    let want = [0.0f32, 0.313_261_7, std::f32::consts::LN_2, 2.126_928, 100.0];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{y:?}");
    }
}

/// d(R1)/d(theta) by autograd (second order) against central differences in f64.
fn r1_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let d = Discriminator::new(tiny_d(8), 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let real = SplitMix64::new(4)
        .normal_tensor(&[4, 3, 8, 8], &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let gamma = 0.7;
    let penalty = r1_penalty(&d, &real, gamma).unwrap();
    let grads = penalty.backward().unwrap();
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
                r1_penalty(&d, &real, gamma).unwrap().to_scalar::<f64>().unwrap()
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

fn minibatch_std_matches_a_direct_computation() {
    // The mbstd channel through a 1-block D: compare D's forward on a batch with one
    // where the batch statistics are computed by hand (groups i % (N/G)).
    let dev = Device::Cpu;
    let x = SplitMix64::new(2).normal_tensor(&[4, 2, 3, 3], &dev).unwrap();
    let xs = x.flatten_from(1).unwrap().to_vec2::<f32>().unwrap(); // [4, 18]
    let (g, groups) = (2usize, 2usize);
    let mut want = [0f32; 2];
    for (j, w) in want.iter_mut().enumerate() {
        let members: Vec<&Vec<f32>> = (0..g).map(|k| &xs[k * groups + j]).collect();
        let mut s = 0.0;
        for e in 0..18 {
            let m = members.iter().map(|r| r[e]).sum::<f32>() / g as f32;
            let var = members.iter().map(|r| (r[e] - m).powi(2)).sum::<f32>() / g as f32;
            s += (var + 1e-8).sqrt();
        }
        *w = s / 18.0;
    }
    let d = Discriminator::new(
        DiscriminatorConfig {
            mbstd_group: 2,
            ..tiny_d(8)
        },
        0,
        &dev,
    )
    .unwrap();
    let got = d.mbstd_for_tests(&x).unwrap(); // [4, 3, 3, 3]
    let extra = got
        .narrow(1, 2, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (i, row) in extra.iter().enumerate() {
        for &val in row {
            assert!(
                (val - want[i % groups]).abs() < 1e-5,
                "sample {i}: {val} vs {}",
                want[i % groups]
            );
        }
    }
}

fn discriminator_learns_and_generator_follows() {
    let dev = Device::Cpu;
    // Reals: smooth colour gradients (easy to tell from an untrained G's output).
    let reals = {
        let mut v = vec![0f32; 8 * 3 * 16 * 16];
        for i in 0..8 {
            for c in 0..3 {
                for p in 0..256 {
                    v[((i * 3 + c) * 256) + p] = ((p % 16) as f32 / 8.0 - 1.0) * if c == i % 3 { 1.0 } else { -0.5 };
                }
            }
        }
        Tensor::from_vec(v, (8, 3, 16, 16), &dev).unwrap()
    };
    let source = ImageSource::Images(reals);
    // D alone (G frozen): its loss falls from about 2 ln 2.
    let cfg = GanConfig {
        g_lr: 0.0,
        r1_gamma: 0.0,
        ..tiny(16)
    };
    let mut t = Trainer::new(cfg, &dev).unwrap();
    let first = t.step(&source).unwrap();
    let mut last = first;
    for _ in 0..25 {
        last = t.step(&source).unwrap();
    }
    assert!(
        (first.d - 2.0 * std::f32::consts::LN_2).abs() < 0.5,
        "initial D loss {}",
        first.d
    );
    assert!(last.d < 0.7 * first.d, "D loss {} -> {}", first.d, last.d);
    assert!(last.real_score > last.fake_score, "{last:?}");
    // Then G alone against that D: its loss falls.
    t.set_learning_rates(0.0025, 0.0);
    let d_before: std::collections::BTreeMap<_, _> =
        t.d.tensors().into_iter().map(|(k, v)| (k, v.copy().unwrap())).collect();
    let g_losses: Vec<f32> = (0..15).map(|_| t.step(&source).unwrap().g).collect();
    for (k, v) in t.d.tensors() {
        assert_eq!(
            labelgan_core::max_abs_diff(&v, &d_before[&k]).unwrap(),
            0.0,
            "D.{k} moved at lr 0"
        );
    }
    let head: f32 = g_losses[..3].iter().sum::<f32>() / 3.0;
    let tail: f32 = g_losses[g_losses.len() - 3..].iter().sum::<f32>() / 3.0;
    assert!(tail < head, "G loss {head} -> {tail}: {g_losses:?}");
    // The EMA generator works as a plain generator.
    let g = t.generator_ema().unwrap();
    let ws = g.map(&g.sample_z(2, 0).unwrap(), None, Truncation::NONE).unwrap();
    let img = g.image(&ws, NoiseMode::Const).unwrap();
    assert_eq!(img.dims(), &[2, 3, 16, 16]);
}

fn checkpoint_resume_is_the_same_run() {
    let dev = Device::Cpu;
    let source = ImageSource::Stream(Box::new(|start, n| {
        let mut rng = SplitMix64::new(start);
        Ok(rng.normal_tensor(&[n, 3, 8, 8], &Device::Cpu)?.tanh()?)
    }));
    let cfg = GanConfig {
        r1_interval: 2,
        ..tiny(8)
    };
    let mut a = Trainer::new(cfg.clone(), &dev).unwrap();
    for _ in 0..4 {
        a.step(&source).unwrap();
    }
    let mut b = Trainer::new(cfg, &dev).unwrap();
    for _ in 0..2 {
        b.step(&source).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("lg-gan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("ck.safetensors");
    b.save_checkpoint(&ck).unwrap();
    drop(b);
    let mut c = Trainer::load_checkpoint(&ck, &dev).unwrap();
    assert_eq!(c.step, 2);
    for _ in 0..2 {
        c.step(&source).unwrap();
    }
    let (ga, gc) = (a.generator_ema().unwrap(), c.generator_ema().unwrap());
    let ws = ga.map(&ga.sample_z(3, 1).unwrap(), None, Truncation::NONE).unwrap();
    let (ia, ic) = (
        ga.image(&ws, NoiseMode::Const).unwrap(),
        gc.image(&ws, NoiseMode::Const).unwrap(),
    );
    let diff = labelgan_core::max_abs_diff(&ia, &ic).unwrap();
    assert_eq!(diff, 0.0, "resumed run differs by {diff}");
    let (da, dc) = (a.d.tensors(), c.d.tensors());
    for (k, t) in &da {
        assert_eq!(
            labelgan_core::max_abs_diff(t, &dc[k]).unwrap(),
            0.0,
            "D.{k} differs after resume"
        );
    }
    // The EMA generator saves in the official layout and loads like any generator.
    let g_path = dir.join("g.safetensors");
    ga.save(&g_path).unwrap();
    let loaded = labelgan_stylegan::StyleGan2::load(&g_path, &dev).unwrap();
    let il = loaded.image(&ws, NoiseMode::Const).unwrap();
    assert!(labelgan_core::max_abs_diff(&ia, &il).unwrap() < 1e-6);
    // A file that is not a checkpoint is named.
    let err = Trainer::load_checkpoint(&g_path, &dev).err().unwrap().to_string();
    assert!(err.contains("g.safetensors") && err.contains("checkpoint"), "{err}");
}

fn bad_configs_are_named() {
    let dev = Device::Cpu;
    let err = Trainer::new(GanConfig { batch: 6, ..tiny(8) }, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("batch"), "{err}");
    let err = Trainer::new(
        GanConfig {
            resolution: 12,
            ..tiny(8)
        },
        &dev,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("12"), "{err}");
    for bad in [
        GanConfig {
            g_lr: f64::NAN,
            ..tiny(8)
        },
        GanConfig { d_lr: -1.0, ..tiny(8) },
        GanConfig {
            g_warmup_gap: Some(f64::NAN),
            g_warmup_steps: 5,
            ..tiny(8)
        },
        GanConfig {
            g_warmup_gap: Some(2.0),
            ..tiny(8)
        },
    ] {
        let err = Trainer::new(bad, &dev).err().unwrap().to_string();
        assert!(err.contains("lr") || err.contains("g_warmup_gap"), "{err}");
    }
    let mut t = Trainer::new(tiny(8), &dev).unwrap();
    let wrong = ImageSource::Images(Tensor::zeros((4, 3, 16, 16), DType::F32, &dev).unwrap());
    let err = t.step(&wrong).err().unwrap().to_string();
    assert!(err.contains("16"), "{err}");
}

fn resampling_matrices_match_the_filters() {
    use labelgan_kernels::resample::separable2d;
    use labelgan_stylegan::discriminator::{blur_reference, resample_matrix};
    let dev = Device::Cpu;
    let f = [1f32, 3., 3., 1.];
    let k: Vec<f32> = f.iter().flat_map(|a| f.iter().map(move |b| a * b / 64.0)).collect();
    let filter = Tensor::from_vec(k, (1, 1, 4, 4), &dev).unwrap();
    let x = SplitMix64::new(1).normal_tensor(&[2, 3, 8, 8], &dev).unwrap();
    // conv1's blur: pad 2, every pixel.
    let b = resample_matrix(8, 2, 1, &dev).unwrap();
    let got = separable2d(&x, &b, &b).unwrap();
    let want = blur_reference(&x, &filter, 2).unwrap();
    assert!(labelgan_core::max_abs_diff(&got, &want).unwrap() < 1e-6);
    // The skip: pad 1, then every other pixel (what a 1x1 stride-2 conv reads).
    let d = resample_matrix(8, 1, 2, &dev).unwrap();
    assert_eq!(d.dims(), &[4, 8]);
    let got = separable2d(&x, &d, &d).unwrap();
    let want = blur_reference(&x, &filter, 1).unwrap();
    let want = want.narrow(2, 0, 7).unwrap().narrow(3, 0, 7).unwrap();
    let idx = Tensor::new(&[0u32, 2, 4, 6], &dev).unwrap();
    let want = want.index_select(&idx, 2).unwrap().index_select(&idx, 3).unwrap();
    assert!(labelgan_core::max_abs_diff(&got, &want).unwrap() < 1e-6);
}

/// The training convolution: candle's conv2d output (up to summation order), same
/// gradients.
fn fast_conv_gradients_equal_candles() {
    use candle_core::Var;
    let dev = Device::Cpu;
    let mut rng = SplitMix64::new(5);
    for (k, pad) in [(3, 1), (3, 0), (1, 0), (3, 2)] {
        let x = Var::from_tensor(&rng.normal_tensor(&[2, 3, 7, 6], &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&rng.normal_tensor(&[4, 3, k, k], &dev).unwrap()).unwrap();
        let probe = rng
            .normal_tensor(&[2, 4, 7 + 2 * pad + 1 - k, 6 + 2 * pad + 1 - k], &dev)
            .unwrap();
        let ours = labelgan_stylegan::conv::conv2d(x.as_tensor(), w.as_tensor(), pad).unwrap();
        let theirs = x.as_tensor().conv2d(w.as_tensor(), pad, 1, 1, 1).unwrap();
        let e = labelgan_core::max_abs_diff(&ours, &theirs).unwrap();
        assert!(e < 1e-5, "k {k} pad {pad}: forward differs by {e}");
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, what) in [(&x, "input"), (&w, "weight")] {
            let e = labelgan_core::max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap()).unwrap();
            assert!(e < 1e-4, "k {k} pad {pad}: {what} gradient differs by {e}");
        }
    }
}

/// R1 computed one minibatch-std group at a time equals the whole batch at once.
fn r1_by_groups_equals_the_whole_batch() {
    use labelgan_stylegan::train::r1_gradients;
    let dev = Device::Cpu;
    let d = Discriminator::new(tiny_d(8), 5, &dev).unwrap();
    let real = SplitMix64::new(6).normal_tensor(&[8, 3, 8, 8], &dev).unwrap();
    let full = r1_penalty(&d, &real, 0.3).unwrap();
    let grads = (&full * 2.0).unwrap().backward().unwrap();
    let (value, by_group) = r1_gradients(&d, &real, 0.3, 2.0).unwrap();
    let v = full.to_scalar::<f32>().unwrap();
    assert!((value - v).abs() <= 1e-5 * v.abs().max(1e-6), "{value} vs {v}");
    for (name, var) in &d.params() {
        let Some(a) = grads.get(var) else {
            // Parameters R1 does not depend on (the output bias).
            assert!(!by_group.contains_key(name), "{name}");
            continue;
        };
        let b = &by_group[name];
        let e = labelgan_core::max_rel_diff(b, a, 1e-12).unwrap();
        assert!(e < 1e-3, "{name}: relative difference {e}");
    }
}

fn continues_from_a_trained_generator() {
    let dev = Device::Cpu;
    let source = ImageSource::Stream(Box::new(|start, n| {
        let mut rng = SplitMix64::new(start);
        Ok(rng.normal_tensor(&[n, 3, 8, 8], &Device::Cpu)?.tanh()?)
    }));
    let mut a = Trainer::new(tiny(8), &dev).unwrap();
    for _ in 0..3 {
        a.step(&source).unwrap();
    }
    let g = a.generator_ema().unwrap();
    let ws = g.map(&g.sample_z(3, 1).unwrap(), None, Truncation::NONE).unwrap();
    let before = g.image(&ws, NoiseMode::Const).unwrap();
    // A fresh D with G frozen for two steps: G and G_ema stay the given generator.
    let cfg = GanConfig {
        seed: 7,
        g_warmup_steps: 2,
        ..tiny(8)
    };
    let mut b = Trainer::from_generator(cfg, &g, &dev).unwrap();
    // Copies: the optimiser updates D's variables in place.
    let d0: std::collections::BTreeMap<_, _> = b.d.tensors().into_iter().map(|(k, t)| (k, t.copy().unwrap())).collect();
    for _ in 0..2 {
        assert!(b.step(&source).unwrap().g.is_nan());
    }
    let same = b.generator_ema().unwrap().image(&ws, NoiseMode::Const).unwrap();
    assert_eq!(labelgan_core::max_abs_diff(&before, &same).unwrap(), 0.0);
    let moved =
        b.d.tensors()
            .iter()
            .any(|(k, t)| labelgan_core::max_abs_diff(t, &d0[k]).unwrap() > 0.0);
    assert!(moved, "D did not train during the warm-up");
    // Then G trains.
    assert!(b.step(&source).unwrap().g.is_finite());
    let after = b.generator_ema().unwrap().image(&ws, NoiseMode::Const).unwrap();
    assert!(labelgan_core::max_abs_diff(&before, &after).unwrap() > 0.0);
    // An adaptive warm-up: G waits while D's real-fake gap is under the margin, for at
    // most g_warmup_steps; a margin of minus infinity ends it at once.
    let held = GanConfig {
        seed: 7,
        g_warmup_steps: 3,
        g_warmup_gap: Some(f64::INFINITY),
        ..tiny(8)
    };
    let mut c = Trainer::from_generator(held.clone(), &g, &dev).unwrap();
    for _ in 0..3 {
        assert!(c.step(&source).unwrap().g.is_nan());
        assert_eq!(c.g_started, None);
    }
    // The state survives a checkpoint.
    let dir = std::env::temp_dir().join(format!("lg-gan-warmup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("ck.safetensors");
    c.save_checkpoint(&ck).unwrap();
    let mut c2 = Trainer::load_checkpoint(&ck, &dev).unwrap();
    assert_eq!((c2.g_started, c2.gap_average), (None, c.gap_average));
    assert!(c2.step(&source).unwrap().g.is_finite());
    assert_eq!(c2.g_started, Some(3));
    std::fs::remove_dir_all(&dir).ok();
    let open = GanConfig {
        g_warmup_gap: Some(f64::NEG_INFINITY),
        ..held
    };
    let mut e = Trainer::from_generator(open, &g, &dev).unwrap();
    assert!(e.step(&source).unwrap().g.is_finite());
    assert_eq!(e.g_started, Some(0));
    // Another architecture is refused, naming a tensor.
    let err = Trainer::from_generator(
        GanConfig {
            channel_max: 8,
            ..tiny(8)
        },
        &g,
        &dev,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains('`') && err.contains("architecture"), "{err}");
}
