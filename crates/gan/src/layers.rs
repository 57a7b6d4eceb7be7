//! The weight layers the architectures are built from: convolutions (plain or
//! transposed) and dense layers, each with optional spectral normalisation of its
//! weight and the initialisation the config names.

use std::collections::BTreeMap;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use labelgan_core::{Error, Result};

use crate::{Init, SpectralNorm};

/// candle's init hint for `init`.
fn hint(init: Init) -> candle_nn::Init {
    match init {
        Init::Normal002 => candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 },
        Init::Default => candle_nn::init::DEFAULT_KAIMING_NORMAL,
        // A normal draw that the seeded builder turns orthogonal (`init`).
        Init::Orthogonal => candle_nn::Init::Randn { mean: 0.0, stdev: 1.0 },
    }
}

/// A weight, its bias and, if spectrally normalised, the normalisation's state.
#[derive(Debug)]
struct Weight {
    w: Tensor,
    b: Option<Tensor>,
    sn: Option<SpectralNorm>,
    name: String,
}

impl Weight {
    fn new(shape: &[usize], bias: bool, sn: Option<u64>, init: Init, vb: &VarBuilder) -> Result<Self> {
        let w = vb.get_with_hints(shape, "weight", hint(init))?;
        let b = match bias {
            true => Some(vb.get_with_hints(shape[0], "bias", candle_nn::Init::Const(0.0))?),
            false => None,
        };
        let sn = match sn {
            Some(seed) => Some(SpectralNorm::new(shape[0], seed, vb.dtype(), vb.device())?),
            None => None,
        };
        Ok(Self {
            w,
            b,
            sn,
            name: vb.prefix(),
        })
    }

    /// The weight to use now (normalised, with `u` stepped when `training`).
    fn get(&self, training: bool) -> Result<Tensor> {
        match &self.sn {
            Some(sn) => sn.apply(&self.w, training),
            None => Ok(self.w.clone()),
        }
    }

    fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        if let Some(sn) = &self.sn {
            out.insert(format!("{}.sn_u", self.name), sn.u());
        }
    }

    fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        if let Some(sn) = &self.sn {
            let name = format!("{}.sn_u", self.name);
            match from.get(&name) {
                Some(u) if u.dims() == [self.w.dim(0)?] => sn.set_u(u.clone()),
                Some(u) => {
                    return Err(Error::invalid(format!(
                        "{name} is {:?}, expected [{}]",
                        u.dims(),
                        self.w.dim(0)?
                    )));
                }
                None => return Err(Error::invalid(format!("{name} is missing"))),
            }
        }
        Ok(())
    }
}

/// A 2-D convolution, `same`-padded for odd kernels.
#[derive(Debug)]
pub struct Conv {
    weight: Weight,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// `inputs` to `outputs` channels with a `k x k` kernel; `sn`: the seed of a
    /// spectral norm's `u`, if normalised. Weights `weight`, `bias` under `vb`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        k: usize,
        stride: usize,
        sn: Option<u64>,
        init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            weight: Weight::new(&[outputs, inputs, k, k], true, sn, init, &vb)?,
            stride,
            padding: (k - 1) / 2,
        })
    }

    /// `[N, in, H, W]` to `[N, out, H / stride, W / stride]`. Strides 1 and 2 run on
    /// the kernels' convolution (fast both ways, differentiable twice for penalties).
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let w = self.weight.get(training)?;
        let y = match self.stride {
            1 => labelgan_kernels::conv::conv2d(x, &w, self.padding)?,
            2 => labelgan_kernels::strided::conv2d_stride2(x, &w, self.padding)?,
            s => x.conv2d(&w, self.padding, s, 1, 1)?,
        };
        match &self.weight.b {
            Some(b) => labelgan_kernels::channel::channel_affine(&y, None, Some(b)),
            None => Ok(y),
        }
    }

    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.weight.w.dims()[0]
    }

    /// Spectral norm state, by name.
    pub fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        self.weight.buffers(out)
    }

    /// Restores what [`Self::buffers`] wrote.
    pub fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        self.weight.set_buffers(from)
    }
}

/// A transposed convolution with a 4x4 kernel and stride 2 (doubles the size).
#[derive(Debug)]
pub struct UpConv {
    w: Tensor,
    b: Tensor,
}

impl UpConv {
    /// `inputs` to `outputs` channels.
    pub fn new(inputs: usize, outputs: usize, init: Init, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints((inputs, outputs, 4, 4), "weight", hint(init))?,
            b: vb.get_with_hints(outputs, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// `[N, in, H, W]` to `[N, out, 2H, 2W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = labelgan_kernels::strided::conv_transpose4x4_stride2(x, &self.w)?;
        labelgan_kernels::channel::channel_affine(&y, None, Some(&self.b))
    }
}

/// A dense layer.
#[derive(Debug)]
pub struct Dense {
    weight: Weight,
}

impl Dense {
    /// `inputs` to `outputs` features, with a bias or not (see [`Conv::new`] for
    /// `sn`).
    pub fn new(inputs: usize, outputs: usize, bias: bool, sn: Option<u64>, init: Init, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: Weight::new(&[outputs, inputs], bias, sn, init, &vb)?,
        })
    }

    /// `[N, in]` to `[N, out]`.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let lin = candle_nn::Linear::new(self.weight.get(training)?, self.weight.b.clone());
        Ok(lin.forward(x)?)
    }

    /// Spectral norm state, by name.
    pub fn buffers(&self, out: &mut BTreeMap<String, Tensor>) {
        self.weight.buffers(out)
    }

    /// Restores what [`Self::buffers`] wrote.
    pub fn set_buffers(&self, from: &BTreeMap<String, Tensor>) -> Result<()> {
        self.weight.set_buffers(from)
    }
}
