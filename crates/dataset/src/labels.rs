//! The labels of an image, and of a set of images.

use labelgan_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Whatever labels one square image of side R has. Conventions as in
/// `docs/architecture.md`: masks and depth are row-major `R*R`; keypoints are (x, y) in
/// pixels, x right and y down, pixel centres at integers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageLabels {
    /// Class id per pixel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Vec<u32>>,
    /// (x, y) per keypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<[f32; 2]>>,
    /// Depth in [0, 1] per pixel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<Vec<f32>>,
}

impl ImageLabels {
    /// A mask alone.
    pub fn mask(mask: Vec<u32>) -> Self {
        Self {
            mask: Some(mask),
            ..Self::default()
        }
    }

    /// Keypoints alone.
    pub fn keypoints(keypoints: Vec<[f32; 2]>) -> Self {
        Self {
            keypoints: Some(keypoints),
            ..Self::default()
        }
    }

    /// A depth map alone.
    pub fn depth(depth: Vec<f32>) -> Self {
        Self {
            depth: Some(depth),
            ..Self::default()
        }
    }

    /// Whether the image has no label at all.
    pub fn is_empty(&self) -> bool {
        self.mask.is_none() && self.keypoints.is_none() && self.depth.is_none()
    }

    /// Checks the sizes against an image of side `resolution`.
    pub fn check(&self, resolution: usize) -> Result<()> {
        let px = resolution * resolution;
        if let Some(m) = &self.mask
            && m.len() != px
        {
            return Err(Error::invalid(format!(
                "a {resolution}x{resolution} mask needs {px} class ids, got {}",
                m.len()
            )));
        }
        if let Some(d) = &self.depth
            && d.len() != px
        {
            return Err(Error::invalid(format!(
                "a {resolution}x{resolution} depth map needs {px} values, got {}",
                d.len()
            )));
        }
        Ok(())
    }
}

/// The labels of a set of images, one column per kind: a kind is present only when
/// every image has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Class ids per image, `R*R`.
    pub masks: Option<Vec<Vec<u32>>>,
    /// (x, y) per keypoint per image.
    pub keypoints: Option<Vec<Vec<[f32; 2]>>>,
    /// Depth per image, `R*R`.
    pub depth: Option<Vec<Vec<f32>>>,
}

impl Targets {
    /// SHA-256 fingerprint of every label (which kinds are present, and their values).
    pub fn fingerprint(&self) -> String {
        let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        let mut masks = vec![];
        for m in self.masks.iter().flatten() {
            le32(&mut masks, m.len() as u32);
            m.iter().for_each(|&c| le32(&mut masks, c));
        }
        let mut kps = vec![];
        for k in self.keypoints.iter().flatten() {
            le32(&mut kps, k.len() as u32);
            k.iter().flatten().for_each(|&c| le32(&mut kps, c.to_bits()));
        }
        let mut depth = vec![];
        for d in self.depth.iter().flatten() {
            le32(&mut depth, d.len() as u32);
            d.iter().for_each(|&c| le32(&mut depth, c.to_bits()));
        }
        let present = [
            self.masks.is_some() as u8,
            self.keypoints.is_some() as u8,
            self.depth.is_some() as u8,
        ];
        labelgan_core::record::fingerprint_parts([&present[..], &masks, &kps, &depth])
    }

    /// The columns of `labels`: a kind is kept when every image has it.
    pub fn from_images(labels: &[ImageLabels]) -> Self {
        Self {
            masks: labels.iter().map(|l| l.mask.clone()).collect(),
            keypoints: labels.iter().map(|l| l.keypoints.clone()).collect(),
            depth: labels.iter().map(|l| l.depth.clone()).collect(),
        }
    }

    /// Whether no kind is present.
    pub fn is_empty(&self) -> bool {
        self.masks.is_none() && self.keypoints.is_none() && self.depth.is_none()
    }

    /// Number of images (0 when no kind is present).
    pub fn len(&self) -> usize {
        self.masks
            .as_ref()
            .map(Vec::len)
            .or(self.keypoints.as_ref().map(Vec::len))
            .or(self.depth.as_ref().map(Vec::len))
            .unwrap_or(0)
    }

    /// The labels of image `i`.
    pub fn image(&self, i: usize) -> ImageLabels {
        ImageLabels {
            mask: self.masks.as_ref().and_then(|m| m.get(i).cloned()),
            keypoints: self.keypoints.as_ref().and_then(|k| k.get(i).cloned()),
            depth: self.depth.as_ref().and_then(|d| d.get(i).cloned()),
        }
    }

    /// One [`ImageLabels`] per image.
    pub fn images(&self) -> Vec<ImageLabels> {
        (0..self.len()).map(|i| self.image(i)).collect()
    }

