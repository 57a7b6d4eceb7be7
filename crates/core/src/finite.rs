//! Numeric checks: that a tensor is finite, and how far apart two tensors are, with
//! NaN never hiding (candle's `max` skips NaN, so a partly-NaN output would compare as
//! close).

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Fails with [`Error::InvalidInput`] if `t` holds a NaN or an infinity, naming `what`
/// and the first bad position. Reads a contiguous CPU tensor in place (no copy: feature
/// maps can be large); other tensors are reduced on their device first, and copied to
/// the host only to locate a bad value. Integer tensors pass.
pub fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    if !t.dtype().is_float() {
        return Ok(());
    }
    let finite = match all_finite_in_place(t) {
        Some(ok) => ok,
        // x * 0 is 0 for every finite x and NaN otherwise.
        None => (t * 0.0)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()? == 0.0,
    };
    if finite {
        return Ok(());
    }
    let i = t
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .iter()
        .position(|v| !v.is_finite())
        .unwrap_or(0);
    Err(Error::invalid(format!(
        "{what} holds a non-finite value (NaN or infinity) at flat index {i}"
    )))
}

/// Whether a contiguous CPU tensor is all finite, read in place; `None` for other
/// tensors.
fn all_finite_in_place(t: &Tensor) -> Option<bool> {
    use candle_core::{CpuStorage, Storage};
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let (a, b) = layout.contiguous_offsets()?;
    Some(match cpu {
        CpuStorage::F32(v) => v[a..b].iter().all(|x| x.is_finite()),
        CpuStorage::F64(v) => v[a..b].iter().all(|x| x.is_finite()),
        CpuStorage::F16(v) => v[a..b].iter().all(|x| x.is_finite()),
        CpuStorage::BF16(v) => v[a..b].iter().all(|x| x.is_finite()),
        _ => return None,
    })
}

/// Largest absolute elementwise difference of two tensors of the same shape (in f64);
/// the measure parity tests use. A NaN on either side (or infinities that do not
/// match) counts as infinitely far.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        return Err(Error::invalid(format!(
            "cannot compare shapes {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    let host = |t: &Tensor| -> Result<Vec<f64>> { Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?) };
    let (x, y) = (host(a)?, host(b)?);
    let mut worst = 0f64;
    for (p, q) in x.iter().zip(&y) {
        let d = if p == q { 0.0 } else { (p - q).abs() };
        if d.is_nan() {
            return Ok(f32::INFINITY);
        }
        worst = worst.max(d);
    }
    Ok(worst as f32)
}

/// `max |got - want| / max(max |want|, floor)` for tensors of one shape: a relative
/// error (for tests and checks), infinite where [`max_abs_diff`] is.
pub fn max_rel_diff(got: &Tensor, want: &Tensor, floor: f32) -> Result<f32> {
    let scale = want
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .iter()
        .fold(0f64, |m, v| m.max(v.abs())) as f32;
    Ok(max_abs_diff(got, want)? / scale.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn nan_and_mismatched_infinities_are_infinitely_far() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        assert_eq!(max_abs_diff(&t(&[1.0, 2.0]), &t(&[1.5, 2.0])).unwrap(), 0.5);
        assert_eq!(
            max_abs_diff(&t(&[1.0, f32::NAN]), &t(&[1.0, 2.0])).unwrap(),
            f32::INFINITY
        );
        assert_eq!(max_abs_diff(&t(&[f32::NAN]), &t(&[f32::NAN])).unwrap(), f32::INFINITY);
        assert_eq!(
            max_abs_diff(&t(&[f32::INFINITY]), &t(&[f32::NEG_INFINITY])).unwrap(),
            f32::INFINITY
        );
        assert_eq!(max_abs_diff(&t(&[f32::INFINITY]), &t(&[f32::INFINITY])).unwrap(), 0.0);
        assert_eq!(
            max_rel_diff(&t(&[0.0, f32::NAN]), &t(&[1.0, 2.0]), 1e-6).unwrap(),
            f32::INFINITY
        );
        assert!((max_rel_diff(&t(&[1.0, 2.2]), &t(&[1.0, 2.0]), 1e-6).unwrap() - 0.1).abs() < 1e-6);
        assert!(
            ensure_finite(&t(&[1.0, f32::NAN]), "x")
                .unwrap_err()
                .to_string()
                .contains("flat index 1")
        );
    }
}
