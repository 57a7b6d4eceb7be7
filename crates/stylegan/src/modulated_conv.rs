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
use labelgan_kernels::bias_act::{Activation, AddPlane, BiasAct};
use labelgan_kernels::channel::{channel_affine, plane_scale};
use labelgan_kernels::element::with_cpu_slices;
use labelgan_kernels::implicit_gemm::conv_cpu_fused;

use crate::conv2d_resample::{Y_BYTES, upsample_conv_cpu};
use crate::fc::{FullyConnected, lrelu_gain};
use crate::upfirdn::{filter_kernel, upsample_conv2d, upsample_conv2d_with, upsample_kernels};

/// StyleGAN's `lrelu` with its gain, as the fused output pass applies it.
const LRELU_GAIN: Activation = Activation::LeakyRelu {
    slope: 0.2,
    gain: std::f64::consts::SQRT_2,
};

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
    /// Phase kernels of the upsampling conv once [`SynthesisLayer::freeze`] was called:
    /// made at the first differentiable forward that needs them (the fused inference
    /// pass does not; at 512 px they would hold 4x conv0's weights for nothing).
    frozen_kernels: Option<std::sync::OnceLock<Tensor>>,
    /// `sum_k W[o, i, k]^2` `[O, I]` for demodulation, precomputed by
    /// [`SynthesisLayer::freeze`].
    frozen_wsq: Option<Tensor>,
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
            frozen_wsq: None,
            resolution,
            conv_clamp,
        })
    }

    /// Declares the weights fixed (inference): the weights' squared sums for
    /// demodulation are computed now, the upsampling conv's phase kernels at their first
    /// use, and both reused by every forward pass. Call [`SynthesisLayer::thaw`] before
    /// changing the weights.
    pub fn freeze(&mut self) -> Result<()> {
        if self.up {
            self.frozen_kernels = Some(std::sync::OnceLock::new());
        }
        self.frozen_wsq = Some(self.weight_squares()?);
        Ok(())
    }

    /// Drops precomputed kernels: forward passes derive them from the weights again.
    pub fn thaw(&mut self) {
        self.frozen_kernels = None;
        self.frozen_wsq = None;
    }

    /// `sum_k W[o, i, k]^2`, `[O, I]`.
    fn weight_squares(&self) -> Result<Tensor> {
        Ok(self.weight.sqr()?.sum(D::Minus1)?.sum(D::Minus1)?)
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The styles `s [N, I]` of `w` and the demodulation coefficients `d [N, O]`.
    fn styles(&self, w: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = self.affine.forward(w)?; // [N, I]
        let wsq = match &self.frozen_wsq {
            Some(wsq) => wsq.clone(),
            None => self.weight_squares()?,
        };
        let d = (s.sqr()?.matmul(&wsq.t()?)? + 1e-8)?.sqrt()?.recip()?; // [N, O]
        Ok((s, d))
    }

    /// `x [N, I, R', R']` (R' = R/2 for conv0) and `w [N, w_dim]` to `[N, O, R, R]`.
    /// `noise_seed` is used by [`NoiseMode::Random`] only.
    ///
    /// When no gradient can be asked of the result (no variable among the inputs and
    /// weights) and everything is f32 on the CPU, one fused pass runs
    /// ([`SynthesisLayer::forward_inference`]); otherwise candle ops.
    pub fn forward(&self, x: &Tensor, w: &Tensor, noise: NoiseMode, noise_seed: u64) -> Result<Tensor> {
        let params = [
            x,
            w,
            &self.weight,
            &self.bias,
            &self.noise_strength,
            &self.noise_const,
            &self.resample_filter,
            &self.affine.weight,
            &self.affine.bias,
        ];
        if labelgan_kernels::native_inference(&params) {
            return self.forward_inference(x, w, noise, noise_seed);
        }
        let (s, d) = self.styles(w)?;
        let n = s.dim(0)?;
        let x = plane_scale(x, &s)?;
        let x = if self.up {
            match &self.frozen_kernels {
                Some(cell) => {
                    let k = match cell.get() {
                        Some(k) => k,
                        None => {
                            let k = upsample_kernels(&self.weight, &self.resample_filter)?;
                            cell.get_or_init(|| k)
                        }
                    };
                    upsample_conv2d_with(&x, k)?
                }
                None => upsample_conv2d(&x, &self.weight, &self.resample_filter)?,
            }
        } else {
            labelgan_kernels::conv::conv2d(&x, &self.weight, 1)?
        };
        let mut x = plane_scale(&x, &d)?;
        if let Some(nz) = self.noise_plane(noise, n, noise_seed)? {
            x = x.broadcast_add(&nz)?;
        }
        let x = lrelu_gain(&channel_affine(&x, None, Some(&self.bias))?)?;
        Ok(match self.conv_clamp {
            Some(c) => x.clamp(-c, c)?,
            None => x,
        })
    }

    /// [`SynthesisLayer::forward`] in one pass over the feature map on the CPU (f32, no
    /// gradient): the styles scale the input as the convolution reads it; demodulation,
    /// noise, bias, activation and clamp are applied as it writes. conv0 runs as the
    /// official transposed convolution and FIR filter ([`upsample_conv_cpu`]). CPU
    /// tensors only.
    pub fn forward_inference(&self, x: &Tensor, w: &Tensor, noise: NoiseMode, noise_seed: u64) -> Result<Tensor> {
        let (n, i, h, wd) = x.dims4()?;
        let (s, d) = self.styles(w)?;
        let (o, r) = (self.out_channels(), self.resolution);
        // One plane for every image (stride 0) or one per image.
        let noise = match self.noise_plane(noise, n, noise_seed)? {
            Some(t) => Some((
                t.flatten_all()?.to_vec1::<f32>()?,
                if t.dim(0)? == 1 { 0 } else { r * r },
            )),
            None => None,
        };
        let (s, d) = (s.flatten_all()?.to_vec1::<f32>()?, d.flatten_all()?.to_vec1::<f32>()?);
        let bias = self.bias.to_vec1::<f32>()?;
        let act = BiasAct {
            scale: Some(&d),
            add: noise.as_ref().map(|(values, stride)| AddPlane {
                values,
                stride: *stride,
            }),
            bias: Some(&bias),
            act: LRELU_GAIN,
            clamp: self.conv_clamp.map(|c| c as f32),
        };
        let filter: [f32; 16] = filter_kernel(&self.resample_filter)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .try_into()
            .map_err(|_| labelgan_core::Error::invalid("resample filter must have 16 values"))?;
        fused_pass(x, &self.weight, (n, o, r, r), |xv, wv| {
            if self.up {
                upsample_conv_cpu(xv, wv, (n, i, h, wd), o, &s, &filter, &act, Y_BYTES)
            } else {
                conv_cpu_fused(xv, wv, (n, i, h, wd), (o, 3), 1, Some(&s), &act)
            }
        })
    }

    /// The noise added before the bias, `[1, 1, R, R]` (const) or `[N, 1, R, R]`
    /// (random, from `noise_seed`), strength applied; `None` without noise.
    fn noise_plane(&self, noise: NoiseMode, n: usize, noise_seed: u64) -> Result<Option<Tensor>> {
        let r = self.resolution;
        let plane = match noise {
            NoiseMode::Const => self.noise_const.reshape((1, 1, r, r))?,
            NoiseMode::Random(_) => SplitMix64::new(noise_seed).normal_tensor(&[n, 1, r, r], self.weight.device())?,
            NoiseMode::None => return Ok(None),
        };
        Ok(Some(plane.broadcast_mul(&self.noise_strength)?))
    }
}

