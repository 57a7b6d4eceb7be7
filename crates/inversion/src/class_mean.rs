//! The class-conditional counterpart of the mean inverter: each image starts at the
//! average latent of its own class, for a conditional generator (whose `w` carries the
//! class, so one `w_avg` would start every image in no class at all).

use candle_core::Tensor;
use labelgan_core::{Error, Generator, Inverter, Result, Truncation, one_hot};

/// Inverts image `i` of one known set to the mean `w` of its class, `classes[i]`.
///
/// Made for one set of images (their classes come with them, the images alone do not
/// say): [`Inverter::invert`] checks the count.
#[derive(Debug, Clone)]
pub struct ClassMeanInverter {
    ws: Tensor,
}

impl ClassMeanInverter {
    /// Latents for images of `classes`: class `k`'s mean of `map(z, k)` over `samples`
    /// z drawn from `seed`, without truncation. Fails for an unconditional generator or
    /// a class it lacks.
    pub fn new<G: Generator + ?Sized>(g: &G, classes: &[u32], samples: usize, seed: u64) -> Result<Self> {
        let c_dim = g.spec().c_dim;
        if c_dim == 0 {
            return Err(Error::invalid(
                "the class-mean inverter needs a conditional generator; this one has no classes",
            ));
        }
        if samples == 0 {
            return Err(Error::invalid("the class means need at least one sample"));
        }
        one_hot(classes, c_dim, g.device())?;
        let z = g.sample_z(samples, seed)?;
        let means = (0..c_dim as u32)
            .map(|k| {
                let c = one_hot(&vec![k; samples], c_dim, g.device())?;
                Ok(g.map(&z, Some(&c), Truncation::NONE)?.mean_keepdim(0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let ws = classes.iter().map(|&k| means[k as usize].clone()).collect::<Vec<_>>();
        let ws = if ws.is_empty() {
            let s = g.spec();
            Tensor::zeros((0, s.num_ws, s.w_dim), candle_core::DType::F32, g.device())?
        } else {
            Tensor::cat(&ws, 0)?
        };
        Ok(Self { ws })
    }
}

impl Inverter for ClassMeanInverter {
    fn invert(&self, images: &Tensor) -> Result<Tensor> {
        let n = images
            .dims4()
            .map_err(|_| Error::invalid(format!("images must be [N, C, H, W], got {:?}", images.dims())))?
            .0;
        let made_for = self.ws.dim(0)?;
        if n != made_for {
            return Err(Error::invalid(format!(
                "the class-mean inverter was made for {made_for} images (their classes), got {n}"
            )));
        }
        Ok(self.ws.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use labelgan_stylegan::{GeneratorConfig, StyleGan2};

    fn tiny(c_dim: usize) -> StyleGan2 {
        let cfg = GeneratorConfig {
            z_dim: 8,
            w_dim: 8,
            c_dim,
            img_resolution: 8,
            mapping_layers: 2,
            channel_base: 32,
            channel_max: 8,
            ..Default::default()
        };
        StyleGan2::random(&cfg, 1, &Device::Cpu).unwrap()
    }

    #[test]
    fn each_image_starts_at_its_class_mean() {
        let g = tiny(3);
        let inv = ClassMeanInverter::new(&g, &[2, 0, 2], 64, 7).unwrap();
        let images = Tensor::zeros((3, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let ws = inv.invert(&images).unwrap();
        assert_eq!(ws.dims(), [3, g.spec().num_ws, 8]);
        // Class 2's mean, computed directly.
        let z = g.sample_z(64, 7).unwrap();
        let c = one_hot(&[2; 64], 3, &Device::Cpu).unwrap();
        let want = g.map(&z, Some(&c), Truncation::NONE).unwrap().mean(0).unwrap();
        let got = ws.get(0).unwrap();
        assert!(labelgan_core::max_abs_diff(&got, &want).unwrap() < 1e-6);
        assert!(labelgan_core::max_abs_diff(&ws.get(2).unwrap(), &want).unwrap() < 1e-6);
        assert!(
            labelgan_core::max_abs_diff(&ws.get(1).unwrap(), &want).unwrap() > 1e-4,
            "class 0 differs"
        );
    }

    #[test]
    fn wrong_uses_are_named() {
        let e = ClassMeanInverter::new(&tiny(0), &[0], 4, 0).unwrap_err().to_string();
        assert!(e.contains("conditional"), "{e}");
        let e = ClassMeanInverter::new(&tiny(3), &[3], 4, 0).unwrap_err().to_string();
        assert!(e.contains("class 3"), "{e}");
        let inv = ClassMeanInverter::new(&tiny(3), &[0, 1], 4, 0).unwrap();
        let three = Tensor::zeros((3, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = inv.invert(&three).unwrap_err().to_string();
        assert!(e.contains("made for 2 images") && e.contains("got 3"), "{e}");
    }
}
