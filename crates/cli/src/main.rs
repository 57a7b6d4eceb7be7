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
    // candle allocates a buffer per tensor; reusing freed ones instead of faulting in
    // fresh pages makes training 1.4x faster (docs/training.md).
    labelgan_kernels::heap::keep_freed_memory();
    // Parsing starts no thread, so `train_gan_pool` below still runs with this thread
    // alone, as it must.
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
        Command::TrainGan(a) => match train_gan_pool() {
            Ok(pool) => pool.install(|| train_gan::run(a)),
            Err(e) => Err(e),
        },
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

/// The pool GAN training runs in, with the process set up for its R1 penalty. Call
/// only while no other thread exists.
///
/// GAN training runs on a worker of its own rayon pool: candle's and gemm's parallel
/// loops then run with that thread taking part, instead of the main thread sleeping
/// while two workers run and then spin against it for the two cores (G and D forward
/// 1.5x faster, a training step about 1.2x; docs/training.md). Its workers fix their
/// CANDLE_GRAD_DO_NOT_DETACH reading (unset: plain backward passes detach) before the
/// variable is set. The R1 penalty needs second-order gradients, which candle builds
/// only for threads that start with the variable set: this keeps plain backward passes
/// lean and lets the R1 thread keep its graph. Only `train-gan` sets the variable: in
/// any other command every thread started later (the UNet and labeler workers) would
/// keep the graph of every gradient it computes.
fn train_gan_pool() -> labelgan_core::Result<rayon::ThreadPool> {
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .map_err(|e| labelgan_core::Error::invalid(format!("cannot start worker threads: {e}")))?;
    pool.broadcast(|_| labelgan_stylegan::train::detach_on_this_thread())
        .into_iter()
        .collect::<labelgan_core::Result<Vec<()>>>()?;
    // SAFETY: no other thread runs: the pool's workers are parked, waiting for work
    // (the broadcast above has returned), and read no environment until given some.
    unsafe { labelgan_stylegan::train::prepare_r1_environment() }?;
    Ok(pool)
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
