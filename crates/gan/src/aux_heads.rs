//! D's auxiliary heads on its features `φ(x)`, beside the real/fake logit: the rotation
//! head of the self-supervision ([`crate::self_supervision`]) and the class predictor
//! of co-training ([`crate::co_training`]), each present when the config asks for it.
//! Each is a dense layer, spectrally normalised when D's layers are. They train with
//! D (their weights are D's, under `heads.`).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Var};
use candle_nn::VarMap;

use labelgan_core::Result;
use labelgan_core::rotation::ROTATIONS;
use labelgan_optim::named_vars;

use crate::TrainingConfig;
use crate::init::init_var_builder;
use crate::layers::Dense;

/// Seed tag of the heads' initialisation (apart from D's own layers).
const HEADS_SEED: u64 = 0x6865_6164_7300;

/// The heads a config asks for.
#[derive(Debug, Default)]
pub struct AuxiliaryHeads {
    /// The 4-way rotation head (logits `[N, 4]`), with self-supervision.
    pub rotation: Option<Dense>,
    /// The class predictor (logits `[N, classes]`), with co-training.
    pub predictor: Option<Dense>,
}

impl AuxiliaryHeads {
    /// The heads of `config` over `features`-vectors, and their weights by name
    /// (`heads.rotation.*`, `heads.predictor.*`), initialised from the config's seed.
    pub fn new(config: &TrainingConfig, features: usize, device: &Device) -> Result<(Self, BTreeMap<String, Var>)> {
        let (m, t) = (&config.model, &config.train);
        let vm = VarMap::new();
        let seed = config.seed ^ HEADS_SEED;
        let vb = init_var_builder(&vm, seed, m.init, DType::F32, device).pp("heads");
        let sn = |k: u64| m.d_spectral_norm.then_some(seed.wrapping_add(k));
        let rotation = match t.rotation_batch_fraction > 0 {
            true => Some(Dense::new(features, ROTATIONS, true, sn(1), m.init, vb.pp("rotation"))?),
            false => None,
        };
        let predictor = match t.class_predictor {
            true => Some(Dense::new(
                features,
                m.classes,
                true,
                sn(2),
                m.init,
                vb.pp("predictor"),
            )?),
            false => None,
        };
        Ok((Self { rotation, predictor }, named_vars(&vm)))
    }

    /// Spectral norm state, by name.
    pub fn buffers(&self, out: &mut BTreeMap<String, candle_core::Tensor>) {
        if let Some(h) = &self.rotation {
            h.buffers(out);
        }
        if let Some(h) = &self.predictor {
            h.buffers(out);
        }
    }

    /// Restores what [`Self::buffers`] wrote.
    pub fn set_buffers(&self, from: &BTreeMap<String, candle_core::Tensor>) -> Result<()> {
        if let Some(h) = &self.rotation {
            h.set_buffers(from)?;
        }
        if let Some(h) = &self.predictor {
            h.set_buffers(from)?;
        }
        Ok(())
    }
}
