//! Modulated convolution with weight demodulation: StyleGAN2's style injection.
//!
//! For style `s = affine(w)`: `W'[n,o,i] = W[o,i] s[n,i]`, and with demodulation
//! `W''[n,o,i] = W'[n,o,i] / sqrt(sum_{i,k} W'[n,o,i,k]^2 + 1e-8)`. Because the
//! convolution is linear we never build per-sample weights: scale the input channels by
//! `s`, convolve with the shared `W`, scale the output channels by the demodulation
//! coefficients `d[n,o] = rsqrt((s^2) (sum_k W^2)^T + 1e-8)`, one small matmul.
//!
//! Reference: Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
//! CVPR 2020, Sec. 2.2, Eq. 1-3.

use candle_core::{D, Tensor};

use labelgan_core::io::TensorFile;
use labelgan_core::{NoiseMode, Result, SplitMix64};

use crate::fc::{FullyConnected, lrelu_gain};
use crate::upfirdn::{upsample_conv2d, upsample_conv2d_with, upsample_kernels};

/// A synthesis layer (`SynthesisLayer`): modulated 3x3 conv (upsampling for conv0),
/// noise, bias, `lrelu * sqrt(2)`, clamp.
#[derive(Debug, Clone)]
pub struct SynthesisLayer {
    /// Style affine `w_dim -> in_channels` (its bias starts at 1).
    pub affine: FullyConnected,
    /// Conv weight `[out, in, 3, 3]`.
    pub weight: Tensor,
    /// Bias `[out]`.
    pub bias: Tensor,
    /// Scalar noise strength.
    pub noise_strength: Tensor,
    /// Fixed noise `[R, R]`.
    pub noise_const: Tensor,
    /// FIR filter `[4, 4]` (stored by every layer, used by conv0 only).
    pub resample_filter: Tensor,
    /// Upsample by 2 (conv0).
    pub up: bool,
    /// Phase kernels of the upsampling conv, precomputed by [`SynthesisLayer::freeze`].
    frozen_kernels: Option<Tensor>,
    /// Output resolution.
    pub resolution: usize,
    /// Clamp bound.
    pub conv_clamp: Option<f64>,
}

impl SynthesisLayer {
    /// Reads `{prefix}.*` for a layer `in_ch -> out_ch` at `resolution` (`up` for conv0).
    pub fn load(
        file: &TensorFile,
        prefix: &str,
        dims: (usize, usize, usize),
        resolution: usize,
        up: bool,
        conv_clamp: Option<f64>,
    ) -> Result<Self> {
        let (w_dim, in_ch, out_ch) = dims;
        let k = |s: &str| format!("{prefix}.{s}");
        Ok(Self {
            affine: FullyConnected::load(file, &k("affine"), in_ch, w_dim, 1.0, false)?,
            weight: file.get_shaped(&k("weight"), &[out_ch, in_ch, 3, 3])?,
            bias: file.get_shaped(&k("bias"), &[out_ch])?,
            noise_strength: file.get_shaped(&k("noise_strength"), &[])?,
            noise_const: file.get_shaped(&k("noise_const"), &[resolution, resolution])?,
            resample_filter: file.get_shaped(&k("resample_filter"), &[4, 4])?,
            up,
            frozen_kernels: None,
            resolution,
            conv_clamp,
        })
    }

    /// Declares the weights fixed (inference): the upsampling conv's phase kernels are
    /// computed now and reused by every forward pass. Call [`SynthesisLayer::thaw`]
    /// before changing the weights.
    pub fn freeze(&mut self) -> Result<()> {
        if self.up {
            self.frozen_kernels = Some(upsample_kernels(&self.weight, &self.resample_filter)?);
        }
        Ok(())
    }

