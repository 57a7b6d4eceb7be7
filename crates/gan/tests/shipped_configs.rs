//! Every config shipped in `configs/` loads and validates: a run config as a
//! [`TrainingConfig`], a study (it has `[[axes]]`) as a [`Study`] with every run's
//! config resolved.

use std::path::{Path, PathBuf};

use labelgan_gan::TrainingConfig;
use labelgan_gan::study::Study;

fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            tomls(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_config_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut files = vec![];
    tomls(&root, &mut files);
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("[[axes]]") {
            let study = Study::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(!study.runs.is_empty(), "{}", f.display());
        } else {
            TrainingConfig::load(Some(&f), &[]).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
