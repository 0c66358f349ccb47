//! The `nccl` backend: NCCL through cudarc, loaded dynamically so the trainer builds and runs on
//! machines without CUDA. The unique id travels from rank 0 to the others through the rendezvous
//! store. Collectives run on the legacy default stream, the stream libtorch's kernels use, so an
//! all-reduce is ordered after the kernels that produced its input without extra synchronisation
//! (BUILD.md; to be confirmed on a GPU, issue 10).
//!
//! It implements the host-buffer `ProcessGroup` trait by staging through a device tensor (for
//! statistics and checks), and reduces gradient buckets where they are, in GPU memory
//! (`all_reduce_device_f32`), with no host round trip.
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp as NcclOp};
use gan_core::comm::{ProcessGroup, ReduceOp};
use gan_core::error::{Error, Result};
use gan_core::rendezvous::StoreClient;
use tch::{Device, Kind, Tensor};

pub struct NcclGroup {
    comm: Comm,
    stream: Arc<CudaStream>,
    rank: u32,
    world: u32,
    device: Device,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls are not concurrent;
// every collective takes `&mut self`, so at most one thread uses it at a time.
unsafe impl Send for NcclGroup {}

/// Checks that the CUDA driver and NCCL can be loaded, turning cudarc's panic on a missing
/// library into an error that says what to do.
pub fn probe_libraries() -> Result<()> {
    // SAFETY: these only try to open the shared libraries; no symbol is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::Env(
            "dist.backend nccl needs the CUDA driver (libcuda.so), which is not on this machine; use dist.backend: cpu"
                .into(),
        ));
    }
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Err(Error::Env(
            "dist.backend nccl: libnccl.so was not found on the loader path. PyTorch's wheel ships it as \
             libnccl.so.2 (site-packages/nvidia/nccl/lib); gan-launch links it for its ranks when it finds it \
             on LD_LIBRARY_PATH. Otherwise add a libnccl.so symlink to a directory on LD_LIBRARY_PATH, or use \
             dist.backend: cpu"
                .into(),
        ));
    }
    Ok(())
}

impl NcclGroup {
    /// Joins the NCCL communicator of the job on CUDA device `local_rank`.
    pub fn connect(
        store: &mut StoreClient,
        rank: u32,
        world: u32,
        local_rank: u32,
        timeout: Duration,
    ) -> Result<Self> {
        probe_libraries()?;
        let fail = |what: &str, e: String| Error::Collective(format!("rank {rank}: nccl {what}: {e}"));
        let ctx =
            CudaContext::new(local_rank as usize).map_err(|e| fail("CUDA context", format!("{e:?}")))?;
        let stream = ctx.default_stream();
        let id = if rank == 0 {
            let id = Id::new().map_err(|e| fail("unique id", format!("{e:?}")))?;
            let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
            store.set("nccl/id", &bytes)?;
            id
        } else {
            let bytes = store.get("nccl/id", timeout, "the NCCL unique id from rank 0")?;
            let mut internal = [0 as std::ffi::c_char; 128];
            if bytes.len() != internal.len() {
                return Err(fail("unique id", format!("{} bytes instead of 128", bytes.len())));
            }
            internal.iter_mut().zip(&bytes).for_each(|(c, &b)| *c = b as std::ffi::c_char);
            Id::uninit(internal)
        };
        let comm = Comm::from_rank(Arc::clone(&stream), rank as usize, world as usize, id)
            .map_err(|e| fail("communicator", format!("{e:?}")))?;
        Ok(NcclGroup { comm, stream, rank, world, device: Device::Cuda(local_rank as usize) })
    }

    /// Runs `op` on a device copy of `data` and copies the result back.
    fn staged<T: tch::kind::Element + Copy>(
        &mut self,
        data: &mut [T],
        op: impl FnOnce(&Comm, &Arc<CudaStream>, u64, usize) -> std::result::Result<(), String>,
    ) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let tensor = Tensor::from_slice(data).to_device(self.device).contiguous();
        op(&self.comm, &self.stream, tensor.data_ptr() as u64, data.len())
            .map_err(|e| Error::Collective(format!("rank {}: nccl: {e}", self.rank)))?;
        // Copying back to the host waits for the collective (same stream).
        tensor.to_device(Device::Cpu).copy_data(data, data.len());
        Ok(())
    }
}

fn nccl_op(op: ReduceOp) -> NcclOp {
    match op {
        ReduceOp::Sum => NcclOp::Sum,
        ReduceOp::Avg => NcclOp::Avg,
        ReduceOp::Max => NcclOp::Max,
    }
}