    /// Drops precomputed kernels: forward passes derive them from the weights again.
    pub fn thaw(&mut self) {
        self.frozen_kernels = None;
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `x [N, I, R', R']` (R' = R/2 for conv0) and `w [N, w_dim]` to `[N, O, R, R]`.
    /// `noise_seed` is used by [`NoiseMode::Random`] only.
    pub fn forward(&self, x: &Tensor, w: &Tensor, noise: NoiseMode, noise_seed: u64) -> Result<Tensor> {
        let s = self.affine.forward(w)?; // [N, I]
        let wsq = self.weight.sqr()?.sum(D::Minus1)?.sum(D::Minus1)?; // [O, I]
        let d = (s.sqr()?.matmul(&wsq.t()?)? + 1e-8)?.sqrt()?.recip()?; // [N, O]
        let (n, i) = s.dims2()?;
        let x = x.broadcast_mul(&s.reshape((n, i, 1, 1))?)?;
        let x = if self.up {
            match &self.frozen_kernels {
                Some(k) => upsample_conv2d_with(&x, k)?,
                None => upsample_conv2d(&x, &self.weight, &self.resample_filter)?,
            }
        } else {
            labelgan_kernels::conv::conv2d(&x, &self.weight, 1)?
        };
        let o = self.out_channels();
        let mut x = x.broadcast_mul(&d.reshape((n, o, 1, 1))?)?;
        let r = self.resolution;
        match noise {
            NoiseMode::Const => {
                let nz = self.noise_const.broadcast_mul(&self.noise_strength)?;
                x = x.broadcast_add(&nz.reshape((1, 1, r, r))?)?;
            }
            NoiseMode::Random(_) => {
                let nz = SplitMix64::new(noise_seed).normal_tensor(&[n, 1, r, r], x.device())?;
                x = x.broadcast_add(&nz.broadcast_mul(&self.noise_strength)?)?;
            }
            NoiseMode::None => {}
        }
        let x = lrelu_gain(&x.broadcast_add(&self.bias.reshape((1, o, 1, 1))?)?)?;
        Ok(match self.conv_clamp {
            Some(c) => x.clamp(-c, c)?,
            None => x,
        })
    }
}

/// The 1x1 modulated conv without demodulation that turns features into RGB
/// (`ToRGBLayer`).
#[derive(Debug, Clone)]
pub struct ToRgb {
    /// Style affine `w_dim -> in_channels`.
    pub affine: FullyConnected,
    /// Weight `[img_channels, in, 1, 1]`.
    pub weight: Tensor,
    /// Bias `[img_channels]`.
    pub bias: Tensor,
    /// Clamp bound.
    pub conv_clamp: Option<f64>,
}

impl ToRgb {
    /// Reads `{prefix}.*`.
    pub fn load(file: &TensorFile, prefix: &str, dims: (usize, usize, usize), conv_clamp: Option<f64>) -> Result<Self> {
        let (w_dim, in_ch, img_ch) = dims;
        let k = |s: &str| format!("{prefix}.{s}");
        Ok(Self {
            affine: FullyConnected::load(file, &k("affine"), in_ch, w_dim, 1.0, false)?,
            weight: file.get_shaped(&k("weight"), &[img_ch, in_ch, 1, 1])?,
            bias: file.get_shaped(&k("bias"), &[img_ch])?,
            conv_clamp,
        })
    }

    /// `x [N, I, R, R]`, `w [N, w_dim]` to `[N, img_channels, R, R]`.
    pub fn forward(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (n, i, _, _) = x.dims4()?;
        let s = self.affine.forward(w)?.affine(1.0 / (i as f64).sqrt(), 0.0)?;
        let x = x.broadcast_mul(&s.reshape((n, i, 1, 1))?)?;
        let x = labelgan_kernels::conv::conv2d(&x, &self.weight, 0)?;
        let c = self.bias.dims()[0];
        let x = x.broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?;
        Ok(match self.conv_clamp {
            Some(c) => x.clamp(-c, c)?,
            None => x,
        })
    }
}
