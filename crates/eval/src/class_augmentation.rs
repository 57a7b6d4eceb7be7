//! Whether a conditional generator's images are worth training on at the image level:
//! a classifier trained on the labelled real images alone against the same classifier
//! trained on them plus generated images of every class (labels from the
//! conditioning), both scored on held-out real images, over several seeds. The
//! few-label counterpart of the quickstart's segmentation table.

use candle_core::{Device, Tensor};
use serde::Serialize;

use labelgan_core::{EpochOrder, Error, Generator, Result, Truncation, select_rows};
use labelgan_lpips::classifier::train_classifier;
use labelgan_lpips::rotation::{RotationConfig, RotationProgress, Task};

/// What the comparison trains and on what.
#[derive(Debug, Clone)]
pub struct ClassAugmentation {
    /// The classifier (its `task` must be `Task::Classes`; its `seed` is replaced by
    /// each of `seeds`).
    pub classifier: RotationConfig,
    /// Generated images, in all (classes in turn).
    pub generated: usize,
    /// Share of each training batch taken from the generated images, in (0, 1).
    pub generated_share: f64,
    /// First latent seed of the generated images.
    pub latent_seed: u64,
    /// Training seeds: one classifier per arm and seed.
    pub seeds: Vec<u64>,
}

impl ClassAugmentation {
    /// Refuses settings that cannot run, naming them.
    pub fn validate(&self) -> Result<()> {
        self.classifier.validate()?;
        if !matches!(self.classifier.task, Task::Classes(k) if k >= 2) {
            return Err(Error::invalid("the classifier's task must be classes (at least 2)"));
        }
        if !(self.generated_share > 0.0 && self.generated_share < 1.0) {
            return Err(Error::invalid(format!(
                "generated_share must be in (0, 1), got {}",
                self.generated_share
            )));
        }
        let real = self.real_per_batch();
        if real == 0 || real == self.classifier.batch {
            return Err(Error::invalid(format!(
                "a batch of {} with generated_share {} leaves no real or no generated image",
                self.classifier.batch, self.generated_share
            )));
        }
        if self.generated == 0 || self.seeds.is_empty() {
            return Err(Error::invalid("generated and seeds must not be empty"));
        }
        Ok(())
    }

    fn real_per_batch(&self) -> usize {
        (self.classifier.batch as f64 * (1.0 - self.generated_share)).round() as usize
    }
}

/// Test accuracies of the two arms, one per seed, in seed order.
#[derive(Debug, Clone, Serialize)]
pub struct ClassAugmentationReport {
    /// Trained on the labelled real images alone.
    pub real_only: Vec<f32>,
    /// Trained on them plus the generated images.
    pub with_generated: Vec<f32>,
    /// Real images per batch in the second arm (the rest generated).
    pub real_per_batch: usize,
    /// Generated images used.
    pub generated: usize,
}

/// A set's images visited in a seeded shuffled order, cycling.
struct Cycle<'a> {
    images: &'a Tensor,
    classes: &'a [u32],
    order: EpochOrder,
}

impl<'a> Cycle<'a> {
    fn new(images: &'a Tensor, classes: &'a [u32], seed: u64) -> Result<Self> {
        let order = EpochOrder::new((0..classes.len()).collect(), seed)?;
        Ok(Self { images, classes, order })
    }

    fn take(&self, start: u64, n: usize) -> Result<(Tensor, Vec<u32>)> {
        let idx = self.order.take(start, n);
        Ok((
            select_rows(self.images, &idx)?,
            idx.iter().map(|&i| self.classes[i]).collect(),
        ))
    }
}

/// `generated` images of conditional generator `g` from latent seeds
/// `latent_seed ..`, classes in turn ([`Generator::seeded_images`]), and their classes.
pub fn generated_images(g: &dyn Generator, generated: usize, latent_seed: u64) -> Result<(Tensor, Vec<u32>)> {
    if g.spec().c_dim == 0 {
        return Err(Error::invalid(
            "the generator is unconditional: its images have no classes",
        ));
    }
    let mut images = Vec::new();
    for start in (0..generated).step_by(256) {
        let n = 256.min(generated - start);
        images.push(
            g.seeded_images(latent_seed + start as u64, n, Truncation::NONE)?
                .to_device(&Device::Cpu)?,
        );
    }
    let classes = (0..generated as u64)
        .map(|i| g.seeded_class(latent_seed + i).unwrap_or(0))
        .collect();
    Ok((Tensor::cat(&images, 0)?, classes))
}

