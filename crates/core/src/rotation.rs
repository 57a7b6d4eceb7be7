//! Quarter-turn rotations of square images: the self-supervised task of Chen et al.,
//! "Self-Supervised GANs via Auxiliary Rotation Loss" (CVPR 2019). One home for the
//! rotation pre-training of the perceptual backbone and the rotation heads of SSGAN
//! and S3GAN's discriminator.

use candle_core::Tensor;

use crate::{Error, Result};

/// The four rotations: 0, 90, 180 and 270 degrees.
pub const ROTATIONS: usize = 4;

/// `x` rotated by `k` quarter turns counter-clockwise (`[N, C, R, R]`).
pub fn rotate90(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h != w {
        return Err(Error::invalid(format!("rotation needs square images, got {h}x{w}")));
    }
    let rev = Tensor::new((0..h as u32).rev().collect::<Vec<_>>(), x.device())?;
    let flip = |t: &Tensor, dim: usize| -> Result<Tensor> { Ok(t.index_select(&rev, dim)?) };
    Ok(match k % 4 {
        0 => x.clone(),
        // Counter-clockwise: out[i][j] = in[j][R-1-i].
        1 => flip(&x.transpose(2, 3)?.contiguous()?, 2)?,
        2 => flip(&flip(x, 2)?, 3)?,
        _ => flip(&x.transpose(2, 3)?.contiguous()?, 3)?,
    })
}

/// The four rotations of each image, stacked rotation-major, and their labels.
pub fn rotation_batch(images: &Tensor) -> Result<(Tensor, Vec<u32>)> {
    let n = images.dim(0)?;
    let rot = (0..ROTATIONS)
        .map(|k| rotate90(images, k))
        .collect::<Result<Vec<_>>>()?;
    let labels = (0..ROTATIONS as u32).flat_map(|k| std::iter::repeat_n(k, n)).collect();
    Ok((Tensor::cat(&rot, 0)?, labels))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn rotate90_matches_index_rule() {
        let x = Tensor::arange(0f32, 9.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        // [[0,1,2],[3,4,5],[6,7,8]] counter-clockwise -> [[2,5,8],[1,4,7],[0,3,6]].
        assert_eq!(values(&rotate90(&x, 1).unwrap()), [2., 5., 8., 1., 4., 7., 0., 3., 6.]);
        assert_eq!(values(&rotate90(&x, 2).unwrap()), [8., 7., 6., 5., 4., 3., 2., 1., 0.]);
        let r3 = values(&rotate90(&x, 3).unwrap());
        assert_eq!(r3, [6., 3., 0., 7., 4., 1., 8., 5., 2.]);
        // One turn three times is three turns.
        let back = rotate90(&rotate90(&rotate90(&x, 1).unwrap(), 1).unwrap(), 1).unwrap();
        assert_eq!(values(&back), r3);
        assert!(rotate90(&Tensor::zeros((1, 1, 2, 3), DType::F32, &Device::Cpu).unwrap(), 1).is_err());
    }

    #[test]
    fn rotation_batch_is_rotation_major() {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 1, 2, 2))
            .unwrap();
        let (all, labels) = rotation_batch(&x).unwrap();
        assert_eq!(labels, [0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(all.dims(), [8, 1, 2, 2]);
        let second_turned = all.narrow(0, 3, 1).unwrap();
        assert_eq!(
            values(&second_turned),
            values(&rotate90(&x.narrow(0, 1, 1).unwrap(), 1).unwrap())
        );
    }
}
