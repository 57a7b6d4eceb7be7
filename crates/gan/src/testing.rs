//! Helpers of this crate's unit tests: seeded f64 tensors and a gradient check by
//! central finite differences.

use candle_core::{DType, Device, Tensor, Var};
use labelgan_core::SplitMix64;

/// Standard normal values of `shape` from `seed`, in f64.
pub fn randn(seed: u64, shape: &[usize]) -> Tensor {
    SplitMix64::new(seed)
        .normal_tensor(shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F64))
        .unwrap()
}

/// Checks the gradient of the scalar `f` at `x0` (by backward) against central
/// differences of step `h` at the flat `indices`, within `tol` relative to
/// `max(|fd|, 1)`.
pub fn assert_gradient(f: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, indices: &[usize], h: f64, tol: f64) {
    let v = Var::from_tensor(x0).unwrap();
    let grads = f(v.as_tensor()).backward().unwrap();
    let g: Vec<f64> = grads.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
    for &i in indices {
        let at = |d: f64| {
            let mut b = base.clone();
            b[i] += d;
            let x = Tensor::from_vec(b, x0.shape(), &Device::Cpu).unwrap();
            f(&x).to_scalar::<f64>().unwrap()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() <= tol * fd.abs().max(1.0),
            "d/dx[{i}]: {} by backward, {fd} by differences",
            g[i]
        );
    }
}
