//! Generator hyper-parameters, and reading them back from a weight file.
//!
//! A state dict fixes every width; two constructor arguments leave no trace in the
//! shapes: the mapping network's learning-rate multiplier and `conv_clamp`. The export
//! keeps the constructor arguments as JSON in the safetensors metadata `init_kwargs`,
//! exactly as the official `G.init_kwargs`.

use serde_json::{Value, json};

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, Result};

/// Everything needed to build a StyleGAN2 generator. Names follow the official
/// constructor (`Generator(z_dim, c_dim, w_dim, img_resolution, img_channels,
/// mapping_kwargs, synthesis_kwargs)`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Input latent dimension.
    pub z_dim: usize,
    /// Conditioning label dimension (0 = unconditional).
    pub c_dim: usize,
    /// Intermediate latent dimension.
    pub w_dim: usize,
    /// Output resolution, a power of two in 4..=1024.
    pub img_resolution: usize,
    /// Output channels.
    pub img_channels: usize,
    /// Number of mapping layers (8 in the paper configs, 2 in `auto`).
    pub mapping_layers: usize,
    /// Mapping learning-rate multiplier (0.01 in every official config).
    pub mapping_lr_multiplier: f64,
    /// `C(r) = min(channel_base / r, channel_max)`.
    pub channel_base: usize,
    /// Cap on channels per layer.
    pub channel_max: usize,
    /// Clamp of every conv output (256 in ADA-trained models, none in TF-converted ones).
    pub conv_clamp: Option<f64>,
}

impl Default for GeneratorConfig {
    /// The official 256 px paper config (`channel_base` 16384).
    fn default() -> Self {
        Self {
            z_dim: 512,
            c_dim: 0,
            w_dim: 512,
            img_resolution: 256,
            img_channels: 3,
            mapping_layers: 8,
            mapping_lr_multiplier: 0.01,
            channel_base: 16384,
            channel_max: 512,
            conv_clamp: None,
        }
    }
}

/// Most channels, latent or label dimensions (the official models use at most 512).
pub const MAX_WIDTH: usize = 16_384;
/// Most mapping layers (the official models use 2 to 8).
pub const MAX_MAPPING_LAYERS: usize = 64;

impl GeneratorConfig {
    /// Block resolutions `4, 8, ..., img_resolution`.
    pub fn block_resolutions(&self) -> Vec<usize> {
        block_resolutions(self.img_resolution)
    }

    /// Channels of the block at resolution `r`.
    pub fn channels(&self, r: usize) -> usize {
        (self.channel_base / r).min(self.channel_max)
    }

    /// Number of w vectors: `2 log2(R) - 2`.
    pub fn num_ws(&self) -> usize {
        num_ws(self.img_resolution)
    }

    /// Fails unless the settings describe a buildable generator, with every size
    /// bounded so that an absurd one is an error before anything is allocated.
    pub fn validate(&self) -> Result<()> {
        let r = self.img_resolution;
        if !(4..=1024).contains(&r) || !r.is_power_of_two() {
            return Err(Error::invalid(format!(
                "img_resolution must be a power of two in 4..=1024, got {r}"
            )));
        }
        if self.z_dim == 0 || self.w_dim == 0 || self.mapping_layers == 0 || self.img_channels == 0 {
            return Err(Error::invalid(
                "z_dim, w_dim, mapping_layers and img_channels must be positive",
            ));
        }
        for (what, v) in [
            ("z_dim", self.z_dim),
            ("w_dim", self.w_dim),
            ("c_dim", self.c_dim),
            ("channel_max", self.channel_max),
            ("img_channels", self.img_channels),
        ] {
            if v > MAX_WIDTH {
                return Err(Error::invalid(format!("{what} is {v}; at most {MAX_WIDTH} is allowed")));
            }
        }
        if self.mapping_layers > MAX_MAPPING_LAYERS {
            return Err(Error::invalid(format!(
                "mapping_layers is {}; at most {MAX_MAPPING_LAYERS} is allowed",
                self.mapping_layers
            )));
        }
        if let Some(r) = self.block_resolutions().into_iter().find(|&r| self.channels(r) == 0) {
            return Err(Error::invalid(format!(
                "channel_base {} gives 0 channels at resolution {r}",
                self.channel_base
            )));
        }
        Ok(())
    }

    /// The official `init_kwargs` JSON for these settings.
    pub fn init_kwargs(&self) -> String {
        json!({
            "z_dim": self.z_dim,
            "c_dim": self.c_dim,
            "w_dim": self.w_dim,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
            "mapping_kwargs": {"num_layers": self.mapping_layers, "lr_multiplier": self.mapping_lr_multiplier},
            "synthesis_kwargs": {
                "channel_base": self.channel_base,
                "channel_max": self.channel_max,
                "num_fp16_res": 0,
                "conv_clamp": self.conv_clamp,
            },
        })
        .to_string()
    }
}

pub(crate) fn block_resolutions(resolution: usize) -> Vec<usize> {
    (2..=resolution.trailing_zeros()).map(|k| 1usize << k).collect()
}

pub(crate) fn num_ws(resolution: usize) -> usize {
    2 * resolution.trailing_zeros() as usize - 2
}

/// The two settings a state dict cannot tell, read from `init_kwargs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuntimeKwargs {
    /// Mapping learning-rate multiplier (default 0.01).
    pub mapping_lr_multiplier: f64,
    /// conv_clamp (default none).
    pub conv_clamp: Option<f64>,
}

impl RuntimeKwargs {
    /// Reads `init_kwargs` from the file's metadata; defaults where absent. The
    /// integer settings found there must agree with `check` (inferred from shapes).
    pub fn from_file(file: &TensorFile, check: &[(&str, usize)]) -> Result<Self> {
        let mut out = RuntimeKwargs {
            mapping_lr_multiplier: 0.01,
            conv_clamp: None,
        };
        let Some(text) = file.metadata.get("init_kwargs") else {
            return Ok(out);
        };
        let bad = |msg: String| Error::format(&file.path, format!("metadata `init_kwargs`: {msg}"));
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if let Some(lr) = v.pointer("/mapping_kwargs/lr_multiplier") {
            out.mapping_lr_multiplier = lr.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| {
                bad(format!(
                    "mapping_kwargs.lr_multiplier must be a positive number, got {lr}"
                ))
            })?;
        }
        if let Some(c) = v.pointer("/synthesis_kwargs/conv_clamp") {
            out.conv_clamp =
                match c {
                    Value::Null => None,
                    c => Some(c.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| {
                        bad(format!("synthesis_kwargs.conv_clamp must be null or positive, got {c}"))
                    })?),
                };
        }
        for (key, inferred) in check {
            if let Some(x) = v.get(*key).and_then(Value::as_u64)
                && x as usize != *inferred
            {
                return Err(bad(format!("says {key} = {x}, but the tensor shapes give {inferred}")));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_paper_configs() {
        let c = GeneratorConfig::default();
        assert_eq!(c.num_ws(), 14);
        let convs: usize = c
            .block_resolutions()
            .iter()
            .map(|&r| if r == 4 { 1 } else { 2 } * c.channels(r))
            .sum();
        assert_eq!(
            convs, 4480,
            "spec: 4480 hypercolumn channels at 256 px, channel_base 16384"
        );
        let c = GeneratorConfig {
            img_resolution: 512,
            channel_base: 32768,
            ..c
        };
        let convs: usize = c
            .block_resolutions()
            .iter()
            .map(|&r| if r == 4 { 1 } else { 2 } * c.channels(r))
            .sum();
        assert_eq!(convs, 5504);
        assert!(
            GeneratorConfig {
                img_resolution: 48,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
