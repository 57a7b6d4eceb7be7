//! A classifier on the rotation backbone's architecture: the same VGG-style net with a
//! class head (`classes.fc`), trained with cross-entropy on labelled images. Its pooled
//! taps are features for FID, KID and precision/recall, and its softmax gives the
//! Inception Score and the class consistency of a conditional generator: the shipped
//! extractor for the class-labelled toy domain, where no ImageNet network applies.
//!
//! ```no_run
//! use candle_core::Device;
//! use labelgan_lpips::classifier::{class_accuracy, train_classifier};
//! use labelgan_lpips::rotation::{RotationConfig, Task};
//!
//! let config = RotationConfig { task: Task::Classes(10), resolution: 32, ..RotationConfig::default() };
//! let device = Device::Cpu;
//! let (held_out, held_out_classes) = labelgan_toyworld::objects::object_batch(2, 0, 500, 32, &device)?;
//! let mut batches = |start: u64, n: usize| labelgan_toyworld::objects::object_batch(1, start, n, 32, &device);
//! let net = train_classifier(&config, &mut batches, &held_out, &held_out_classes, &device, &mut |_| {})?;
//! println!("held-out accuracy {:.3}", class_accuracy(&net, &held_out, &held_out_classes)?);
//! # Ok::<(), labelgan_core::Error>(())
//! ```

use std::path::Path;

use candle_core::{D, Device, Tensor};

use labelgan_core::io::TensorFile;
use labelgan_core::{Error, FeatureExtractor, Result};

use crate::Lpips;

use crate::rotation::{RotationConfig, RotationNet, RotationProgress, Task, check_images, train_head};

/// Labelled training images: `batches(start, n)` gives images `start..start + n`
/// (`[n, 3, R, R]` in [-1, 1]) and their classes.
pub type LabelledBatches<'a> = dyn FnMut(u64, usize) -> Result<(Tensor, Vec<u32>)> + 'a;

/// Trains a classifier (`config.task` = [`Task::Classes`]) on `batches`, step `s`
/// taking images `s * batch ..`, reporting accuracy on the held-out images.
pub fn train_classifier(
    config: &RotationConfig,
    batches: &mut LabelledBatches,
    held_out: &Tensor,
    held_out_classes: &[u32],
    device: &Device,
    progress: &mut dyn FnMut(&RotationProgress),
) -> Result<RotationNet> {
    let Task::Classes(k) = config.task else {
        return Err(Error::invalid("train_classifier needs task = classes"));
    };
    config.validate()?;
    let r = config.resolution;
    check_images("held-out images", held_out, r)?;
    check_classes(held_out_classes, held_out.dim(0)?, k)?;
    let mut next = |step: usize| -> Result<(Tensor, Vec<u32>)> {
        let (x, y) = batches((step * config.batch) as u64, config.batch)?;
        check_images("training images", &x, r)?;
        check_classes(&y, x.dim(0)?, k)?;
        Ok((x.to_device(device)?, y))
    };
    train_head(
        config,
        &mut next,
        &mut |net| class_accuracy(net, held_out, held_out_classes),
        device,
        progress,
    )
}

fn check_classes(classes: &[u32], n: usize, k: usize) -> Result<()> {
    if classes.len() != n {
        return Err(Error::invalid(format!("{} classes for {n} images", classes.len())));
    }
    if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
        return Err(Error::invalid(format!("class {c} of a classifier with {k} classes")));
    }
    Ok(())
}

/// Fraction of `images` whose class the classifier names right.
pub fn class_accuracy(net: &RotationNet, images: &Tensor, classes: &[u32]) -> Result<f32> {
    let Task::Classes(k) = net.config.task else {
        return Err(Error::invalid("class accuracy of a net not trained on classes"));
    };
    let n = images.dim(0)?;
    if n == 0 {
        return Err(Error::invalid("accuracy needs at least one image"));
    }
    check_classes(classes, n, k)?;
    let mut correct = 0usize;
    for start in (0..n).step_by(64) {
        let m = 64.min(n - start);
        let pred = net
            .logits(&images.narrow(0, start, m)?)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        correct += pred
            .iter()
            .zip(&classes[start..start + m])
            .filter(|(p, c)| p == c)
            .count();
    }
    Ok(correct as f32 / n as f32)
}

/// The feature extractor in `path`: the FID Inception-v3 converted by
/// `tools/convert_inception.py` (pool3 features, 1008-way probabilities), a classifier
/// written by [`train_classifier`] (features and class probabilities), else the file
/// as an LPIPS backbone (features: its pooled taps).
pub fn load_extractor(path: &Path, device: &Device) -> Result<Box<dyn FeatureExtractor>> {
    let file = TensorFile::load(path, device)?;
    if crate::inception_v3::InceptionV3::is_inception(&file) {
        return Ok(Box::new(crate::inception_v3::InceptionV3::from_file(&file, device)?));
    }
    let classifier = file
        .metadata
        .get("rotation_config")
        .and_then(|s| serde_json::from_str::<RotationConfig>(s).ok())
        .is_some_and(|c| matches!(c.task, Task::Classes(_)));
    if classifier {
        Ok(Box::new(RotationNet::load(path, device)?))
    } else {
        Ok(Box::new(Lpips::from_file(file)?))
    }
}
