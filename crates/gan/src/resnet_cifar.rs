//! The CIFAR ResNet of WGAN-GP and SNGAN (Gulrajani et al. 2017, Miyato et al. 2018),
//! 32 px: G of three up-sampling residual blocks from a 4x4 map, D of two
//! down-sampling and two plain residual blocks, ReLU throughout, D's features summed
//! over space before the dense logit (and the projection term when conditional).

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result, TapSpec};

use crate::layer_norm::LayerNorm;
use crate::layers::{Conv, Dense};
use crate::model::{DiscriminatorOutput, GanDiscriminator, GanGenerator, ProjectionClasses};
use crate::norm::NormLayer;
use crate::projection::ProjectionHead;
use crate::{BnMode, ModelConfig};

fn classes(cfg: &ModelConfig) -> Option<usize> {
    cfg.conditional.then_some(cfg.classes)
}

/// Nearest-neighbour 2x up-sampling (the kernels' one pass each way; candle's own
/// overwrites the gradient of an input that feeds another op, `../shared/CANDLE_NOTES.md`).
fn up(x: &Tensor) -> Result<Tensor> {
    labelgan_kernels::resample::upsample_nearest2(x)
}

/// 2x2 average pooling, differentiable to any order (the penalties need two).
fn down(x: &Tensor) -> Result<Tensor> {
    labelgan_kernels::resample::avg_pool2(x)
}

/// G's block: `conv(relu(norm(up(conv(relu(norm(x)))))))` beside `conv1x1(up(x))`.
#[derive(Debug)]
pub(crate) struct UpBlock {
    norm1: NormLayer,
    conv1: Conv,
    norm2: NormLayer,
    conv2: Conv,
    shortcut: Conv,
}

impl UpBlock {
    fn new(cfg: &ModelConfig, c: usize, vb: VarBuilder) -> Result<Self> {
        let norm = |vb| NormLayer::new(cfg.g_norm, c, cfg.z_dim, classes(cfg), vb);
        Self::with_norms(cfg, c, norm(vb.pp("norm1"))?, norm(vb.pp("norm2"))?, vb)
    }

    /// A block of `c` channels with the given normalisations (BigGAN's are conditioned
    /// on its share of z and the class embedding).
    pub(crate) fn with_norms(
        cfg: &ModelConfig,
        c: usize,
        norm1: NormLayer,
        norm2: NormLayer,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1,
            conv1: Conv::new(c, c, 3, 1, None, cfg.init, vb.pp("conv1"))?,
            norm2,
            conv2: Conv::new(c, c, 3, 1, None, cfg.init, vb.pp("conv2"))?,
            shortcut: Conv::new(c, c, 1, 1, None, cfg.init, vb.pp("shortcut"))?,
        })
    }

    /// `x` `[N, c, H, W]` to `[N, c, 2H, 2W]`; `z` and `y` go to the normalisations.
    pub(crate) fn forward(&self, x: &Tensor, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor> {
        let h = self.norm1.forward(x, z, y, mode)?.relu()?;
        let h = self.conv1.forward(&up(&h)?, false)?;
        let h = self.norm2.forward(&h, z, y, mode)?.relu()?;
        let h = self.conv2.forward(&h, false)?;
        Ok((h + self.shortcut.forward(&up(x)?, false)?)?)
    }

    pub(crate) fn buffers(&self, prefix: &str, out: &mut BTreeMap<String, Tensor>) {
        self.norm1.buffers(&format!("{prefix}.norm1"), out);
        self.norm2.buffers(&format!("{prefix}.norm2"), out);
    }

    pub(crate) fn set_buffers(&self, prefix: &str, from: &BTreeMap<String, Tensor>) -> Result<()> {
        self.norm1.set_buffers(&format!("{prefix}.norm1"), from)?;
        self.norm2.set_buffers(&format!("{prefix}.norm2"), from)
    }
}

/// The generator: z to a 4x4 map of `g_width` channels, three up-blocks, then norm,
/// ReLU, a 3x3 convolution to RGB and tanh.
#[derive(Debug)]
pub struct ResnetCifarGenerator {
    z_dim: usize,
    width: usize,
    dense: Dense,
    blocks: Vec<UpBlock>,
    norm: NormLayer,
    out: Conv,
}

