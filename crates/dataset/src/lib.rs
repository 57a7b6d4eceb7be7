//! # labelgan-dataset
//!
//! The one home of labelgan's dataset folder: what `labelgan toyworld` and
//! `labelgan factory` write and what `labelgan evaluate` and the labelers read.
//!
//! ```text
//! DIR/images/000000.png     RGB
//! DIR/masks/000000.png      8-bit class ids            (segmentation)
//! DIR/depth/000000.png      16-bit, round(65535 d)     (depth in [0, 1])
//! DIR/keypoints.json        {"images": [{"file", "keypoints": [[x, y], ...]}, ...], ...}
//! DIR/classes.json          {"classes": [names], "images": [{"file", "class"}, ...]}  (image classes)
//! DIR/previews/000000.png   image with the mask blended in and keypoints marked  (factory)
//! DIR/manifest.jsonl        one JSON object per image, in order                   (factory)
//! DIR/contact_sheet.png     a sheet of the first images
//! ```
//!
//! - [`ImageLabels`]: the labels of one image (mask, keypoints, depth), the one type
//!   every crate passes around; [`Targets`] holds them column by column for a set.
//! - [`palette`]: the display colours of classes, masks as pictures, previews.
//! - [`files`]: one labelled image's files, the keypoint file, depth encoding.
//! - [`writer`]: [`DatasetWriter`], which writes a folder image by image so that a run
//!   killed at any moment resumes to the same bytes; [`Sample`] and [`ManifestEntry`].
//! - [`reader`]: [`load_dataset`] into a [`LabelledSet`].

pub mod class_labels;
pub mod files;
pub mod labels;
pub mod palette;
pub mod reader;
pub mod writer;

pub use class_labels::{CLASS_LABELS_FILE, ClassLabel, ClassLabels};
pub use files::{depth_from_u16, depth_to_u16, write_labelled_image};
pub use labels::{ImageLabels, Targets, segmentation_classes};
pub use palette::{PALETTE, colorize_mask, preview};
pub use reader::{LabelledSet, load_dataset, resolution_of};
pub use writer::{DatasetWriter, ManifestEntry, Sample, folder_contents};
