//! # labelgan-lpips
//!
//! The LPIPS perceptual distance (Zhang et al., CVPR 2018) exactly as the `lpips` 0.1.4
//! package computes it (`../shared/specs/lpips.md`): version-0.1 scaling, the taps of
//! VGG16, AlexNet or SqueezeNet 1.1, unit normalisation over channels, squared
//! differences, learned 1x1 "lin" weights, spatial mean (or, for the spatial map,
//! bilinear upsampling to the input size), summed over taps.
//!
//! One safetensors file holds everything under the package's own names
//! (`scaling_layer.shift`, `net.slice1.0.weight`, ..., `lin0.model.1.weight`); the
//! backbone is recognised from the keys (or the metadata `net`). Without `lin*` weights
//! the taps are weighted uniformly (each tap's channel mean), for backbones that have
//! no learned ones.
//!
//! Every op has a correct gradient with respect to the images (max-pooling included:
//! see [`pool`]), so `distance` is a differentiable loss.

#[doc(hidden)]
mod alex;
pub mod backbone;
pub mod classifier;
mod conv;
pub mod detfill;
mod fused;
pub mod inception_v3;
pub mod pool;
pub mod rotation;
mod squeeze;
mod trunk;
mod vgg;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result};
use labelgan_kernels::resample::{AxisInterp, Upsample};

pub use backbone::Net;

use crate::alex::Alex;
use crate::backbone::Backbone;
use crate::squeeze::Squeeze;
use crate::vgg::Vgg;

use crate::pool::spatial_mean;

/// How the per-tap squared differences are weighted.
#[derive(Debug, Clone)]
pub enum Weighting {
    /// The learned lin layers `[C]` per tap (`lpips=True`).
    Learned(Vec<Tensor>),
    /// Every channel 1/C: each tap's channel mean.
    Uniform,
    /// Plain sum over channels (`lpips=False` in the package).
    Sum,
}

/// A loaded LPIPS model.
#[derive(Debug, Clone)]
pub struct Lpips {
    /// The backbone.
    pub net: Net,
    /// How the layers' distances are weighted.
    pub weighting: Weighting,
    /// Channels of each tap.
    channels: Vec<usize>,
    /// The layers, built from the file's weights.
    backbone: Backbone,
    shift: Tensor,
    scale: Tensor,
    /// The weights as read (kept to rebuild in another dtype).
    file: TensorFile,
    /// The VGG trunk as one op with a hand-written backward, built on first use when the
    /// weights are fixed CPU tensors (`None` inside: not applicable).
    trunk: OnceLock<Option<Arc<trunk::Trunk>>>,
}

/// `[N, C, H, W] / (sqrt(sum_c f^2) + 1e-10)`. The square root is taken of
/// `sum_c f^2 + 1e-20`: the same value in f32 wherever a feature is not all zero (and
/// where it is, `0 / norm` is 0 either way), but a finite gradient at all-zero pixels,
/// where `sqrt`'s derivative is infinite and PyTorch's gradient becomes NaN.
fn normalize(f: &Tensor) -> Result<Tensor> {
    let norm = ((f.sqr()?.sum_keepdim(1)? + 1e-20)?.sqrt()? + 1e-10)?;
    Ok(f.broadcast_div(&norm)?)
}

/// PyTorch's bilinear resize (align_corners=False), differentiable.
fn resize_bilinear(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = x.dims4()?;
    let m = |out, inp| -> Result<Tensor> {
        Ok(AxisInterp::new(inp, out, Upsample::Bilinear)
            .matrix(inp, x.device())?
            .to_dtype(x.dtype())?)
    };
    labelgan_kernels::resample::separable2d(x, &m(h, ih)?, &m(w, iw)?)
}