    /// Only the kinds `keep` allows: (masks, keypoints, depth).
    pub fn only(&self, masks: bool, keypoints: bool, depth: bool) -> Targets {
        Targets {
            masks: self.masks.clone().filter(|_| masks),
            keypoints: self.keypoints.clone().filter(|_| keypoints),
            depth: self.depth.clone().filter(|_| depth),
        }
    }

    /// The class ids the masks use (but `ignore_index`); empty without masks.
    pub fn class_ids(&self, ignore_index: Option<u32>) -> BTreeSet<u32> {
        let mut ids = BTreeSet::new();
        for mask in self.masks.iter().flatten() {
            ids.extend(mask.iter().copied().filter(|&c| Some(c) != ignore_index));
        }
        ids
    }

    /// Keypoints per image (of the first image; 0 without keypoints).
    pub fn keypoint_count(&self) -> usize {
        self.keypoints.as_ref().and_then(|k| k.first()).map_or(0, Vec::len)
    }
}

/// The segmentation classes of masks that use `ids`: `asked` if given (an id beyond it
/// is an error naming it), else the largest id + 1. An inferred count is refused when
/// the ids leave more than half of `0..=max` unused: a stray id (an "unlabelled" 255, a
/// mask saved with other values) would otherwise make a labeler of hundreds of classes
/// that are never seen, and score them. The error names the ids and both ways out.
pub fn segmentation_classes(ids: &BTreeSet<u32>, asked: Option<usize>, ignore_index: Option<u32>) -> Result<usize> {
    let ignore = ignore_index.map_or("none".into(), |i| i.to_string());
    let Some(&max) = ids.last() else {
        return Err(Error::invalid(format!(
            "the masks hold no labelled pixel (every pixel is the ignore index {ignore})"
        )));
    };
    let found = max as usize + 1;
    if let Some(classes) = asked {
        if found > classes {
            return Err(Error::invalid(format!(
                "masks hold class {} but only {classes} classes were asked for (unlabelled pixels: ignore index {ignore})",
                found - 1
            )));
        }
        return Ok(classes);
    }
    if ids.len() * 2 < found {
        let shown: Vec<String> = ids.iter().take(12).map(u32::to_string).collect();
        let more = if ids.len() > shown.len() { ", ..." } else { "" };
        return Err(Error::invalid(format!(
            "masks use {} class ids ({}{more}) of 0..={}, so their class count cannot be inferred: \
             give the classes (--classes), or the id that marks unlabelled pixels (--ignore-index; now {ignore})",
            ids.len(),
            shown.join(", "),
            found - 1
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_a_kind_only_when_every_image_has_it() {
        let a = ImageLabels {
            mask: Some(vec![0, 1, 2, 3]),
            keypoints: Some(vec![[1.0, 2.0]]),
            depth: None,
        };
        let b = ImageLabels {
            mask: Some(vec![3, 2, 1, 0]),
            keypoints: None,
            depth: Some(vec![0.5; 4]),
        };
        let t = Targets::from_images(&[a.clone(), b.clone()]);
        assert_eq!(t.len(), 2);
        assert!(t.keypoints.is_none() && t.depth.is_none());
        assert_eq!(t.class_ids(None), BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(t.class_ids(Some(2)), BTreeSet::from([0, 1, 3]));
        assert_eq!(t.image(1).mask, b.mask);
        let one = Targets::from_images(std::slice::from_ref(&a));
        assert_eq!(one.images(), vec![a.clone()]);
        assert!(a.check(2).is_ok() && a.check(3).is_err());
    }

    #[test]
    fn inferred_classes_refuse_ids_that_leave_most_classes_unused() {
        let ids = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(segmentation_classes(&ids(&[0, 1, 2, 3]), None, Some(255)).unwrap(), 4);
        // A gap or two is a class absent from these masks, not a stray id.
        assert_eq!(segmentation_classes(&ids(&[0, 2, 3]), None, None).unwrap(), 4);
        let e = segmentation_classes(&ids(&[0, 1, 255]), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 class ids (0, 1, 255) of 0..=255"), "{e}");
        assert!(e.contains("--classes") && e.contains("--ignore-index; now none"), "{e}");
        let many: Vec<u32> = (0..20).chain([200]).collect();
        let e = segmentation_classes(&ids(&many), None, Some(255))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("21 class ids (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...) of 0..=200"),
            "{e}"
        );
        // Asked for: any ids within it are fine, an id beyond it is named.
        assert_eq!(segmentation_classes(&ids(&[0, 200]), Some(201), None).unwrap(), 201);
        let e = segmentation_classes(&ids(&[0, 7]), Some(3), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hold class 7 but only 3 classes"), "{e}");
        let e = segmentation_classes(&ids(&[]), None, Some(255))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no labelled pixel") && e.contains("255"), "{e}");
    }
}
