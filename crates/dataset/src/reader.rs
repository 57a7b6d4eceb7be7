//! Reading a labelled dataset folder into memory.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use labelgan_core::image_io::{file_names, image_files, load_image, load_images};
use labelgan_core::{Error, Result};

use crate::files::depth_from_u16;
use crate::labels::Targets;

/// Images and whatever labels the folder has.
#[derive(Debug, Clone)]
pub struct LabelledSet {
    /// `[N, 3, R, R]` in [-1, 1].
    pub images: Tensor,
    /// The labels, column by column.
    pub targets: Targets,
    /// File names, in order.
    pub names: Vec<String>,
}

impl LabelledSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// SHA-256 fingerprint of the images, their names and every label: what a run
    /// fitted on this set records, so that resuming it on another set is refused.
    pub fn fingerprint(&self) -> Result<String> {
        use labelgan_core::record::{fingerprint_parts, fingerprint_tensor};
        let mut names = vec![];
        for n in &self.names {
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
        Ok(fingerprint_parts([
            fingerprint_tensor(&self.images)?.as_bytes(),
            &names,
            self.targets.fingerprint().as_bytes(),
        ]))
    }

    /// One set holding `parts` one after the other, each `repeat` times (a small set of
    /// real labelled images weighed up beside a large synthetic one). A label kind is
    /// kept only if every part has it; keypoint counts must agree. Names get the part's
    /// index and the repetition as a prefix (`p1r0_000003.png`).
    pub fn concat(parts: &[(&LabelledSet, usize)]) -> Result<LabelledSet> {
        let parts: Vec<(&LabelledSet, usize)> = parts.iter().copied().filter(|(_, r)| *r > 0).collect();
        if parts.is_empty() {
            return Err(Error::invalid("nothing to concatenate: no part with a repeat above 0"));
        }
        let dims = parts[0].0.images.dims().to_vec();
        for (i, (p, _)) in parts.iter().enumerate() {
            if p.images.dims()[1..] != dims[1..] {
                return Err(Error::invalid(format!(
                    "part {i} has images of shape {:?}, part 0 {:?}",
                    &p.images.dims()[1..],
                    &dims[1..]
                )));
            }
        }
        let counts: Vec<usize> = parts
            .iter()
            .filter_map(|(p, _)| p.targets.keypoints.as_ref().and_then(|k| k.first()).map(Vec::len))
            .collect();
        if counts.windows(2).any(|w| w[0] != w[1]) {
            return Err(Error::invalid(format!(
                "the parts have different keypoint counts: {counts:?}"
            )));
        }
        fn join<T: Clone>(
            parts: &[(&LabelledSet, usize)],
            get: impl Fn(&Targets) -> Option<&Vec<T>>,
        ) -> Option<Vec<T>> {
            let mut out = Vec::new();
            for (p, r) in parts {
                let v = get(&p.targets)?;
                for _ in 0..*r {
                    out.extend(v.iter().cloned());
                }
            }
            Some(out)
        }
        let mut images = Vec::new();
        let mut names = Vec::new();
        for (i, (p, r)) in parts.iter().enumerate() {
            for k in 0..*r {
                images.push(p.images.clone());
                names.extend(p.names.iter().map(|n| format!("p{i}r{k}_{n}")));
            }
        }
        Ok(LabelledSet {
            images: Tensor::cat(&images, 0)?,
            targets: Targets {
                masks: join(&parts, |t| t.masks.as_ref()),
                keypoints: join(&parts, |t| t.keypoints.as_ref()),
                depth: join(&parts, |t| t.depth.as_ref()),
            },
            names,
        })
    }
}

/// Side of the first image in `dir/images` (square images only).
pub fn resolution_of(dir: &Path) -> Result<usize> {
    let files = image_files(&dir.join("images"))?;
    let first = files
        .first()
        .ok_or_else(|| Error::invalid(format!("{}: no images", dir.join("images").display())))?;
    let img = load_image(first)?;
    if img.width() != img.height() {
        return Err(Error::format(
            first,
            format!("image is {}x{}, expected a square image", img.width(), img.height()),
        ));
    }
    Ok(img.width() as usize)
}