impl ResnetCifarGenerator {
    /// Built from `cfg` (resolution 32) with weights under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.resolution != 32 {
            return Err(Error::invalid(format!(
                "the CIFAR ResNet is 32 px, got {}",
                cfg.resolution
            )));
        }
        let c = cfg.g_width;
        Ok(Self {
            z_dim: cfg.z_dim,
            width: c,
            dense: Dense::new(cfg.z_dim, 16 * c, true, None, cfg.init, vb.pp("dense"))?,
            blocks: (0..3)
                .map(|i| UpBlock::new(cfg, c, vb.pp(format!("block{i}"))))
                .collect::<Result<_>>()?,
            norm: NormLayer::new(cfg.g_norm, c, cfg.z_dim, classes(cfg), vb.pp("norm"))?,
            out: Conv::new(c, 3, 3, 1, None, cfg.init, vb.pp("out"))?,
        })
    }
}

impl GanGenerator for ResnetCifarGenerator {
    fn z_dim(&self) -> usize {
        self.z_dim
    }

    fn forward(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor> {
        Ok(self.forward_taps(z, y, mode)?.0)
    }

    fn forward_taps(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<(Tensor, Vec<Tensor>)> {
        let n = z.dim(0)?;
        let mut h = self.dense.forward(z, false)?.reshape((n, self.width, 4, 4))?;
        let mut taps = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            h = b.forward(&h, z, y, mode)?;
            taps.push(h.clone());
        }
        let h = self.norm.forward(&h, z, y, mode)?.relu()?;
        Ok((self.out.forward(&h, false)?.tanh()?, taps))
    }

    fn tap_specs(&self) -> Vec<TapSpec> {
        (0..self.blocks.len())
            .map(|i| TapSpec::feature(format!("block{i}"), 8 << i, self.width))
            .collect()
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        generator_buffers(&self.blocks, &self.norm)
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        set_generator_buffers(&self.blocks, &self.norm, from)
    }
}

/// The statistics of a ResNet generator's blocks (`blockI.norm1`, ...) and final norm.
pub(crate) fn generator_buffers(blocks: &[UpBlock], norm: &NormLayer) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for (i, b) in blocks.iter().enumerate() {
        b.buffers(&format!("block{i}"), &mut out);
    }
    norm.buffers("norm", &mut out);
    out
}

/// Restores what [`generator_buffers`] returned.
pub(crate) fn set_generator_buffers(
    blocks: &[UpBlock],
    norm: &NormLayer,
    from: &BTreeMap<String, Tensor>,
) -> Result<()> {
    for (i, b) in blocks.iter().enumerate() {
        b.set_buffers(&format!("block{i}"), from)?;
    }
    norm.set_buffers("norm", from)
}

/// D's block: `conv(relu(conv(relu(x))))` (down-sampled) beside a 1x1 convolution of
/// `x` (down-sampled); the first block skips the leading ReLU (its input is the image)
/// and pools before its shortcut convolution.
#[derive(Debug)]
pub(crate) struct DownBlock {
    conv1: Conv,
    conv2: Conv,
    /// Layer norms before the two activations (with `d_layer_norm`; the first block's
    /// input is the image, which gets none).
    norm1: Option<LayerNorm>,
    norm2: Option<LayerNorm>,
    shortcut: Option<Conv>,
    downsample: bool,
    first: bool,
}

