//! `--device cpu|cuda|metal`.

use candle_core::Device;
use clap::ValueEnum;
use labelgan_core::{Error, Result};

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
    /// Opens the device, explaining how to get it when this build lacks it.
    pub fn open(self) -> Result<Device> {
        let hint = |name: &str, e: candle_core::Error| {
            Error::invalid(format!(
                "cannot open the {name} device ({e}); build labelgan with `--features {name}` on a machine that has one"
            ))
        };
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda => Device::new_cuda(0).map_err(|e| hint("cuda", e)),
            DeviceArg::Metal => Device::new_metal(0).map_err(|e| hint("metal", e)),
        }
    }
}
