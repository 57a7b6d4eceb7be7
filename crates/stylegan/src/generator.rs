//! The StyleGAN2 generator: mapping + synthesis behind the [`Generator`] trait, loaded
//! from official weights or initialised at random (for benchmarks and training).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use labelgan_core::io::{TensorFile, save_safetensors};
use labelgan_core::{Error, Generator, GeneratorSpec, NoiseMode, Result, SplitMix64, Synthesis, Truncation};

use crate::config::{GeneratorConfig, RuntimeKwargs, block_resolutions};
use crate::mapping::Mapping;
use crate::synthesis::Synthesis as SynthesisNetwork;

/// A StyleGAN2(-ADA) generator (`G_ema` of the official code).
#[derive(Debug, Clone)]
pub struct StyleGan2 {
    /// z -> w.
    pub mapping: Mapping,
    /// w -> image.
    pub synthesis: SynthesisNetwork,
    spec: GeneratorSpec,
    kwargs: RuntimeKwargs,
    device: Device,
}

impl StyleGan2 {
    /// Loads an official `G_ema` state dict (safetensors, as written by
    /// `tools/convert_stylegan2_ada.py`) onto `device`. The architecture is read from
    /// the tensor shapes; `init_kwargs` metadata gives the mapping lr multiplier and
    /// conv_clamp.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_file(&TensorFile::load(path, device)?)
    }

    /// Builds the generator from tensors already read.
    pub fn from_file(file: &TensorFile) -> Result<Self> {
        let device = file
            .tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .ok_or_else(|| Error::format(&file.path, "holds no tensors"))?;
        let resolution = (2..=10)
            .map(|k| 1usize << k)
            .take_while(|r| file.contains(&format!("synthesis.b{r}.torgb.weight")))
            .last()
            .ok_or_else(|| Error::MissingKey {
                file: file.path.clone(),
                key: "synthesis.b4.torgb.weight".into(),
                expected: None,
            })?;
        let img_channels = match file.get("synthesis.b4.torgb.weight")?.dims() {
            [c, _, 1, 1] => *c,
            d => {
                return Err(Error::format(
                    &file.path,
                    format!("`synthesis.b4.torgb.weight` must be [C, I, 1, 1], found {d:?}"),
                ));
            }
        };
        let num_ws = crate::config::num_ws(resolution);
        // Shapes first (they need no kwargs), then check kwargs against them.
        let probe = Mapping::load(file, num_ws, 0.01)?;
        let check = [
            ("z_dim", probe.z_dim),
            ("c_dim", probe.c_dim),
            ("w_dim", probe.w_dim()),
            ("img_resolution", resolution),
            ("img_channels", img_channels),
        ];
        let kwargs = RuntimeKwargs::from_file(file, &check)?;
        let mapping = Mapping {
            layers: probe
                .layers
                .into_iter()
                .map(|mut l| {
                    l.lr_multiplier = kwargs.mapping_lr_multiplier;
                    l
                })
                .collect(),
            ..probe
        };
        let w_dim = mapping.w_dim();
        let mut synthesis = SynthesisNetwork::load(file, resolution, w_dim, img_channels, kwargs.conv_clamp)?;
        synthesis.freeze()?;
        let spec = GeneratorSpec {
            z_dim: mapping.z_dim,
            c_dim: mapping.c_dim,
            w_dim,
            num_ws,
            resolution,
            img_channels,
            taps: synthesis.tap_specs(img_channels),
        };
        Ok(Self {
            mapping,
            synthesis,
            spec,
            kwargs,
            device,
        })
    }

    /// A randomly initialised generator, as the official constructor would make it
    /// (N(0,1) weights with equalized lr, affine biases 1, zero noise strengths),
    /// deterministic in `seed`.
    pub fn random(config: &GeneratorConfig, seed: u64, device: &Device) -> Result<Self> {
        let tensors = random_state_dict(config, seed, device)?;
        let metadata = [("init_kwargs".to_string(), config.init_kwargs())].into();
        let file = TensorFile {
            path: "<random init>".into(),
            tensors: tensors.into_iter().collect(),
            metadata,
        };
        Self::from_file(&file)
    }

    /// The state dict under the official key names.
    pub fn state_dict(&self) -> BTreeMap<String, Tensor> {
        let mut m = BTreeMap::new();
        let mut put = |k: String, t: &Tensor| {
            m.insert(k, t.clone());
        };
        for (i, l) in self.mapping.layers.iter().enumerate() {
            put(format!("mapping.fc{i}.weight"), &l.weight);
            put(format!("mapping.fc{i}.bias"), &l.bias);
        }
        if let Some(e) = &self.mapping.embed {
            put("mapping.embed.weight".into(), &e.weight);
            put("mapping.embed.bias".into(), &e.bias);
        }
        put("mapping.w_avg".into(), &self.mapping.w_avg);
        for b in &self.synthesis.blocks {
            let p = format!("synthesis.b{}", b.resolution);
            if let Some(c) = &b.constant {
                put(format!("{p}.const"), c);
            }
            put(format!("{p}.resample_filter"), &b.resample_filter);
            for (name, l) in [("conv0", b.conv0.as_ref()), ("conv1", Some(&b.conv1))] {
                let Some(l) = l else { continue };
                put(format!("{p}.{name}.weight"), &l.weight);
                put(format!("{p}.{name}.bias"), &l.bias);
                put(format!("{p}.{name}.noise_strength"), &l.noise_strength);
                put(format!("{p}.{name}.noise_const"), &l.noise_const);
                put(format!("{p}.{name}.affine.weight"), &l.affine.weight);
                put(format!("{p}.{name}.affine.bias"), &l.affine.bias);
                put(format!("{p}.{name}.resample_filter"), &l.resample_filter);
            }
            put(format!("{p}.torgb.weight"), &b.torgb.weight);
            put(format!("{p}.torgb.bias"), &b.torgb.bias);
            put(format!("{p}.torgb.affine.weight"), &b.torgb.affine.weight);
            put(format!("{p}.torgb.affine.bias"), &b.torgb.affine.bias);
        }
        m
    }

    /// Saves the official layout with `init_kwargs` metadata (atomic write), so the
    /// file loads exactly like a converted official checkpoint.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let meta = BTreeMap::from([("init_kwargs".to_string(), self.init_kwargs())]);
        save_safetensors(path, &self.state_dict(), &meta)
    }

    /// The `init_kwargs` JSON describing this generator (channel_base and channel_max
    /// are recovered from the widths).
    pub fn init_kwargs(&self) -> String {
        let widths: Vec<(usize, usize)> = self
            .synthesis
            .blocks
            .iter()
            .map(|b| (b.resolution, b.conv1.out_channels()))
            .collect();
        let channel_max = widths.iter().map(|w| w.1).max().unwrap_or(0);
        let channel_base = widths.iter().map(|&(r, c)| r * c).max().unwrap_or(0);
        GeneratorConfig {
            z_dim: self.spec.z_dim,
            c_dim: self.spec.c_dim,
            w_dim: self.spec.w_dim,
            img_resolution: self.spec.resolution,
            img_channels: self.spec.img_channels,
            mapping_layers: self.mapping.layers.len(),
            mapping_lr_multiplier: self.kwargs.mapping_lr_multiplier,
            channel_base,
            channel_max,
            conv_clamp: self.kwargs.conv_clamp,
        }
        .init_kwargs()
    }

    /// Drops the kernels precomputed at load, so that forward passes follow weights
    /// that change (training, as `labelgan-gan`'s loop does).
    pub fn thaw(&mut self) {
        self.synthesis.thaw();
    }

    /// Mapping lr multiplier and conv_clamp in use.
    pub fn runtime_kwargs(&self) -> RuntimeKwargs {
        self.kwargs
    }
}