impl DownBlock {
    /// `inputs` to `c` channels, halving the size when `downsample`; the `first` block
    /// takes the image. A shortcut convolution when the size or width changes; `sn`
    /// hands out the spectral norms' seeds (`None`: none).
    pub(crate) fn new(
        cfg: &ModelConfig,
        (inputs, c): (usize, usize),
        downsample: bool,
        first: bool,
        sn: &mut dyn FnMut() -> Option<u64>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let ln = |on: bool, channels: usize, name: &str| -> Result<Option<LayerNorm>> {
            match cfg.d_layer_norm && on {
                true => Ok(Some(LayerNorm::new(channels, vb.pp(name))?)),
                false => Ok(None),
            }
        };
        Ok(DownBlock {
            norm1: ln(!first, inputs, "norm1")?,
            norm2: ln(true, c, "norm2")?,
            conv1: Conv::new(inputs, c, 3, 1, sn(), cfg.init, vb.pp("conv1"))?,
            conv2: Conv::new(c, c, 3, 1, sn(), cfg.init, vb.pp("conv2"))?,
            shortcut: if downsample || inputs != c {
                Some(Conv::new(inputs, c, 1, 1, sn(), cfg.init, vb.pp("shortcut"))?)
            } else {
                None
            },
            downsample,
            first,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let norm = |n: &Option<LayerNorm>, h: Tensor| -> Result<Tensor> {
            match n {
                Some(n) => n.forward(&h),
                None => Ok(h),
            }
        };
        let h = if self.first {
            x.clone()
        } else {
            norm(&self.norm1, x.clone())?.relu()?
        };
        let h = norm(&self.norm2, self.conv1.forward(&h, training)?)?.relu()?;
        let mut h = self.conv2.forward(&h, training)?;
        if self.downsample {
            h = down(&h)?;
        }
        let s = match (&self.shortcut, self.first, self.downsample) {
            (Some(c), true, _) => c.forward(&down(x)?, training)?,
            (Some(c), false, true) => down(&c.forward(x, training)?)?,
            (Some(c), false, false) => c.forward(x, training)?,
            (None, _, _) => x.clone(),
        };
        Ok((h + s)?)
    }

    pub(crate) fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        self.conv1.buffers(out);
        self.conv2.buffers(out);
        if let Some(c) = &self.shortcut {
            c.buffers(out);
        }
    }

    pub(crate) fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        self.conv1.set_buffers(from)?;
        self.conv2.set_buffers(from)?;
        match &self.shortcut {
            Some(c) => c.set_buffers(from),
            None => Ok(()),
        }
    }
}

/// The discriminator: a first down-block from RGB to `d_width` channels, a second
/// down-block, two plain blocks, ReLU, the sum over space, and a dense logit.
#[derive(Debug)]
pub struct ResnetCifarDiscriminator {
    blocks: Vec<DownBlock>,
    head: ProjectionHead,
}

impl ResnetCifarDiscriminator {
    /// Built from `cfg` with weights under `vb`; spectral norms seeded from `seed`.
    pub fn new(cfg: &ModelConfig, seed: u64, vb: VarBuilder) -> Result<Self> {
        if cfg.resolution != 32 {
            return Err(Error::invalid(format!(
                "the CIFAR ResNet is 32 px, got {}",
                cfg.resolution
            )));
        }
        let c = cfg.d_width;
        let mut k = 0u64;
        let mut sn = || {
            k += 1;
            cfg.d_spectral_norm.then_some(seed.wrapping_mul(1000).wrapping_add(k))
        };
        let mut blocks = Vec::with_capacity(4);
        for i in 0..4 {
            let vb = vb.pp(format!("block{i}"));
            let inputs = if i == 0 { 3 } else { c };
            blocks.push(DownBlock::new(cfg, (inputs, c), i < 2, i == 0, &mut sn, vb)?);
        }
        // Seeds in the order the layers always took them: the embedding (conditional
        // only), then the logit.
        let projection_sn = if cfg.conditional { sn() } else { None };
        let dense_sn = sn();
        Ok(Self {
            blocks,
            head: ProjectionHead::new(c, classes(cfg), (dense_sn, projection_sn), cfg.init, vb)?,
        })
    }
}

/// D's features: ReLU, then the sum over space (the CIFAR ResNet's and BigGAN's).
pub(crate) fn pooled(h: &Tensor) -> Result<Tensor> {
    Ok(h.relu()?.sum((2, 3))?)
}

impl GanDiscriminator for ResnetCifarDiscriminator {
    fn feature_dim(&self) -> usize {
        self.head.features()
    }

