//! SNDCGAN (Miyato et al. 2018, the CIFAR "standard CNN"): a DCGAN generator of
//! transposed convolutions and a discriminator of 3x3 and strided 4x4 convolutions
//! with leaky ReLU (slope 0.1), spectrally normalised. Conditional: class-conditional
//! normalisation in G, a projection term in D (Miyato and Koyama 2018) on D's last
//! features summed over space.

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result, TapSpec};

use crate::layer_norm::LayerNorm;
use crate::layers::{Conv, Dense, UpConv};
use crate::model::{DiscriminatorOutput, GanDiscriminator, GanGenerator, ProjectionClasses};
use crate::norm::NormLayer;
use crate::projection::add_projection;
use crate::{BnMode, ModelConfig};

/// Slope of D's leaky ReLUs.
const LEAK: f64 = 0.1;

/// Stride-2 stages between 4x4 and the image size.
fn stages(cfg: &ModelConfig) -> Result<usize> {
    let r = cfg.resolution;
    if !r.is_power_of_two() || r < 8 {
        return Err(Error::invalid(format!(
            "SNDCGAN needs a power-of-two resolution of at least 8, got {r}"
        )));
    }
    Ok(r.trailing_zeros() as usize - 2)
}

fn classes(cfg: &ModelConfig) -> Option<usize> {
    cfg.conditional.then_some(cfg.classes)
}

/// The generator: z to a 4x4 map of `g_width` channels, then one transposed
/// convolution per doubling (halving the channels), then a 3x3 convolution to RGB and
/// tanh.
#[derive(Debug)]
pub struct SndcganGenerator {
    z_dim: usize,
    top: usize,
    dense: Dense,
    norms: Vec<NormLayer>,
    ups: Vec<UpConv>,
    out: Conv,
}

impl SndcganGenerator {
    /// Built from `cfg` with weights under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let n = stages(cfg)?;
        let width = |i: usize| (cfg.g_width >> i).max(1);
        let norm = |i: usize, vb| NormLayer::new(cfg.g_norm, width(i), cfg.z_dim, classes(cfg), vb);
        let mut norms = vec![norm(0, vb.pp("norm0"))?];
        let mut ups = Vec::with_capacity(n);
        for i in 0..n {
            ups.push(UpConv::new(width(i), width(i + 1), cfg.init, vb.pp(format!("up{i}")))?);
            norms.push(norm(i + 1, vb.pp(format!("norm{}", i + 1)))?);
        }
        Ok(Self {
            z_dim: cfg.z_dim,
            top: width(0),
            dense: Dense::new(cfg.z_dim, 16 * width(0), true, None, cfg.init, vb.pp("dense"))?,
            norms,
            ups,
            out: Conv::new(width(n), 3, 3, 1, None, cfg.init, vb.pp("out"))?,
        })
    }
}

impl GanGenerator for SndcganGenerator {
    fn z_dim(&self) -> usize {
        self.z_dim
    }

