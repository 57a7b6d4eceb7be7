//! The ensemble's parameters: stacked over members, saved as safetensors + JSON config.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Result, SplitMix64, TapSpec};

use crate::config::LabelerConfig;

/// BatchNorm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// Parameter names, in save order. Shapes: `w1 [M,D,h1]`, `b1 [M,h1]`, `bn1.*` and
/// `bn2.*` (`weight`, `bias`, `running_mean`, `running_var`) `[M,h]`, `w2 [M,h1,h2]`,
/// `b2 [M,h2]`, `w3 [M,h2,C]`, `b3 [M,C]`.
pub const PARAM_NAMES: [&str; 14] = [
    "w1",
    "b1",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "w2",
    "b2",
    "bn2.weight",
    "bn2.bias",
    "bn2.running_mean",
    "bn2.running_var",
    "w3",
    "b3",
];

#[derive(Serialize, Deserialize)]
struct SavedTap {
    name: String,
    resolution: usize,
    channels: usize,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    config: LabelerConfig,
    taps: Vec<SavedTap>,
}

/// A trained (or initialised) ensemble of pixel MLPs.
#[derive(Debug, Clone)]
pub struct Ensemble {
    /// Settings it was built with.
    pub config: LabelerConfig,
    /// The taps it reads, in hypercolumn order.
    pub taps: Vec<TapSpec>,
    /// Parameters by name (see [`PARAM_NAMES`]).
    pub params: BTreeMap<String, Tensor>,
    /// What it predicts (from the head).
    pub kind: labelgan_core::LabelKind,
}

impl Ensemble {
    /// A freshly initialised ensemble (DatasetGAN's init: weights N(0, 0.02), biases 0,
    /// BatchNorm weights N(1, 0.02)); member m draws from its own seed.
    pub fn init(config: &LabelerConfig, taps: &[TapSpec], device: &Device) -> Result<Self> {
        if config.members == 0 || config.head.outputs() == 0 {
            return Err(Error::invalid("the ensemble needs at least one member and one output"));
        }
        let d: usize = taps.iter().map(|t| t.channels).sum();
        let (h1, h2) = config.hidden_sizes();
        let c = config.head.outputs();
        let m = config.members;
        let mut per_member: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
        for k in 0..m {
            let mut rng = SplitMix64::derive(config.seed, k as u64);
            let mut normal =
                |n: usize, mean: f32| -> Vec<f32> { (0..n).map(|_| mean + 0.02 * rng.normal() as f32).collect() };
            let shapes: [(&str, usize, f32, bool); 14] = [
                ("w1", d * h1, 0.0, true),
                ("b1", h1, 0.0, false),
                ("bn1.weight", h1, 1.0, true),
                ("bn1.bias", h1, 0.0, false),
                ("bn1.running_mean", h1, 0.0, false),
                ("bn1.running_var", h1, 1.0, false),
                ("w2", h1 * h2, 0.0, true),
                ("b2", h2, 0.0, false),
                ("bn2.weight", h2, 1.0, true),
                ("bn2.bias", h2, 0.0, false),
                ("bn2.running_mean", h2, 0.0, false),
                ("bn2.running_var", h2, 1.0, false),
                ("w3", h2 * c, 0.0, true),
                ("b3", c, 0.0, false),
            ];
            for (name, n, v, random) in shapes {
                let vals = if random { normal(n, v) } else { vec![v; n] };
                per_member.entry(name).or_default().push(vals);
            }
        }
        let shape_of = |name: &str| -> Vec<usize> {
            match name {
                "w1" => vec![m, d, h1],
                "w2" => vec![m, h1, h2],
                "w3" => vec![m, h2, c],
                "b3" => vec![m, c],
                n if n.starts_with("bn2") || n == "b2" => vec![m, h2],
                _ => vec![m, h1],
            }
        };
        let mut params = BTreeMap::new();
        for (name, vals) in per_member {
            let flat: Vec<f32> = vals.into_iter().flatten().collect();
            params.insert(name.to_string(), Tensor::from_vec(flat, shape_of(name), device)?);
        }
        Ok(Self {
            config: config.clone(),
            taps: taps.to_vec(),
            params,
            kind: config.head.kind(),
        })
    }

    /// Hypercolumn depth D.
    pub fn dim(&self) -> usize {
        self.taps.iter().map(|t| t.channels).sum()
    }

    /// A parameter by name.
    pub fn param(&self, name: &str) -> Result<&Tensor> {
        self.params
            .get(name)
            .ok_or_else(|| Error::invalid(format!("labeler has no parameter `{name}`")))
    }

    /// Adds `shift[k]` to output `k` of every member (the last layer's bias). For a
    /// segmentation ensemble this moves the log-prior of class `k`: each member's
    /// arg-max, and so the vote, then favours the classes with a larger shift.
    pub fn shift_outputs(&mut self, shift: &[f32]) -> Result<()> {
        let b3 = self.param("b3")?;
        let (m, c) = b3.dims2()?;
        if shift.len() != c {
            return Err(Error::invalid(format!(
                "output shift has {} values but the labeler has {c} outputs",
                shift.len()
            )));
        }
        if let Some(v) = shift.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("output shift holds {v}")));
        }
        let s = Tensor::from_slice(shift, (1, c), b3.device())?.to_dtype(b3.dtype())?;
        let shifted = b3.broadcast_add(&s)?;
        debug_assert_eq!(shifted.dims(), &[m, c]);
        self.params.insert("b3".to_string(), shifted);
        Ok(())
    }

    /// Saves the parameters and, in the metadata `labelgan_labeler`, the config and tap
    /// list (atomic write).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let saved = Saved {
            config: self.config.clone(),
            taps: self
                .taps
                .iter()
                .map(|t| SavedTap {
                    name: t.name.clone(),
                    resolution: t.resolution,
                    channels: t.channels,
                })
                .collect(),
        };
        let json = serde_json::to_string(&saved).map_err(|e| Error::invalid(e.to_string()))?;
        save_safetensors(
            path,
            &self.params,
            &BTreeMap::from([("labelgan_labeler".to_string(), json)]),
        )
    }

    /// Loads a file written by [`Ensemble::save`], checking every shape.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let file = TensorFile::load(path.as_ref(), device)?;
        let json = file
            .metadata
            .get("labelgan_labeler")
            .ok_or_else(|| Error::format(&file.path, "no `labelgan_labeler` metadata: not a labeler file"))?;
        let saved: Saved = serde_json::from_str(json)
            .map_err(|e| Error::format(&file.path, format!("metadata `labelgan_labeler`: {e}")))?;
        saved
            .config
            .validate()
            .map_err(|e| Error::format(&file.path, e.to_string()))?;
        let taps: Vec<TapSpec> = saved
            .taps
            .into_iter()
            .map(|t| TapSpec::feature(t.name, t.resolution, t.channels))
            .collect();
        let shapes = Self::init(&saved.config, &taps, &Device::Cpu)?;
        let mut params = BTreeMap::new();
        for name in PARAM_NAMES {
            let want = shapes.param(name)?.dims().to_vec();
            params.insert(name.to_string(), file.get_shaped(name, &want)?.to_dtype(DType::F32)?);
        }
        for (name, t) in &params {
            labelgan_core::ensure_finite(t, &format!("{}: `{name}`", file.path.display()))?;
        }
        Ok(Self {
            kind: saved.config.head.kind(),
            config: saved.config,
            taps,
            params,
        })
    }
}
