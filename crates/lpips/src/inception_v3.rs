//! Inception-v3 as FID computes it (Szegedy et al. 2016; Heusel et al. 2017): the
//! TensorFlow 2015-12-05 graph that pytorch-fid, torch-fidelity and clean-fid port, with
//! its quirks kept, since FID values are only comparable under the same network:
//!
//! - average pools in the A, C and first E blocks leave padding out of the count
//!   (`count_include_pad=False`), and the last E block max-pools its pool branch;
//! - 1008 classes (the graph's), the Inception Score's softmax over all of them;
//! - images reach 299 x 299 by bilinear resizing without antialiasing
//!   (`align_corners=False`), as pytorch-fid does; inputs in [-1, 1] as the graph wants.
//!
//! Features are the 2048-d global average of the last block ("pool3"). Weights come
//! from `tools/convert_inception.py` (the state dict under its PyTorch names); each
//! batch norm is folded into its convolution when loaded.

use candle_core::{D, DType, Device, Tensor};

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, FeatureExtractor, Result};

/// The side images are resized to.
pub const INPUT_SIZE: usize = 299;
/// Length of the pool3 features.
pub const FEATURES: usize = 2048;
/// Classes of the graph's classifier.
pub const CLASSES: usize = 1008;
/// The metadata value `tools/convert_inception.py` writes under `labelgan_extractor`.
pub const KIND: &str = "inception_v3_fid";
/// Batch norm epsilon of the graph.
const BN_EPS: f64 = 1e-3;
/// Images per forward pass (bounds the activation memory: about 120 MB per image).
const CHUNK: usize = 16;

/// A convolution without bias, a batch norm and a ReLU, stored folded: `relu(w * x + b)`.
#[derive(Debug)]
struct BasicConv {
    w: Tensor,
    b: Tensor,
    stride: usize,
    pad: (usize, usize),
}

/// Where a block's convolutions come from.
struct Source<'a> {
    file: &'a TensorFile,
    device: &'a Device,
}

impl Source<'_> {
    /// `prefix.conv.weight` `[o, i, kh, kw]` and `prefix.bn.*`, folded.
    fn conv(&self, prefix: &str, (o, i): (usize, usize), k: (usize, usize), stride: usize) -> Result<BasicConv> {
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            Ok(self
                .file
                .get_shaped(&format!("{prefix}.{name}"), shape)?
                .to_dtype(DType::F64)?
                .to_device(self.device)?)
        };
        let w = get("conv.weight", &[o, i, k.0, k.1])?;
        let (gamma, beta) = (get("bn.weight", &[o])?, get("bn.bias", &[o])?);
        let (mean, var) = (get("bn.running_mean", &[o])?, get("bn.running_var", &[o])?);
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let b = (beta - (&mean * &scale)?)?;
        let w = w.broadcast_mul(&scale.reshape((o, 1, 1, 1))?)?;
        Ok(BasicConv {
            w: w.to_dtype(DType::F32)?,
            b: b.to_dtype(DType::F32)?,
            stride,
            pad: (
                (k.0 - 1) / 2 * usize::from(stride == 1),
                (k.1 - 1) / 2 * usize::from(stride == 1),
            ),
        })
    }
}

impl BasicConv {
    /// The same convolution without padding (the stem's "valid" 3x3 layers).
    fn unpadded(mut self) -> Self {
        self.pad = (0, 0);
        self
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, kh, kw) = self.w.dims4()?;
        if self.stride == 1 && kh == kw && self.pad.0 == self.pad.1 {
            return labelgan_kernels::conv::conv2d_bias(
                x,
                &self.w,
                &self.b,
                self.pad.0,
                labelgan_kernels::bias_act::Activation::Relu,
            );
        }
        let x = x
            .pad_with_zeros(2, self.pad.0, self.pad.0)?
            .pad_with_zeros(3, self.pad.1, self.pad.1)?;
        let y = x.conv2d(&self.w, 0, self.stride, 1, 1)?;
        Ok(y.broadcast_add(&self.b.reshape((1, (), 1, 1))?)?.relu()?)
    }
}

/// `x` padded by one on each side of both spatial axes with `value`.
fn pad1(x: &Tensor, value: f32) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let col = Tensor::full(value, (n, c, h, 1), x.device())?.to_dtype(x.dtype())?;
    let x = Tensor::cat(&[&col, x, &col], 3)?;
    let row = Tensor::full(value, (n, c, 1, w + 2), x.device())?.to_dtype(x.dtype())?;
    Ok(Tensor::cat(&[&row, &x, &row], 2)?)
}

