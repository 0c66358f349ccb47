//! Collectives between ranks. Every rank makes the same calls in the same order. This module owns
//! the `ProcessGroup` trait the trainer talks to; backends plug in behind it: `ring` (CPU, TCP)
//! and a world of one rank, whose collectives are identities; `Recorded` wraps any of them to log
//! each collective in the rank's flight recorder.
mod connect;
mod recorded;
pub mod ring;

#[cfg(test)]
mod tests;

use crate::error::Result;

pub use connect::{connect_store, join_ring, resolve_backend};
pub use recorded::Recorded;
pub use ring::RingGroup;

/// Reduction applied by `all_reduce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Avg,
    Max,
}

/// Collectives over host buffers.
pub trait ProcessGroup: Send {
    fn rank(&self) -> u32;
    fn world_size(&self) -> u32;
    /// Reduces `data` element-wise over all ranks; every rank ends with the result.
    fn all_reduce_f32(&mut self, data: &mut [f32], op: ReduceOp) -> Result<()>;
    fn all_reduce_f64(&mut self, data: &mut [f64], op: ReduceOp) -> Result<()>;
    /// Copies `data` of rank `src` to every rank.
    fn broadcast_f32(&mut self, data: &mut [f32], src: u32) -> Result<()>;
    fn broadcast_f64(&mut self, data: &mut [f64], src: u32) -> Result<()>;
    /// Concatenates every rank's `input` (same length everywhere) into `output`, in rank order.
    fn all_gather_f32(&mut self, input: &[f32], output: &mut [f32]) -> Result<()>;
    fn all_gather_f64(&mut self, input: &[f64], output: &mut [f64]) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&mut self) -> Result<()>;
    /// Reduces `len` f32 elements in GPU memory at `device_ptr` in place, ordered after the work
    /// that produced them (the default stream); false when this backend has no device path and
    /// the caller should stage through host memory instead.
    ///
    /// # Safety
    /// `device_ptr` must be the start of `len` live, contiguous f32 elements on this rank's GPU
    /// that nothing else writes until the call returns.
    unsafe fn all_reduce_device_f32(&mut self, _device_ptr: u64, _len: usize, _op: ReduceOp) -> Result<bool> {
        Ok(false)
    }
    /// Something another thread can call to make this group's collectives fail at once (one
    /// blocked in a collective included), so work using it can be abandoned; None when the
    /// group's collectives never block.
    fn abort_handle(&self) -> Option<Box<dyn FnOnce() + Send>> {
        None
    }
}

/// Copies rank `src`'s bytes (any length) to every rank: the length first, then the bytes, one
/// per float (exact). For small messages such as a path; not for tensors.
pub fn broadcast_bytes(pg: &mut dyn ProcessGroup, bytes: &mut Vec<u8>, src: u32) -> Result<()> {
    let mut len = [bytes.len() as f64];
    pg.broadcast_f64(&mut len, src)?;
    let mut buf: Vec<f64> = bytes.iter().map(|&b| f64::from(b)).collect();
    buf.resize(len[0] as usize, 0.0);
    pg.broadcast_f64(&mut buf, src)?;
    *bytes = buf.into_iter().map(|v| v as u8).collect();
    Ok(())
}

/// The group of a run with one rank.
#[derive(Debug, Default)]
pub struct SingleRank;

impl ProcessGroup for SingleRank {
    fn rank(&self) -> u32 {
        0
    }
    fn world_size(&self) -> u32 {
        1
    }
    fn all_reduce_f32(&mut self, _data: &mut [f32], _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&mut self, _data: &mut [f64], _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&mut self, _data: &mut [f32], _src: u32) -> Result<()> {
        Ok(())
    }
    fn broadcast_f64(&mut self, _data: &mut [f64], _src: u32) -> Result<()> {
        Ok(())
    }
    fn all_gather_f32(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn all_gather_f64(&mut self, input: &[f64], output: &mut [f64]) -> Result<()> {
        output.copy_from_slice(input);
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
}
