//! Helpers shared by the loop's tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::Device;
use labelgan_gan::Trainer;

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