/// Trains the two arms for every seed (`labelled` real images and `generated` ones,
/// each `(images [N, 3, R, R] in [-1, 1], classes)`) and scores each classifier on
/// `test`. `progress(arm, seed, p)` sees every training step.
pub fn compare_class_augmentation(
    cfg: &ClassAugmentation,
    labelled: (&Tensor, &[u32]),
    generated: (&Tensor, &[u32]),
    test: (&Tensor, &[u32]),
    device: &Device,
    progress: &mut dyn FnMut(&str, u64, &RotationProgress),
) -> Result<ClassAugmentationReport> {
    cfg.validate()?;
    for (name, (x, c)) in [("labelled", labelled), ("generated", generated), ("test", test)] {
        if x.dim(0)? != c.len() || c.is_empty() {
            return Err(Error::invalid(format!(
                "{name}: {} images and {} classes (need as many, at least one)",
                x.dim(0)?,
                c.len()
            )));
        }
    }
    let real_n = cfg.real_per_batch();
    let gen_n = cfg.classifier.batch - real_n;
    let test_x = test.0.to_device(device)?;
    let mut report = ClassAugmentationReport {
        real_only: Vec::new(),
        with_generated: Vec::new(),
        real_per_batch: real_n,
        generated: generated.1.len(),
    };
    for &seed in &cfg.seeds {
        let config = RotationConfig {
            seed,
            ..cfg.classifier.clone()
        };
        let real = Cycle::new(labelled.0, labelled.1, seed)?;
        let fake = Cycle::new(generated.0, generated.1, seed ^ 0x0067_656e)?;
        let mut real_only = |start: u64, n: usize| real.take(start, n);
        let net = train_classifier(&config, &mut real_only, &test_x, test.1, device, &mut |p| {
            progress("real_only", seed, p)
        })?;
        report.real_only.push(accuracy(net.holdout_accuracy)?);
        // The same number of steps; each batch `real_n` real and `gen_n` generated.
        let mut mixed = |start: u64, n: usize| -> Result<(Tensor, Vec<u32>)> {
            let step = start / n as u64;
            let (xr, mut cr) = real.take(step * real_n as u64, real_n)?;
            let (xg, cg) = fake.take(step * gen_n as u64, gen_n)?;
            cr.extend(cg);
            Ok((Tensor::cat(&[&xr, &xg.to_device(xr.device())?], 0)?, cr))
        };
        let net = train_classifier(&config, &mut mixed, &test_x, test.1, device, &mut |p| {
            progress("with_generated", seed, p)
        })?;
        report.with_generated.push(accuracy(net.holdout_accuracy)?);
    }
    Ok(report)
}

fn accuracy(a: Option<f32>) -> Result<f32> {
    a.ok_or_else(|| Error::invalid("internal: the classifier reported no held-out accuracy"))
}

#[cfg(test)]
mod tests {
    use labelgan_core::{FeatureTaps, GeneratorSpec, NoiseMode, Synthesis};

    use super::*;

    /// Flat images, a colour per class: class k lights channel k.
    fn flat(classes: &[u32], r: usize) -> Tensor {
        let rows: Vec<Tensor> = classes
            .iter()
            .map(|&k| {
                let mut v = vec![-1f32; 3];
                v[k as usize] = 1.0;
                Tensor::new(v.as_slice(), &Device::Cpu)
                    .unwrap()
                    .reshape((1, 3, 1, 1))
                    .unwrap()
                    .broadcast_as((1, 3, r, r))
                    .unwrap()
                    .contiguous()
                    .unwrap()
            })
            .collect();
        Tensor::cat(&rows, 0).unwrap()
    }

    /// A "generator" that draws the flat image of the class it is given.
    struct Flat(GeneratorSpec);

    impl Generator for Flat {
        fn spec(&self) -> &GeneratorSpec {
            &self.0
        }
        fn device(&self) -> &Device {
            &Device::Cpu
        }
        fn map(&self, z: &Tensor, c: Option<&Tensor>, _: Truncation) -> Result<Tensor> {
            Ok(Tensor::cat(&[z, c.unwrap()], 1)?.unsqueeze(1)?)
        }
        fn synthesize(&self, ws: &Tensor, _: NoiseMode) -> Result<Synthesis> {
            let c = ws.squeeze(1)?.narrow(1, 1, 3)?.argmax(1)?.to_vec1::<u32>()?;
            Ok(Synthesis {
                image: flat(&c, 16),
                taps: FeatureTaps::new(),
            })
        }
    }

    #[test]
    fn generated_images_of_a_missing_class_teach_it() {
        let g = Flat(GeneratorSpec {
            z_dim: 1,
            c_dim: 3,
            w_dim: 4,
            num_ws: 1,
            resolution: 16,
            img_channels: 3,
            taps: vec![],
        });
        let (gx, gc) = generated_images(&g, 30, 0).unwrap();
        assert_eq!(gc, (0..30).map(|i| i % 3).collect::<Vec<u32>>());
        assert_eq!(gx.dims(), [30, 3, 16, 16]);
        // The labelled images hold classes 0 and 1 only; the test set all three.
        let lc = vec![0, 1, 0, 1];
        let lx = flat(&lc, 16);
        let tc: Vec<u32> = (0..30).map(|i| i % 3).collect();
        let tx = flat(&tc, 16);
        let cfg = ClassAugmentation {
            classifier: RotationConfig {
                task: Task::Classes(3),
                widths: vec![4, 4, 4, 4, 4],
                convs_per_slice: 1,
                resolution: 16,
                batch: 8,
                steps: 60,
                lr: 1e-2,
                seed: 0,
                eval_every: 0,
            },
            generated: 30,
            generated_share: 0.5,
            latent_seed: 0,
            seeds: vec![0, 1],
        };
        let r = compare_class_augmentation(
            &cfg,
            (&lx, &lc),
            (&gx, &gc),
            (&tx, &tc),
            &Device::Cpu,
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_eq!((r.real_only.len(), r.with_generated.len(), r.real_per_batch), (2, 2, 4));
        for (alone, with) in r.real_only.iter().zip(&r.with_generated) {
            // Without class 2 at most two thirds are right; with it, more.
            assert!(*alone <= 2.0 / 3.0 + 1e-6, "{r:?}");
            assert!(*with > *alone, "{r:?}");
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let mut cfg = ClassAugmentation {
            classifier: RotationConfig {
                task: Task::Classes(3),
                resolution: 16,
                ..RotationConfig::default()
            },
            generated: 10,
            generated_share: 1.0,
            latent_seed: 0,
            seeds: vec![0],
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("generated_share"));
        cfg.generated_share = 0.5;
        cfg.classifier.task = Task::Rotation;
        assert!(cfg.validate().unwrap_err().to_string().contains("task must be classes"));
    }
}
