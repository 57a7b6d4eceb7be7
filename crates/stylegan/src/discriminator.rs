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

use labelgan_core::{Error, Result, SplitMix64};

use labelgan_kernels::resample::separable2d;

use crate::fc::lrelu_gain;

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

/// A discriminator whose parameters are candle [`Var`]s (gradient leaves).
pub struct Discriminator {
    /// The shape it was built with.
    pub config: DiscriminatorConfig,
    /// Parameters by official name.
    pub params: BTreeMap<String, Var>,
    /// Per block resolution r: the skip's blur + stride 2 `[r/2, r]` and conv1's blur
    /// (pad 2) `[r+2, r]` (its last row zero).
    resample: BTreeMap<usize, (Tensor, Tensor)>,
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
            params.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Self {
            resample: Self::matrices(&config, DType::F32, device)?,
            config,
            params,
        })
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

    fn matrices(
        config: &DiscriminatorConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<BTreeMap<usize, (Tensor, Tensor)>> {
        config
            .blocks()
            .into_iter()
            .map(|r| {
                // The conv1 blur gives r + 1 rows; a zero row makes the count even for
                // `conv3x3_stride2` (the stride-2 conv never reads it).
                let blur = resample_matrix(r, 2, 1, device)?;
                let blur = Tensor::cat(&[blur, Tensor::zeros((1, r), DType::F32, device)?], 0)?;
                Ok((
                    r,
                    (
                        resample_matrix(r, 1, 2, device)?.to_dtype(dtype)?,
                        blur.to_dtype(dtype)?,
                    ),
                ))
            })
            .collect()
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
            params.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)?);
        }
        Ok(Self {
            resample: Self::matrices(&config, DType::F32, device)?,
            config,
            params,
        })
    }

    fn p(&self, name: &str) -> Result<Tensor> {
        Ok(self
            .params
            .get(name)
            .ok_or_else(|| Error::invalid(format!("internal: no discriminator parameter `{name}`")))?
            .as_tensor()
            .clone())
    }

    /// Equalized-lr conv (stride 1): `weight / sqrt(fan_in)`, then bias, optional lrelu
    /// with gain.
    fn conv(&self, x: &Tensor, name: &str, pad: usize, act: bool, gain: f64) -> Result<Tensor> {
        let w = self.p(&format!("{name}.weight"))?;
        let (o, i, kh, kw) = w.dims4()?;
        let w = w.affine(1.0 / ((i * kh * kw) as f64).sqrt(), 0.0)?;
        let mut y = labelgan_kernels::conv::conv2d(x, &w, pad)?;
        if self.params.contains_key(&format!("{name}.bias")) {
            y = y.broadcast_add(&self.p(&format!("{name}.bias"))?.reshape((1, o, 1, 1))?)?;
        }
        if act {
            y = lrelu_gain(&y)?;
        }
        Ok(if gain != 1.0 { y.affine(gain, 0.0)? } else { y })
    }

    /// Equalized-lr 3x3 conv with stride 2 on an even-sized map, then bias.
    fn conv_stride2(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let w = self.p(&format!("{name}.weight"))?;
        let (o, i, kh, kw) = w.dims4()?;
        let w = w.affine(1.0 / ((i * kh * kw) as f64).sqrt(), 0.0)?;
        let y = labelgan_kernels::conv::conv3x3_stride2(x, &w)?;
        Ok(y.broadcast_add(&self.p(&format!("{name}.bias"))?.reshape((1, o, 1, 1))?)?)
    }

    fn fc(&self, x: &Tensor, name: &str, act: bool) -> Result<Tensor> {
        let w = self.p(&format!("{name}.weight"))?;
        let w = w.affine(1.0 / (w.dim(1)? as f64).sqrt(), 0.0)?;
        let y = x.matmul(&w.t()?)?.broadcast_add(&self.p(&format!("{name}.bias"))?)?;
        Ok(if act { lrelu_gain(&y)? } else { y })
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
        let mut x: Option<Tensor> = None;
        let half = std::f64::consts::FRAC_1_SQRT_2;
        for (i, &r) in self.config.blocks().iter().enumerate() {
            let p = format!("b{r}");
            let h = if i == 0 {
                self.conv(img, &format!("{p}.fromrgb"), 0, true, 1.0)?
            } else {
                x.take().ok_or_else(|| Error::invalid("internal: no block input"))?
            };
            let (down, blur) = &self.resample[&r];
            // Skip: blur (pad 1), keep every other pixel, 1x1 conv.
            let y = self.conv(&separable2d(&h, down, down)?, &format!("{p}.skip"), 0, false, half)?;
            let h = self.conv(&h, &format!("{p}.conv0"), 1, true, 1.0)?;
            // conv1: blur (pad 2), then a 3x3 conv with stride 2.
            let h = self.conv_stride2(&separable2d(&h, blur, blur)?, &format!("{p}.conv1"))?;
            let h = lrelu_gain(&h)?.affine(half, 0.0)?;
            x = Some((y + h)?);
        }
        let x = x.ok_or_else(|| Error::invalid("internal: discriminator has no blocks"))?;
        let x = self.mbstd(&x)?;
        let x = self.conv(&x, "b4.conv", 1, true, 1.0)?;
        let x = self.fc(&x.flatten_from(1)?, "b4.fc", true)?;
        Ok(self.fc(&x, "b4.out", false)?.squeeze(1)?)
    }

    /// A copy with parameters in `dtype` (f64 for finite-difference checks).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let params = self
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?)))
            .collect::<Result<_>>()?;
        let device = self
            .resample
            .values()
            .next()
            .map_or(Device::Cpu, |m| m.0.device().clone());
        Ok(Self {
            config: self.config,
            params,
            resample: Self::matrices(&self.config, dtype, &device)?,
        })
    }

    /// Parameters as plain tensors (for checkpoints).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }
}