    fn forward_features(
        &self,
        x: &Tensor,
        classes: &mut ProjectionClasses,
        training: bool,
    ) -> Result<DiscriminatorOutput> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = b.forward(&h, training)?;
        }
        self.head.forward_pooled(&pooled(&h)?, classes, training)
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for b in &self.blocks {
            b.buffers(&mut out);
        }
        self.head.buffers(&mut out);
        out
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        for b in &self.blocks {
            b.set_buffers(from)?;
        }
        self.head.set_buffers(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GeneratorNorm, TrainingConfig};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use labelgan_core::SplitMix64;

    #[test]
    fn shapes_gradients_and_buffers_for_each_normalisation() {
        for (norm, conditional, layer_norm) in [
            (GeneratorNorm::BatchNorm, true, false),
            (GeneratorNorm::BatchNorm, false, true),
            (GeneratorNorm::SelfModulated, true, false),
            (GeneratorNorm::None, false, false),
        ] {
            let mut cfg = TrainingConfig::default().model;
            (cfg.g_width, cfg.d_width, cfg.z_dim, cfg.g_norm, cfg.conditional) = (16, 8, 12, norm, conditional);
            cfg.d_layer_norm = layer_norm;
            let (gm, dm) = (VarMap::new(), VarMap::new());
            let g =
                ResnetCifarGenerator::new(&cfg, crate::seeded_var_builder(&gm, 7, DType::F32, &Device::Cpu)).unwrap();
            let d = ResnetCifarDiscriminator::new(&cfg, 3, crate::seeded_var_builder(&dm, 7, DType::F32, &Device::Cpu))
                .unwrap();
            let z = SplitMix64::new(0).normal_tensor(&[3, 12], &Device::Cpu).unwrap();
            let y = conditional.then(|| {
                Tensor::from_vec(
                    (0..30).map(|k| f32::from(k % 10 == k / 10 * 4 % 10)).collect(),
                    (3, 10),
                    &Device::Cpu,
                )
                .unwrap()
            });
            let x = g.forward(&z, y.as_ref(), BnMode::Train).unwrap();
            assert_eq!(x.dims(), &[3, 3, 32, 32]);
            let logits = d.forward(&x, y.as_ref(), true).unwrap();
            assert_eq!(logits.dims(), &[3]);
            let grads = crate::Loss::NonSaturating
                .generator(&logits)
                .unwrap()
                .backward()
                .unwrap();
            for (name, var) in gm.data().lock().unwrap().iter().chain(dm.data().lock().unwrap().iter()) {
                assert!(
                    grads.get(var).is_some(),
                    "{norm:?} {conditional}: {name} has no gradient"
                );
            }
            // D's layer norms: 7 (block 1 has no norm before its first activation).
            let d_norms = dm.data().lock().unwrap().keys().filter(|k| k.contains(".norm")).count();
            assert_eq!(d_norms, if layer_norm { 2 * 7 } else { 0 });
            let norms = match norm {
                GeneratorNorm::None => 0,
                _ => 7,
            };
            assert_eq!(g.buffers().len(), 2 * norms, "{norm:?}");
            // D: 8 convs + 2 shortcuts + dense (+ projection), each with its u.
            assert_eq!(d.buffers().len(), 11 + usize::from(conditional));
        }
        let mut cfg = TrainingConfig::default().model;
        cfg.resolution = 64;
        let vm = VarMap::new();
        assert!(ResnetCifarGenerator::new(&cfg, crate::seeded_var_builder(&vm, 7, DType::F32, &Device::Cpu)).is_err());
    }

    #[test]
    fn generator_gradient_matches_finite_differences() {
        // Through the up-sampling shortcuts and batch norm in training mode, in f64.
        let mut cfg = TrainingConfig::default().model;
        (cfg.g_width, cfg.z_dim, cfg.conditional, cfg.init) = (4, 3, false, crate::Init::Default);
        let gm = VarMap::new();
        let g = ResnetCifarGenerator::new(&cfg, crate::seeded_var_builder(&gm, 7, DType::F64, &Device::Cpu)).unwrap();
        let r = crate::testing::randn(6, &[2, 3, 32, 32]);
        let f = |z: &Tensor| {
            (g.forward(z, None, BnMode::Train).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        crate::testing::assert_gradient(&f, &crate::testing::randn(5, &[2, 3]), &[0, 1, 2, 3, 4, 5], 1e-7, 1e-5);
    }
}
