//! `labelgan`: the command-line face of labelgan.
//!
//! Every failure prints one line, `error: ...`, naming the file, key or argument at
//! fault, and exits non-zero (2 for bad arguments, 1 for everything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod device;
mod evaluate;
mod factory;
mod fid;
mod generate;
mod invert;
mod lpips;
mod toyworld;
mod train_encoder;
mod train_gan;
mod train_perceptual;

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
    /// Invert a folder of images into a generator's latent space.
    Invert(invert::InvertArgs),
    /// Make a labelled synthetic dataset (HandsOff or DatasetGAN), resumably.
    Factory(factory::FactoryArgs),
    /// Train the evaluation UNet on a dataset folder and score it on another.
    Evaluate(evaluate::EvaluateArgs),
    /// Train the inversion encoder (generator samples, then real images with LPIPS).
    TrainEncoder(train_encoder::TrainEncoderArgs),
    /// Train a perceptual (LPIPS) backbone without labels, by predicting rotations.
    TrainPerceptual(train_perceptual::TrainPerceptualArgs),
}

fn main() -> ExitCode {
    // GAN training runs on a worker of its own rayon pool: candle's and gemm's parallel
    // loops then run with that thread taking part, instead of the main thread sleeping
    // while two workers run and then spin against it for the two cores (G and D
    // forward 1.5x faster, a training step about 1.2x; docs/training.md). Its workers
    // fix their CANDLE_GRAD_DO_NOT_DETACH reading (unset: plain backward passes detach)
    // before the variable is set below.
    let pool = match rayon::ThreadPoolBuilder::new().build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Err(e)) = pool
        .broadcast(|_| labelgan_stylegan::train::detach_on_this_thread())
        .into_iter()
        .find(|r| r.is_err())
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // GAN training's R1 penalty needs second-order gradients, which candle builds only
    // for threads that start with CANDLE_GRAD_DO_NOT_DETACH set; this keeps plain
    // backward passes on this thread lean and lets the R1 thread keep its graph.
    // SAFETY: no other thread runs: the pool's workers are parked, waiting for work
    // (the broadcast above has returned), and read no environment until given some.
    if let Err(e) = unsafe { labelgan_stylegan::train::prepare_r1_environment() } {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // candle allocates a buffer per tensor; reusing freed ones instead of faulting in
    // fresh pages makes training 1.4x faster (docs/training.md).
    labelgan_core::heap::keep_freed_memory();
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
    let res = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Toyworld(a) => toyworld::run(a),
        Command::Lpips(a) => lpips::run(a),
        Command::TrainGan(a) => pool.install(|| train_gan::run(a)),
        Command::Fid(a) => fid::run(a),
        Command::Invert(a) => invert::run(a),
        Command::Factory(a) => factory::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::TrainEncoder(a) => train_encoder::run(a),
        Command::TrainPerceptual(a) => train_perceptual::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
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
