//! How close reconstructions are to their targets.

use candle_core::{D, Tensor};
use labelgan_core::{Error, Result};
use labelgan_lpips::Lpips;
use serde::Serialize;

/// Per-image mean squared error of images in [-1, 1] (the scale of the losses).
pub fn mse_per_image(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(Error::invalid(format!(
            "reconstructions {:?} and targets {:?} differ in shape",
            a.dims(),
            b.dims()
        )));
    }
    Ok((a - b)?.sqr()?.flatten_from(1)?.mean(D::Minus1)?)
}

/// PSNR in dB of images in [-1, 1] measured on the [0, 1] scale (peak 1), from their
/// [-1, 1] MSE: `10 log10(4 / mse)`.
pub fn psnr(mse: f32) -> f32 {
    10.0 * (4.0 / mse.max(1e-12)).log10()
}

/// Means over a set of images.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Reconstruction {
    /// Images measured.
    pub images: usize,
    /// Mean squared error in [-1, 1] pixel units.
    pub mse: f32,
    /// Mean of per-image PSNRs.
    pub psnr: f32,
    /// Mean LPIPS distance, when a perceptual model was given.
    pub lpips: Option<f32>,
}

/// Compares reconstructions with targets (`[N, 3, H, W]` in [-1, 1]), in chunks.
pub fn reconstruction(recon: &Tensor, target: &Tensor, lpips: Option<&Lpips>) -> Result<Reconstruction> {
    let n = target.dim(0)?;
    let (mut mse, mut ps, mut lp) = (0f64, 0f64, 0f64);
    for s in (0..n).step_by(16) {
        let k = 16.min(n - s);
        let (r, t) = (recon.narrow(0, s, k)?.clamp(-1f32, 1f32)?, target.narrow(0, s, k)?);
        for m in mse_per_image(&r, &t)?.to_vec1::<f32>()? {
            mse += m as f64;
            ps += psnr(m) as f64;
        }
        if let Some(l) = lpips {
            lp += l
                .distance(&r, &t)?
                .to_vec1::<f32>()?
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>();
        }
    }
    let n_f = n.max(1) as f64;
    Ok(Reconstruction {
        images: n,
        mse: (mse / n_f) as f32,
        psnr: (ps / n_f) as f32,
        lpips: lpips.map(|_| (lp / n_f) as f32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_errors() {
        // An error of 0.1 on [0, 1] is 0.2 on [-1, 1]: MSE 0.04, PSNR 20 dB.
        assert!((psnr(0.04) - 20.0).abs() < 1e-5);
        let a = Tensor::new(&[[[[0.2f32, -0.2]]]], &candle_core::Device::Cpu).unwrap();
        let b = Tensor::new(&[[[[0.0f32, 0.0]]]], &candle_core::Device::Cpu).unwrap();
        let m = mse_per_image(&a, &b).unwrap().to_vec1::<f32>().unwrap();
        assert!((m[0] - 0.04).abs() < 1e-7);
    }
}
