//! Which device tensors live on, by name: `cpu`, `cuda` or `metal`, opened with a
//! one-line error that says what is missing (the feature in this build, or the device
//! on this machine). The CLI's `--device`, the examples and the device-aware tests all
//! open devices here.

use std::str::FromStr;

use candle_core::Device;

use crate::{Error, Result};

/// A device by kind; the GPU kinds open their first device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The CPU (every build).
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with `--features cuda`).
    Cuda,
    /// The first Metal GPU (a build with `--features metal`).
    Metal,
}

impl DeviceKind {
    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }

    /// Whether this build was compiled with the kind's backend.
    pub fn compiled(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Metal => cfg!(feature = "metal"),
        }
    }

    /// Opens the device.
    pub fn open(self) -> Result<Device> {
        let opened = match self {
            Self::Cpu => return Ok(Device::Cpu),
            Self::Cuda => Device::new_cuda(0),
            Self::Metal => Device::new_metal(0),
        };
        opened.map_err(|e| {
            let name = self.name();
            // The first line: candle appends a backtrace when RUST_BACKTRACE is set.
            let e = e.to_string().lines().next().unwrap_or_default().trim().to_string();
            Error::invalid(if self.compiled() {
                format!("cannot open the {name} device: this build has {name}, this machine has no usable device ({e})")
            } else {
                format!("cannot open the {name} device ({e}); build labelgan with `--features {name}` on a machine that has one")
            })
        })
    }

    /// The device named by the environment variable `var` (the CPU when unset): how the
    /// parity tests are pointed at a GPU (`LABELGAN_TEST_DEVICE=cuda`).
    pub fn from_env(var: &str) -> Result<Self> {
        match std::env::var(var) {
            Ok(v) => v.parse().map_err(|e: Error| Error::invalid(format!("{var}: {e}"))),
            Err(_) => Ok(Self::Cpu),
        }
    }
}

impl FromStr for DeviceKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            other => Err(Error::invalid(format!(
                "unknown device `{other}`: expected cpu, cuda or metal"
            ))),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The device the device-aware tests run on: `LABELGAN_TEST_DEVICE` (cpu when unset).
pub fn test_device() -> Result<Device> {
    DeviceKind::from_env("LABELGAN_TEST_DEVICE")?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_named() {
        for k in [DeviceKind::Cpu, DeviceKind::Cuda, DeviceKind::Metal] {
            assert_eq!(k.name().parse::<DeviceKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!(" CUDA ".parse::<DeviceKind>().unwrap(), DeviceKind::Cuda);
        let e = "tpu".parse::<DeviceKind>().unwrap_err().to_string();
        assert!(e.contains("`tpu`") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn a_missing_backend_is_one_line_that_says_how_to_get_it() {
        assert!(DeviceKind::Cpu.open().unwrap().is_cpu());
        if !DeviceKind::Metal.compiled() {
            let e = DeviceKind::Metal.open().unwrap_err().to_string();
            assert!(e.contains("--features metal") && !e.contains('\n'), "{e}");
        }
        if !DeviceKind::Cuda.compiled() {
            let e = DeviceKind::Cuda.open().unwrap_err().to_string();
            assert!(e.contains("--features cuda") && !e.contains('\n'), "{e}");
        }
    }
}