    fn forward(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor> {
        Ok(self.forward_taps(z, y, mode)?.0)
    }

    fn forward_taps(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<(Tensor, Vec<Tensor>)> {
        let n = z.dim(0)?;
        let mut h = self.dense.forward(z, false)?.reshape((n, self.top, 4, 4))?;
        h = self.norms[0].forward(&h, z, y, mode)?.relu()?;
        let mut taps = vec![h.clone()];
        for (up, norm) in self.ups.iter().zip(&self.norms[1..]) {
            h = norm.forward(&up.forward(&h)?, z, y, mode)?.relu()?;
            taps.push(h.clone());
        }
        Ok((self.out.forward(&h, false)?.tanh()?, taps))
    }

    fn tap_specs(&self) -> Vec<TapSpec> {
        (0..self.norms.len())
            .map(|i| TapSpec::feature(format!("norm{i}"), 4 << i, (self.top >> i).max(1)))
            .collect()
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, n) in self.norms.iter().enumerate() {
            n.buffers(&format!("norm{i}"), &mut out);
        }
        out
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        for (i, n) in self.norms.iter().enumerate() {
            n.set_buffers(&format!("norm{i}"), from)?;
        }
        Ok(())
    }
}

/// The discriminator: per stage a 3x3 convolution then a strided 4x4 one (channels
/// `d_width`, doubling per stage), a last 3x3 convolution, and a dense layer to the
/// logit; spectral norm on every weight when the config asks.
#[derive(Debug)]
pub struct SndcganDiscriminator {
    convs: Vec<Conv>,
    /// Layer norms after every convolution but the first (with `d_layer_norm`).
    norms: Vec<Option<LayerNorm>>,
    dense: Dense,
    projection: Option<Dense>,
}

impl SndcganDiscriminator {
    /// Built from `cfg` with weights under `vb`; spectral norms seeded from `seed`.
    pub fn new(cfg: &ModelConfig, seed: u64, vb: VarBuilder) -> Result<Self> {
        let n = stages(cfg)?;
        let sn = |k: u64| cfg.d_spectral_norm.then_some(seed.wrapping_mul(1000).wrapping_add(k));
        let width = |i: usize| cfg.d_width << i;
        let mut convs = Vec::with_capacity(2 * n + 1);
        let mut prev = 3;
        for i in 0..n {
            convs.push(Conv::new(
                prev,
                width(i),
                3,
                1,
                sn(2 * i as u64),
                cfg.init,
                vb.pp(format!("conv{}", 2 * i)),
            )?);
            convs.push(Conv::new(
                width(i),
                width(i),
                4,
                2,
                sn(2 * i as u64 + 1),
                cfg.init,
                vb.pp(format!("conv{}", 2 * i + 1)),
            )?);
            prev = width(i);
        }
        let last = width(n);
        convs.push(Conv::new(
            prev,
            last,
            3,
            1,
            sn(2 * n as u64),
            cfg.init,
            vb.pp(format!("conv{}", 2 * n)),
        )?);
        let projection = match classes(cfg) {
            Some(c) => Some(Dense::new(c, last, false, sn(900), cfg.init, vb.pp("projection"))?),
            None => None,
        };
        let mut norms = Vec::with_capacity(convs.len());
        for (i, c) in convs.iter().enumerate() {
            norms.push(match cfg.d_layer_norm && i > 0 {
                true => Some(LayerNorm::new(c.outputs(), vb.pp(format!("norm{i}")))?),
                false => None,
            });
        }
        Ok(Self {
            convs,
            norms,
            dense: Dense::new(16 * last, 1, true, sn(901), cfg.init, vb.pp("dense"))?,
            projection,
        })
    }
}

impl GanDiscriminator for SndcganDiscriminator {
    fn feature_dim(&self) -> usize {
        self.convs.last().map_or(0, |c| c.outputs())
    }

