//! `labelgan toyworld`: write a folder of procedural toy faces with exact labels, or
//! (`--classes`) of toy objects in ten classes with their class labels.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use labelgan_core::{Progress, Result};
use labelgan_toyworld::objects::{OBJECT_CLASSES, write_object_dataset};
use labelgan_toyworld::{CLASSES, write_dataset};

/// Render labelled toy faces: images, masks, depth maps, keypoints, a contact sheet.
/// With --classes: toy objects in ten classes, with `classes.json` and object masks.
#[derive(Debug, Args)]
pub struct ToyworldArgs {
    /// Number of images.
    #[arg(long)]
    count: usize,
    /// Seed of the stream (image i depends only on the seed and i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (created; files of the same names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Image size in pixels (faces 32 to 256, objects 16 to 256).
    #[arg(long, default_value_t = 64)]
    resolution: usize,
    /// The class-labelled domain: toy objects in ten classes (house, tree, pine,
    /// mushroom, car, lamp, arrow, snowman, table, flag), each image's class in
    /// `classes.json` (`docs/toyworld.md`).
    #[arg(long)]
    classes: bool,
}

pub fn run(a: ToyworldArgs) -> Result<()> {
    let start = Instant::now();
    let (label, what) = if a.classes {
        ("toy objects", "images with class labels")
    } else {
        ("toyworld", "images")
    };
    let bar = Progress::new(a.count as u64, label, "images");
    let mut progress = |done: usize, _| bar.set(done as u64);
    // Per class: images (objects) or pixel share (faces).
    let (images, counts): (usize, Vec<String>) = if a.classes {
        let s = write_object_dataset(&a.out, a.seed, a.count, a.resolution, &mut progress)?;
        let per = OBJECT_CLASSES.iter().zip(s.per_class).map(|(n, c)| format!("{n} {c}"));
        (s.images, per.collect())
    } else {
        let s = write_dataset(&a.out, a.seed, a.count, a.resolution, &mut progress)?;
        let per = CLASSES
            .iter()
            .zip(s.class_share)
            .map(|(n, c)| format!("{n} {:.1}%", 100.0 * c));
        (s.images, per.collect())
    };
    bar.finish();
    let per = if a.classes { "images per class" } else { "class pixels" };
    eprintln!("{per}: {}", counts.join(", "));
    println!(
        "wrote {images} {what} ({r}x{r}) to {} in {:.1} s",
        a.out.display(),
        start.elapsed().as_secs_f64(),
        r = a.resolution
    );
    Ok(())
}
