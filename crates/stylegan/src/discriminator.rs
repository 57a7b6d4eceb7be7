//! StyleGAN2's residual discriminator (the `resnet` architecture of StyleGAN2-ADA),
//! with equalized learning rate, FIR-filtered downsampling and minibatch standard
//! deviation, under the official parameter names (`b64.conv0.weight`, ...).
//!
//! Per block at resolution r (r > 4): `fromrgb` (1x1, first block only), `conv0` 3x3,
//! `conv1` 3x3 down 2, and a 1x1 down-2 `skip` without bias; the output is
//! `(skip(x) + conv1(conv0(x))) / sqrt(2)`. Downsampling blurs with the
//! `[1,3,3,1]` filter then convolves with stride 2. The epilogue at 4x4: minibatch
//! std (groups of up to 4, one channel), conv 3x3, fc, and a linear output.
//!
//! Reference: Karras et al., CVPR 2020, Appendix; StyleGAN2-ADA `networks.py`.

use std::collections::BTreeMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use labelgan_core::{Error, Result, SplitMix64};
use labelgan_kernels::resample::separable2d;
use labelgan_optim::named_vars;

use crate::equalized_conv::EqualizedConv;
use crate::fc::FullyConnected;

/// Widths of the discriminator (same rule as the generator's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscriminatorConfig {
    /// Input height and width.
    pub resolution: usize,
    /// Input channels.
    pub img_channels: usize,
    /// Channels at resolution r are `min(channel_base / r, channel_max)`.
    pub channel_base: usize,
    /// Most channels of any block.
    pub channel_max: usize,
    /// Minibatch-std group size (at most the batch).
    pub mbstd_group: usize,
}

impl DiscriminatorConfig {
    /// Channels at resolution `r`.
    pub fn channels(&self, r: usize) -> usize {
        (self.channel_base / r).min(self.channel_max).max(1)
    }

    fn blocks(&self) -> Vec<usize> {
        let mut v = vec![];
        let mut r = self.resolution;
        while r > 4 {
            v.push(r);
            r /= 2;
        }
        v
    }
}

/// One residual block at resolution `r` (`b{r}`): `fromrgb` (first block only),
/// `conv0`, blurred stride-2 `conv1`, and the blurred 1x1 `skip`.
#[derive(Debug, Clone)]
struct Block {
    fromrgb: Option<EqualizedConv>,
    conv0: EqualizedConv,
    conv1: EqualizedConv,
    skip: EqualizedConv,
    /// The skip's blur + stride 2 `[r/2, r]`.
    down: Tensor,
    /// conv1's blur (pad 2) `[r+2, r]` (its last row zero: `conv3x3_stride2` needs an
    /// even size and never reads it).
    blur: Tensor,
}

impl Block {
    fn new(vb: VarBuilder, config: &DiscriminatorConfig, r: usize, first: bool) -> Result<Self> {
        let (tmp, out) = (config.channels(r), config.channels(r / 2));
        let dev = vb.device().clone();
        let blur = resample_matrix(r, 2, 1, &dev)?;
        let blur = Tensor::cat(&[blur, Tensor::zeros((1, r), DType::F32, &dev)?], 0)?;
        Ok(Self {
            fromrgb: if first {
                Some(EqualizedConv::new(vb.pp("fromrgb"), tmp, config.img_channels, 1, true)?)
            } else {
                None
            },
            conv0: EqualizedConv::new(vb.pp("conv0"), tmp, tmp, 3, true)?,
            conv1: EqualizedConv::new(vb.pp("conv1"), out, tmp, 3, true)?,
            skip: EqualizedConv::new(vb.pp("skip"), out, tmp, 1, false)?,
            down: resample_matrix(r, 1, 2, &dev)?.to_dtype(vb.dtype())?,
            blur: blur.to_dtype(vb.dtype())?,
        })
    }

    /// `(skip(x) + conv1(conv0(x))) / sqrt(2)`, from the image for the first block.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let half = std::f64::consts::FRAC_1_SQRT_2;
        let h = match &self.fromrgb {
            Some(c) => c.forward(x, 0, true, 1.0)?,
            None => x.clone(),
        };
        // Skip: blur (pad 1), keep every other pixel, 1x1 conv.
        let y = self
            .skip
            .forward(&separable2d(&h, &self.down, &self.down)?, 0, false, half)?;
        let h = self.conv0.forward(&h, 1, true, 1.0)?;
        // conv1: blur (pad 2), then a 3x3 conv with stride 2.
        let h = self
            .conv1
            .forward_stride2(&separable2d(&h, &self.blur, &self.blur)?, half)?;
        Ok((y + h)?)
    }
}

