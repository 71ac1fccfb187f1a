//! The device that training runs on: the CPU or a CUDA GPU.
//!
//! libtorch keeps its CUDA code in `libtorch_cuda.so`. Nothing in a Rust binary calls
//! into that library directly, so the linker's `--as-needed` drops it, and without it
//! libtorch reports no GPU even where there is one. [`select`] therefore loads it
//! (`dlopen` with `RTLD_NOW | RTLD_GLOBAL`, once per process) before asking libtorch
//! about CUDA, and only when a GPU may be used: CPU runs never touch it.

use std::ffi::{CStr, CString};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Which device to train on, as given on a command line or in a configuration file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeviceChoice {
    /// The CPU, always.
    Cpu,
    /// The first CUDA GPU; an error if there is none.
    Cuda,
    /// The first CUDA GPU if there is one, else the CPU.
    #[default]
    Auto,
}

impl DeviceChoice {
    /// The spelling that [`FromStr`] accepts and [`fmt::Display`] writes.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Auto => "auto",
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device name other than `cpu`, `cuda` or `auto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}' (expected cpu, cuda or auto)")]
pub struct ParseDeviceChoiceError(pub String);

impl FromStr for DeviceChoice {
    type Err = ParseDeviceChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            "auto" => Ok(DeviceChoice::Auto),
            _ => Err(ParseDeviceChoiceError(s.to_owned())),
        }
    }
}

/// Why CUDA was requested but cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// `libtorch_cuda.so` or one of the CUDA libraries that it needs did not load.
    #[error(
        "CUDA was requested, but libtorch's CUDA library did not load: {0}. \
         scripts/setup-libtorch installs only what the CPU needs; \
         `scripts/setup-libtorch --cuda` adds cuBLAS, cuDNN, NCCL and the other CUDA libraries"
    )]
    CudaLibrary(String),
    /// libtorch's CUDA code loaded but sees no GPU.
    #[error("CUDA was requested, but libtorch sees no GPU: {0}")]
    NoGpu(String),
}

/// The device for `choice`: [`tch::Device::Cpu`], or [`tch::Device::Cuda`]`(0)` when
/// CUDA is requested (`Cuda`) or allowed (`Auto`) and a GPU is usable. `Auto` falls back
/// to the CPU whatever is missing; `Cuda` fails with a [`DeviceError`] that says what.
pub fn select(choice: DeviceChoice) -> Result<tch::Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Cuda => cuda().map(|()| tch::Device::Cuda(0)),
        DeviceChoice::Auto => Ok(match cuda() {
            Ok(()) => tch::Device::Cuda(0),
            Err(_) => tch::Device::Cpu,
        }),
    }
}

/// Sets the number of threads that libtorch uses for CPU operations within one op
/// (intra-op parallelism). 0 leaves libtorch's default, one per core.
pub fn set_cpu_threads(n: usize) {
    if n > 0 {
        tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    }
}

/// Ok when libtorch can run on a GPU.
fn cuda() -> Result<(), DeviceError> {
    load_torch_cuda()
        .clone()
        .map_err(DeviceError::CudaLibrary)?;
    if tch::Cuda::is_available() {
        return Ok(());
    }
    let why = match dlopen_global(c"libcuda.so.1") {
        Err(e) => format!("no NVIDIA driver is installed ({e})"),
        Ok(()) => "the NVIDIA driver is there but reports no usable GPU \
                   (is one attached? nvidia-smi; CUDA_VISIBLE_DEVICES)"
            .to_owned(),
    };
    Err(DeviceError::NoGpu(why))
}

/// Loads `libtorch_cuda.so` once per process; later calls return the first outcome.
fn load_torch_cuda() -> &'static Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED.get_or_init(|| {
        // By name first: the rpath that build.rs puts into the binary (or
        // LD_LIBRARY_PATH) finds it. Then by the path that this crate was built against,
        // for binaries of other packages, which carry no such rpath.
        let by_name = dlopen_global(c"libtorch_cuda.so");
        let Err(first) = by_name else {
            return Ok(());
        };
        match option_env!("IPC_TRAIN_LIBTORCH_LIB") {
            Some(dir) => {
                let path = CString::new(format!("{dir}/libtorch_cuda.so"))
                    .map_err(|_| format!("{first}; and {dir} holds a NUL byte"))?;
                dlopen_global(&path).map_err(|second| {
                    if second == first {
                        first
                    } else {
                        format!("{first}; {second}")
                    }
                })
            }
            None => Err(first),
        }
    })
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`, keeping the library loaded for the rest of
/// the process; on failure, `dlerror()`'s message.
fn dlopen_global(name: &CStr) -> Result<(), String> {
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call. The
    // libraries loaded here (libtorch_cuda.so, the NVIDIA driver) are shared libraries
    // built to be loaded into a running process; their initialisers only register
    // libtorch's CUDA hooks or set up the driver. The handle is never closed, so no code
    // or data of theirs is unmapped while in use. `dlerror()` returns a NUL-terminated
    // string owned by libc that stays valid until the next dl* call on this thread, and
    // it is copied out at once, before any other dl* call.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !handle.is_null() {
            return Ok(());
        }
        let err = libc::dlerror();
        Err(if err.is_null() {
            format!("dlopen({}) failed", name.to_string_lossy())
        } else {
            CStr::from_ptr(err).to_string_lossy().into_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_parses_and_prints() {
        for choice in [DeviceChoice::Cpu, DeviceChoice::Cuda, DeviceChoice::Auto] {
            assert_eq!(choice.to_string().parse::<DeviceChoice>(), Ok(choice));
        }
        assert_eq!(" CUDA ".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        assert_eq!(DeviceChoice::default(), DeviceChoice::Auto);
        let err = "gpu".parse::<DeviceChoice>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown device 'gpu' (expected cpu, cuda or auto)"
        );
    }

    #[test]
    fn cpu_is_always_there() {
        assert_eq!(select(DeviceChoice::Cpu), Ok(tch::Device::Cpu));
    }

    #[test]
    fn auto_agrees_with_cuda() {
        // Holds on machines with and without a GPU.
        match select(DeviceChoice::Cuda) {
            Ok(device) => {
                assert_eq!(device, tch::Device::Cuda(0));
                assert_eq!(select(DeviceChoice::Auto), Ok(device));
                let x = tch::Tensor::ones([2, 2], (tch::Kind::Float, device));
                assert_eq!(x.sum(tch::Kind::Float).double_value(&[]), 4.0);
            }
            Err(e) => {
                assert!(e.to_string().starts_with("CUDA was requested"), "{e}");
                assert_eq!(select(DeviceChoice::Auto), Ok(tch::Device::Cpu));
            }
        }
        // The outcome is cached: asking again gives the same answer.
        assert_eq!(
            select(DeviceChoice::Cuda).is_ok(),
            select(DeviceChoice::Cuda).is_ok()
        );
    }

    #[test]
    fn cpu_threads() {
        set_cpu_threads(0);
        set_cpu_threads(1);
        assert_eq!(tch::get_num_threads(), 1);
    }
}
