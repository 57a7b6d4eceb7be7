//! The rotation task in D of SSGAN (Chen et al., "Self-Supervised GANs via Auxiliary
//! Rotation Loss", CVPR 2019), which S3GAN keeps: a 4-way head on D's features `φ(x)`
//! says by how much an image was turned. Of a batch, the last `count` real and
//! generated images are also shown turned by 90, 180 and 270 degrees (appended after
//! the batch); the head's cross-entropy on the last `4 * count` rows (the upright
//! `count`, then each turn) enters D's loss for real images and G's for generated ones.

use candle_core::Tensor;

use labelgan_core::cross_entropy::cross_entropy;
use labelgan_core::rotation::{ROTATIONS, rotate90};
use labelgan_core::{Error, Result};

/// How many images of a batch take part in the rotation task upright, and again in
/// each turn: `batch / fraction / 4` (the reference's `rotated_batch_fraction`).
pub fn rotated_count(batch: usize, fraction: usize) -> Result<usize> {
    if fraction == 0 || !batch.is_multiple_of(fraction) || batch / fraction < ROTATIONS {
        return Err(Error::invalid(format!(
            "train.rotation_batch_fraction = {fraction} must divide train.batch = {batch} into a part of at least {ROTATIONS} images"
        )));
    }
    Ok(batch / fraction / ROTATIONS)
}

/// `x` (`[N, ...]`) followed by its last `count` rows turned by 90, 180 and 270
/// degrees: `[N + 3 * count, ...]`.
pub fn with_rotations(x: &Tensor, count: usize) -> Result<Tensor> {
    let tail = tail(x, count)?;
    let mut parts = vec![x.clone()];
    for k in 1..ROTATIONS {
        parts.push(rotate90(&tail, k)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// The classes of [`with_rotations`]'s images: each turned image keeps the class of
/// the image it was turned from (generated images their own sampled classes, not the
/// real batch's).
pub fn rotated_classes(y: &Tensor, count: usize) -> Result<Tensor> {
    let tail = tail(y, count)?;
    let mut parts = vec![y.clone()];
    parts.extend(std::iter::repeat_n(tail, ROTATIONS - 1));
    Ok(Tensor::cat(&parts, 0)?)
}

fn tail(x: &Tensor, count: usize) -> Result<Tensor> {
    let n = x.dim(0)?;
    if count == 0 || count > n {
        return Err(Error::invalid(format!("{count} images to turn of a batch of {n}")));
    }
    Ok(x.narrow(0, n - count, count)?)
}

/// The rotation labels of the last `4 * count` rows of [`with_rotations`]: `count`
/// zeros (upright), then `count` of each turn.
pub fn rotation_labels(count: usize) -> Vec<u32> {
    (0..ROTATIONS as u32)
        .flat_map(|k| std::iter::repeat_n(k, count))
        .collect()
}

/// Mean cross-entropy of the rotation head's logits (`[N + 3 * count, 4]`, rows as
/// [`with_rotations`] lays them out) on the last `4 * count` rows.
pub fn rotation_loss(logits: &Tensor, count: usize) -> Result<Tensor> {
    let n = logits.dim(0)?;
    if ROTATIONS * count > n || count == 0 {
        return Err(Error::invalid(format!(
            "rotation loss over {} rows of {n}",
            ROTATIONS * count
        )));
    }
    let last = logits.narrow(0, n - ROTATIONS * count, ROTATIONS * count)?;
    cross_entropy(&last, &rotation_labels(count))
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device};

    use super::*;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.flatten_from(1).unwrap().to_vec2::<f32>().unwrap()
    }

    #[test]
    fn the_last_images_are_turned_and_appended() {
        let x = Tensor::arange(0f32, 4.0 * 4.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 1, 2, 2))
            .unwrap();
        let all = with_rotations(&x, 2).unwrap();
        assert_eq!(all.dims(), [10, 1, 2, 2]);
        let r = rows(&all);
        assert_eq!(&r[..4], &rows(&x)[..]);
        for k in 1..4 {
            let turned = rows(&rotate90(&x.narrow(0, 2, 2).unwrap(), k).unwrap());
            assert_eq!(&r[4 + 2 * (k - 1)..6 + 2 * (k - 1)], &turned[..], "turn {k}");
        }
        assert_eq!(rotation_labels(2), [0, 0, 1, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn turned_images_keep_their_own_classes() {
        let y = Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.], [0., 0., 1.]], &Device::Cpu).unwrap();
        let all = rows(&rotated_classes(&y, 1).unwrap());
        assert_eq!(all.len(), 6);
        for row in &all[3..] {
            assert_eq!(row, &[0., 0., 1.]);
        }
    }

    #[test]
    fn the_loss_is_the_cross_entropy_of_the_last_rows() {
        // 2 upright + 3 turned of count 1: the loss reads rows 1..5 with labels 0..3.
        let logits = Tensor::new(
            &[
                [9f32, 9., 9., 9.],
                [2., 0., 0., 0.],
                [0., 1., 0., 0.],
                [0., 0., 0.5, 0.],
                [1., 0., 0., 3.],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let got = rotation_loss(&logits, 1).unwrap().to_scalar::<f32>().unwrap();
        let lse = |v: [f32; 4]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
        let want = ((lse([2., 0., 0., 0.]) - 2.)
            + (lse([0., 1., 0., 0.]) - 1.)
            + (lse([0., 0., 0.5, 0.]) - 0.5)
            + (lse([1., 0., 0., 3.]) - 3.))
            / 4.;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert!(rotation_loss(&logits, 2).is_err());
        let argmax = logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
        assert_eq!(&argmax[1..], &[0, 1, 2, 3]);
    }

    #[test]
    fn the_fraction_must_leave_four_images() {
        assert_eq!(rotated_count(16, 2).unwrap(), 2);
        assert_eq!(rotated_count(16, 4).unwrap(), 1);
        assert!(rotated_count(16, 8).is_err());
        assert!(rotated_count(16, 3).is_err());
        assert!(rotated_count(16, 0).is_err());
    }
}