/// Loads the first `limit` images (all if `None`) of `dir` with their masks, depth
/// (16-bit PNG, `/ 65535`) and keypoints where present.
pub fn load_dataset(dir: &Path, resolution: usize, limit: Option<usize>) -> Result<LabelledSet> {
    let mut files = image_files(&dir.join("images"))?;
    if let Some(l) = limit {
        files.truncate(l);
    }
    let names = file_names(&files);
    let images = load_images(&files, resolution)?;
    let px = resolution * resolution;
    let per_file = |sub: &str| -> Option<Vec<PathBuf>> {
        let d = dir.join(sub);
        d.is_dir().then(|| names.iter().map(|n| d.join(n)).collect())
    };
    let masks = match per_file("masks") {
        Some(paths) => Some(
            paths
                .iter()
                .map(|p| {
                    let m = mask_ids(p, load_image(p)?)?;
                    if m.len() != px {
                        return Err(Error::format(p, format!("mask is not {resolution}x{resolution}")));
                    }
                    Ok(m.into_iter().map(u32::from).collect())
                })
                .collect::<Result<Vec<Vec<u32>>>>()?,
        ),
        None => None,
    };
    let depth = match per_file("depth") {
        Some(paths) => Some(
            paths
                .iter()
                .map(|p| {
                    let d = load_image(p)?.to_luma16().into_raw();
                    if d.len() != px {
                        return Err(Error::format(p, format!("depth map is not {resolution}x{resolution}")));
                    }
                    Ok(depth_from_u16(&d))
                })
                .collect::<Result<Vec<Vec<f32>>>>()?,
        ),
        None => None,
    };
    let kp_path = dir.join("keypoints.json");
    let keypoints = if kp_path.exists() {
        read_keypoints(&kp_path, &names)?
    } else {
        None
    };
    Ok(LabelledSet {
        images,
        targets: Targets {
            masks,
            keypoints,
            depth,
        },
        names,
    })
}