impl Lpips {
    /// Loads a model written by `tools/convert_lpips.py` (or any file with the canonical
    /// names).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_file(TensorFile::load(path, device)?)
    }

    /// Builds the model from tensors already read (a file in f64 stays f64; any other
    /// float type is computed in f32). A missing weight or one of another shape is an
    /// error naming it and the file.
    pub fn from_file(file: TensorFile) -> Result<Self> {
        let net = match file.metadata.get("net") {
            Some(n) => Net::from_name(n)
                .ok_or_else(|| Error::format(&file.path, format!("unknown LPIPS net `{n}` in metadata")))?,
            None => {
                if file.contains("net.slice2.3.squeeze.weight") {
                    Net::Squeeze
                } else if file.shape("net.slice1.0.weight") == Some(&[64, 3, 11, 11]) {
                    Net::Alex
                } else if file.contains("net.slice1.2.weight") {
                    Net::Vgg
                } else {
                    return Err(Error::format(
                        &file.path,
                        "not an LPIPS model: no VGG16, AlexNet or SqueezeNet keys (`net.slice1.0.weight`, ...)",
                    ));
                }
            }
        };
        let first = file.get_shaped("scaling_layer.shift", &[1, 3, 1, 1])?;
        let dtype = match first.dtype() {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        let vb = VarBuilder::from_tensors(file.tensors.clone(), dtype, &first.device().clone());
        let in_file = |e: Error| match e {
            Error::Candle(e) => Error::in_weights(&file.path, e),
            e => e,
        };
        let shift = vb
            .get((1, 3, 1, 1), "scaling_layer.shift")
            .map_err(|e| in_file(e.into()))?;
        let scale = vb
            .get((1, 3, 1, 1), "scaling_layer.scale")
            .map_err(|e| in_file(e.into()))?;
        let backbone = match net {
            Net::Vgg => Backbone::Vgg(Vgg::new(vb.pp("net"), &vgg::layout(&file)?).map_err(in_file)?),
            Net::Alex => Backbone::Alex(Alex::new(vb.pp("net")).map_err(in_file)?),
            Net::Squeeze => Backbone::Squeeze(Squeeze::new(vb.pp("net")).map_err(in_file)?),
        };
        let channels = match &backbone {
            Backbone::Vgg(v) => v.channels.clone(),
            _ => net.channels().to_vec(),
        };
        let weighting = if vb.contains_tensor("lin0.model.1.weight") {
            Weighting::Learned(
                channels
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| vb.get((1, c, 1, 1), &format!("lin{k}.model.1.weight")))
                    .collect::<candle_core::Result<_>>()
                    .map_err(|e| in_file(e.into()))?,
            )
        } else {
            Weighting::Uniform
        };
        Ok(Self {
            net,
            weighting,
            channels,
            backbone,
            shift,
            scale,
            file,
            trunk: OnceLock::new(),
        })
    }

    /// The VGG trunk op, when the net is VGG-family with fixed CPU weights.
    fn trunk(&self) -> Option<&Arc<trunk::Trunk>> {
        self.trunk
            .get_or_init(|| match &self.backbone {
                Backbone::Vgg(v) => trunk::Trunk::new(v.layers.clone()).ok().flatten().map(Arc::new),
                _ => None,
            })
            .as_ref()
    }

    /// The backbone's taps for images `[N, 3, H, W]` in [-1, 1] (after scaling).
    pub fn taps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let x = self.scaled(x)?;
        if let Some(trunk) = self.trunk()
            && let Some(taps) = trunk.taps(&x)?
        {
            return Ok(taps);
        }
        self.taps_unfused(x)
    }

    /// The scaling layer: `(x - shift) / scale` per channel.
    fn scaled(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = x
            .dims4()
            .map_err(|_| Error::invalid(format!("images must be [N, 3, H, W], got {:?}", x.dims())))?;
        if c != 3 {
            return Err(Error::invalid(format!(
                "images must have 3 channels, got {:?}",
                x.dims()
            )));
        }
        Ok(x.broadcast_sub(&self.shift.to_dtype(x.dtype())?)?
            .broadcast_div(&self.scale.to_dtype(x.dtype())?)?)
    }

    /// The taps of scaled images through candle's ops (the reference for the fused
    /// trunk, and the path whenever weights are variables).
    fn taps_unfused(&self, x: Tensor) -> Result<Vec<Tensor>> {
        self.backbone.taps(x)
    }

    /// Per-tap weighted maps `[N, 1, h_k, w_k]`.
    fn tap_maps(&self, x0: &Tensor, x1: &Tensor) -> Result<Vec<Tensor>> {
        if x0.dims() != x1.dims() {
            return Err(Error::invalid(format!(
                "LPIPS compares images of one shape, got {:?} and {:?}",
                x0.dims(),
                x1.dims()
            )));
        }
        if let Some(maps) = self.fused_tap_maps(x0, x1)? {
            return Ok(maps);
        }
        let (t0, t1) = (self.taps(x0)?, self.taps(x1)?);
        t0.iter()
            .zip(&t1)
            .enumerate()
            .map(|(k, (a, b))| self.tap_term(k, a, b, true))
            .collect()
    }

    /// Every tap's map through the fused trunk and one fused distance op over all taps,
    /// or `None` when either does not apply (another net, dtype or device).
    fn fused_tap_maps(&self, x0: &Tensor, x1: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let Some(trunk) = self.trunk() else {
            return Ok(None);
        };
        let (x0, x1) = (self.scaled(x0)?, self.scaled(x1)?);
        let (Some((f0, shapes)), Some((f1, _))) = (trunk.flat(&x0)?, trunk.flat(&x1)?) else {
            return Ok(None);
        };
        let weights = shapes
            .iter()
            .enumerate()
            .map(|(k, &(c, _, _))| self.tap_weights(k, c, f0.dtype(), f0.device()))
            .collect::<Result<Vec<_>>>()?;
        let n = x0.dim(0)?;
        let Some(flat) = fused::taps_distance(&f0, &f1, &Tensor::cat(&weights, 0)?, n, &shapes)? else {
            return Ok(None);
        };
        let maps = trunk::split_flat(&flat, n, shapes.iter().map(|&(_, h, w)| (1, h, w)))?;
        Ok(Some(maps))
    }

    /// Tap `k`'s channel weights `[C]`: the learned lin layer, `1/C` or ones.
    fn tap_weights(&self, k: usize, c: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(match &self.weighting {
            Weighting::Learned(lins) => lins[k].to_dtype(dtype)?.flatten_all()?,
            Weighting::Uniform => Tensor::full(1.0 / c as f64, c, device)?.to_dtype(dtype)?,
            Weighting::Sum => Tensor::ones(c, dtype, device)?,
        })
    }

    /// Tap `k`'s weighted map `[N, 1, h, w]` from the features of both images; `fused`
    /// takes the one-op path where it applies.
    fn tap_term(&self, k: usize, a: &Tensor, b: &Tensor, fused: bool) -> Result<Tensor> {
        let w = self.tap_weights(k, a.dim(1)?, a.dtype(), a.device())?;
        if fused && let Some(d) = fused::tap_distance(a, b, &w)? {
            return Ok(d);
        }
        let d = (normalize(a)? - normalize(b)?)?.sqr()?;
        Ok(match &self.weighting {
            Weighting::Learned(lins) => d.conv2d(&lins[k].to_dtype(d.dtype())?, 0, 1, 1, 1)?,
            Weighting::Uniform => d.mean_keepdim(1)?,
            Weighting::Sum => d.sum_keepdim(1)?,
        })
    }

    /// One feature vector per image `[N, sum of tap channels]`: each tap's spatial mean
    /// (after ReLU, before unit normalisation), concatenated. The embedding of
    /// `labelgan fid`.
    pub fn pooled_features(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = self
            .taps(x)?
            .iter()
            .map(|t| t.mean(D::Minus1)?.mean(D::Minus1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&pooled, 1)?)
    }

    /// Channels of each tap.
    pub fn channels(&self) -> &[usize] {
        &self.channels
    }

    /// The distance `[N]` between images `x0`, `x1` `[N, 3, H, W]` in [-1, 1].
    pub fn distance(&self, x0: &Tensor, x1: &Tensor) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for m in self.tap_maps(x0, x1)? {
            let v = spatial_mean(&m)?;
            total = Some(match total {
                Some(t) => (t + v)?,
                None => v,
            });
        }
        let t = total.ok_or_else(|| Error::invalid("LPIPS has no taps"))?;
        Ok(t.flatten_from(1)?.squeeze(D::Minus1)?)
    }

    /// The spatial map `[N, 1, H, W]`: each tap's map upsampled bilinearly to the input
    /// size, summed (`spatial=True`).
    pub fn spatial(&self, x0: &Tensor, x1: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x0.dims4()?;
        let mut total: Option<Tensor> = None;
        for m in self.tap_maps(x0, x1)? {
            let v = resize_bilinear(&m, h, w)?;
            total = Some(match total {
                Some(t) => (t + v)?,
                None => v,
            });
        }
        total.ok_or_else(|| Error::invalid("LPIPS has no taps"))
    }

    /// Weights cast to `dtype` (f64 for finite-difference checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let mut file = self.file.clone();
        for t in file.tensors.values_mut() {
            *t = t.to_dtype(dtype)?;
        }
        let mut m = Self::from_file(file)?;
        m.weighting = match &self.weighting {
            Weighting::Learned(l) => Weighting::Learned(
                l.iter()
                    .map(|t| t.to_dtype(dtype))
                    .collect::<candle_core::Result<_>>()?,
            ),
            w => w.clone(),
        };
        Ok(m)
    }
}

