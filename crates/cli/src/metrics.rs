//! `labelgan metrics`: FID, KID, precision and recall (and the Inception Score, with a
//! classifier) between two image sets through a feature extractor, or between two
//! feature files; for sets whose classes are known (toy objects, a conditional
//! generator's images) also per-class FID and class consistency. One JSON line on
//! stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use labelgan_core::{Error, Result};
use labelgan_lpips::classifier::load_extractor;
use labelgan_metrics::{Features, KidConfig, MetricsConfig, class_consistency, compare, per_class_fid, short_class};

use crate::device::DeviceArg;
use crate::image_set::{ImageSet, ImageSetArgs};

/// Most neighbours for the precision/recall radii, and most Inception Score splits.
const MAX_SMALL: usize = 1000;

/// FID, KID, precision and recall of set B against reference set A.
///
/// Either two image sets and an extractor (--a, --b, --extractor), or two feature
/// files (--features-a, --features-b: safetensors with a `features` tensor [N, D]).
/// A set is a folder of images, `toyworld:SEED`, `toyworld-classes:SEED` (toy objects
/// with their classes) or `generator:G.safetensors` (a conditional generator's classes
/// in turn).
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Reference (real) image set.
    #[arg(long, value_name = "SET")]
    a: Option<String>,
    /// Image set scored against it (e.g. a generator's).
    #[arg(long, value_name = "SET")]
    b: Option<String>,
    /// Extractor for --a and --b: a perceptual backbone (`train-perceptual`'s rotation
    /// net, or converted LPIPS weights); its taps' spatial means are the features.
    #[arg(long, value_name = "P.safetensors")]
    extractor: Option<PathBuf>,
    /// Classifier for class consistency of a conditional generator's set --b (default:
    /// the extractor, when it has a class head).
    #[arg(long, value_name = "C.safetensors")]
    classifier: Option<PathBuf>,
    /// Reference features instead of --a.
    #[arg(long, value_name = "A.safetensors")]
    features_a: Option<PathBuf>,
    /// Scored features instead of --b.
    #[arg(long, value_name = "B.safetensors")]
    features_b: Option<PathBuf>,
    #[command(flatten)]
    images: ImageSetArgs,
    /// KID subsets to average over; 0: one estimate over the whole two sets.
    #[arg(long, default_value_t = 100)]
    kid_subsets: usize,
    /// Vectors per KID subset (sets smaller than this are used whole).
    #[arg(long, default_value_t = 1000)]
    kid_subset_size: usize,
    /// Seed of the KID subsets.
    #[arg(long, default_value_t = 0)]
    kid_seed: u64,
    /// k of the k-NN radii of precision and recall.
    #[arg(long, default_value_t = 3)]
    pr_k: usize,
    /// Inception Score splits (with a classifier extractor).
    #[arg(long, default_value_t = 10)]
    is_splits: usize,
    /// Also write the extracted features to DIR/a.safetensors and DIR/b.safetensors.
    #[arg(long, value_name = "DIR")]
    save_features: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

impl MetricsArgs {
    fn config(&self) -> Result<MetricsConfig> {
        let cfg = MetricsConfig {
            kid: KidConfig {
                subsets: self.kid_subsets,
                subset_size: self.kid_subset_size,
                seed: self.kid_seed,
            },
            pr_k: self.pr_k,
            is_splits: self.is_splits,
        };
        cfg.kid.validate().map_err(Error::into_usage)?;
        if !(1..=MAX_SMALL).contains(&self.pr_k) || !(1..=MAX_SMALL).contains(&self.is_splits) {
            return Err(Error::usage(format!(
                "--pr-k {} and --is-splits {} must be in 1..={MAX_SMALL}",
                self.pr_k, self.is_splits
            )));
        }
        Ok(cfg)
    }
}

