//! BigGAN (Brock et al. 2019) as Compare GAN builds it for small images: the ResNet
//! generator with every block's batch norm conditioned on its own chunk of z
//! (hierarchical latents) and, conditioned, a class embedding shared by all blocks; an
//! optional SAGAN self-attention block at one resolution in each network; a ResNet
//! discriminator with a projection head.
//!
//! Sizes: `log2(R / 4)` up-blocks of `g_width` channels, so z splits into that many
//! chunks plus one for the dense input (`z_dim` must divide evenly); the discriminator
//! down-samples to 8x8 in `log2(R / 8)` blocks of `d_width` channels, then two plain
//! blocks (at 32 px: the CIFAR ResNet's layout).

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};

use labelgan_core::{Error, Result};

use crate::attention::SelfAttention;
use crate::layers::{Conv, Dense};
use crate::model::{DiscriminatorOutput, GanDiscriminator, GanGenerator, ProjectionClasses};
use crate::norm::NormLayer;
use crate::projection::ProjectionHead;
use crate::resnet_cifar::{DownBlock, UpBlock, generator_buffers, pooled, set_generator_buffers};
use crate::{BnMode, ConditionalBatchNorm, GeneratorNorm, ModelConfig};

/// Up-blocks from 4x4 to the image size.
pub fn up_blocks(cfg: &ModelConfig) -> usize {
    cfg.resolution.trailing_zeros() as usize - 2
}

/// Checks what only BigGAN constrains: a resolution of at least 16, z splitting evenly
/// over the blocks, an attention resolution the networks pass through, widths it can
/// attend over.
pub fn validate(cfg: &ModelConfig) -> Result<()> {
    let r = cfg.resolution;
    if r < 16 {
        return Err(Error::invalid(format!(
            "model.resolution is {r}, expected at least 16 for biggan"
        )));
    }
    let chunks = up_blocks(cfg) + 1;
    if !cfg.z_dim.is_multiple_of(chunks) {
        return Err(Error::invalid(format!(
            "model.z_dim is {}, expected a multiple of {chunks} for biggan at {r} px (one chunk per block and one for the input)",
            cfg.z_dim
        )));
    }
    let a = cfg.attention_resolution;
    if a != 0 && (!a.is_power_of_two() || !(8..=r / 2).contains(&a)) {
        return Err(Error::invalid(format!(
            "model.attention_resolution is {a}, expected 0 (none) or a power of two in 8..={} (a size both networks pass through)",
            r / 2
        )));
    }
    if a != 0 && (cfg.g_width < 8 || cfg.d_width < 8) {
        return Err(Error::invalid(
            "model.attention_resolution needs g_width and d_width of at least 8",
        ));
    }
    if cfg.g_norm != GeneratorNorm::BatchNorm {
        return Err(Error::invalid(format!(
            "model.g_norm is {:?}, expected batch_norm for biggan (its norms are conditioned on z and the class)",
            cfg.g_norm
        )));
    }
    if cfg.conditional && cfg.embed_dim == 0 {
        return Err(Error::invalid(
            "model.embed_dim is 0, expected at least 1 for a conditional biggan",
        ));
    }
    Ok(())
}

/// The generator.
#[derive(Debug)]
pub struct BigGanGenerator {
    z_dim: usize,
    chunk: usize,
    width: usize,
    embed: Option<Linear>,
    dense: Dense,
    blocks: Vec<UpBlock>,
    /// Self-attention after the block of this index.
    attention: Option<(usize, SelfAttention)>,
    norm: NormLayer,
    out: Conv,
}

