//! `labelgan`: the command-line face of labelgan.
//!
//! Every failure prints one line, `error: ...`, naming the file, key or argument at
//! fault, and exits non-zero (2 for bad arguments, 130 for a clean stop on SIGINT or
//! SIGTERM, 1 for everything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use labelgan_core::Error;

mod device;
mod evaluate;
mod factory;
mod fid;
mod gan_run;
mod generate;
mod image_set;
mod infer_labels;
mod invert;
mod lpips;
mod merge;
mod metrics;
mod study;
mod toyworld;
mod train_classifier;
mod train_encoder;
mod train_gan;
mod train_perceptual;
mod values;

/// Labelled training data from a pretrained StyleGAN2 (HandsOff, DatasetGAN).
#[derive(Parser)]
#[command(name = "labelgan", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images (and their latents) from a StyleGAN2 generator.
    Generate(generate::GenerateArgs),
    /// LPIPS perceptual distance between images, folders or tensor pairs.
    Lpips(lpips::LpipsArgs),
    /// Render procedural toy faces with exact segmentation, keypoints and depth.
    Toyworld(toyworld::ToyworldArgs),
    /// Train a StyleGAN2 on a folder of images or on toyworld (resumable).
    TrainGan(train_gan::TrainGanArgs),
    /// Frechet distance between two image sets in a perceptual net's feature space.
    Fid(fid::FidArgs),
    /// FID, KID, precision and recall between two image sets or two feature files.
    Metrics(metrics::MetricsArgs),
    /// Train and compare a grid of GAN configs × seeds (resumable, shardable).
    Study(study::StudyArgs),
    /// Invert a folder of images into a generator's latent space.
    Invert(invert::InvertArgs),
    /// Make a labelled synthetic dataset (HandsOff or DatasetGAN), resumably.
    Factory(factory::FactoryArgs),
    /// Join the shard folders of a factory run (`factory --shard K/N`) into one dataset.
    Merge(merge::MergeArgs),
    /// Train the evaluation UNet on a dataset folder and score it on another.
    Evaluate(evaluate::EvaluateArgs),
    /// Train the inversion encoder (generator samples, then real images with LPIPS).
    TrainEncoder(train_encoder::TrainEncoderArgs),
    /// Train a perceptual (LPIPS) backbone without labels, by predicting rotations.
    TrainPerceptual(train_perceptual::TrainPerceptualArgs),
    /// Train an image classifier on labelled images (an extractor for `metrics`).
    TrainClassifier(train_classifier::TrainClassifierArgs),
    /// Infer the labels of a folder's unlabelled images from self-supervised features
    /// (S2GAN), for `train-gan --set labels.unlabelled=inferred`.
    InferLabels(infer_labels::InferLabelsArgs),
}

fn main() -> ExitCode {
    // candle allocates a buffer per tensor; reusing freed ones instead of faulting in
    // fresh pages makes training 1.4x faster (docs/training.md).
    labelgan_kernels::heap::keep_freed_memory();
    // Parsing starts no thread, so `r1_training_pool` below still runs with this
    // thread alone, as it must.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    // Commands that write resumable output stop cleanly on SIGINT/SIGTERM (the file at
    // hand finished, a checkpoint saved); the others keep the default (their writes
    // are atomic, so a signal leaves nothing half-written either way).
    if matches!(
        cli.command,
        Command::Factory(_)
            | Command::Merge(_)
            | Command::TrainGan(_)
            | Command::Study(_)
            | Command::TrainEncoder(_)
            | Command::Generate(_)
    ) && let Err(e) = labelgan_core::stop::install_handler()
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let res = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Toyworld(a) => toyworld::run(a),
        Command::Lpips(a) => lpips::run(a),
        // SAFETY: parsing started no thread; this one is still alone.
        Command::TrainGan(a) => match unsafe { labelgan_gan::second_order::r1_training_pool() } {
            Ok(pool) => pool.install(|| train_gan::run(a)),
            Err(e) => Err(e),
        },
        Command::Fid(a) => fid::run(a),
        Command::Metrics(a) => metrics::run(a),
        // SAFETY: as for train-gan: no other thread yet.
        Command::Study(a) => match unsafe { labelgan_gan::second_order::r1_training_pool() } {
            Ok(pool) => pool.install(|| study::run(a)),
            Err(e) => Err(e),
        },
        Command::Invert(a) => invert::run(a),
        Command::Factory(a) => factory::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::TrainEncoder(a) => train_encoder::run(a),
        Command::TrainPerceptual(a) => train_perceptual::run(a),
        Command::TrainClassifier(a) => train_classifier::run(a),
        Command::InferLabels(a) => infer_labels::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            match e {
                Error::Usage(_) => ExitCode::from(2),
                Error::Stopped(_) => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// clap's messages span several lines (error, details, usage, hint): keep the part
/// before the usage, joined into one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