macro_rules! in_place {
    ($t:ty, $comm:expr, $stream:expr, $ptr:expr, $len:expr, |$slice:ident| $call:expr) => {{
        // SAFETY: `ptr` is the start of a live, contiguous CUDA tensor of `len` elements of this
        // type; the slice is leaked afterwards so cudarc never frees libtorch's memory.
        let mut $slice = unsafe { $stream.upgrade_device_ptr::<$t>($ptr, $len) };
        let result = $call.map(|_| ()).map_err(|e| format!("{e:?}"));
        $slice.leak();
        let _ = $comm;
        result
    }};
}

impl ProcessGroup for NcclGroup {
    fn rank(&self) -> u32 {
        self.rank
    }
    fn world_size(&self) -> u32 {
        self.world
    }
    fn all_reduce_f32(&mut self, data: &mut [f32], op: ReduceOp) -> Result<()> {
        self.staged(data, |comm, stream, ptr, len| {
            in_place!(f32, comm, stream, ptr, len, |s| comm.all_reduce_in_place(&mut s, &nccl_op(op)))
        })
    }
    fn all_reduce_f64(&mut self, data: &mut [f64], op: ReduceOp) -> Result<()> {
        self.staged(data, |comm, stream, ptr, len| {
            in_place!(f64, comm, stream, ptr, len, |s| comm.all_reduce_in_place(&mut s, &nccl_op(op)))
        })
    }
    fn broadcast_f32(&mut self, data: &mut [f32], src: u32) -> Result<()> {
        self.staged(data, |comm, stream, ptr, len| {
            in_place!(f32, comm, stream, ptr, len, |s| comm.broadcast_in_place(&mut s, src as i32))
        })
    }
    fn broadcast_f64(&mut self, data: &mut [f64], src: u32) -> Result<()> {
        self.staged(data, |comm, stream, ptr, len| {
            in_place!(f64, comm, stream, ptr, len, |s| comm.broadcast_in_place(&mut s, src as i32))
        })
    }
    fn all_gather_f32(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.all_gather(input, output)
    }
    fn all_gather_f64(&mut self, input: &[f64], output: &mut [f64]) -> Result<()> {
        self.all_gather(input, output)
    }
    fn barrier(&mut self) -> Result<()> {
        self.all_reduce_f32(&mut [0.0], ReduceOp::Sum)
    }
    unsafe fn all_reduce_device_f32(&mut self, device_ptr: u64, len: usize, op: ReduceOp) -> Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        let (comm, stream) = (&self.comm, &self.stream);
        in_place!(f32, comm, stream, device_ptr, len, |s| comm.all_reduce_in_place(&mut s, &nccl_op(op)))
            .map_err(|e| Error::Collective(format!("rank {}: nccl: {e}", self.rank)))?;
        Ok(true)
    }
}

impl NcclGroup {
    fn all_gather<T: tch::kind::Element + Copy>(&mut self, input: &[T], output: &mut [T]) -> Result<()> {
        let n = input.len();
        if output.len() != n * self.world as usize {
            return Err(Error::Collective(format!(
                "all_gather: output holds {} elements, expected {n} x {}",
                output.len(),
                self.world
            )));
        }
        // All-gather as an all-reduce of zero-padded slots: each rank fills its own slot.
        let mut slots = vec![T::ZERO; output.len()];
        slots[self.rank as usize * n..(self.rank as usize + 1) * n].copy_from_slice(input);
        let kind = T::KIND;
        let tensor = Tensor::from_slice(&slots).to_device(self.device);
        let (ptr, len) = (tensor.data_ptr() as u64, slots.len());
        let result = match kind {
            Kind::Float => in_place!(f32, &self.comm, self.stream, ptr, len, |s| self
                .comm
                .all_reduce_in_place(&mut s, &NcclOp::Sum)),
            _ => in_place!(f64, &self.comm, self.stream, ptr, len, |s| self
                .comm
                .all_reduce_in_place(&mut s, &NcclOp::Sum)),
        };
        result.map_err(|e| Error::Collective(format!("rank {}: nccl all_gather: {e}", self.rank)))?;
        tensor.to_device(Device::Cpu).copy_data(output, output.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On machines without CUDA (CI), choosing NCCL is a clear error, not cudarc's panic.
    #[test]
    fn missing_cuda_or_nccl_is_a_clear_error() {
        if unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nccl::sys::is_culib_present() } {
            return; // a GPU machine with NCCL linked: nothing to check here
        }
        let err = probe_libraries().unwrap_err().to_string();
        assert!(
            err.contains("dist.backend") && (err.contains("libcuda.so") || err.contains("libnccl.so")),
            "{err}"
        );
    }
}