/// The backbone's pooled taps as the metrics' embedding ([`Lpips::pooled_features`]):
/// any image size goes in as it is (the pooling is global), so no resizing moves the
/// scores.
impl labelgan_core::FeatureExtractor for Lpips {
    fn dim(&self) -> usize {
        self.channels.iter().sum()
    }

    fn features(&self, images: &Tensor) -> Result<Tensor> {
        self.pooled_features(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use labelgan_core::{SplitMix64, max_abs_diff};
    use std::collections::HashMap;

    /// A small random VGG-family LPIPS (two convs per slice, learned lin weights) in f64.
    fn small_vgg(seed: u64) -> Lpips {
        let dev = Device::Cpu;
        let mut rng = SplitMix64::new(seed);
        let mut tensors = HashMap::new();
        // 16+ channels: the 3x3 convolutions past the first take Winograd's path.
        let widths = [16, 16, 24, 16, 16];
        let (mut cin, mut idx) = (3, 0);
        for (s, &c) in widths.iter().enumerate() {
            if s > 0 {
                idx += 1;
            }
            for _ in 0..2 {
                let name = format!("net.slice{}.{idx}", s + 1);
                let w = (rng.normal_tensor(&[c, cin, 3, 3], &dev).unwrap() * (2.0 / (9 * cin) as f64).sqrt()).unwrap();
                let b = (rng.normal_tensor(&[c], &dev).unwrap() * 0.3).unwrap();
                tensors.insert(format!("{name}.weight"), w.to_dtype(DType::F64).unwrap());
                tensors.insert(format!("{name}.bias"), b.to_dtype(DType::F64).unwrap());
                (cin, idx) = (c, idx + 2);
            }
            let lin = rng.normal_tensor(&[1, c, 1, 1], &dev).unwrap().abs().unwrap();
            tensors.insert(format!("lin{s}.model.1.weight"), lin.to_dtype(DType::F64).unwrap());
        }
        let shift = Tensor::new(&[-0.03f64, -0.088, -0.188], &dev)
            .unwrap()
            .reshape((1, 3, 1, 1))
            .unwrap();
        let scale = Tensor::new(&[0.458f64, 0.448, 0.45], &dev)
            .unwrap()
            .reshape((1, 3, 1, 1))
            .unwrap();
        tensors.insert("scaling_layer.shift".into(), shift);
        tensors.insert("scaling_layer.scale".into(), scale);
        Lpips::from_file(TensorFile {
            path: "<test>".into(),
            tensors,
            metadata: HashMap::from([("net".to_string(), "vgg".to_string())]),
        })
        .unwrap()
    }

    /// The fused trunk and tap terms give the values and the gradients (with respect to
    /// both images) of the candle-op path, on odd sizes where pools drop a row and column
    /// and ReLU zeros tie inside pool windows.
    #[test]
    fn fused_paths_match_candle_ops() {
        let m = small_vgg(3);
        // With LABELGAN_KERNELS=generic both sides are the candle-op path.
        assert_eq!(
            m.trunk().is_some(),
            labelgan_kernels::native_on(&Device::Cpu),
            "fixed f64 CPU weights take the trunk unless the generic path is asked for"
        );
        let mut rng = SplitMix64::new(4);
        let dev = Device::Cpu;
        let mut image = || {
            let x = rng.normal_tensor(&[2, 3, 37, 35], &dev).unwrap();
            Var::from_tensor(&x.to_dtype(DType::F64).unwrap()).unwrap()
        };
        let (x0, x1) = (image(), image());
        let (shift, scale) = (
            m.shift.to_dtype(DType::F64).unwrap(),
            m.scale.to_dtype(DType::F64).unwrap(),
        );
        let scaled = |x: &Tensor| x.broadcast_sub(&shift).unwrap().broadcast_div(&scale).unwrap();
        let fused = m.distance(x0.as_tensor(), x1.as_tensor()).unwrap();
        let (t0, t1) = (
            m.taps_unfused(scaled(x0.as_tensor())).unwrap(),
            m.taps_unfused(scaled(x1.as_tensor())).unwrap(),
        );
        let mut reference: Option<Tensor> = None;
        for (k, (a, b)) in t0.iter().zip(&t1).enumerate() {
            let v = spatial_mean(&m.tap_term(k, a, b, false).unwrap()).unwrap();
            reference = Some(match reference {
                Some(r) => (r + v).unwrap(),
                None => v,
            });
        }
        let reference = reference.unwrap().flatten_all().unwrap();
        assert_eq!(fused.dims(), [2]);
        assert!(max_abs_diff(&fused, &reference).unwrap() < 1e-12);
        let r = Tensor::new(&[0.7f64, -1.3], &dev).unwrap();
        let g_fused = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for x in [&x0, &x1] {
            let (a, b) = (g_fused.get(x.as_tensor()).unwrap(), g_ref.get(x.as_tensor()).unwrap());
            let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(scale > 1e-6, "a gradient to compare");
            assert!((max_abs_diff(a, b).unwrap() as f64) < 1e-10 * scale.max(1.0));
        }
        // The taps themselves, without gradients.
        let plain = m.taps(&x0.as_tensor().detach()).unwrap();
        for (a, b) in plain.iter().zip(&t0) {
            assert_eq!(a.dims(), b.dims());
            assert!(max_abs_diff(a, b).unwrap() < 1e-12);
        }
    }

    /// Weights that are variables (training the backbone) never take the trunk.
    #[test]
    fn variable_weights_take_candle_ops() {
        let m = small_vgg(5);
        let mut file = m.file.clone();
        let w = file.tensors["net.slice1.0.weight"].clone();
        file.tensors.insert(
            "net.slice1.0.weight".into(),
            Var::from_tensor(&w).unwrap().as_tensor().clone(),
        );
        let v = Lpips::from_file(file).unwrap();
        assert!(v.trunk().is_none());
    }

    /// A weight of the wrong shape, or a missing one, is an error naming it and the file.
    #[test]
    fn bad_weights_are_named() {
        let m = small_vgg(6);
        let mut file = m.file.clone();
        file.tensors.insert(
            "net.slice2.5.bias".into(),
            Tensor::zeros(7, DType::F64, &Device::Cpu).unwrap(),
        );
        let e = Lpips::from_file(file).unwrap_err().to_string();
        assert!(e.contains("<test>") && e.contains("net.slice2.5.bias"), "{e}");
        let mut file = m.file.clone();
        file.tensors.remove("lin3.model.1.weight");
        let e = Lpips::from_file(file).unwrap_err().to_string();
        assert!(e.contains("lin3.model.1.weight"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
