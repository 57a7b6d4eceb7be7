//! Gradients of gradients through the per-channel ops, against the analytic value: for
//! `L = Σ r · (x a[c] + b[c])`, `∂L/∂x = r a[c]`, so the penalty `P = Σ (∂L/∂x)²` has
//! `∂P/∂a[c] = 2 a[c] Σ_{n, space} r²` and no gradient in `b`.

use candle_core::{Device, Tensor, Var};
use labelgan_core::{SplitMix64, max_abs_diff};
use labelgan_kernels::channel::{channel_affine, channel_sum};

#[test]
fn a_penalty_on_the_input_gradient_reaches_the_scale() {
    // SAFETY: the first thing this process does, before any other thread exists
    // (candle detaches backward graphs unless this is set, `../shared/CANDLE_NOTES.md`).
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    let mut rng = SplitMix64::new(8);
    let dev = Device::Cpu;
    let (n, c) = (2, 3);
    let x = Var::from_tensor(&rng.normal_tensor(&[n, c, 4, 5], &dev).unwrap()).unwrap();
    let a = Var::from_tensor(&rng.normal_tensor(&[c], &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&rng.normal_tensor(&[c], &dev).unwrap()).unwrap();
    let r = rng.normal_tensor(&[n, c, 4, 5], &dev).unwrap();
    let y = channel_affine(x.as_tensor(), Some(a.as_tensor()), Some(b.as_tensor())).unwrap();
    let gx = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = gx.get(x.as_tensor()).unwrap().clone();
    let grads = gx.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let got = grads
        .get(a.as_tensor())
        .expect("the penalty reaches a")
        .to_vec1::<f32>()
        .unwrap();
    let r2 = channel_sum(&r.sqr().unwrap()).unwrap().to_vec1::<f32>().unwrap();
    let av = a.as_tensor().to_vec1::<f32>().unwrap();
    for ch in 0..c {
        let want = 2.0 * av[ch] * r2[ch];
        assert!(
            (got[ch] - want).abs() < 1e-4 * want.abs().max(1.0),
            "channel {ch}: {} vs {want}",
            got[ch]
        );
    }
    if let Some(gb) = grads.get(b.as_tensor()) {
        let gb: Vec<f32> = gb.to_vec1().unwrap();
        assert!(
            gb.iter().all(|v| v.abs() < 1e-6),
            "b has no effect on the penalty: {gb:?}"
        );
    }
    // And the same through channel_sum's backward: P2 = Σ_c (∂/∂x Σ_c s[c] w[c])².
    let w = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
    let s = channel_sum(&(x.as_tensor() * x.as_tensor()).unwrap()).unwrap();
    let g = (s * &w).unwrap().sum_all().unwrap().backward().unwrap();
    // ∂/∂x = 2 x w[c]; its square summed has gradient 8 x w[c]² in x.
    let g = g.get(x.as_tensor()).unwrap().clone();
    let gg = g.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let got = gg.get(x.as_tensor()).unwrap();
    let want = channel_affine(&(x.as_tensor() * 8.0).unwrap(), Some(&w.sqr().unwrap()), None).unwrap();
    let err = max_abs_diff(got, &want).unwrap();
    assert!(err < 1e-4, "second order through channel_sum: error {err}");
}
