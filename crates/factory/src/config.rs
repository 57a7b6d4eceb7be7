//! What to generate: count, latent seed, truncation, filtering, batch.

use serde::{Deserialize, Serialize};

use labelgan_core::{Error, Result, Shard};
use labelgan_labeler::Precision;

/// What [`crate::generate_dataset`] makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactoryConfig {
    /// Images to write.
    pub count: usize,
    /// Latent seed: candidate `c` is `z ~ N(0, I)` from `SplitMix64::derive(seed, c)`.
    pub seed: u64,
    /// Truncation psi (1: none).
    pub psi: f64,
    /// Fraction of each block dropped as most uncertain (HandsOff: 0.1).
    pub filter_fraction: f64,
    /// Candidates per filtering block.
    pub block: usize,
    /// Images per generator batch.
    pub batch: usize,
    /// For a conditional generator: every image of this class. `None`: classes in
    /// turn, candidate `c` of class [`labelgan_core::Generator::seeded_class`]`(c)`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class: Option<u32>,
    /// This machine's share of the dataset: the filtering blocks dealt to it
    /// ([`crate::shards`]); `None`: all of it. `count` stays the whole dataset's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<Shard>,
    /// The labelers' first-layer arithmetic while labelling ([`Precision::Bf16`]: on
    /// AMX's tiles where the CPU has them). [`crate::run_factory`] sets it on its
    /// labelers; callers of [`crate::generate_dataset`] set it on theirs
    /// ([`crate::Labelers::set_precision`]). Written to
    /// records only when not f32, so a run begun before it existed resumes.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

impl Default for FactoryConfig {
    fn default() -> Self {
        Self {
            count: 1000,
            seed: 0,
            psi: 1.0,
            filter_fraction: 0.1,
            block: 50,
            batch: 8,
            class: None,
            shard: None,
            precision: Precision::F32,
        }
    }
}

/// Most images one run writes (the manifest is held in memory while it runs).
pub const MAX_COUNT: usize = 100_000_000;
/// Most candidates per filtering block (a block is held in memory).
pub const MAX_BLOCK: usize = 100_000;

impl FactoryConfig {
    /// Images kept per block.
    pub fn keep_per_block(&self) -> usize {
        let drop = (self.filter_fraction * self.block as f64).round() as usize;
        self.block.saturating_sub(drop)
    }

    /// Checks the settings before any work.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.filter_fraction) {
            return Err(Error::invalid(format!(
                "filter fraction must be in [0, 1), got {}",
                self.filter_fraction
            )));
        }
        if !self.psi.is_finite() {
            return Err(Error::invalid(format!(
                "truncation psi must be finite, got {}",
                self.psi
            )));
        }
        if self.block == 0 || self.batch == 0 || self.keep_per_block() == 0 {
            return Err(Error::invalid(
                "block and batch must be positive and keep at least one image per block",
            ));
        }
        if let Some(s) = self.shard {
            Shard::new(s.k, s.n)?;
        }
        for (what, v, max) in [
            ("count", self.count, MAX_COUNT),
            ("block", self.block, MAX_BLOCK),
            ("batch", self.batch, MAX_BLOCK),
        ] {
            if v > max {
                return Err(Error::invalid(format!("{what} is {v}; at most {max} is allowed")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_per_block_rounds_the_dropped_share() {
        let c = FactoryConfig {
            block: 50,
            filter_fraction: 0.1,
            ..FactoryConfig::default()
        };
        assert_eq!(c.keep_per_block(), 45);
        let c = FactoryConfig {
            block: 4,
            filter_fraction: 0.3,
            ..FactoryConfig::default()
        };
        assert_eq!(c.keep_per_block(), 3);
        for bad in [1.0, -0.1, f64::NAN] {
            let c = FactoryConfig {
                filter_fraction: bad,
                ..FactoryConfig::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
    }
}
