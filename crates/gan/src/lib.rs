//! # labelgan-gan
//!
//! Compare GAN's interchangeable parts (Kurach et al. 2019), each tested against its
//! formula or finite differences, for training and comparing GANs fairly:
//!
//! - [`Loss`]: non-saturating, hinge, Wasserstein, least-squares.
//! - [`Penalty`]: none, WGAN-GP, DRAGAN, R1.
//! - [`SpectralNorm`]: a weight over its largest singular value, by one power
//!   iteration per step from a persistent vector.
//! - [`TrainingConfig`]: every option of a run, from a TOML file and `key=value`
//!   overrides, validated, written back resolved.
//! - [`BatchNorm`] with moving averages and standing statistics ([`BnMode`]),
//!   [`ConditionalBatchNorm`] (gamma centred at 1) and [`SelfModulatedBatchNorm`].
//! - Architectures behind [`GanGenerator`] and [`GanDiscriminator`]: SNDCGAN
//!   ([`SndcganGenerator`], [`SndcganDiscriminator`]) and the CIFAR ResNet
//!   ([`ResnetCifarGenerator`], [`ResnetCifarDiscriminator`]) and BigGAN
//!   ([`BigGanGenerator`], [`BigGanDiscriminator`]: hierarchical z, a shared class
//!   embedding, [`SelfAttention`], a [`ProjectionHead`]), conditional-capable.
//! - [`Trainer`]: one loop for them all (D steps per G step, Adam per network, the
//!   config's loss and penalty, a G weight average), resumable bit-exactly.
//! - [`study`]: a grid of configs × seeds, resumable and shardable, gathered into a
//!   table and a plot.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use labelgan_gan::Loss;
//!
//! let real = Tensor::new(&[2.0f32, 1.5], &Device::Cpu)?;
//! let fake = Tensor::new(&[-1.0f32, 0.5], &Device::Cpu)?;
//! let d = Loss::Hinge.discriminator(&real, &fake)?; // relu(1 - real) + relu(1 + fake)
//! assert_eq!(d.total.to_scalar::<f32>()?, 0.0 + 0.75);
//! # Ok::<(), labelgan_core::Error>(())
//! ```

pub mod architectures;
pub mod attention;
pub mod aux_heads;
pub mod batch_norm;
pub mod biggan;
pub mod co_training;
pub mod compare_gan_generator;
pub mod config;
pub mod few_labels;
pub mod generator_file;
pub mod init;
pub mod layer_norm;
pub mod layers;
pub mod loss;
pub mod model;
pub mod norm;
pub mod penalty;
pub mod projection;
pub mod real_classes;
pub mod resnet_cifar;
pub mod run;
pub mod scoring;
pub mod second_order;
pub mod self_supervision;
pub mod sndcgan;
pub mod spectral_norm;
pub mod study;
pub mod stylegan2;
#[cfg(test)]
mod testing;
pub mod trainer;

pub use attention::SelfAttention;
pub use batch_norm::{BatchNorm, BnMode, ConditionalBatchNorm, SelfModulatedBatchNorm};
pub use biggan::{BigGanDiscriminator, BigGanGenerator};
pub use compare_gan_generator::CompareGanGenerator;
pub use config::{Architecture, EvalConfig, GeneratorNorm, Init, ModelConfig, TrainConfig, TrainingConfig};
pub use few_labels::{InferredLabels, LabelSplit, LabelledSet, LabelsConfig, Unlabelled};
pub use generator_file::{AnyGenerator, load_generator};
pub use init::{init_var_builder, seeded_var_builder};
pub use labelgan_core::one_hot;
pub use layer_norm::LayerNorm;
pub use loss::{DiscriminatorLoss, Loss};
pub use model::{DiscriminatorOutput, GanDiscriminator, GanGenerator, ProjectionClasses};
pub use norm::NormLayer;
pub use penalty::Penalty;
pub use projection::ProjectionHead;
pub use real_classes::RealClasses;
pub use resnet_cifar::{ResnetCifarDiscriminator, ResnetCifarGenerator};
pub use run::{RUN_OUTPUTS, RunOptions, RunSummary, Scorer, train_run};
pub use sndcgan::{SndcganDiscriminator, SndcganGenerator};
pub use spectral_norm::SpectralNorm;
pub use stylegan2::{StyleGan2Config, StyleGan2Discriminator, StyleGan2Generator};
pub use trainer::{RealBatches, StepReport, Trainer};
