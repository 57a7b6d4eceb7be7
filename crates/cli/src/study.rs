//! `labelgan study`: a grid of Compare GAN configs × seeds, each run resumable and
//! skipped when finished, gathered into `scores.csv`, `results.md` and a plot.

use std::path::PathBuf;

use clap::Args;
use labelgan_core::{Error, Result};
use labelgan_gan::study::{Shard, Study, collect, merge_studies, run_study};

use crate::device::DeviceArg;
use crate::gan_run::{DataArgs, Scoring, train_config};

/// Train and compare a grid of GAN configs (`docs/compare_gan.md`).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("data_source").args(["data", "toyworld", "objects"])))]
pub struct StudyArgs {
    /// The study file: a base config, shared settings, axes of variants and seeds.
    #[arg(long, value_name = "STUDY.toml")]
    config: PathBuf,
    /// The study folder: runs/CONFIG/seedS/, scores.csv, results.md, fid.png.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Perceptual backbone whose features score the runs (FID, KID, precision, recall).
    #[arg(long, value_name = "P.safetensors", required_unless_present = "merge")]
    extractor: Option<PathBuf>,
    /// Train on a folder of images (and classes.json).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Train on the stream of toy objects with their classes.
    #[arg(long)]
    objects: bool,
    /// Train on the stream of toyworld faces.
    #[arg(long)]
    toyworld: bool,
    /// Seed of the built-in stream; scores use the next seed's.
    #[arg(long, default_value_t = 1000)]
    stream_seed: u64,
    /// Run only the K-th of N shards (runs dealt in turn); merge the folders after.
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    shard: Shard,
    /// Train only these configs (every seed of each), e.g. the rows a comparison needs
    /// first; the table still gathers every finished run.
    #[arg(long, value_name = "CONFIG", num_args = 1.., value_delimiter = ',', conflicts_with = "merge")]
    only: Vec<String>,
    /// Instead of training: copy the finished runs of these shard folders into --out
    /// and gather the results.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with_all = ["data", "objects", "toyworld", "extractor"])]
    merge: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

pub fn run(a: StudyArgs) -> Result<()> {
    let study = Study::load(&a.config)?;
    let mut inputs = vec![("--config", a.config.as_path())];
    inputs.extend(a.data.as_deref().map(|p| ("--data", p)));
    inputs.extend(a.merge.iter().map(|p| ("--merge", p.as_path())));
    labelgan_core::io::check_output(("--out", &a.out), &inputs)?;
    if !a.merge.is_empty() {
        std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
        let copied = merge_studies(&study, &a.out, &a.merge)?;
        eprintln!("copied {copied} finished runs into {}", a.out.display());
    } else {
        if a.data.is_none() && !a.objects && !a.toyworld {
            return Err(Error::usage("give --objects, --toyworld or --data DIR"));
        }
        let data = DataArgs {
            data: a.data.as_deref(),
            objects: a.objects,
            toyworld: a.toyworld,
            stream_seed: a.stream_seed,
        };
        let device = a.device.open()?;
        let extractor = a
            .extractor
            .as_deref()
            .ok_or_else(|| Error::usage("--extractor is required"))?;
        let mut scoring = Scoring::load(extractor, &device)?;
        let chosen = if a.only.is_empty() {
            study.clone()
        } else {
            study.only(&a.only)?
        };
        let report = run_study(&chosen, &a.out, a.shard, &mut |run, dir| {
            train_config(&data, &run.config, dir, false, Some(&mut scoring), None, &device).map(|_| ())
        });
        // Whatever happened, gather what is there.
        let results = collect(&study, &a.out)?;
        let report = report?;
        eprintln!(
            "study: {} trained, {} already finished, {} in other shards, {} failed; {} of {} runs finished",
            report.trained,
            report.skipped,
            report.other_shards,
            report.failed.len(),
            results.finished,
            results.total
        );
        if !report.failed.is_empty() {
            let list: Vec<String> = report.failed.iter().map(|(r, e)| format!("{r}: {e}")).collect();
            return Err(Error::invalid(format!(
                "{} runs failed: {}",
                list.len(),
                list.join("; ")
            )));
        }
    }
    let results = collect(&study, &a.out)?;
    println!(
        "{}",
        serde_json::json!({
            "finished": results.finished,
            "runs": results.total,
            "results": a.out.join("results.md"),
        })
    );
    Ok(())
}
