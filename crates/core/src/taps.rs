//! Feature taps: the intermediate feature maps of a generator, by layer name.
//!
//! DatasetGAN and HandsOff label a pixel from its "hypercolumn": the generator's
//! feature maps at every layer, upsampled to the output resolution and concatenated.
//! `FeatureTaps` keeps those maps at their native resolution (the cheap form); the
//! hypercolumn crate gathers or projects from them without ever materialising the
//! full-resolution stack.
//!
//! References: Hariharan et al., "Hypercolumns for Object Segmentation and
//! Fine-grained Localization", CVPR 2015; Zhang et al., DatasetGAN, CVPR 2021.

use candle_core::Tensor;

use crate::{Error, Result};

/// What a tap is for.
///
/// DatasetGAN and HandsOff build their hypercolumns from the generator's feature layers
/// only; layers that turn features into output colours (StyleGAN2's `torgb`) are
/// returned for inspection but are not labeler input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TapRole {
    /// A feature map: part of every pixel's hypercolumn.
    #[default]
    Feature,
    /// An output layer (e.g. to-RGB): not labeler input.
    Output,
}

impl TapRole {
    /// Whether taps of this role are labeler input.
    pub fn is_feature(self) -> bool {
        self == TapRole::Feature
    }
}

/// The static description of one tap: what a generator will return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    /// Official module path, e.g. `synthesis.b8.conv0`.
    pub name: String,
    /// Height and width of the feature map (square generators: both the same).
    pub resolution: usize,
    /// Number of channels.
    pub channels: usize,
    /// Labeler input or not.
    pub role: TapRole,
}

impl TapSpec {
    /// A feature tap's spec.
    pub fn feature(name: impl Into<String>, resolution: usize, channels: usize) -> Self {
        Self {
            name: name.into(),
            resolution,
            channels,
            role: TapRole::Feature,
        }
    }
}

/// One feature map: `tensor` is `[N, channels, resolution, resolution]`.
#[derive(Debug, Clone)]
pub struct Tap {
    /// Official module path, e.g. `synthesis.b8.conv0`.
    pub name: String,
    /// Height and width of the feature map.
    pub resolution: usize,
    /// Number of channels.
    pub channels: usize,
    /// Labeler input or not.
    pub role: TapRole,
    /// The feature map, NCHW.
    pub tensor: Tensor,
}

impl Tap {
    /// A feature tap from a NCHW tensor; fails unless it is 4-D and square.
    pub fn new(name: impl Into<String>, tensor: Tensor) -> Result<Self> {
        Self::with_role(name, tensor, TapRole::Feature)
    }

    /// A tap of the given role from a NCHW tensor; fails unless it is 4-D and square.
    pub fn with_role(name: impl Into<String>, tensor: Tensor, role: TapRole) -> Result<Self> {
        let name = name.into();
        let (_, c, h, w) = tensor
            .dims4()
            .map_err(|_| Error::invalid(format!("tap `{name}` must be NCHW, got shape {:?}", tensor.dims())))?;
        if h != w {
            return Err(Error::invalid(format!("tap `{name}` is {h}x{w}, expected square")));
        }
        Ok(Self {
            name,
            resolution: h,
            channels: c,
            role,
            tensor,
        })
    }

    /// The spec of this tap.
    pub fn spec(&self) -> TapSpec {
        TapSpec {
            name: self.name.clone(),
            resolution: self.resolution,
            channels: self.channels,
            role: self.role,
        }
    }
}

/// An ordered set of feature maps. Cloning is cheap (tensors share storage).
#[derive(Debug, Clone, Default)]
pub struct FeatureTaps {
    taps: Vec<Tap>,
}

impl FeatureTaps {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tap; its batch size must match the ones already there.
    pub fn push(&mut self, tap: Tap) -> Result<()> {
        if let Some(first) = self.taps.first() {
            let (a, b) = (first.tensor.dim(0)?, tap.tensor.dim(0)?);
            if a != b {
                return Err(Error::invalid(format!(
                    "tap `{}` has batch {b}, but `{}` has batch {a}",
                    tap.name, first.name
                )));
            }
        }
        if self.get(&tap.name).is_some() {
            return Err(Error::invalid(format!("duplicate tap `{}`", tap.name)));
        }
        self.taps.push(tap);
        Ok(())
    }

    /// Number of taps.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    /// Whether there are no taps.
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// Batch size (0 when empty).
    pub fn batch(&self) -> usize {
        self.taps.first().map_or(0, |t| t.tensor.dims()[0])
    }

    /// The taps, in generator order.
    pub fn iter(&self) -> std::slice::Iter<'_, Tap> {
        self.taps.iter()
    }

    /// The tap named `name`.
    pub fn get(&self, name: &str) -> Option<&Tap> {
        self.taps.iter().find(|t| t.name == name)
    }

    /// The specs of all taps.
    pub fn specs(&self) -> Vec<TapSpec> {
        self.taps.iter().map(Tap::spec).collect()
    }

    /// Sum of the channels of all taps: the hypercolumn's depth.
    pub fn total_channels(&self) -> usize {
        self.taps.iter().map(|t| t.channels).sum()
    }

    /// The taps whose name satisfies `keep`, in order (no tensor is copied).
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> FeatureTaps {
        FeatureTaps {
            taps: self.taps.iter().filter(|t| keep(&t.name)).cloned().collect(),
        }
    }

    /// The feature taps only ([`TapRole::Feature`]; StyleGAN2's `conv0`/`conv1`, not
    /// `torgb`): the layers DatasetGAN and HandsOff build their hypercolumns from.
    pub fn features(&self) -> FeatureTaps {
        FeatureTaps {
            taps: self.taps.iter().filter(|t| t.role.is_feature()).cloned().collect(),
        }
    }

    /// Images `start..start+len` of every tap (views, no copy).
    pub fn narrow_batch(&self, start: usize, len: usize) -> Result<FeatureTaps> {
        let taps = self
            .taps
            .iter()
            .map(|t| {
                Ok(Tap {
                    tensor: t.tensor.narrow(0, start, len)?,
                    ..t.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeatureTaps { taps })
    }
}

impl<'a> IntoIterator for &'a FeatureTaps {
    type Item = &'a Tap;
    type IntoIter = std::slice::Iter<'a, Tap>;
    fn into_iter(self) -> Self::IntoIter {
        self.taps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn t(n: usize, c: usize, r: usize) -> Tensor {
        Tensor::zeros((n, c, r, r), DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn push_checks_batch_names_and_shapes() {
        let mut taps = FeatureTaps::new();
        taps.push(Tap::new("synthesis.b4.conv1", t(2, 8, 4)).unwrap()).unwrap();
        taps.push(Tap::with_role("synthesis.b4.torgb", t(2, 3, 4), TapRole::Output).unwrap())
            .unwrap();
        assert!(taps.push(Tap::new("synthesis.b8.conv0", t(3, 8, 8)).unwrap()).is_err());
        assert!(taps.push(Tap::new("synthesis.b4.conv1", t(2, 8, 4)).unwrap()).is_err());
        assert!(Tap::new("x", Tensor::zeros((2, 3, 4, 5), DType::F32, &Device::Cpu).unwrap()).is_err());
        assert_eq!(taps.total_channels(), 11);
        assert_eq!(taps.features().len(), 1);
        assert_eq!(taps.batch(), 2);
        assert_eq!(taps.narrow_batch(1, 1).unwrap().batch(), 1);
    }
}