impl BigGanGenerator {
    /// Built from `cfg` with weights under `vb`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        validate(cfg)?;
        let n = up_blocks(cfg);
        let chunk = cfg.z_dim / (n + 1);
        let c = cfg.g_width;
        let embed = match cfg.conditional {
            true => Some(candle_nn::linear_no_bias(cfg.classes, cfg.embed_dim, vb.pp("embed"))?),
            false => None,
        };
        let cond = chunk + if cfg.conditional { cfg.embed_dim } else { 0 };
        let blocks = (0..n)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                let norm = |name: &str| -> Result<NormLayer> {
                    Ok(NormLayer::Conditional(ConditionalBatchNorm::new(c, cond, vb.pp(name))?))
                };
                UpBlock::with_norms(cfg, c, norm("norm1")?, norm("norm2")?, vb.clone())
            })
            .collect::<Result<_>>()?;
        let attention = match cfg.attention_resolution {
            0 => None,
            a => {
                let after = a.trailing_zeros() as usize - 3; // block i outputs 8 << i
                Some((after, SelfAttention::new(c, None, cfg.init, vb.pp("attention"))?))
            }
        };
        Ok(Self {
            z_dim: cfg.z_dim,
            chunk,
            width: c,
            embed,
            dense: Dense::new(chunk, 16 * c, true, None, cfg.init, vb.pp("dense"))?,
            blocks,
            attention,
            norm: NormLayer::new(GeneratorNorm::BatchNorm, c, cfg.z_dim, None, vb.pp("norm"))?,
            out: Conv::new(c, 3, 3, 1, None, cfg.init, vb.pp("out"))?,
        })
    }
}

impl GanGenerator for BigGanGenerator {
    fn z_dim(&self) -> usize {
        self.z_dim
    }

    fn forward(&self, z: &Tensor, y: Option<&Tensor>, mode: BnMode) -> Result<Tensor> {
        let n = z.dim(0)?;
        let embedding = match (&self.embed, y) {
            (Some(e), Some(y)) => Some(e.forward(y)?),
            (Some(_), None) => return Err(Error::invalid("a conditional generator needs the classes")),
            (None, _) => None,
        };
        let chunk = |i: usize| z.narrow(1, i * self.chunk, self.chunk);
        let mut h = self.dense.forward(&chunk(0)?, false)?.reshape((n, self.width, 4, 4))?;
        for (i, b) in self.blocks.iter().enumerate() {
            // Each block's norms see its own chunk of z beside the class embedding.
            let cond = match &embedding {
                Some(e) => Tensor::cat(&[&chunk(i + 1)?, e], 1)?,
                None => chunk(i + 1)?,
            };
            h = b.forward(&h, &cond, Some(&cond), mode)?;
            if let Some((after, a)) = &self.attention
                && *after == i
            {
                h = a.forward(&h, false)?;
            }
        }
        let h = self.norm.forward(&h, z, None, mode)?.relu()?;
        Ok(self.out.forward(&h, false)?.tanh()?)
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        generator_buffers(&self.blocks, &self.norm)
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        set_generator_buffers(&self.blocks, &self.norm, from)
    }
}

/// The discriminator.
#[derive(Debug)]
pub struct BigGanDiscriminator {
    blocks: Vec<DownBlock>,
    /// Self-attention after the block of this index.
    attention: Option<(usize, SelfAttention)>,
    head: ProjectionHead,
}

impl BigGanDiscriminator {
    /// Built from `cfg` with weights under `vb`; spectral norms seeded from `seed`.
    pub fn new(cfg: &ModelConfig, seed: u64, vb: VarBuilder) -> Result<Self> {
        validate(cfg)?;
        let c = cfg.d_width;
        let mut k = 0u64;
        let mut sn = || {
            k += 1;
            cfg.d_spectral_norm.then_some(seed.wrapping_mul(1000).wrapping_add(k))
        };
        let down = cfg.resolution.trailing_zeros() as usize - 3;
        let mut blocks = Vec::with_capacity(down + 2);
        let mut attention = None;
        for i in 0..down + 2 {
            let inputs = if i == 0 { 3 } else { c };
            blocks.push(DownBlock::new(
                cfg,
                (inputs, c),
                i < down,
                i == 0,
                &mut sn,
                vb.pp(format!("block{i}")),
            )?);
            // Block i outputs R >> (i + 1) while it down-samples, then 8.
            let size = if i < down { cfg.resolution >> (i + 1) } else { 8 };
            if attention.is_none() && cfg.attention_resolution == size {
                attention = Some((i, SelfAttention::new(c, sn(), cfg.init, vb.pp("attention"))?));
            }
        }
        let classes = cfg.conditional.then_some(cfg.classes);
        let projection_sn = if cfg.conditional { sn() } else { None };
        let dense_sn = sn();
        Ok(Self {
            blocks,
            attention,
            head: ProjectionHead::new(c, classes, (dense_sn, projection_sn), cfg.init, vb)?,
        })
    }
}

