//! The gradient penalties against their formulas, and their gradients with respect to
//! the discriminator's weights (second order, through D's input gradient) against
//! finite differences. One test per process: candle reads CANDLE_GRAD_DO_NOT_DETACH
//! once per thread, at its first backward pass.

use candle_core::{DType, Device, Tensor, Var};
use labelgan_core::{Result, SplitMix64};
use labelgan_gan::Penalty;

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    SplitMix64::new(seed)
        .normal_tensor(shape, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
}

/// D(x)_n = sum_chw w * tanh(x_n): its input gradient is w * (1 - tanh(x)^2).
fn disc(w: &Tensor) -> impl Fn(&Tensor) -> Result<Tensor> + '_ {
    move |x: &Tensor| Ok(x.tanh()?.broadcast_mul(w)?.flatten_from(1)?.sum(1)?)
}

/// The penalty computed on the host from the closed-form input gradient.
fn by_hand(p: Penalty, w: &[f64], real: &[f64], fake: &[f64], n: usize, seed: u64) -> f64 {
    let k = w.len();
    let grad = |x: &[f64]| -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| w[i % k] * (1.0 - v.tanh().powi(2)))
            .collect()
    };
    let slope_penalty = |x: &[f64]| -> f64 {
        let g = grad(x);
        (0..n)
            .map(|s| ((1e-4 + g[s * k..(s + 1) * k].iter().map(|v| v * v).sum::<f64>()).sqrt() - 1.0).powi(2))
            .sum::<f64>()
            / n as f64
    };
    let mut rng = SplitMix64::new(seed);
    match p {
        Penalty::None => 0.0,
        Penalty::R1 => {
            let g = grad(real);
            g.iter().map(|v| v * v).sum::<f64>() / n as f64
        }
        Penalty::WganGp => {
            let alpha: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            let x: Vec<f64> = (0..n * k)
                .map(|i| real[i] + alpha[i / k] * (fake[i] - real[i]))
                .collect();
            slope_penalty(&x)
        }
        Penalty::Dragan => {
            let mean = real.iter().sum::<f64>() / real.len() as f64;
            let sd = (real.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / real.len() as f64).sqrt();
            let x: Vec<f64> = real
                .iter()
                .map(|v| (v + sd * (rng.uniform() - 0.5)).clamp(-1.0, 1.0))
                .collect();
            slope_penalty(&x)
        }
    }
}

#[test]
fn penalties_and_their_weight_gradients() {
    // SAFETY: the first thing this process does, before any other thread exists.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    let (n, shape) = (3, [2, 2, 2]);
    let real = (randn(1, &[n, 2, 2, 2]) * 0.5).unwrap();
    let fake = (randn(2, &[n, 2, 2, 2]) * 0.5).unwrap();
    let w0 = (randn(3, &shape) * 0.6).unwrap();
    let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let (rv, fv, wv) = (flat(&real), flat(&fake), flat(&w0));
    for p in [Penalty::None, Penalty::R1, Penalty::WganGp, Penalty::Dragan] {
        let seed = 7;
        let w = Var::from_tensor(&w0).unwrap();
        let value = p
            .value(&disc(w.as_tensor()), &real, &fake, &mut SplitMix64::new(seed))
            .unwrap();
        let got = value.to_scalar::<f64>().unwrap();
        let want = by_hand(p, &wv, &rv, &fv, n, seed);
        assert!((got - want).abs() < 1e-12, "{p:?}: {got} vs {want}");
        if p == Penalty::None {
            continue;
        }
        // d penalty / d w, through the input gradient.
        let g = flat(value.backward().unwrap().get(&w).expect("a gradient for D's weights"));
        for i in 0..wv.len() {
            let h = 1e-6;
            let at = |d: f64| {
                let mut b = wv.clone();
                b[i] += d;
                by_hand(p, &b, &rv, &fv, n, seed)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-6, "{p:?} d/dw{i}: {} vs {fd}", g[i]);
        }
    }
}
