//! Background loading: a thread reads this rank's batches ahead of training into a bounded
//! queue, so a step finds its batch ready. The order is exactly the sampler's, the flips come from
//! the rank's own stream, and the cursor counts batches handed to training (not the ones read
//! ahead), so a checkpoint taken between steps resumes exactly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::sampler::Sampler;
use super::{Batch, ImageSource};
use crate::rng::SplitMix64;

/// What a rank's loader needs to know.
#[derive(Clone, Debug)]
pub struct LoaderSpec {
    /// Images per step over all ranks.
    pub global_batch: u64,
    pub rank: u32,
    pub world: u32,
    pub xflip: bool,
    /// Seed of this rank's flip stream.
    pub flip_seed: u64,
    /// Batches read ahead.
    pub prefetch: usize,
}

pub struct Loader {
    queue: Option<Receiver<Batch>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Stream position of the next batch handed out.
    consumed: u64,
    global_batch: u64,
    /// Time spent waiting for the producer since the last `take_wait`.
    waited: Duration,
}

impl Loader {
    /// Starts reading from `sampler`'s position.
    pub fn start(source: Arc<dyn ImageSource>, sampler: Sampler, spec: LoaderSpec) -> Self {
        let (tx, rx) = sync_channel(spec.prefetch.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let consumed = sampler.consumed();
        let thread_stop = Arc::clone(&stop);
        let global_batch = spec.global_batch;
        let thread = std::thread::Builder::new()
            .name(format!("loader-{}", spec.rank))
            .spawn(move || produce(source.as_ref(), sampler, &spec, &thread_stop, &tx))
            .expect("spawning the loader thread");
        Loader { queue: Some(rx), stop, thread: Some(thread), consumed, global_batch, waited: Duration::ZERO }
    }

    /// The next batch, in order.
    pub fn next_batch(&mut self) -> Batch {
        let started = Instant::now();
        let batch = self
            .queue
            .as_ref()
            .expect("open until drop")
            .recv()
            .expect("the loader thread runs until dropped");
        self.waited += started.elapsed();
        self.consumed += self.global_batch;
        batch
    }

    /// Images of the stream handed to training so far (all ranks together): the resume cursor.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Time spent waiting for data since the last call.
    pub fn take_wait(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.queue.take()); // unblocks a producer waiting on a full queue
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn produce(
    source: &dyn ImageSource,
    mut sampler: Sampler,
    spec: &LoaderSpec,
    stop: &AtomicBool,
    tx: &std::sync::mpsc::SyncSender<Batch>,
) {
    let mut flip_rng = SplitMix64::new(spec.flip_seed);
    // The flip stream restarts with the sampler position, so a resumed rank flips as it would have.
    for _ in 0..sampler.consumed() / spec.global_batch.max(1) * (spec.global_batch / u64::from(spec.world)) {
        flip_rng.next_u64();
    }
    while !stop.load(Ordering::SeqCst) {
        let indices = sampler.take_step(spec.global_batch, spec.rank, spec.world);
        let flips: Option<Vec<bool>> =
            spec.xflip.then(|| indices.iter().map(|_| flip_rng.next_u64() & 1 == 1).collect());
        let batch = Batch::read(source, &indices, flips.as_deref());
        if tx.send(batch).is_err() {
            return; // the trainer is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generated::GeneratedShapes;

    fn source() -> Arc<dyn ImageSource> {
        Arc::new(GeneratedShapes { seed: 2, len: 40, resolution: 8, channels: 3, num_classes: 4 })
    }

    fn spec(rank: u32, world: u32) -> LoaderSpec {
        LoaderSpec { global_batch: 8, rank, world, xflip: true, flip_seed: 11 + u64::from(rank), prefetch: 2 }
    }

    #[test]
    fn batches_follow_the_sampler_and_resume_exactly() {
        let mut whole = Loader::start(source(), Sampler::new(5, 40), spec(0, 2));
        let expected: Vec<Batch> = (0..6).map(|_| whole.next_batch()).collect();
        let mut first = Loader::start(source(), Sampler::new(5, 40), spec(0, 2));
        let mut got: Vec<Batch> = (0..2).map(|_| first.next_batch()).collect();
        let cursor = first.consumed();
        drop(first);
        assert_eq!(cursor, 16, "2 steps of 8 images, read-ahead not counted");
        let mut resumed = Loader::start(source(), Sampler::resume(5, 40, cursor), spec(0, 2));
        got.extend((0..4).map(|_| resumed.next_batch()));
        assert_eq!(got, expected);
        // Direct reads agree with the loader (flips aside): rank 0 takes the first 4 of each 8.
        let mut sampler = Sampler::new(5, 40);
        let plain = Batch::read(source().as_ref(), &sampler.take_step(8, 0, 2), None);
        assert_eq!(plain.labels, expected[0].labels);
    }
}
