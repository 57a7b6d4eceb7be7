//! `--device cpu|cuda|metal`.

use candle_core::Device;
use clap::ValueEnum;
use labelgan_core::{DeviceKind, Result};

/// Where tensors live.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    /// The CPU (default; every build).
    Cpu,
    /// The first CUDA GPU (build with `--features cuda`).
    Cuda,
    /// The first Metal GPU (build with `--features metal`).
    Metal,
}

impl DeviceArg {
    /// Opens the device (a one-line error names what is missing).
    pub fn open(self) -> Result<Device> {
        DeviceKind::from(self).open()
    }
}

impl From<DeviceArg> for DeviceKind {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => DeviceKind::Cpu,
            DeviceArg::Cuda => DeviceKind::Cuda,
            DeviceArg::Metal => DeviceKind::Metal,
        }
    }
}
