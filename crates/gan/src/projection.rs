//! The projection discriminator's head (Miyato and Koyama 2018): a dense logit on D's
//! pooled features plus, for a conditional model, the inner product of the class's
//! embedding with those features.

use std::collections::BTreeMap;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result};

use crate::Init;
use crate::layers::Dense;
use crate::model::{DiscriminatorOutput, ProjectionClasses};

/// `logits + <embed(y), features>` row by row: the projection term of a conditional
/// discriminator (`embed` `Some`, `y` one-hot or soft classes `[N, classes]`); the
/// logits alone for an unconditional one. Classes missing where needed are an error.
pub fn add_projection(
    logits: Tensor,
    embed: Option<&Dense>,
    features: &Tensor,
    y: Option<&Tensor>,
    training: bool,
) -> Result<Tensor> {
    match (embed, y) {
        (Some(e), Some(y)) => Ok((logits + (e.forward(y, training)? * features)?.sum(1)?)?),
        (Some(_), None) => Err(Error::invalid("a conditional discriminator needs the classes")),
        (None, _) => Ok(logits),
    }
}

/// D's last layer over `features`-vectors.
#[derive(Debug)]
pub struct ProjectionHead {
    features: usize,
    dense: Dense,
    projection: Option<Dense>,
}

impl ProjectionHead {
    /// `classes`: `None` for an unconditional model. `sn`: the spectral norms' seeds
    /// of the dense layer and the embedding (`None`: not normalised). Weights `dense`
    /// and `projection` under `vb`.
    pub fn new(
        features: usize,
        classes: Option<usize>,
        sn: (Option<u64>, Option<u64>),
        init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let projection = match classes {
            Some(n) => Some(Dense::new(n, features, false, sn.1, init, vb.pp("projection"))?),
            None => None,
        };
        Ok(Self {
            features,
            dense: Dense::new(features, 1, true, sn.0, init, vb.pp("dense"))?,
            projection,
        })
    }

    /// The width of the features it reads.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Logits `[N]` of features `[N, F]` (and one-hot classes, when conditional).
    pub fn forward(&self, features: &Tensor, y: Option<&Tensor>, training: bool) -> Result<Tensor> {
        let logit = self.dense.forward(features, training)?.squeeze(1)?;
        add_projection(logit, self.projection.as_ref(), features, y, training)
    }

    /// Logits and features of pooled features `[N, F]`, the classes taken from
    /// `classes(features)`.
    pub fn forward_pooled(
        &self,
        features: &Tensor,
        classes: &mut ProjectionClasses,
        training: bool,
    ) -> Result<DiscriminatorOutput> {
        let y = classes(features)?;
        Ok(DiscriminatorOutput {
            logits: self.forward(features, y.as_ref(), training)?,
            features: features.clone(),
        })
    }

    /// Spectral norm state, by name.
    pub fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        self.dense.buffers(out);
        if let Some(p) = &self.projection {
            p.buffers(out);
        }
    }

    /// Restores what [`Self::buffers`] wrote.
    pub fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        self.dense.set_buffers(from)?;
        match &self.projection {
            Some(p) => p.set_buffers(from),
            None => Ok(()),
        }
    }
}