impl GanDiscriminator for BigGanDiscriminator {
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
        for (i, b) in self.blocks.iter().enumerate() {
            h = b.forward(&h, training)?;
            if let Some((after, a)) = &self.attention
                && *after == i
            {
                h = a.forward(&h, training)?;
            }
        }
        self.head.forward_pooled(&pooled(&h)?, classes, training)
    }

    fn buffers(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for b in &self.blocks {
            b.buffers(&mut out);
        }
        if let Some((_, a)) = &self.attention {
            a.buffers(&mut out);
        }
        self.head.buffers(&mut out);
        out
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        for b in &self.blocks {
            b.set_buffers(from)?;
        }
        if let Some((_, a)) = &self.attention {
            a.set_buffers(from)?;
        }
        self.head.set_buffers(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Architecture, TrainingConfig};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use labelgan_core::SplitMix64;

    fn small(conditional: bool, attention: usize, resolution: usize) -> ModelConfig {
        let mut cfg = TrainingConfig::default().model;
        cfg.architecture = Architecture::Biggan;
        (cfg.g_width, cfg.d_width, cfg.conditional, cfg.embed_dim) = (16, 8, conditional, 6);
        (cfg.resolution, cfg.attention_resolution) = (resolution, attention);
        cfg.z_dim = 4 * (up_blocks(&cfg) + 1);
        cfg
    }

    fn one_hot(n: usize) -> Tensor {
        crate::one_hot(&(0..n as u32).map(|i| i * 3 % 10).collect::<Vec<_>>(), 10, &Device::Cpu).unwrap()
    }

    #[test]
    fn shapes_gradients_and_buffers_with_and_without_attention() {
        for (conditional, attention, resolution) in [(true, 16, 32), (false, 0, 32), (true, 8, 16), (true, 32, 64)] {
            let cfg = small(conditional, attention, resolution);
            let (gm, dm) = (VarMap::new(), VarMap::new());
            let g = BigGanGenerator::new(&cfg, crate::seeded_var_builder(&gm, 7, DType::F32, &Device::Cpu)).unwrap();
            let d =
                BigGanDiscriminator::new(&cfg, 3, crate::seeded_var_builder(&dm, 7, DType::F32, &Device::Cpu)).unwrap();
            let z = SplitMix64::new(0).normal_tensor(&[3, cfg.z_dim], &Device::Cpu).unwrap();
            let y = conditional.then(|| one_hot(3));
            let x = g.forward(&z, y.as_ref(), BnMode::Train).unwrap();
            assert_eq!(x.dims(), &[3, 3, resolution, resolution]);
            let logits = d.forward(&x, y.as_ref(), true).unwrap();
            assert_eq!(logits.dims(), &[3]);
            // Self-attention starts as the identity (sigma 0), so make it count.
            for vm in [&gm, &dm] {
                if let Some(s) = vm.data().lock().unwrap().get("attention.sigma") {
                    s.set(&Tensor::new(&[0.5f32], &Device::Cpu).unwrap()).unwrap();
                }
            }
            let logits = d
                .forward(&g.forward(&z, y.as_ref(), BnMode::Train).unwrap(), y.as_ref(), true)
                .unwrap();
            let grads = crate::Loss::Hinge.generator(&logits).unwrap().backward().unwrap();
            for (name, var) in gm.data().lock().unwrap().iter().chain(dm.data().lock().unwrap().iter()) {
                assert!(
                    grads.get(var).is_some(),
                    "{conditional} {attention} {resolution}: {name} has no gradient"
                );
            }
            assert_eq!(g.buffers().len(), 2 * (2 * up_blocks(&cfg) + 1));
            let back = BigGanDiscriminator::new(
                &cfg,
                3,
                crate::seeded_var_builder(&VarMap::new(), 7, DType::F32, &Device::Cpu),
            )
            .unwrap();
            back.set_buffers(&d.buffers()).unwrap();
            assert_eq!(back.buffers().len(), d.buffers().len());
        }
    }

    #[test]
    fn every_chunk_of_z_and_the_class_steer_the_image() {
        let cfg = small(true, 0, 32);
        let gm = VarMap::new();
        let g = BigGanGenerator::new(&cfg, crate::seeded_var_builder(&gm, 7, DType::F32, &Device::Cpu)).unwrap();
        // Conditional norms start at plain BN: give them weights so the chunks matter.
        for (name, v) in gm.data().lock().unwrap().iter() {
            if name.contains("gamma.weight") || name.contains("beta.weight") {
                v.set(
                    &(SplitMix64::new(name.len() as u64)
                        .normal_tensor(v.dims(), &Device::Cpu)
                        .unwrap()
                        * 0.3)
                        .unwrap(),
                )
                .unwrap();
            }
        }
        let z = SplitMix64::new(1).normal_tensor(&[4, cfg.z_dim], &Device::Cpu).unwrap();
        let y = one_hot(4);
        let base = g.forward(&z, Some(&y), BnMode::Train).unwrap();
        let chunk = cfg.z_dim / 4;
        for i in 0..4 {
            let bump = Tensor::zeros((4, cfg.z_dim), DType::F32, &Device::Cpu)
                .unwrap()
                .slice_assign(
                    &[0..4, i * chunk..(i + 1) * chunk],
                    &Tensor::ones((4, chunk), DType::F32, &Device::Cpu).unwrap(),
                )
                .unwrap();
            let moved = g.forward(&(&z + bump).unwrap(), Some(&y), BnMode::Train).unwrap();
            assert!(
                labelgan_core::max_abs_diff(&moved, &base).unwrap() > 1e-4,
                "chunk {i} has no effect"
            );
        }
        let other = g
            .forward(&z, Some(&one_hot(4).roll(1, 1).unwrap()), BnMode::Train)
            .unwrap();
        assert!(
            labelgan_core::max_abs_diff(&other, &base).unwrap() > 1e-4,
            "the class has no effect"
        );
        assert!(g.forward(&z, None, BnMode::Train).is_err());
    }

    #[test]
    fn settings_biggan_cannot_build_are_named() {
        let check = |f: &dyn Fn(&mut ModelConfig), want: &str| {
            let mut cfg = small(true, 16, 32);
            f(&mut cfg);
            let e = validate(&cfg).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        check(&|c| c.z_dim = 10, "model.z_dim is 10, expected a multiple of 4");
        check(&|c| c.attention_resolution = 32, "model.attention_resolution is 32");
        check(&|c| c.attention_resolution = 12, "model.attention_resolution is 12");
        check(&|c| c.g_norm = GeneratorNorm::SelfModulated, "model.g_norm");
        check(&|c| c.embed_dim = 0, "model.embed_dim is 0");
        check(&|c| c.resolution = 8, "at least 16");
        let mut t = TrainingConfig::default();
        t.model.attention_resolution = 16;
        assert!(t.validate().unwrap_err().to_string().contains("0 except for biggan"));
    }
}