    fn forward_features(
        &self,
        x: &Tensor,
        classes: &mut ProjectionClasses,
        training: bool,
    ) -> Result<DiscriminatorOutput> {
        let mut h = x.clone();
        for (c, norm) in self.convs.iter().zip(&self.norms) {
            let mut a = c.forward(&h, training)?;
            if let Some(norm) = norm {
                a = norm.forward(&a)?;
            }
            h = a.maximum(&(&a * LEAK)?)?;
        }
        let n = h.dim(0)?;
        let logits = self.dense.forward(&h.reshape((n, ()))?, training)?.squeeze(1)?;
        let features = h.sum((2, 3))?;
        let y = classes(&features)?;
        let logits = add_projection(logits, self.projection.as_ref(), &features, y.as_ref(), training)?;
        Ok(DiscriminatorOutput { logits, features })
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for c in &self.convs {
            c.buffers(&mut out);
        }
        self.dense.buffers(&mut out);
        if let Some(p) = &self.projection {
            p.buffers(&mut out);
        }
        out
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        for c in &self.convs {
            c.set_buffers(from)?;
        }
        self.dense.set_buffers(from)?;
        if let Some(p) = &self.projection {
            p.set_buffers(from)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingConfig;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use labelgan_core::SplitMix64;

    fn one_hot(classes: &[usize], c: usize) -> Tensor {
        let v: Vec<f32> = classes
            .iter()
            .flat_map(|&k| (0..c).map(move |j| f32::from(j == k)))
            .collect();
        Tensor::from_vec(v, (classes.len(), c), &Device::Cpu).unwrap()
    }

    fn small() -> ModelConfig {
        let mut cfg = TrainingConfig::default().model;
        cfg.architecture = crate::Architecture::Sndcgan;
        (cfg.g_width, cfg.d_width, cfg.z_dim) = (32, 8, 16);
        cfg
    }

    #[test]
    fn shapes_classes_and_buffers() {
        let cfg = small();
        let (gm, dm) = (VarMap::new(), VarMap::new());
        let g = SndcganGenerator::new(&cfg, crate::seeded_var_builder(&gm, 7, DType::F32, &Device::Cpu)).unwrap();
        let d =
            SndcganDiscriminator::new(&cfg, 1, crate::seeded_var_builder(&dm, 7, DType::F32, &Device::Cpu)).unwrap();
        let z = SplitMix64::new(0).normal_tensor(&[4, 16], &Device::Cpu).unwrap();
        let y = one_hot(&[0, 3, 3, 9], 10);
        let x = g.forward(&z, Some(&y), BnMode::Train).unwrap();
        assert_eq!(x.dims(), &[4, 3, 32, 32]);
        let m = x.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(m <= 1.0 && m > 0.0, "{m}");
        let logits = d.forward(&x, Some(&y), true).unwrap();
        assert_eq!(logits.dims(), &[4]);
        // Buffers: the statistics of G's 4 norms, the u of D's 7 convs, dense, projection.
        assert_eq!(g.buffers().len(), 2 * 4);
        assert_eq!(d.buffers().len(), 9);
        assert!(d.forward(&x, None, false).is_err(), "classes are required");
        // Every weight of both gets a gradient through the GAN loss.
        let loss = crate::Loss::Hinge
            .generator(&d.forward(&x, Some(&y), false).unwrap())
            .unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in gm.data().lock().unwrap().iter().chain(dm.data().lock().unwrap().iter()) {
            assert!(grads.get(var).is_some(), "{name} has no gradient");
        }
    }

    #[test]
    fn layer_norm_in_d_trains_and_keeps_samples_apart() {
        let mut cfg = small();
        cfg.d_layer_norm = true;
        let dm = VarMap::new();
        let d =
            SndcganDiscriminator::new(&cfg, 1, crate::seeded_var_builder(&dm, 7, DType::F32, &Device::Cpu)).unwrap();
        let names: Vec<String> = dm
            .data()
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("norm"))
            .cloned()
            .collect();
        assert_eq!(names.len(), 2 * 6, "every conv but the first: {names:?}");
        let x = SplitMix64::new(3).normal_tensor(&[3, 3, 32, 32], &Device::Cpu).unwrap();
        let y = one_hot(&[1, 2, 5], 10);
        let all: Vec<f32> = d.forward(&x, Some(&y), false).unwrap().to_vec1().unwrap();
        // Unlike batch norm, a sample's logit does not depend on the rest of its batch.
        let one: Vec<f32> = d
            .forward(&x.narrow(0, 1, 1).unwrap(), Some(&y.narrow(0, 1, 1).unwrap()), false)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((all[1] - one[0]).abs() < 1e-5, "{} vs {}", all[1], one[0]);
        let grads = crate::Loss::Hinge
            .discriminator(
                &d.forward(&x, Some(&y), false).unwrap(),
                &d.forward(&x.neg().unwrap(), Some(&y), false).unwrap(),
            )
            .unwrap()
            .total
            .backward()
            .unwrap();
        for (name, var) in dm.data().lock().unwrap().iter() {
            assert!(grads.get(var).is_some(), "{name} has no gradient");
        }
    }

    #[test]
    fn spectral_norm_holds_each_layer_near_lipschitz_one() {
        let mut cfg = small();
        cfg.conditional = false;
        let dm = VarMap::new();
        let d =
            SndcganDiscriminator::new(&cfg, 2, crate::seeded_var_builder(&dm, 7, DType::F32, &Device::Cpu)).unwrap();
        let x = SplitMix64::new(1).normal_tensor(&[2, 3, 32, 32], &Device::Cpu).unwrap();
        for _ in 0..30 {
            d.forward(&x, None, true).unwrap();
        }
        // The dense layer's normalised weight: its one singular value is |w| / sigma = 1.
        let w = dm.data().lock().unwrap()["dense.weight"].as_tensor().clone();
        let u = &d.buffers()["dense.sn_u"];
        assert_eq!(u.dims(), &[1]);
        let norm = w
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .sqrt()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let sigma = crate::SpectralNorm::new(1, 0, DType::F32, &Device::Cpu)
            .unwrap()
            .sigma(&w)
            .unwrap();
        assert!((sigma as f32 - norm).abs() < 1e-4 * norm, "{sigma} vs {norm}");
    }
}
