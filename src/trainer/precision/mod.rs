//! Forward-pass precision: bf16 autocast on CUDA through a small C++ shim (tch's own switch only
//! knows fp16), as a scope guard that restores the previous state. Weights, gradients and Adam
//! stay fp32; under autocast libtorch runs matmuls and convolutions in bf16 and keeps
//! reductions, norms and losses in fp32.
use tch::Device;

use gan_core::config::Precision;
use gan_core::error::{Error, Result};

extern "C" {
    fn gan_autocast_set_bf16(cuda: i32, enabled: i32) -> i32;
    fn gan_autocast_nest(delta: i32) -> i32;
    fn gan_set_allow_tf32(cudnn: i32, cublas: i32) -> i32;
}

/// What a run's forward passes use, decided once from the config and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardPrecision {
    Fp32,
    /// bf16 autocast for this device kind.
    Bf16 {
        cuda: bool,
    },
}

impl ForwardPrecision {
    /// bf16 runs on CUDA only; on CPU it warns and stays fp32 (CPU bf16 kernels are slower than
    /// fp32 on most CPUs, and the option exists for GPU memory and speed).
    pub fn for_run(precision: Precision, device: Device) -> Self {
        match (precision, device) {
            (Precision::Fp32, _) => ForwardPrecision::Fp32,
            (Precision::Bf16, Device::Cuda(_)) => ForwardPrecision::Bf16 { cuda: true },
            (Precision::Bf16, _) => {
                tracing::warn!("train.precision bf16 applies to CUDA devices; this CPU run computes in fp32");
                ForwardPrecision::Fp32
            }
        }
    }

    /// Runs `f` with this precision.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> Result<T> {
        match self {
            ForwardPrecision::Fp32 => Ok(f()),
            ForwardPrecision::Bf16 { cuda } => {
                let _guard = Bf16Autocast::enter(cuda)?;
                Ok(f())
            }
        }
    }
}

/// Whether CUDA convolutions (cuDNN) and matmuls (cuBLAS) may use TF32 (PyTorch's defaults:
/// convolutions yes, matmuls no). Comparing a GPU step with a CPU step in fp32 needs both off.
pub fn set_allow_tf32(cudnn: bool, cublas: bool) -> Result<()> {
    // SAFETY: the shim only sets two flags of libtorch's global context and catches exceptions.
    if unsafe { gan_set_allow_tf32(i32::from(cudnn), i32::from(cublas)) } < 0 {
        return Err(Error::Tensor("libtorch refused to set the TF32 flags".into()));
    }
    Ok(())
}

/// bf16 autocast for a device kind while alive.
pub struct Bf16Autocast {
    cuda: bool,
    was_enabled: bool,
}

impl Bf16Autocast {
    pub fn enter(cuda: bool) -> Result<Self> {
        // SAFETY: the shim only calls libtorch's thread-local autocast state and catches its exceptions.
        let was = unsafe { gan_autocast_set_bf16(i32::from(cuda), 1) };
        if was < 0 || unsafe { gan_autocast_nest(1) } < 0 {
            return Err(Error::Tensor("libtorch refused to enable bf16 autocast".into()));
        }
        Ok(Bf16Autocast { cuda, was_enabled: was == 1 })
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; failures here cannot be reported from drop, and leave autocast as it was.
        unsafe {
            gan_autocast_nest(-1);
            gan_autocast_set_bf16(i32::from(self.cuda), i32::from(self.was_enabled));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    /// The shim switches libtorch's autocast for real: exercised on the CPU device type (the
    /// same call as for CUDA), a matmul inside the scope computes in bf16 and one outside in fp32.
    #[test]
    fn the_guard_switches_autocast_to_bf16_and_back() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        {
            let _guard = Bf16Autocast::enter(false).unwrap();
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16, "inside: bf16");
            // Reductions stay fp32 under autocast (its fp32 list).
            assert_eq!(a.matmul(&b).softmax(1, Kind::Float).kind(), Kind::Float);
        }
        assert_eq!(a.matmul(&b).kind(), Kind::Float, "outside: fp32 again");
    }

    #[test]
    fn bf16_on_cpu_falls_back_to_fp32() {
        assert_eq!(ForwardPrecision::for_run(Precision::Bf16, Device::Cpu), ForwardPrecision::Fp32);
        assert_eq!(
            ForwardPrecision::for_run(Precision::Bf16, Device::Cuda(0)),
            ForwardPrecision::Bf16 { cuda: true }
        );
    }
}
