//! The discriminator's pieces against direct computations: its resampling matrices
//! against the blur filter, the training convolution against candle's, minibatch std
//! by hand. (Training, R1 through this discriminator included, is tested in
//! `labelgan-gan`'s `tests/stylegan2.rs`, the loop that trains it.)
//!
//! Own `main` (harness = false): `CANDLE_GRAD_DO_NOT_DETACH` must be in the environment
//! before any thread runs a backward pass, which only a single-threaded start can
//! guarantee.

use candle_core::{Device, Tensor};
use labelgan_core::SplitMix64;
use labelgan_stylegan::discriminator::{Discriminator, DiscriminatorConfig};

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    let tests: &[(&str, fn())] = &[
        ("fast_conv_gradients_equal_candles", fast_conv_gradients_equal_candles),
        (
            "resampling_matrices_match_the_filters",
            resampling_matrices_match_the_filters,
        ),
        (
            "minibatch_std_matches_a_direct_computation",
            minibatch_std_matches_a_direct_computation,
        ),
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
