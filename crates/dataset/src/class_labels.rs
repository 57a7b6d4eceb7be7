//! Image-level class labels of a dataset folder: `DIR/classes.json`, for class-
//! conditional GANs and classifiers.
//!
//! ```text
//! {"classes": ["house", "tree", ...], "images": [{"file": "00000.png", "class": 3}, ...]}
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use labelgan_core::io::write_atomic;
use labelgan_core::{Error, Result};

/// The file's name inside a dataset folder.
pub const CLASS_LABELS_FILE: &str = "classes.json";

/// One image's class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassLabel {
    /// Its file under `images/`.
    pub file: String,
    /// Index into [`ClassLabels::classes`].
    pub class: u32,
}

/// The class names and each image's class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassLabels {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// One entry per labelled image (a partly labelled set lists only some).
    pub images: Vec<ClassLabel>,
}

impl ClassLabels {
    /// Class names for a generator that knows its classes only by number: "0", "1", ...
    pub fn numbered_names(classes: usize) -> Vec<String> {
        (0..classes).map(|k| k.to_string()).collect()
    }

    /// Reads `DIR/classes.json`; `None` when the folder has none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CLASS_LABELS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let labels: ClassLabels =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("not a class label file: {e}")))?;
        labels.validate().map_err(|e| Error::format(&path, e.to_string()))?;
        Ok(Some(labels))
    }

    /// Writes `DIR/classes.json`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.validate()?;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        write_atomic(&dir.join(CLASS_LABELS_FILE), text.as_bytes())
    }

    /// Every class id names a class, and no file is listed twice.
    pub fn validate(&self) -> Result<()> {
        if self.classes.is_empty() {
            return Err(Error::invalid("no class names"));
        }
        if let Some(l) = self.images.iter().find(|l| l.class as usize >= self.classes.len()) {
            return Err(Error::invalid(format!(
                "{} has class {} but there are only {} classes",
                l.file,
                l.class,
                self.classes.len()
            )));
        }
        let mut files: Vec<&str> = self.images.iter().map(|l| l.file.as_str()).collect();
        files.sort_unstable();
        if let Some(w) = files.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(format!("{} is listed twice", w[0])));
        }
        Ok(())
    }

    /// The class of each of `files` (in their order), for labels read from folder
    /// `dir`; a file without a class is an error naming it and `dir`'s label file.
    pub fn classes_of(&self, dir: &Path, files: &[String]) -> Result<Vec<u32>> {
        // One lookup table, not a scan of the labels per file.
        let by_file: std::collections::HashMap<&str, u32> =
            self.images.iter().map(|l| (l.file.as_str(), l.class)).collect();
        files
            .iter()
            .map(|f| {
                by_file
                    .get(f.as_str())
                    .copied()
                    .ok_or_else(|| Error::format(dir.join(CLASS_LABELS_FILE), format!("no class for image {f}")))
            })
            .collect()
    }

    /// The class of `file`, if labelled.
    pub fn class_of(&self, file: &str) -> Option<u32> {
        self.images.iter().find(|l| l.file == file).map(|l| l.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_ids() {
        let dir = std::env::temp_dir().join(format!("labelgan-class-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ClassLabels::read(&dir).unwrap(), None);
        let l = ClassLabels {
            classes: vec!["a".into(), "b".into()],
            images: vec![
                ClassLabel {
                    file: "0.png".into(),
                    class: 1,
                },
                ClassLabel {
                    file: "1.png".into(),
                    class: 0,
                },
            ],
        };
        l.write(&dir).unwrap();
        let back = ClassLabels::read(&dir).unwrap().unwrap();
        assert_eq!((back.class_of("0.png"), back.class_of("2.png")), (Some(1), None));
        assert_eq!(
            back.classes_of(&dir, &["1.png".into(), "0.png".into()]).unwrap(),
            [0, 1]
        );
        let e = back.classes_of(&dir, &["2.png".into()]).unwrap_err().to_string();
        assert!(
            e.contains("classes.json") && e.contains("no class for image 2.png"),
            "{e}"
        );
        let mut bad = l.clone();
        bad.images[0].class = 2;
        assert!(bad.write(&dir).unwrap_err().to_string().contains("only 2 classes"));
        bad.images[0].class = 0;
        bad.images[1].file = "0.png".into();
        assert!(bad.validate().unwrap_err().to_string().contains("listed twice"));
        std::fs::write(
            dir.join(CLASS_LABELS_FILE),
            "{\"classes\": [\"a\"], \"images\": [{\"file\": \"x\", \"class\": 5}]}",
        )
        .unwrap();
        let e = ClassLabels::read(&dir).unwrap_err().to_string();
        assert!(e.contains("classes.json") && e.contains("only 1 classes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