/// The keypoints of `names` from a set's `keypoints.json`: every image labelled with
/// the same number of finite pairs, or none (`null` throughout: a set without a
/// keypoint head).
fn read_keypoints(kp_path: &Path, names: &[String]) -> Result<Option<Vec<Vec<[f32; 2]>>>> {
    let text = std::fs::read(kp_path).map_err(|e| Error::io(kp_path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::format(kp_path, e.to_string()))?;
    let mut by_name = std::collections::HashMap::new();
    for e in v["images"]
        .as_array()
        .ok_or_else(|| Error::format(kp_path, "no `images` list"))?
    {
        let name = e["file"]
            .as_str()
            .ok_or_else(|| Error::format(kp_path, "an entry of `images` has no `file` name"))?;
        // `null`: this image has no keypoints (a set written without a keypoint head).
        let kps = serde_json::from_value::<Option<Vec<[f32; 2]>>>(e["keypoints"].clone()).map_err(|err| {
            Error::format(
                kp_path,
                format!("`{name}`: keypoints are not a list of [x, y] pairs ({err})"),
            )
        })?;
        if let Some([x, y]) = kps.iter().flatten().find(|[x, y]| !(x.is_finite() && y.is_finite())) {
            return Err(Error::format(
                kp_path,
                format!("`{name}`: keypoint ({x}, {y}) is not finite"),
            ));
        }
        by_name.insert(name.to_string(), kps);
    }
    // Every image has keypoints, the same number, or none has (keypoints null
    // throughout): one image without them used to drop the keypoint labels of the
    // whole set without a word.
    let labelled = |n: &String| by_name.get(n.as_str()).is_some_and(Option::is_some);
    let missing: Vec<&str> = names.iter().filter(|n| !labelled(n)).map(String::as_str).collect();
    if missing.len() == names.len() && names.iter().all(|n| by_name.contains_key(n.as_str())) {
        return Ok(None);
    }
    if !missing.is_empty() {
        return Err(Error::format(
            kp_path,
            format!(
                "{} of {} images have no keypoints (first: {}); label every image or move keypoints.json away",
                missing.len(),
                names.len(),
                missing[..missing.len().min(3)].join(", ")
            ),
        ));
    }
    let kps: Vec<Vec<[f32; 2]>> = names.iter().map(|n| by_name[n].clone().unwrap_or_default()).collect();
    if let Some((n, k)) = names.iter().zip(&kps).find(|(_, k)| k.len() != kps[0].len()) {
        return Err(Error::format(
            kp_path,
            format!(
                "`{n}` has {} keypoints but `{}` has {}: every image needs the same keypoints",
                k.len(),
                names[0],
                kps[0].len()
            ),
        ));
    }
    Ok(Some(kps))
}

/// A mask's class ids: an 8-bit single-channel image (grey or grey with alpha). A
/// 16-bit mask (ids above 255 would be scaled, not kept) and a colour mask (a palette
/// image or RGB, whose conversion to grey mixes ids) are refused with the reason.
fn mask_ids(path: &Path, img: image::DynamicImage) -> Result<Vec<u8>> {
    use image::DynamicImage::*;
    match img {
        ImageLuma8(g) => Ok(g.into_raw()),
        ImageLumaA8(_) => Ok(img.to_luma8().into_raw()),
        ImageLuma16(_) | ImageLumaA16(_) => Err(Error::format(
            path,
            "mask is 16-bit; masks must be 8-bit grey images of class ids (0-255)",
        )),
        other => Err(Error::format(
            path,
            format!(
                "mask is a {:?} colour image; masks must be 8-bit grey images of class ids (convert a colour-coded mask to ids first)",
                other.color()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, Rgb};

    /// 8-bit grey masks load as ids; 16-bit and colour masks are refused, naming the
    /// file and the reason, instead of being scaled or mixed into grey.
    #[test]
    fn masks_must_be_8_bit_grey_and_keypoints_complete() {
        let dir = std::env::temp_dir().join(format!("labelgan-masks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::files::create_folders(&dir, &["images", "masks"]).unwrap();
        let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(4, 4, Rgb([10u8, 20, 30])));
        rgb.save(dir.join("images/a.png")).unwrap();
        let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(4, 4, |x, _| Luma([x as u8 * 60])));
        grey.save(dir.join("masks/a.png")).unwrap();
        let set = load_dataset(&dir, 4, None).unwrap();
        assert_eq!(set.targets.masks.unwrap()[0][..4], [0, 60, 120, 180]);
        let cases: [(DynamicImage, &str); 2] = [
            (
                DynamicImage::ImageLuma16(ImageBuffer::from_pixel(4, 4, Luma([300u16]))),
                "16-bit",
            ),
            (
                DynamicImage::ImageRgb8(ImageBuffer::from_pixel(4, 4, Rgb([1u8, 2, 3]))),
                "colour",
            ),
        ];
        for (mask, want) in cases {
            mask.save(dir.join("masks/a.png")).unwrap();
            let e = load_dataset(&dir, 4, None).unwrap_err().to_string();
            assert!(e.contains("masks/a.png") && e.contains(want), "{e}");
        }
        std::fs::remove_dir_all(dir.join("masks")).unwrap();
        // Keypoints: every image needs them, the same number.
        rgb.save(dir.join("images/b.png")).unwrap();
        let kp = |images: serde_json::Value| {
            std::fs::write(
                dir.join("keypoints.json"),
                serde_json::json!({ "images": images }).to_string(),
            )
            .unwrap();
            load_dataset(&dir, 4, None)
        };
        let both = serde_json::json!([
            {"file": "a.png", "keypoints": [[1.0, 2.0]]},
            {"file": "b.png", "keypoints": [[3.0, 0.5]]}
        ]);
        assert_eq!(kp(both).unwrap().targets.keypoints.unwrap()[1], vec![[3.0, 0.5]]);
        let none = serde_json::json!([{"file": "a.png", "keypoints": null}, {"file": "b.png", "keypoints": null}]);
        assert!(
            kp(none).unwrap().targets.keypoints.is_none(),
            "null throughout: a set without keypoints"
        );
        let e =
            kp(serde_json::json!([{"file": "a.png", "keypoints": [[1.0, 2.0]]}, {"file": "b.png", "keypoints": null}]))
                .unwrap_err()
                .to_string();
        assert!(e.contains("1 of 2 images have no keypoints (first: b.png)"), "{e}");
        let e = kp(serde_json::json!([{"file": "a.png", "keypoints": [[1.0, 2.0]]}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of 2 images have no keypoints (first: b.png)"), "{e}");
        let e = kp(serde_json::json!([
            {"file": "a.png", "keypoints": [[1.0, 2.0]]},
            {"file": "b.png", "keypoints": [[1.0, 2.0], [3.0, 4.0]]}
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`b.png` has 2 keypoints but `a.png` has 1"), "{e}");
        let e = kp(serde_json::json!([{"file": "a.png", "keypoints": "x"}, {"file": "b.png", "keypoints": []}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a.png`: keypoints are not a list"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