/// 3x3 average pool, stride 1, padding 1, padding left out of the count.
fn avg_pool_3x3_exclusive(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let sums = (pad1(x, 0.0)?.avg_pool2d_with_stride(3, 1)? * 9.0)?;
    let ones = Tensor::ones((1, 1, h, w), x.dtype(), x.device())?;
    let counts = (pad1(&ones, 0.0)?.avg_pool2d_with_stride(3, 1)? * 9.0)?;
    Ok(sums.broadcast_div(&counts)?)
}

/// 3x3 max pool, stride 1, padding 1.
fn max_pool_3x3_same(x: &Tensor) -> Result<Tensor> {
    Ok(pad1(x, f32::NEG_INFINITY)?.max_pool2d_with_stride(3, 1)?)
}

/// 3x3 max pool, stride 2, no padding.
fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    Ok(x.max_pool2d_with_stride(3, 2)?)
}

/// Runs a chain of convolutions.
fn chain(x: &Tensor, convs: &[BasicConv]) -> Result<Tensor> {
    convs.iter().try_fold(x.clone(), |h, c| c.forward(&h))
}

/// The 35 x 35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and pool branches.
#[derive(Debug)]
struct InceptionA {
    b1: BasicConv,
    b5: [BasicConv; 2],
    b3: [BasicConv; 3],
    pool: BasicConv,
}

