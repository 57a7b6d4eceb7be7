//! S2GAN-CO's co-training (Lucic et al., "High-Fidelity Image Generation With Fewer
//! Labels", ICML 2019): a linear class predictor on D's features `φ(x)`, trained with
//! cross-entropy on the labelled real images only, names the classes of the unlabelled
//! ones for the projection term (its argmax, or its softmax), with the gradient
//! stopped, so that the projection never trains the predictor.

use candle_core::{D, DType, Tensor};

use labelgan_core::cross_entropy::{log_softmax, target_cross_entropy};
use labelgan_core::{Error, Result};

/// Rows of `y` (`[N, K]`) that hold a label (any non-zero entry), as a `[N, 1]` mask.
pub fn labelled_rows(y: &Tensor) -> Result<Tensor> {
    Ok(y.abs()?.sum_keepdim(D::Minus1)?.gt(0.0)?.to_dtype(y.dtype())?)
}

/// The projection's classes: the labelled rows of `y` as they are, the others the
/// predictor's (one-hot argmax, or `soft`: its softmax); no gradient flows back.
pub fn projection_classes(y: &Tensor, logits: &Tensor, soft: bool) -> Result<Tensor> {
    if y.dims() != logits.dims() {
        return Err(Error::invalid(format!(
            "classes {:?} and predictor logits {:?} differ in shape",
            y.dims(),
            logits.dims()
        )));
    }
    let logits = logits.detach();
    let predicted = if soft {
        log_softmax(&logits)?.exp()?
    } else {
        let k = logits.dim(1)?;
        let arg = logits.argmax(D::Minus1)?.unsqueeze(1)?;
        let ids = Tensor::arange(0u32, k as u32, logits.device())?.unsqueeze(0)?;
        arg.broadcast_eq(&ids)?.to_dtype(logits.dtype())?
    };
    let have = labelled_rows(y)?;
    let missing = (1.0 - &have)?;
    Ok((y.broadcast_mul(&have)? + predicted.broadcast_mul(&missing)?)?.detach())
}

/// The predictor's loss: cross-entropy against the labelled rows of `y` only,
/// averaged over them (0 when none is labelled).
pub fn class_loss(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    target_cross_entropy(logits, &y.to_dtype(DType::F32)?.to_dtype(logits.dtype())?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn unlabelled_rows_take_the_prediction() {
        let dev = Device::Cpu;
        let y = Tensor::new(&[[0f32, 1., 0.], [0., 0., 0.], [0., 0., 0.]], &dev).unwrap();
        let logits = Tensor::new(&[[5f32, 0., 0.], [0., 0., 2.], [1., 3., 0.]], &dev).unwrap();
        let hard = projection_classes(&y, &logits, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(hard, [[0., 1., 0.], [0., 0., 1.], [0., 1., 0.]]);
        let soft = projection_classes(&y, &logits, true).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(soft[0], [0., 1., 0.]);
        let z: f32 = [0f32, 0., 2.].iter().map(|v| v.exp()).sum();
        for (got, want) in soft[1].iter().zip([1. / z, 1. / z, 2f32.exp() / z]) {
            assert!((got - want).abs() < 1e-6, "{soft:?}");
        }
    }

    #[test]
    fn the_projection_does_not_train_the_predictor() {
        let dev = Device::Cpu;
        let w = Var::new(&[[0.5f32, -1., 2.], [1., 0.3, 0.]], &dev).unwrap();
        let features = Tensor::new(&[[1f32, 2.], [0.5, -1.]], &dev).unwrap();
        let logits = features.matmul(w.as_tensor()).unwrap();
        let y = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        for soft in [false, true] {
            let classes = projection_classes(&y, &logits, soft).unwrap();
            let term = (classes * 3.0).unwrap().sum_all().unwrap();
            let grads = term.backward().unwrap();
            assert!(grads.get(w.as_tensor()).is_none(), "soft {soft}");
        }
        // The class loss does train it.
        let labelled = Tensor::new(&[[0f32, 0., 1.], [0., 0., 0.]], &dev).unwrap();
        let grads = class_loss(&logits, &labelled).unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn the_class_loss_reads_labelled_rows_only() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2f32, 0.], [0., 7.]], &dev).unwrap();
        let y = Tensor::new(&[[1f32, 0.], [0., 0.]], &dev).unwrap();
        let got = class_loss(&logits, &y).unwrap().to_scalar::<f32>().unwrap();
        let want = (2f32.exp() + 1.0).ln() - 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let mask = labelled_rows(&y).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(mask, [[1.], [0.]]);
    }
}
