//! The networks a config names, built fresh for training or from saved weights.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

use labelgan_core::{Error, Result};
use labelgan_optim::named_vars;

use crate::init::init_var_builder;
use crate::model::{GanDiscriminator, GanGenerator};
use crate::{
    Architecture, BigGanDiscriminator, BigGanGenerator, ModelConfig, ResnetCifarDiscriminator, ResnetCifarGenerator,
    SndcganDiscriminator, SndcganGenerator, StyleGan2Discriminator, StyleGan2Generator, TrainingConfig,
};

/// A generator behind the training loop's trait.
pub type BoxedGenerator = Box<dyn GanGenerator + Send + Sync>;
/// A discriminator behind the training loop's trait.
pub type BoxedDiscriminator = Box<dyn GanDiscriminator + Send + Sync>;

/// Both networks of a config and their weights by name.
pub type Networks = (
    BoxedGenerator,
    BTreeMap<String, Var>,
    BoxedDiscriminator,
    BTreeMap<String, Var>,
);

/// The generator of a Compare GAN architecture (SNDCGAN, the CIFAR ResNet, BigGAN) of
/// `m` with weights under `vb`; StyleGAN2 keeps the official code's own layout
/// ([`StyleGan2Generator`]) and is refused here.
pub fn compare_gan_generator(m: &ModelConfig, vb: VarBuilder) -> Result<BoxedGenerator> {
    Ok(match m.architecture {
        Architecture::Sndcgan => Box::new(SndcganGenerator::new(m, vb)?),
        Architecture::ResnetCifar => Box::new(ResnetCifarGenerator::new(m, vb)?),
        Architecture::Biggan => Box::new(BigGanGenerator::new(m, vb)?),
        Architecture::Stylegan2 => {
            return Err(Error::invalid(
                "a StyleGAN2 generator is built by StyleGan2Generator, not from a VarBuilder",
            ));
        }
    })
}

/// Fresh networks for `config`, initialised from its seed.
pub fn networks(config: &TrainingConfig, device: &Device) -> Result<Networks> {
    let m = &config.model;
    let d_seed = config.seed ^ 0x6469_7363;
    if m.architecture == Architecture::Stylegan2 {
        let (g, g_vars) = StyleGan2Generator::new(m, config.seed, device)?;
        let (d, d_vars) = StyleGan2Discriminator::new(m, d_seed, device)?;
        return Ok((Box::new(g), g_vars, Box::new(d), d_vars));
    }
    let (gm, dm) = (VarMap::new(), VarMap::new());
    let g = compare_gan_generator(m, init_var_builder(&gm, config.seed, m.init, DType::F32, device))?;
    let db = init_var_builder(&dm, d_seed, m.init, DType::F32, device);
    let d: BoxedDiscriminator = match m.architecture {
        Architecture::Sndcgan => Box::new(SndcganDiscriminator::new(m, config.seed, db)?),
        Architecture::ResnetCifar => Box::new(ResnetCifarDiscriminator::new(m, config.seed, db)?),
        Architecture::Biggan => Box::new(BigGanDiscriminator::new(m, config.seed, db)?),
        Architecture::Stylegan2 => unreachable!("returned above"),
    };
    Ok((g, named_vars(&gm), d, named_vars(&dm)))
}