/// The 4x4 epilogue (`b4`): minibatch std, `conv`, `fc` and the linear `out`.
#[derive(Debug, Clone)]
struct Epilogue {
    conv: EqualizedConv,
    fc: FullyConnected,
    out: FullyConnected,
}

/// A discriminator whose parameters are candle [`Var`]s (gradient leaves) in a
/// [`VarMap`], under the official names.
pub struct Discriminator {
    /// The shape it was built with.
    pub config: DiscriminatorConfig,
    /// Blocks from the input resolution down to 8x8.
    blocks: Vec<Block>,
    epilogue: Epilogue,
    vars: VarMap,
}

/// `[N, C, H, W]` blurred with the separable `[1,3,3,1]` filter (normalised), padded by
/// `pad` on every side, each channel separately: the reference for [`resample_matrix`].
#[doc(hidden)]
pub fn blur_reference(x: &Tensor, filter: &Tensor, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let y = x.reshape((n * c, 1, h, w))?.conv2d(filter, pad, 1, 1, 1)?;
    let (_, _, h2, w2) = y.dims4()?;
    Ok(y.reshape((n, c, h2, w2))?)
}

/// The 1-D `[1,3,3,1] / 8` blur of a length-`len` signal zero-padded by `pad` on both
/// sides, keeping every `step`-th output: the matrix `[out, len]` (rows are outputs).
pub fn resample_matrix(len: usize, pad: usize, step: usize, device: &Device) -> Result<Tensor> {
    let taps = [1f32 / 8.0, 3.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0];
    let full = len + 2 * pad - 3;
    let out = full.div_ceil(step);
    let mut m = vec![0f32; out * len];
    for o in 0..out {
        let start = (o * step) as i64 - pad as i64;
        for (t, &f) in taps.iter().enumerate() {
            let i = start + t as i64;
            if (0..len as i64).contains(&i) {
                m[o * len + i as usize] += f;
            }
        }
    }
    Ok(Tensor::from_vec(m, (out, len), device)?)
}

impl Discriminator {
    /// Official initialisation (N(0, 1) weights, zero biases), deterministic in `seed`.
    pub fn new(config: DiscriminatorConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = SplitMix64::new(seed);
        let mut params = BTreeMap::new();
        for (name, shape, randn) in Self::param_shapes(&config)? {
            let t = if randn {
                rng.normal_tensor(&shape, device)?
            } else {
                Tensor::zeros(shape, DType::F32, device)?
            };
            params.insert(name, t);
        }
        Self::build(config, params, DType::F32, device)
    }

    /// Every parameter's official name and shape, and whether it starts N(0, 1)
    /// (weights) or at zero (biases).
    fn param_shapes(config: &DiscriminatorConfig) -> Result<Vec<(String, Vec<usize>, bool)>> {
        let r = config.resolution;
        if !(8..=1024).contains(&r) || !r.is_power_of_two() {
            return Err(Error::invalid(format!(
                "discriminator resolution must be a power of two in 8..=1024, got {r}"
            )));
        }
        let mut v = vec![];
        let mut add = |name: String, shape: &[usize], randn: bool| v.push((name, shape.to_vec(), randn));
        let img = config.img_channels;
        for (i, &r) in config.blocks().iter().enumerate() {
            let (tmp, out) = (config.channels(r), config.channels(r / 2));
            if i == 0 {
                add(format!("b{r}.fromrgb.weight"), &[tmp, img, 1, 1], true);
                add(format!("b{r}.fromrgb.bias"), &[tmp], false);
            }
            add(format!("b{r}.conv0.weight"), &[tmp, tmp, 3, 3], true);
            add(format!("b{r}.conv0.bias"), &[tmp], false);
            add(format!("b{r}.conv1.weight"), &[out, tmp, 3, 3], true);
            add(format!("b{r}.conv1.bias"), &[out], false);
            add(format!("b{r}.skip.weight"), &[out, tmp, 1, 1], true);
        }
        let c = config.channels(4);
        add("b4.conv.weight".into(), &[c, c + 1, 3, 3], true);
        add("b4.conv.bias".into(), &[c], false);
        add("b4.fc.weight".into(), &[c, c * 16], true);
        add("b4.fc.bias".into(), &[c], false);
        add("b4.out.weight".into(), &[1, c], true);
        add("b4.out.bias".into(), &[1], false);
        Ok(v)
    }

