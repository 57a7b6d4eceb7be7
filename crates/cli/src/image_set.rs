//! The image sets that `labelgan fid` and `labelgan metrics` compare: a folder,
//! `toyworld:SEED` (faces), `toyworld-classes:SEED` (toy objects of the ten classes)
//! or `generator:G.safetensors`, and running an extractor over one.

use std::path::Path;

use candle_core::{Device, Tensor};
use clap::Args;
use labelgan_core::image_io::{image_files, load_image, load_images};
use labelgan_core::{Error, FeatureExtractor, Result, Truncation};
use labelgan_gan::{AnyGenerator, load_generator};

use crate::values;

/// Most images a generated or toyworld set may have.
pub const MAX_COUNT: usize = 100_000_000;

/// How the images of a set are made and fed.
#[derive(Debug, Args)]
pub struct ImageSetArgs {
    /// Images per set (toyworld and generators; folders use all their images).
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// Image size for toyworld sets, faces or objects (generators and folders have
    /// their own).
    #[arg(long, default_value_t = 64)]
    pub resolution: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Truncation psi for generator sets.
    #[arg(long, default_value_t = 1.0, value_parser = values::finite)]
    pub psi: f64,
}

impl ImageSetArgs {
    /// Bad sizes, as usage errors, before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        if !(1..=4096).contains(&self.batch) || !(2..=MAX_COUNT).contains(&self.count) {
            return Err(Error::usage(format!(
                "--batch {} must be in 1..=4096 and --count {} in 2..={MAX_COUNT}",
                self.batch, self.count
            )));
        }
        Ok(())
    }
}

/// One image set.
pub enum ImageSet {
    /// A folder's images, loaded.
    Folder(Tensor),
    /// Toyworld faces `0..count` of a seed.
    Toyworld(u64),
    /// Toy objects `0..count` of a seed (classes in turn with the stream's draws).
    Objects(u64),
    /// A generator's images of latent seeds `0..count` (a conditional one's classes in
    /// turn).
    Generator(AnyGenerator),
}

impl ImageSet {
    /// Parses `FOLDER`, `toyworld:SEED`, `toyworld-classes:SEED` or
    /// `generator:G.safetensors`.
    pub fn parse(spec: &str, device: &Device) -> Result<Self> {
        if let Some(seed) = spec.strip_prefix("toyworld-classes:") {
            let seed = seed
                .parse()
                .map_err(|_| Error::invalid(format!("`{spec}`: the seed must be an integer")))?;
            Ok(ImageSet::Objects(seed))
        } else if let Some(seed) = spec.strip_prefix("toyworld:") {
            let seed = seed
                .parse()
                .map_err(|_| Error::invalid(format!("`{spec}`: the toyworld seed must be an integer")))?;
            Ok(ImageSet::Toyworld(seed))
        } else if let Some(path) = spec.strip_prefix("generator:") {
            Ok(ImageSet::Generator(load_generator(path, device)?))
        } else {
            let dir = Path::new(spec);
            if !dir.is_dir() {
                return Err(Error::invalid(format!(
                    "`{spec}` is not a folder, `toyworld:SEED`, `toyworld-classes:SEED` or `generator:G.safetensors`"
                )));
            }
            // Folders must hold square images of one size; take it from the first.
            let files = image_files(dir)?;
            let r = load_image(&files[0])?.width() as usize;
            Ok(ImageSet::Folder(load_images(&files, r)?))
        }
    }

    /// Images in the set.
    pub fn len(&self, a: &ImageSetArgs) -> Result<usize> {
        Ok(match self {
            ImageSet::Folder(t) => t.dim(0)?,
            _ => a.count,
        })
    }

    /// Images `start..start + n`, `[n, 3, R, R]` in [-1, 1] on `device`.
    pub fn images(&self, start: usize, n: usize, a: &ImageSetArgs, device: &Device) -> Result<Tensor> {
        match self {
            ImageSet::Folder(t) => Ok(t.narrow(0, start, n)?.to_device(device)?),
            ImageSet::Toyworld(seed) => labelgan_toyworld::batch_tensor(*seed, start as u64, n, a.resolution, device),
            ImageSet::Objects(seed) => {
                Ok(labelgan_toyworld::objects::object_batch(*seed, start as u64, n, a.resolution, device)?.0)
            }
            ImageSet::Generator(g) => g.seeded_images(start as u64, n, Truncation::psi(a.psi)),
        }
    }

    /// The classes of images `start..start + n`, where the set knows them: toy objects
    /// and a conditional generator's images.
    pub fn classes(&self, start: usize, n: usize) -> Result<Option<Vec<u32>>> {
        match self {
            ImageSet::Objects(seed) => Ok(Some(
                (start as u64..(start + n) as u64)
                    .map(|i| labelgan_toyworld::objects::object_scene(*seed, i).class as u32)
                    .collect(),
            )),
            ImageSet::Generator(g) if g.spec().c_dim > 0 => Ok((start as u64..(start + n) as u64)
                .map(|seed| g.seeded_class(seed))
                .collect()),
            _ => Ok(None),
        }
    }

    /// Runs `extractor` over the whole set, handing each batch to `sink` (see
    /// [`labelgan_metrics::extract_each`]).
    pub fn extract_each(
        &self,
        name: &str,
        extractor: &dyn FeatureExtractor,
        a: &ImageSetArgs,
        device: &Device,
        sink: &mut dyn FnMut(&Tensor, Option<&Tensor>) -> Result<()>,
    ) -> Result<()> {
        let n = self.len(a)?;
        labelgan_metrics::extract_each(
            extractor,
            n,
            a.batch,
            name,
            &mut |s, k| self.images(s, k, a, device),
            sink,
        )
    }

    /// The features (and class probabilities) of the whole set.
    pub fn extract(
        &self,
        name: &str,
        extractor: &dyn FeatureExtractor,
        a: &ImageSetArgs,
        device: &Device,
    ) -> Result<(labelgan_metrics::Features, Option<labelgan_metrics::Features>)> {
        let n = self.len(a)?;
        labelgan_metrics::extract(extractor, n, a.batch, name, &mut |s, k| self.images(s, k, a, device))
    }
}
