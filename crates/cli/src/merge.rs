//! `labelgan merge`: join the shard folders of one factory run (`factory --shard`)
//! into the dataset one machine would have written.

use std::path::PathBuf;

use clap::Args;
use labelgan_core::io::check_output;
use labelgan_core::{Progress, Result};

/// Join the shard folders of a factory run into one dataset.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard folders (every shard of the run, any order).
    #[arg(required = true, value_name = "SHARD_DIR")]
    shards: Vec<PathBuf>,
    /// The merged dataset (a new folder, or one an interrupted merge of the same shards
    /// left: it resumes).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let inputs: Vec<(&str, &std::path::Path)> = a.shards.iter().map(|p| ("SHARD_DIR", p.as_path())).collect();
    check_output(("--out", &a.out), &inputs)?;
    let mut bar: Option<Progress> = None;
    let images = labelgan_factory::merge_shards(&a.shards, &a.out, &mut |done, count| {
        crate::factory::show_images(&mut bar, "merging", done, count);
        !labelgan_core::stop::requested()
    })?;
    labelgan_core::stop::check(&format!(
        "{images} images are in {}; rerun the same command to resume",
        a.out.display()
    ))?;
    println!(
        "{}",
        serde_json::json!({"images": images, "shards": a.shards.len(), "out": a.out.display().to_string()})
    );
    Ok(())
}
