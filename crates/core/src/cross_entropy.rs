//! Cross-entropy of logits against class ids or against class distributions (one-hot,
//! soft or all-zero rows), the loss of every classification head in labelgan.

use candle_core::{D, Tensor};

use crate::{Error, Result};

/// Log-softmax over the last dimension, shifted by the row maximum for stability.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Mean cross-entropy of `logits` `[N, K]` against class ids.
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    if labels.len() != n {
        return Err(Error::invalid(format!("{} labels for {n} logits", labels.len())));
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(Error::invalid(format!("label {l} of a {k}-way head")));
    }
    let mut onehot = vec![0f32; n * k];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * k + l as usize] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, (n, k), logits.device())?.to_dtype(logits.dtype())?;
    target_cross_entropy(logits, &targets)
}

/// Cross-entropy of `logits` `[N, K]` against target distributions `[N, K]`, averaged
/// over the rows whose targets are not all zero (a zero row is an image without a
/// label and adds nothing); 0 when every row is zero.
pub fn target_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() || logits.rank() != 2 {
        return Err(Error::invalid(format!(
            "cross-entropy of logits {:?} against targets {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    let targets = targets.to_dtype(logits.dtype())?;
    let labelled = targets
        .sum(D::Minus1)?
        .gt(0.0)?
        .to_dtype(candle_core::DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?;
    let total = (log_softmax(logits)? * targets)?.sum_all()?;
    Ok((total * (-1.0 / labelled.max(1.0)))?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn lse(v: &[f32]) -> f32 {
        v.iter().map(|x| x.exp()).sum::<f32>().ln()
    }

    #[test]
    fn cross_entropy_matches_formula() {
        let logits = Tensor::new(&[[1f32, 2., 0.5, -1.], [0., 0., 3., 1.]], &Device::Cpu).unwrap();
        let got = cross_entropy(&logits, &[1, 3]).unwrap().to_scalar::<f32>().unwrap();
        let want = ((lse(&[1., 2., 0.5, -1.]) - 2.0) + (lse(&[0., 0., 3., 1.]) - 1.0)) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!(cross_entropy(&logits, &[1, 4]).is_err());
        assert!(cross_entropy(&logits, &[1]).is_err());
    }

    #[test]
    fn zero_rows_are_left_out_and_soft_rows_weigh() {
        let logits = Tensor::new(&[[1f32, 2., 0.5], [0., 0., 3.], [4., -2., 1.]], &Device::Cpu).unwrap();
        // Row 0: soft (0.25, 0.75, 0); row 1: no label; row 2: class 2.
        let targets = Tensor::new(&[[0.25f32, 0.75, 0.], [0., 0., 0.], [0., 0., 1.]], &Device::Cpu).unwrap();
        let got = target_cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let row0 = 0.25 * (lse(&[1., 2., 0.5]) - 1.0) + 0.75 * (lse(&[1., 2., 0.5]) - 2.0);
        let row2 = lse(&[4., -2., 1.]) - 1.0;
        let want = (row0 + row2) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let none = Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            target_cross_entropy(&logits, &none)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn log_softmax_is_stable_for_large_logits() {
        let logits = Tensor::new(&[[1000f32, 1001.]], &Device::Cpu).unwrap();
        let v = log_softmax(&logits).unwrap().to_vec2::<f32>().unwrap();
        let want = -(1.0f32 + 1f32.exp()).ln();
        assert!((v[0][0] - want).abs() < 1e-5 && v[0][1].is_finite(), "{v:?}");
    }
}
