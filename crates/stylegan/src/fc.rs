//! The equalized-learning-rate fully connected layer (`FullyConnectedLayer`).
//!
//! Stored `weight [out, in]`, `bias [out]`; at run time
//! `y = x (weight * lr / sqrt(in))^T + bias * lr`, followed for the mapping layers by
//! `lrelu(., 0.2) * sqrt(2)`. Scaling at run time (not at load) keeps the stored
//! parameters the ones an optimiser updates.
//!
//! Reference: Karras et al., "Progressive Growing of GANs", ICLR 2018 (equalized lr).

use candle_core::Tensor;

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result};

/// `lrelu(x, 0.2) * sqrt(2)`: StyleGAN's activation with its gain.
pub fn lrelu_gain(x: &Tensor) -> Result<Tensor> {
    lrelu_gain_times(x, 1.0)
}

/// [`lrelu_gain`] times a further `gain`, in the same pass.
pub fn lrelu_gain_times(x: &Tensor, gain: f64) -> Result<Tensor> {
    labelgan_kernels::activation::leaky_relu(x, 0.2, std::f64::consts::SQRT_2 * gain)
}

/// A fully connected layer with equalized learning rate.
#[derive(Debug, Clone)]
pub struct FullyConnected {
    /// Stored weight `[out, in]`.
    pub weight: Tensor,
    /// Stored bias `[out]`.
    pub bias: Tensor,
    /// Learning-rate multiplier.
    pub lr_multiplier: f64,
    /// Apply `lrelu * sqrt(2)`.
    pub lrelu: bool,
}

impl FullyConnected {
    /// Reads `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
    pub fn load(
        file: &TensorFile,
        prefix: &str,
        out: usize,
        inp: usize,
        lr_multiplier: f64,
        lrelu: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: file.get_shaped(&format!("{prefix}.weight"), &[out, inp])?,
            bias: file.get_shaped(&format!("{prefix}.bias"), &[out])?,
            lr_multiplier,
            lrelu,
        })
    }

    /// `vb`'s `weight` `[out, inp]` and `bias` `[out]`, as trainable parameters.
    pub fn new(vb: candle_nn::VarBuilder, out: usize, inp: usize, lr_multiplier: f64, lrelu: bool) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, inp), "weight")?,
            bias: vb.get(out, "bias")?,
            lr_multiplier,
            lrelu,
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// `x [N, in] -> [N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, inp) = x.dims2()?;
        if inp != self.in_features() {
            return Err(Error::invalid(format!(
                "fully connected layer expects {} input features, got {inp}",
                self.in_features()
            )));
        }
        let gain = self.lr_multiplier / (inp as f64).sqrt();
        let w = self.weight.affine(gain, 0.0)?;
        let b = self.bias.affine(self.lr_multiplier, 0.0)?;
        let y = x.matmul(&w.t()?)?.broadcast_add(&b)?;
        Ok(if self.lrelu { lrelu_gain(&y)? } else { y })
    }
}