pub fn run(a: MetricsArgs) -> Result<()> {
    let cfg = a.config()?;
    let started = Instant::now();
    let images = (&a.a, &a.b, &a.extractor);
    let files = (&a.features_a, &a.features_b);
    let mut by_class = serde_json::Map::new();
    let (fa, fb, probs, extractor) = match (images, files) {
        ((Some(sa), Some(sb), Some(p)), (None, None)) => {
            a.images.validate()?;
            if let Some(dir) = &a.save_features {
                labelgan_core::io::check_output(("--save-features", dir), &[("--extractor", p)])?;
            }
            let device = a.device.open()?;
            let ex = load_extractor(p, &device)?;
            let (set_a, set_b) = (ImageSet::parse(sa, &device)?, ImageSet::parse(sb, &device)?);
            let (fa, _) = set_a.extract(sa, &ex, &a.images, &device)?;
            let (fb, probs) = set_b.extract(sb, &ex, &a.images, &device)?;
            if let Some(dir) = &a.save_features {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                fa.save(dir.join("a.safetensors"))?;
                fb.save(dir.join("b.safetensors"))?;
            }
            let classes_a = set_a.classes(0, fa.len())?;
            let classes_b = set_b.classes(0, fb.len())?;
            // Class consistency: a conditional generator's images against their classes.
            if let (Some(cb), ImageSet::Generator(_)) = (&classes_b, &set_b) {
                let class_probs = match &a.classifier {
                    Some(c) if c != p => {
                        let classifier = load_extractor(c, &device)?;
                        let probs = set_b.extract(sb, &classifier, &a.images, &device)?.1;
                        Some(probs.ok_or_else(|| {
                            Error::format(c, "has no class head: --classifier needs a trained classifier")
                        })?)
                    }
                    _ => probs.clone(),
                };
                match class_probs {
                    Some(cp) => {
                        by_class.insert("class_consistency".into(), class_consistency(&cp, cb)?.into());
                    }
                    None => {
                        eprintln!("note: no class consistency: the extractor has no class head (pass --classifier C)")
                    }
                }
            }
            if let (Some(ca), Some(cb)) = (&classes_a, &classes_b) {
                let k = ca.iter().chain(cb).max().map_or(0, |&m| m as usize + 1);
                match short_class(ca, cb, k) {
                    None => {
                        let per = per_class_fid(&fa, ca, &fb, cb, k)?;
                        by_class.insert("fid_per_class_mean".into(), (per.iter().sum::<f64>() / k as f64).into());
                        by_class.insert("fid_per_class".into(), per.into());
                    }
                    Some(short) => eprintln!("note: no per-class FID: {short} (raise --count)"),
                }
            }
            (fa, fb, probs, p.display().to_string())
        }
        ((None, None, None), (Some(pa), Some(pb))) => {
            if a.save_features.is_some() || a.classifier.is_some() {
                return Err(Error::usage(
                    "--save-features and --classifier are for --a/--b: the features are already files",
                ));
            }
            (
                Features::load(pa)?,
                Features::load(pb)?,
                None,
                "feature files".to_string(),
            )
        }
        _ => {
            return Err(Error::usage(
                "give either --a SET --b SET --extractor P.safetensors, or --features-a A --features-b B",
            ));
        }
    };
    let mut scores = compare(&fa, &fb, &cfg)?;
    if let Some(p) = &probs {
        scores = scores.with_inception_score(p, cfg.is_splits)?;
    }
    let name = |set: &Option<String>, file: &Option<PathBuf>| {
        set.clone()
            .or_else(|| file.as_deref().map(|f: &Path| f.display().to_string()))
            .unwrap_or_default()
    };
    let mut line = serde_json::to_value(scores).map_err(|e| Error::invalid(e.to_string()))?;
    let extra = serde_json::json!({
        "a": name(&a.a, &a.features_a),
        "b": name(&a.b, &a.features_b),
        "dims": fa.dim(),
        "extractor": extractor,
        "kid_subsets": cfg.kid.subsets,
        "kid_subset_size": cfg.kid.subset_size,
        "pr_k": cfg.pr_k,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
        l.extend(by_class);
    }
    println!("{line}");
    Ok(())
}
