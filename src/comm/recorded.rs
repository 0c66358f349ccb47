//! A process group that records each collective in the rank's flight recorder before passing it
//! on, whatever the backend: the sequence numbers let the launcher tell a rank waiting in a
//! collective from the rank it waits for.
use std::sync::Arc;

use super::{ProcessGroup, ReduceOp};
use crate::error::Result;
use crate::flight::{Collective, CollectiveOp, Track};

pub struct Recorded {
    inner: Box<dyn ProcessGroup>,
    track: Arc<Track>,
}

impl Recorded {
    pub fn new(inner: Box<dyn ProcessGroup>, track: Arc<Track>) -> Self {
        Recorded { inner, track }
    }

    fn run<T>(
        &mut self,
        op: CollectiveOp,
        dtype: &'static str,
        elems: usize,
        f: impl FnOnce(&mut dyn ProcessGroup) -> Result<T>,
    ) -> Result<T> {
        self.run_collective(Collective { op, dtype, elems: elems as u64, on_device: false }, f)
    }

    fn run_collective<T>(
        &mut self,
        collective: Collective,
        f: impl FnOnce(&mut dyn ProcessGroup) -> Result<T>,
    ) -> Result<T> {
        self.track.begin(collective);
        let result = f(self.inner.as_mut());
        self.track.end();
        result
    }
}

impl ProcessGroup for Recorded {
    fn rank(&self) -> u32 {
        self.inner.rank()
    }
    fn world_size(&self) -> u32 {
        self.inner.world_size()
    }
    fn all_reduce_f32(&mut self, data: &mut [f32], op: ReduceOp) -> Result<()> {
        self.run(CollectiveOp::AllReduce, "f32", data.len(), |pg| pg.all_reduce_f32(data, op))
    }
    fn all_reduce_f64(&mut self, data: &mut [f64], op: ReduceOp) -> Result<()> {
        self.run(CollectiveOp::AllReduce, "f64", data.len(), |pg| pg.all_reduce_f64(data, op))
    }
    fn broadcast_f32(&mut self, data: &mut [f32], src: u32) -> Result<()> {
        self.run(CollectiveOp::Broadcast, "f32", data.len(), |pg| pg.broadcast_f32(data, src))
    }
    fn broadcast_f64(&mut self, data: &mut [f64], src: u32) -> Result<()> {
        self.run(CollectiveOp::Broadcast, "f64", data.len(), |pg| pg.broadcast_f64(data, src))
    }
    fn all_gather_f32(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.run(CollectiveOp::AllGather, "f32", input.len(), |pg| pg.all_gather_f32(input, output))
    }
    fn all_gather_f64(&mut self, input: &[f64], output: &mut [f64]) -> Result<()> {
        self.run(CollectiveOp::AllGather, "f64", input.len(), |pg| pg.all_gather_f64(input, output))
    }
    fn barrier(&mut self) -> Result<()> {
        self.run(CollectiveOp::Barrier, "", 0, |pg| pg.barrier())
    }
    unsafe fn all_reduce_device_f32(&mut self, device_ptr: u64, len: usize, op: ReduceOp) -> Result<bool> {
        let collective =
            Collective { op: CollectiveOp::AllReduce, dtype: "f32", elems: len as u64, on_device: true };
        // SAFETY: the caller's guarantee for `device_ptr` and `len` is passed on unchanged.
        self.run_collective(collective, |pg| unsafe { pg.all_reduce_device_f32(device_ptr, len, op) })
    }
    fn abort_handle(&self) -> Option<Box<dyn FnOnce() + Send>> {
        self.inner.abort_handle()
    }
}