impl InceptionA {
    fn new(s: &Source, p: &str, inputs: usize, pool: usize) -> Result<Self> {
        Ok(Self {
            b1: s.conv(&format!("{p}.branch1x1"), (64, inputs), (1, 1), 1)?,
            b5: [
                s.conv(&format!("{p}.branch5x5_1"), (48, inputs), (1, 1), 1)?,
                s.conv(&format!("{p}.branch5x5_2"), (64, 48), (5, 5), 1)?,
            ],
            b3: [
                s.conv(&format!("{p}.branch3x3dbl_1"), (64, inputs), (1, 1), 1)?,
                s.conv(&format!("{p}.branch3x3dbl_2"), (96, 64), (3, 3), 1)?,
                s.conv(&format!("{p}.branch3x3dbl_3"), (96, 96), (3, 3), 1)?,
            ],
            pool: s.conv(&format!("{p}.branch_pool"), (pool, inputs), (1, 1), 1)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pool = self.pool.forward(&avg_pool_3x3_exclusive(x)?)?;
        Ok(Tensor::cat(
            &[self.b1.forward(x)?, chain(x, &self.b5)?, chain(x, &self.b3)?, pool],
            1,
        )?)
    }
}

/// The reduction to 17 x 17 (Mixed_6a).
#[derive(Debug)]
struct InceptionB {
    b3: BasicConv,
    b3dbl: [BasicConv; 3],
}

impl InceptionB {
    fn new(s: &Source, p: &str, inputs: usize) -> Result<Self> {
        Ok(Self {
            b3: s.conv(&format!("{p}.branch3x3"), (384, inputs), (3, 3), 2)?,
            b3dbl: [
                s.conv(&format!("{p}.branch3x3dbl_1"), (64, inputs), (1, 1), 1)?,
                s.conv(&format!("{p}.branch3x3dbl_2"), (96, 64), (3, 3), 1)?,
                s.conv(&format!("{p}.branch3x3dbl_3"), (96, 96), (3, 3), 2)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(
            &[self.b3.forward(x)?, chain(x, &self.b3dbl)?, max_pool_3x3_s2(x)?],
            1,
        )?)
    }
}

/// The 17 x 17 block (Mixed_6b-e): factorised 7x7 convolutions.
#[derive(Debug)]
struct InceptionC {
    b1: BasicConv,
    b7: [BasicConv; 3],
    b7dbl: [BasicConv; 5],
    pool: BasicConv,
}

impl InceptionC {
    fn new(s: &Source, p: &str, c7: usize) -> Result<Self> {
        let c = |name: &str, io: (usize, usize), k: (usize, usize)| s.conv(&format!("{p}.{name}"), io, k, 1);
        Ok(Self {
            b1: c("branch1x1", (192, 768), (1, 1))?,
            b7: [
                c("branch7x7_1", (c7, 768), (1, 1))?,
                c("branch7x7_2", (c7, c7), (1, 7))?,
                c("branch7x7_3", (192, c7), (7, 1))?,
            ],
            b7dbl: [
                c("branch7x7dbl_1", (c7, 768), (1, 1))?,
                c("branch7x7dbl_2", (c7, c7), (7, 1))?,
                c("branch7x7dbl_3", (c7, c7), (1, 7))?,
                c("branch7x7dbl_4", (c7, c7), (7, 1))?,
                c("branch7x7dbl_5", (192, c7), (1, 7))?,
            ],
            pool: c("branch_pool", (192, 768), (1, 1))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pool = self.pool.forward(&avg_pool_3x3_exclusive(x)?)?;
        Ok(Tensor::cat(
            &[self.b1.forward(x)?, chain(x, &self.b7)?, chain(x, &self.b7dbl)?, pool],
            1,
        )?)
    }
}

/// The reduction to 8 x 8 (Mixed_7a).
#[derive(Debug)]
struct InceptionD {
    b3: [BasicConv; 2],
    b7x3: [BasicConv; 4],
}

impl InceptionD {
    fn new(s: &Source, p: &str) -> Result<Self> {
        let c = |name: &str, io, k, stride| s.conv(&format!("{p}.{name}"), io, k, stride);
        Ok(Self {
            b3: [
                c("branch3x3_1", (192, 768), (1, 1), 1)?,
                c("branch3x3_2", (320, 192), (3, 3), 2)?,
            ],
            b7x3: [
                c("branch7x7x3_1", (192, 768), (1, 1), 1)?,
                c("branch7x7x3_2", (192, 192), (1, 7), 1)?,
                c("branch7x7x3_3", (192, 192), (7, 1), 1)?,
                c("branch7x7x3_4", (192, 192), (3, 3), 2)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(
            &[chain(x, &self.b3)?, chain(x, &self.b7x3)?, max_pool_3x3_s2(x)?],
            1,
        )?)
    }
}

/// The 8 x 8 block (Mixed_7b, 7c): split 1x3 / 3x1 branches; the first averages its
/// pool branch (padding left out), the second max-pools it.
#[derive(Debug)]
struct InceptionE {
    b1: BasicConv,
    b3: BasicConv,
    b3_split: [BasicConv; 2],
    b3dbl: [BasicConv; 2],
    b3dbl_split: [BasicConv; 2],
    pool: BasicConv,
    max_pool: bool,
}

impl InceptionE {
    fn new(s: &Source, p: &str, inputs: usize, max_pool: bool) -> Result<Self> {
        let c = |name: &str, io, k| s.conv(&format!("{p}.{name}"), io, k, 1);
        Ok(Self {
            b1: c("branch1x1", (320, inputs), (1, 1))?,
            b3: c("branch3x3_1", (384, inputs), (1, 1))?,
            b3_split: [
                c("branch3x3_2a", (384, 384), (1, 3))?,
                c("branch3x3_2b", (384, 384), (3, 1))?,
            ],
            b3dbl: [
                c("branch3x3dbl_1", (448, inputs), (1, 1))?,
                c("branch3x3dbl_2", (384, 448), (3, 3))?,
            ],
            b3dbl_split: [
                c("branch3x3dbl_3a", (384, 384), (1, 3))?,
                c("branch3x3dbl_3b", (384, 384), (3, 1))?,
            ],
            pool: c("branch_pool", (192, inputs), (1, 1))?,
            max_pool,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let split = |h: Tensor, convs: &[BasicConv; 2]| -> Result<Tensor> {
            Ok(Tensor::cat(&[convs[0].forward(&h)?, convs[1].forward(&h)?], 1)?)
        };
        let pooled = match self.max_pool {
            true => max_pool_3x3_same(x)?,
            false => avg_pool_3x3_exclusive(x)?,
        };
        Ok(Tensor::cat(
            &[
                self.b1.forward(x)?,
                split(self.b3.forward(x)?, &self.b3_split)?,
                split(chain(x, &self.b3dbl)?, &self.b3dbl_split)?,
                self.pool.forward(&pooled)?,
            ],
            1,
        )?)
    }
}

/// The FID Inception-v3: pool3 features and the 1008-way classifier.
#[derive(Debug)]
pub struct InceptionV3 {
    stem: [BasicConv; 3],
    stem2: [BasicConv; 2],
    mixed_5: [InceptionA; 3],
    mixed_6a: InceptionB,
    mixed_6: [InceptionC; 4],
    mixed_7a: InceptionD,
    mixed_7: [InceptionE; 2],
    fc_w: Tensor,
    fc_b: Tensor,
    device: Device,
}

impl InceptionV3 {
    /// Loads a file `tools/convert_inception.py` wrote (any file with the state dict's
    /// names). A missing tensor or one of another shape is an error naming it.
    pub fn load(path: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        Self::from_file(&TensorFile::load(path, device)?, device)
    }

    /// Builds the network from tensors already read.
    pub fn from_file(file: &TensorFile, device: &Device) -> Result<Self> {
        let s = Source { file, device };
        let fc_w = file.get_shaped("fc.weight", &[CLASSES, FEATURES])?;
        let fc_b = file.get_shaped("fc.bias", &[CLASSES])?;
        Ok(Self {
            stem: [
                s.conv("Conv2d_1a_3x3", (32, 3), (3, 3), 2)?,
                s.conv("Conv2d_2a_3x3", (32, 32), (3, 3), 1)?.unpadded(),
                s.conv("Conv2d_2b_3x3", (64, 32), (3, 3), 1)?,
            ],
            stem2: [
                s.conv("Conv2d_3b_1x1", (80, 64), (1, 1), 1)?,
                s.conv("Conv2d_4a_3x3", (192, 80), (3, 3), 1)?.unpadded(),
            ],
            mixed_5: [
                InceptionA::new(&s, "Mixed_5b", 192, 32)?,
                InceptionA::new(&s, "Mixed_5c", 256, 64)?,
                InceptionA::new(&s, "Mixed_5d", 288, 64)?,
            ],
            mixed_6a: InceptionB::new(&s, "Mixed_6a", 288)?,
            mixed_6: [
                InceptionC::new(&s, "Mixed_6b", 128)?,
                InceptionC::new(&s, "Mixed_6c", 160)?,
                InceptionC::new(&s, "Mixed_6d", 160)?,
                InceptionC::new(&s, "Mixed_6e", 192)?,
            ],
            mixed_7a: InceptionD::new(&s, "Mixed_7a")?,
            mixed_7: [
                InceptionE::new(&s, "Mixed_7b", 1280, false)?,
                InceptionE::new(&s, "Mixed_7c", 2048, true)?,
            ],
            fc_w: fc_w.to_device(device)?,
            fc_b: fc_b.to_device(device)?,
            device: device.clone(),
        })
    }

    /// Whether `file` was written by the converter (its metadata says so).
    pub fn is_inception(file: &TensorFile) -> bool {
        file.metadata.get("labelgan_extractor").map(String::as_str) == Some(KIND)
    }

    /// Images `[N, 3, H, W]` in [-1, 1] to pool3 features `[N, 2048]` (resized to 299
    /// first unless already that size).
    pub fn pool3(&self, images: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = images.dims4()?;
        if c != 3 {
            return Err(Error::invalid(format!(
                "Inception-v3 takes RGB images [N, 3, H, W], got {:?}",
                images.dims()
            )));
        }
        let mut out = Vec::with_capacity(n.div_ceil(CHUNK));
        for start in (0..n).step_by(CHUNK) {
            let x = images
                .narrow(0, start, CHUNK.min(n - start))?
                .to_dtype(DType::F32)?
                .to_device(&self.device)?;
            let x = match (h, w) {
                (INPUT_SIZE, INPUT_SIZE) => x,
                _ => crate::resize_bilinear(&x, INPUT_SIZE, INPUT_SIZE)?,
            };
            let x = max_pool_3x3_s2(&chain(&x, &self.stem)?)?;
            let mut x = max_pool_3x3_s2(&chain(&x, &self.stem2)?)?;
            for b in &self.mixed_5 {
                x = b.forward(&x)?;
            }
            x = self.mixed_6a.forward(&x)?;
            for b in &self.mixed_6 {
                x = b.forward(&x)?;
            }
            x = self.mixed_7a.forward(&x)?;
            for b in &self.mixed_7 {
                x = b.forward(&x)?;
            }
            out.push(x.mean((2, 3))?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// The classifier's logits `[N, 1008]` for pool3 features.
    pub fn logits(&self, pool3: &Tensor) -> Result<Tensor> {
        Ok(pool3.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?)
    }
}

impl FeatureExtractor for InceptionV3 {
    fn dim(&self) -> usize {
        FEATURES
    }

    fn features(&self, images: &Tensor) -> Result<Tensor> {
        self.pool3(images)
    }

    fn class_probabilities(&self, images: &Tensor) -> Result<Option<Tensor>> {
        let logits = self.logits(&self.pool3(images)?)?;
        Ok(Some(candle_nn::ops::softmax(&logits, D::Minus1)?))
    }
}
