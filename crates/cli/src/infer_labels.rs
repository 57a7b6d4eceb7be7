//! `labelgan infer-labels`: S2GAN's labels for the unlabelled images of a training
//! folder, from self-supervised features (a linear classifier on the labelled share,
//! or k-means without labels), written for `train-gan --set labels.unlabelled=inferred`.

use std::path::PathBuf;

use clap::Args;
use labelgan_core::io::check_output;
use labelgan_core::{Error, Result};
use labelgan_gan::LabelSplit;
use labelgan_gan::few_labels::{LinearProbe, image_features, infer_with_classifier, infer_with_kmeans};
use labelgan_lpips::classifier::load_extractor;

use crate::device::DeviceArg;
use crate::gan_run::load_folder;
use crate::values;

/// Infer the labels of a folder's unlabelled images (S2GAN).
#[derive(Debug, Args)]
pub struct InferLabelsArgs {
    /// The training folder (its `images/` and `classes.json`, as `toyworld --classes`
    /// writes it): the classes of the labelled share are read, the others only scored.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Features: a backbone trained without labels (`train-perceptual`), or any
    /// extractor file `metrics` takes.
    #[arg(long, value_name = "FILE.safetensors")]
    backbone: PathBuf,
    /// Share of the images that keep their labels (as `labels.fraction`).
    #[arg(long, default_value_t = 0.1, value_parser = values::share)]
    fraction: f64,
    /// Which images (as `labels.seed`).
    #[arg(long, default_value_t = 0)]
    labels_seed: u64,
    /// No labels at all: k-means clusters, as many as the folder has classes.
    #[arg(long)]
    kmeans: bool,
    /// Image size the folder is read at.
    #[arg(long, default_value_t = 32)]
    resolution: usize,
    /// Output file.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

/// Runs `infer-labels`: prints one JSON line with the labels' accuracy on the
/// unlabelled images.
pub fn run(a: InferLabelsArgs) -> Result<()> {
    check_output(("--out", &a.out), &[("--data", &a.data), ("--backbone", &a.backbone)])?;
    let device = a.device.open()?;
    let (images, classes) = load_folder(&a.data, a.resolution)?;
    let Some((truth, k)) = classes else {
        return Err(Error::invalid(format!(
            "{} has no classes.json: the labelled share needs its classes",
            a.data.display()
        )));
    };
    let extractor = load_extractor(&a.backbone, &device)?;
    let features = image_features(&*extractor, &images, &device)?;
    let n = truth.len();
    let line = if a.kmeans {
        let labels = infer_with_kmeans(&features, k, a.labels_seed)?;
        let all: Vec<usize> = (0..n).collect();
        let purity = labels.purity(&truth, &all, k)?;
        labels.save(&a.out)?;
        format!(
            "{{\"images\":{n},\"labelled\":0,\"inference\":\"kmeans\",\"clusters\":{k},\"purity\":{purity:.4},\"out\":{:?}}}",
            a.out.display().to_string()
        )
    } else {
        let split = LabelSplit::new(n, a.fraction, a.labels_seed)?;
        let (labels, report) = infer_with_classifier(
            &features,
            &truth,
            &split,
            (a.fraction, a.labels_seed),
            k,
            &LinearProbe::default(),
        )?;
        let accuracy = labels.accuracy(&truth, &split.unlabelled())?;
        labels.save(&a.out)?;
        format!(
            "{{\"images\":{n},\"labelled\":{},\"inference\":\"linear_classifier\",\"alpha\":{},\"validation_accuracy\":{:.4},\"accuracy_unlabelled\":{accuracy:.4},\"out\":{:?}}}",
            split.labelled().len(),
            report.alpha,
            report.validation_accuracy,
            a.out.display().to_string()
        )
    };
    println!("{line}");
    Ok(())
}