    /// The layers over `params` (every name of [`Discriminator::param_shapes`], in
    /// `dtype` on `device`), each a [`Var`] in the discriminator's [`VarMap`].
    fn build(
        config: DiscriminatorConfig,
        params: BTreeMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vars = VarMap::new();
        {
            let mut data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
            for (name, t) in params {
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        let vb = VarBuilder::from_varmap(&vars, dtype, device);
        let blocks = config
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, r)| Block::new(vb.pp(format!("b{r}")), &config, r, i == 0))
            .collect::<Result<_>>()?;
        let c = config.channels(4);
        let b4 = vb.pp("b4");
        let epilogue = Epilogue {
            conv: EqualizedConv::new(b4.pp("conv"), c, c + 1, 3, true)?,
            fc: FullyConnected::new(b4.pp("fc"), c, c * 16, 1.0, true)?,
            out: FullyConnected::new(b4.pp("out"), 1, c, 1.0, false)?,
        };
        Ok(Self {
            config,
            blocks,
            epilogue,
            vars,
        })
    }

    /// Rebuilds from saved parameters (every name of [`Discriminator::new`] must be
    /// there with its shape).
    pub fn from_tensors(
        config: DiscriminatorConfig,
        tensors: &BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut params = BTreeMap::new();
        for (name, shape, _) in Self::param_shapes(&config)? {
            let t = tensors
                .get(&name)
                .ok_or_else(|| Error::invalid(format!("discriminator parameter `{name}` is missing")))?;
            if t.dims() != shape.as_slice() {
                return Err(Error::invalid(format!(
                    "discriminator parameter `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            params.insert(name, t.to_dtype(DType::F32)?.to_device(device)?);
        }
        Self::build(config, params, DType::F32, device)
    }

    /// The parameters by official name (the [`Var`]s the layers read: setting one
    /// changes the discriminator).
    pub fn params(&self) -> BTreeMap<String, Var> {
        named_vars(&self.vars)
    }

    /// Minibatch standard deviation: one extra channel, the mean over channels and
    /// pixels of the per-group std (sample i is in group `i % (N / G)`).
    fn mbstd(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let g = self.config.mbstd_group.min(n).max(1);
        if n % g != 0 {
            return Err(Error::invalid(format!(
                "batch {n} is not a multiple of the minibatch-std group {g}"
            )));
        }
        let y = x.reshape((g, n / g, c, h, w))?;
        let y = y.broadcast_sub(&y.mean_keepdim(0)?)?;
        let y = (y.sqr()?.mean(0)? + 1e-8)?.sqrt()?; // [n/g, c, h, w]
        let y = y.flatten_from(1)?.mean(D::Minus1)?; // [n/g]
        let y = y
            .reshape((1, n / g, 1, 1, 1))?
            .broadcast_as((g, n / g, 1, h, w))?
            .reshape((n, 1, h, w))?;
        Ok(Tensor::cat(&[x, &y], 1)?)
    }

    #[doc(hidden)]
    pub fn mbstd_for_tests(&self, x: &Tensor) -> Result<Tensor> {
        self.mbstd(x)
    }

    /// Logits `[N]` for images `[N, C, R, R]` in [-1, 1].
    pub fn forward(&self, img: &Tensor) -> Result<Tensor> {
        self.logits(&self.features(img)?)
    }

    /// The epilogue's `fc` output `[N, channels(4)]`, what the linear `out` reads (a
    /// projection head adds its class term on these).
    pub fn features(&self, img: &Tensor) -> Result<Tensor> {
        let r = self.config.resolution;
        match img.dims() {
            [_, c, h, w] if *c == self.config.img_channels && *h == r && *w == r => {}
            d => {
                return Err(Error::invalid(format!(
                    "discriminator expects [N, {}, {r}, {r}] images, got {d:?}",
                    self.config.img_channels
                )));
            }
        }
        let mut x = img.clone();
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let x = self.mbstd(&x)?;
        let e = &self.epilogue;
        let x = e.conv.forward(&x, 1, true, 1.0)?;
        e.fc.forward(&x.flatten_from(1)?)
    }

    /// Logits `[N]` of [`Discriminator::features`].
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        Ok(self.epilogue.out.forward(features)?.squeeze(1)?)
    }

    /// A copy with parameters in `dtype` (f64 for finite-difference checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let params = self
            .params()
            .into_iter()
            .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(dtype)?)))
            .collect::<Result<_>>()?;
        let device = self.epilogue.conv.weight.device().clone();
        Self::build(self.config, params, dtype, &device)
    }

    /// Parameters as plain tensors (for checkpoints).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.params()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect()
    }
}