impl Generator for StyleGan2 {
    fn spec(&self) -> &GeneratorSpec {
        &self.spec
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn map(&self, z: &Tensor, c: Option<&Tensor>, truncation: Truncation) -> Result<Tensor> {
        self.mapping.forward(z, c, truncation)
    }

    fn synthesize(&self, ws: &Tensor, noise: NoiseMode) -> Result<Synthesis> {
        let (image, taps) = self.synthesis.forward(ws, noise, true)?;
        Ok(Synthesis { image, taps })
    }

    fn w_avg(&self) -> Option<&Tensor> {
        Some(&self.mapping.w_avg)
    }

    /// The image only: taps are dropped as soon as the next layer has used them.
    fn image(&self, ws: &Tensor, noise: NoiseMode) -> Result<Tensor> {
        Ok(self.synthesis.forward(ws, noise, false)?.0)
    }
}

/// The official initialisation, under the official key names.
fn random_state_dict(c: &GeneratorConfig, seed: u64, dev: &Device) -> Result<BTreeMap<String, Tensor>> {
    c.validate()?;
    let mut rng = SplitMix64::new(seed);
    let mut m = BTreeMap::new();
    let mut randn =
        |shape: &[usize], scale: f64| -> Result<Tensor> { Ok(rng.normal_tensor(shape, dev)?.affine(scale, 0.0)?) };
    let full = |shape: &[usize], v: f64| -> Result<Tensor> { Ok(Tensor::full(v as f32, shape, dev)?) };
    let embed = if c.c_dim > 0 { c.w_dim } else { 0 };
    if c.c_dim > 0 {
        m.insert("mapping.embed.weight".into(), randn(&[embed, c.c_dim], 1.0)?);
        m.insert("mapping.embed.bias".into(), full(&[embed], 0.0)?);
    }
    let mut inp = c.z_dim + embed;
    for i in 0..c.mapping_layers {
        m.insert(
            format!("mapping.fc{i}.weight"),
            randn(&[c.w_dim, inp], 1.0 / c.mapping_lr_multiplier)?,
        );
        m.insert(format!("mapping.fc{i}.bias"), full(&[c.w_dim], 0.0)?);
        inp = c.w_dim;
    }
    m.insert("mapping.w_avg".into(), full(&[c.w_dim], 0.0)?);
    let filter = crate::upfirdn::default_filter(dev)?;
    let mut in_ch = 0;
    for r in block_resolutions(c.img_resolution) {
        let p = format!("synthesis.b{r}");
        let out = c.channels(r);
        if r == 4 {
            m.insert(format!("{p}.const"), randn(&[out, 4, 4], 1.0)?);
        }
        m.insert(format!("{p}.resample_filter"), filter.clone());
        let convs: &[(&str, usize)] = if r == 4 {
            &[("conv1", out)]
        } else {
            &[("conv0", in_ch), ("conv1", out)]
        };
        for &(name, i) in convs {
            let q = format!("{p}.{name}");
            m.insert(format!("{q}.affine.weight"), randn(&[i, c.w_dim], 1.0)?);
            m.insert(format!("{q}.affine.bias"), full(&[i], 1.0)?);
            m.insert(format!("{q}.weight"), randn(&[out, i, 3, 3], 1.0)?);
            m.insert(format!("{q}.bias"), full(&[out], 0.0)?);
            m.insert(format!("{q}.noise_strength"), full(&[], 0.0)?);
            m.insert(format!("{q}.noise_const"), randn(&[r, r], 1.0)?);
            m.insert(format!("{q}.resample_filter"), filter.clone());
        }
        m.insert(format!("{p}.torgb.affine.weight"), randn(&[out, c.w_dim], 1.0)?);
        m.insert(format!("{p}.torgb.affine.bias"), full(&[out], 1.0)?);
        m.insert(format!("{p}.torgb.weight"), randn(&[c.img_channels, out, 1, 1], 1.0)?);
        m.insert(format!("{p}.torgb.bias"), full(&[c.img_channels], 0.0)?);
        in_ch = out;
    }
    Ok(m)
}