/// Runs a fused CPU pass `f(x, weight)` on the f32 elements of `x` and `weight` and
/// wraps its output as a tensor of `shape`.
fn fused_pass(
    x: &Tensor,
    weight: &Tensor,
    shape: (usize, usize, usize, usize),
    f: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> Result<Tensor> {
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let y = with_cpu_slices::<f32, _>(&x, &weight, f)?;
    Ok(Tensor::from_vec(y, shape, x.device())?)
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

    /// `x [N, I, R, R]`, `w [N, w_dim]` to `[N, img_channels, R, R]`. Without a
    /// gradient to track, on the CPU in f32, the styles, bias and clamp are applied in
    /// the convolution's own passes.
    pub fn forward(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let (n, i, h, wd) = x.dims4()?;
        let s = self.affine.forward(w)?.affine(1.0 / (i as f64).sqrt(), 0.0)?;
        let params = [x, w, &self.weight, &self.bias, &self.affine.weight, &self.affine.bias];
        if labelgan_kernels::native_inference(&params) {
            let c = self.bias.dims()[0];
            let (s, bias) = (s.flatten_all()?.to_vec1::<f32>()?, self.bias.to_vec1::<f32>()?);
            let act = BiasAct {
                bias: Some(&bias),
                clamp: self.conv_clamp.map(|c| c as f32),
                ..BiasAct::default()
            };
            return fused_pass(x, &self.weight, (n, c, h, wd), |xv, wv| {
                conv_cpu_fused(xv, wv, (n, i, h, wd), (c, 1), 0, Some(&s), &act)
            });
        }
        let x = plane_scale(x, &s)?;
        let x = labelgan_kernels::conv::conv2d(&x, &self.weight, 0)?;
        let x = channel_affine(&x, None, Some(&self.bias))?;
        Ok(match self.conv_clamp {
            Some(c) => x.clamp(-c, c)?,
            None => x,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn randn(rng: &mut SplitMix64, shape: &[usize], scale: f64) -> Tensor {
        rng.normal_tensor(shape, &Device::Cpu)
            .unwrap()
            .affine(scale, 0.0)
            .unwrap()
    }

    fn layer(rng: &mut SplitMix64, (i, o): (usize, usize), r: usize, up: bool, clamp: Option<f64>) -> SynthesisLayer {
        let w_dim = 8;
        SynthesisLayer {
            affine: FullyConnected {
                weight: randn(rng, &[i, w_dim], 1.0),
                bias: randn(rng, &[i], 0.3).affine(1.0, 1.0).unwrap(),
                lr_multiplier: 1.0,
                lrelu: false,
            },
            weight: randn(rng, &[o, i, 3, 3], 1.0),
            bias: randn(rng, &[o], 0.5),
            noise_strength: Tensor::new(0.7f32, &Device::Cpu).unwrap(),
            noise_const: randn(rng, &[r, r], 1.0),
            // Asymmetric, so that a flipped filter would show.
            resample_filter: randn(rng, &[4, 4], 0.2).affine(1.0, 0.0625).unwrap(),
            up,
            frozen_kernels: None,
            frozen_wsq: None,
            resolution: r,
            conv_clamp: clamp,
        }
    }

    /// The fused inference pass against the candle-op path the same layer takes when a
    /// gradient is tracked (x as a variable): conv0 and conv1, every noise mode, with and
    /// without a clamp, images grouped into one GEMM (5x5 maps) and one per GEMM (48x48).
    #[test]
    fn the_fused_pass_equals_the_differentiable_one() {
        let mut rng = SplitMix64::new(5);
        for (up, size, n) in [(true, 5, 3), (false, 7, 3), (true, 48, 2), (false, 48, 2)] {
            for clamp in [None, Some(0.5)] {
                let r = if up { 2 * size } else { size };
                let l = layer(&mut rng, (6, 5), r, up, clamp);
                let x = randn(&mut rng, &[n, 6, size, size], 1.0);
                let w = randn(&mut rng, &[n, 8], 1.0);
                let tracked = Var::from_tensor(&x).unwrap();
                for noise in [NoiseMode::Const, NoiseMode::Random(3), NoiseMode::None] {
                    let fused = l.forward_inference(&x, &w, noise, 11).unwrap();
                    let plain = l.forward(tracked.as_tensor(), &w, noise, 11).unwrap();
                    assert!(plain.track_op(), "the reference must take the candle-op path");
                    assert_eq!(fused.dims(), &[n, 5, r, r]);
                    let e = labelgan_core::max_abs_diff(&fused, &plain).unwrap();
                    assert!(e < 1e-4, "up {up}, {size}x{size}, {noise:?}, clamp {clamp:?}: {e}");
                    // Without a gradient the public entry point takes the fused pass
                    // (unless LABELGAN_KERNELS=generic sends it down the candle ops).
                    let e = labelgan_core::max_abs_diff(&l.forward(&x, &w, noise, 11).unwrap(), &fused).unwrap();
                    if labelgan_kernels::native_on(&Device::Cpu) {
                        assert_eq!(e, 0.0);
                    } else {
                        assert!(e < 1e-4);
                    }
                }
            }
        }
    }

    #[test]
    fn to_rgb_fused_equals_the_differentiable_one() {
        let mut rng = SplitMix64::new(6);
        let l = ToRgb {
            affine: FullyConnected {
                weight: randn(&mut rng, &[6, 8], 1.0),
                bias: randn(&mut rng, &[6], 0.3),
                lr_multiplier: 1.0,
                lrelu: false,
            },
            weight: randn(&mut rng, &[3, 6, 1, 1], 1.0),
            bias: randn(&mut rng, &[3], 0.5),
            conv_clamp: Some(0.8),
        };
        let x = randn(&mut rng, &[2, 6, 9, 9], 1.0);
        let w = randn(&mut rng, &[2, 8], 1.0);
        let fused = l.forward(&x, &w).unwrap();
        let plain = l.forward(Var::from_tensor(&x).unwrap().as_tensor(), &w).unwrap();
        assert!(!fused.track_op() && plain.track_op());
        assert!(labelgan_core::max_abs_diff(&fused, &plain).unwrap() < 1e-5);
    }
}
