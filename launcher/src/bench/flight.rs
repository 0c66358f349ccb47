//! `gan-launch bench flight`: what flight recording costs a rank. Every collective and every
//! change of activity takes the recorder's lock; the writer thread serialises and rewrites the
//! record once a second. Measured on a world of one, whose collectives do nothing else, so the
//! figure is the recording alone.
use std::time::Instant;

use clap::Args;
use gan_core::comm::{ProcessGroup, Recorded, ReduceOp, SingleRank};
use gan_core::flight::{Activity, Recorder};

#[derive(Args, Debug)]
pub struct FlightArgs {
    /// Operations timed per figure.
    #[arg(long, default_value_t = 1_000_000)]
    iters: u32,
}

pub fn run(args: &FlightArgs) -> anyhow::Result<()> {
    let recorder = Recorder::new(0);
    let mut plain = SingleRank;
    let mut recorded = Recorded::new(Box::new(SingleRank), recorder.track("train"));
    let mut data = [0.0f32; 4];
    let per_op_ns = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..args.iters {
            f();
        }
        t.elapsed().as_secs_f64() * 1e9 / f64::from(args.iters)
    };
    let plain_ns =
        per_op_ns(&mut || plain.all_reduce_f32(std::hint::black_box(&mut data), ReduceOp::Sum).unwrap());
    let recorded_ns =
        per_op_ns(&mut || recorded.all_reduce_f32(std::hint::black_box(&mut data), ReduceOp::Sum).unwrap());
    let mut step = 0u64;
    let enter_ns = per_op_ns(&mut || {
        step += 1;
        recorder.enter(if step.is_multiple_of(2) { Activity::DMain } else { Activity::GMain }, step);
    });
    let write_iters = (args.iters / 100).max(1);
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..write_iters {
        bytes = serde_json::to_vec(&recorder.snapshot())?.len();
    }
    let snapshot_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(write_iters);
    println!("flight recording, {} operations per figure", args.iters);
    println!("{:<44} {:>10.1} ns", "collective on a world of one, plain", plain_ns);
    println!("{:<44} {:>10.1} ns", "collective on a world of one, recorded", recorded_ns);
    println!("{:<44} {:>10.1} ns", "recording cost per collective", recorded_ns - plain_ns);
    println!("{:<44} {:>10.1} ns", "change of activity", enter_ns);
    println!(
        "{:<44} {:>10.2} us ({bytes} bytes, once a second)",
        "snapshot + JSON of the record", snapshot_us
    );
    Ok(())
}
