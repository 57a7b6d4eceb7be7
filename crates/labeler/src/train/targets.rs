//! The ground truth a head learns, and the pixels each image contributes: every class
//! represented, keypoints' neighbourhoods over-sampled, a held-out share kept apart.

use candle_core::{Device, Tensor};

use labelgan_core::{Error, Result, SplitMix64};
use labelgan_dataset::ImageLabels;

use crate::config::{Head, LabelerConfig};

/// Ground truth of one training image at the labeler's resolution T, for its head. The
/// per-pixel kinds borrow the caller's labels: a copy would hold every full-resolution
/// mask twice for the whole fit.
#[derive(Debug, Clone)]
pub(crate) enum PixelTargets<'a> {
    /// Class per pixel, `T*T`.
    Segmentation(&'a [u32]),
    /// (x, y) per keypoint, in pixels.
    Keypoints(Vec<(f32, f32)>),
    /// Depth per pixel, `T*T`.
    Depth(&'a [f32]),
}

impl<'a> PixelTargets<'a> {
    /// The labels of image `i` that `head` learns; an error names the kind it lacks.
    pub(crate) fn of(head: &Head, labels: &'a ImageLabels, i: usize) -> Result<Self> {
        let missing = |what: &str| Error::invalid(format!("training image {i} has no {what} for the {head:?} head"));
        Ok(match head {
            Head::Segmentation { .. } => {
                PixelTargets::Segmentation(labels.mask.as_deref().ok_or_else(|| missing("mask"))?)
            }
            Head::Keypoints { .. } => PixelTargets::Keypoints(
                labels
                    .keypoints
                    .as_ref()
                    .ok_or_else(|| missing("keypoints"))?
                    .iter()
                    .map(|p| (p[0], p[1]))
                    .collect(),
            ),
            Head::Depth => PixelTargets::Depth(labels.depth.as_deref().ok_or_else(|| missing("depth map"))?),
        })
    }
}

/// Per image: training and held-out pixel indices.
pub(crate) struct Split {
    pub(crate) train: Vec<u32>,
    pub(crate) held: Vec<u32>,
}

/// The pixels image `t` contributes, each at most once: per class an equal quota
/// (segmentation; pixels of class `cfg.ignore_index` are never sampled), the
/// neighbourhoods of the keypoints first (keypoints), the rest uniformly among the
/// pixels not yet taken. At most every pixel of the image, so the held-out pixels that
/// early stopping watches are never also training pixels.
pub(crate) fn sample_pixels(
    cfg: &LabelerConfig,
    t: &PixelTargets,
    held_cap: usize,
    rng: &mut SplitMix64,
) -> Result<Split> {
    let n = cfg.resolution * cfg.resolution;
    // Pixels of the ignore index are taken from the start: never sampled.
    let mut taken = vec![false; n];
    if let PixelTargets::Segmentation(cls) = t {
        for (x, &c) in taken.iter_mut().zip(cls.iter()) {
            *x = Some(c) == cfg.ignore_index;
        }
    }
    let eligible = taken.iter().filter(|&&x| !x).count();
    let want = cfg.pixels_per_image.max(2).min(eligible);
    if want < 2 {
        return Err(Error::invalid(format!(
            "{eligible} of the image's {n} pixels can be sampled (pixels of the ignore index {:?} never are); at least 2 are needed",
            cfg.ignore_index
        )));
    }
    let mut pick: Vec<u32> = Vec::new();
    match t {
        PixelTargets::Segmentation(cls) => {
            let classes = cfg.head.outputs();
            let mut by_class: Vec<Vec<u32>> = vec![vec![]; classes];
            for (p, (&c, _)) in cls.iter().zip(&taken).enumerate().filter(|(_, (_, x))| !**x) {
                by_class
                    .get_mut(c as usize)
                    .ok_or_else(|| Error::invalid(format!("class {c} at pixel {p} is not below {classes}")))?
                    .push(p as u32);
            }
            let present: Vec<&mut Vec<u32>> = by_class.iter_mut().filter(|v| !v.is_empty()).collect();
            let quota = want / present.len().max(1);
            for v in present {
                // Partial Fisher-Yates: a random subset of at most `quota`.
                let k = quota.min(v.len()).max(1);
                for i in 0..k {
                    let j = i + rng.below((v.len() - i) as u64) as usize;
                    v.swap(i, j);
                }
                for &p in &v[..k] {
                    taken[p as usize] = true;
                }
                pick.extend_from_slice(&v[..k]);
            }
        }
        PixelTargets::Keypoints(kps) => {
            let r = 3.0
                * match cfg.head {
                    Head::Keypoints { sigma, .. } => sigma,
                    _ => 1.0,
                };
            let res = cfg.resolution as f32;
            // Half near the keypoints, each pixel once (a draw that hits a taken
            // pixel is retried a few times, then given up).
            for i in 0..want / 2 {
                let (x, y) = kps[i % kps.len().max(1)];
                for _ in 0..8 {
                    let px = (x + (2.0 * rng.uniform() as f32 - 1.0) * r)
                        .round()
                        .clamp(0.0, res - 1.0) as u32;
                    let py = (y + (2.0 * rng.uniform() as f32 - 1.0) * r)
                        .round()
                        .clamp(0.0, res - 1.0) as u32;
                    let p = py * cfg.resolution as u32 + px;
                    if !taken[p as usize] {
                        taken[p as usize] = true;
                        pick.push(p);
                        break;
                    }
                }
            }
        }
        PixelTargets::Depth(_) => {}
    }
    // The rest uniformly among the pixels not taken, without replacement.
    if pick.len() < want {
        let mut rest: Vec<u32> = (0..n as u32).filter(|&p| !taken[p as usize]).collect();
        let k = (want - pick.len()).min(rest.len());
        for i in 0..k {
            let j = i + rng.below((rest.len() - i) as u64) as usize;
            rest.swap(i, j);
        }
        pick.extend_from_slice(&rest[..k]);
    }
    rng.shuffle(&mut pick);
    let held = ((pick.len() as f32 * cfg.holdout).round() as usize)
        .min(held_cap)
        .clamp(1, pick.len() - 1);
    let train = pick.split_off(held);
    Ok(Split { train, held: pick })
}

/// Targets for `pixels` of one image: u32 classes `[P]` or f32 `[P, C]`.
pub(crate) fn targets_for(cfg: &LabelerConfig, t: &PixelTargets, pixels: &[u32], dev: &Device) -> Result<Tensor> {
    let res = cfg.resolution;
    Ok(match t {
        PixelTargets::Segmentation(c) => Tensor::from_vec(
            pixels.iter().map(|&p| c[p as usize]).collect::<Vec<_>>(),
            pixels.len(),
            dev,
        )?,
        PixelTargets::Depth(d) => Tensor::from_vec(
            pixels.iter().map(|&p| d[p as usize]).collect::<Vec<_>>(),
            (pixels.len(), 1),
            dev,
        )?,
        PixelTargets::Keypoints(kps) => {
            let sigma = match cfg.head {
                Head::Keypoints { sigma, .. } => sigma,
                _ => 1.0,
            };
            let mut v = Vec::with_capacity(pixels.len() * kps.len());
            for &p in pixels {
                let (x, y) = ((p as usize % res) as f32, (p as usize / res) as f32);
                for &(kx, ky) in kps {
                    v.push((-((x - kx).powi(2) + (y - ky).powi(2)) / (2.0 * sigma * sigma)).exp());
                }
            }
            Tensor::from_vec(v, (pixels.len(), kps.len()), dev)?
        }
    })
}

pub(crate) fn check_targets(cfg: &LabelerConfig, targets: &[PixelTargets]) -> Result<()> {
    let n = cfg.resolution * cfg.resolution;
    for (i, t) in targets.iter().enumerate() {
        let ok = match (t, &cfg.head) {
            (PixelTargets::Segmentation(v), Head::Segmentation { .. }) => v.len() == n,
            (PixelTargets::Depth(v), Head::Depth) => v.len() == n && v.iter().all(|x| x.is_finite()),
            (PixelTargets::Keypoints(v), Head::Keypoints { count, .. }) => {
                v.len() == *count && v.iter().all(|(x, y)| x.is_finite() && y.is_finite())
            }
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(format!(
                "targets of image {i} do not fit the {:?} head at {}x{} (wrong kind, length or a non-finite value)",
                cfg.head, cfg.resolution, cfg.resolution
            )));
        }
    }
    Ok(())
}
