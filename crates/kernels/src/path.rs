//! Which body a custom kernel runs: its hand-written CPU body, or the generic body of
//! candle ops that every other device (cuda, metal) takes.
//!
//! `LABELGAN_KERNELS=generic` (read once, at the first call) sends the CPU down the
//! generic bodies too, so that the code a GPU runs is exercised and tested on any
//! machine: CI runs the numeric tests both ways. `native` (or unset) is the default.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};

/// The two bodies a custom kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelPath {
    /// The hand-written CPU body where one exists (the default).
    Native,
    /// The candle-op body on every device, the CPU included.
    Generic,
}

impl KernelPath {
    /// Reads a `LABELGAN_KERNELS` value: `native` or `generic` (any case).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "native" | "" => Some(Self::Native),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }
}

/// The path this process takes, from `LABELGAN_KERNELS` (an unknown value is named on
/// stderr once and the native path is kept).
pub fn kernel_path() -> KernelPath {
    static PATH: OnceLock<KernelPath> = OnceLock::new();
    *PATH.get_or_init(|| match std::env::var("LABELGAN_KERNELS") {
        Ok(v) => KernelPath::parse(&v).unwrap_or_else(|| {
            eprintln!("warning: LABELGAN_KERNELS={v:?} is neither `native` nor `generic`; using native");
            KernelPath::Native
        }),
        Err(_) => KernelPath::Native,
    })
}

/// Whether a kernel with a hand-written CPU body should run it for data on `device`:
/// on the CPU unless the generic path was asked for.
pub fn native_on(device: &Device) -> bool {
    device.is_cpu() && kernel_path() == KernelPath::Native
}

/// Whether an inference-only CPU body (one with no backward) may run on `tensors`: the
/// native path on the CPU, every tensor f32, and none of them a variable or computed from
/// one, so no gradient can be asked of it.
pub fn native_inference(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| native_on(t.device()) && t.dtype() == DType::F32 && !t.track_op())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_typos_do_not() {
        assert_eq!(KernelPath::parse("generic"), Some(KernelPath::Generic));
        assert_eq!(KernelPath::parse(" GENERIC "), Some(KernelPath::Generic));
        assert_eq!(KernelPath::parse("native"), Some(KernelPath::Native));
        assert_eq!(KernelPath::parse(""), Some(KernelPath::Native));
        assert_eq!(KernelPath::parse("generik"), None);
    }

    #[test]
    fn the_path_follows_the_environment() {
        let expected = match std::env::var("LABELGAN_KERNELS") {
            Ok(v) => KernelPath::parse(&v).unwrap_or(KernelPath::Native),
            Err(_) => KernelPath::Native,
        };
        assert_eq!(kernel_path(), expected);
        assert_eq!(native_on(&Device::Cpu), expected == KernelPath::Native);
    }
}
