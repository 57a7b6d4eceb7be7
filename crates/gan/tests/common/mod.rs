//! Helpers shared by the loop's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Device;
use labelgan_gan::{Architecture, Trainer, TrainingConfig};

/// Every tensor of `t`'s checkpoint, flattened, by name: two trainers in the same
/// state give equal maps.
pub fn checkpoint_values(t: &Trainer) -> BTreeMap<String, Vec<f32>> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("labelgan-gan-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}.safetensors", NEXT.fetch_add(1, Ordering::Relaxed)));
    t.save(&p).unwrap();
    let f = labelgan_core::io::TensorFile::load(&p, &Device::Cpu).unwrap();
    std::fs::remove_file(&p).unwrap();
    f.tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// A tiny conditional SNDCGAN at 16 px (`classes` classes, z 8, G width 16, D width 4)
/// with batch `batch`: fast enough for step-by-step tests.
pub fn tiny_sndcgan(classes: usize, batch: usize) -> TrainingConfig {
    let mut c = TrainingConfig::default();
    c.model.architecture = Architecture::Sndcgan;
    (
        c.model.resolution,
        c.model.classes,
        c.model.z_dim,
        c.model.g_width,
        c.model.d_width,
    ) = (16, classes, 8, 16, 4);
    c.train.batch = batch;
    c
}
