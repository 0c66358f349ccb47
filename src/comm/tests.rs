//! The ring backend with several ranks as threads, over real TCP on 127.0.0.1, checked against a
//! sequential reference.
use std::time::Duration;

use super::*;
use crate::rendezvous::{StoreClient, StoreServer};
use crate::rng::SplitMix64;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `body(rank, group)` on `world` ranks joined in a ring; returns each rank's result.
fn with_ring<R: Send + 'static>(
    world: u32,
    timeout: Duration,
    body: impl Fn(u32, &mut RingGroup) -> R + Send + Sync + Clone + 'static,
) -> Vec<R> {
    let server = StoreServer::bind("127.0.0.1:0", "t").unwrap();
    let addr = server.local_addr().to_string();
    let threads: Vec<_> = (0..world)
        .map(|rank| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || {
                let mut store =
                    StoreClient::connect(&addr, "t", "ring-test", &format!("rank {rank}"), TIMEOUT).unwrap();
                let mut group =
                    RingGroup::connect(&mut store, rank, world, "127.0.0.1", "127.0.0.1", timeout).unwrap();
                body(rank, &mut group)
            })
        })
        .collect();
    let results = threads.into_iter().map(|t| t.join().unwrap()).collect();
    drop(server);
    results
}

fn random_data(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| rng.uniform(-1000.0, 1000.0).round()).collect()
}

#[test]
fn all_reduce_matches_a_sequential_reference() {
    // Integer-valued data: sums are exact in any order, so equality is exact. The largest length
    // gives segments of more than one chunk (4 MiB) for f64 and f32, at every world size.
    for world in [2u32, 3, 4] {
        for len in [0usize, 1, 2, 5, 1000, 100_003, 4_500_007] {
            for op in [ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max] {
                let inputs: Vec<Vec<f64>> =
                    (0..world).map(|r| random_data(u64::from(r) * 7 + len as u64, len)).collect();
                let expected: Vec<f64> = (0..len)
                    .map(|i| {
                        let column = inputs.iter().map(|x| x[i]);
                        match op {
                            ReduceOp::Sum => column.sum(),
                            ReduceOp::Avg => column.sum::<f64>() / f64::from(world),
                            ReduceOp::Max => column.fold(f64::MIN, f64::max),
                        }
                    })
                    .collect();
                let shared = inputs.clone();
                let results = with_ring(world, TIMEOUT, move |rank, g| {
                    let mut data = shared[rank as usize].clone();
                    g.all_reduce_f64(&mut data, op).unwrap();
                    let mut single: Vec<f32> = shared[rank as usize].iter().map(|&x| x as f32).collect();
                    g.all_reduce_f32(&mut single, op).unwrap();
                    (data, single)
                });
                for (rank, (got, got32)) in results.iter().enumerate() {
                    assert_eq!(got, &expected, "world {world} len {len} {op:?} rank {rank}");
                    let want32: Vec<f32> = expected.iter().map(|&x| x as f32).collect();
                    let close =
                        got32.iter().zip(&want32).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1.0));
                    assert!(close, "f32: world {world} len {len} {op:?}");
                }
            }
        }
    }
}

#[test]
fn broadcast_and_all_gather_match_a_reference() {
    for world in [2u32, 3, 4] {
        for len in [0usize, 1, 3, 50_001] {
            let results = with_ring(world, TIMEOUT, move |rank, g| {
                let src = world - 1;
                let mut data = if rank == src { random_data(99, len) } else { vec![0.0; len] };
                g.broadcast_f64(&mut data, src).unwrap();
                let mine: Vec<f32> = random_data(u64::from(rank), len).iter().map(|&x| x as f32).collect();
                let mut gathered = vec![0.0f32; len * world as usize];
                g.all_gather_f32(&mine, &mut gathered).unwrap();
                g.barrier().unwrap();
                (data, gathered)
            });
            let expected_gather: Vec<f32> =
                (0..world).flat_map(|r| random_data(u64::from(r), len)).map(|x| x as f32).collect();
            for (data, gathered) in results {
                assert_eq!(data, random_data(99, len));
                assert_eq!(gathered, expected_gather);
            }
        }
    }
}

#[test]
fn a_silent_peer_times_out_and_is_named() {
    let results = with_ring(3, Duration::from_millis(700), |rank, g| {
        if rank == 2 {
            // Rank 2 never joins the collective but keeps its sockets open for a while.
            std::thread::sleep(Duration::from_secs(3));
            return None;
        }
        Some(g.all_reduce_f32(&mut [1.0; 10], ReduceOp::Sum).unwrap_err().to_string())
    });
    let rank0 = results[0].clone().unwrap();
    assert!(rank0.contains("timed out") && rank0.contains("rank 2"), "{rank0}");
}

#[test]
fn a_vanished_peer_is_a_clear_error() {
    let results = with_ring(2, TIMEOUT, |rank, g| {
        if rank == 1 {
            return None; // the group (and its sockets) is dropped when this returns
        }
        std::thread::sleep(Duration::from_millis(200));
        Some(g.all_reduce_f32(&mut [1.0; 100_000], ReduceOp::Sum).unwrap_err().to_string())
    });
    let err = results[0].clone().unwrap();
    assert!(err.contains("rank 1"), "{err}");
}

#[test]
fn broadcast_bytes_reaches_every_rank() {
    let got = with_ring(3, TIMEOUT, |rank, pg| {
        let mut bytes = if rank == 1 { b"runs/x/checkpoints/step-00000008".to_vec() } else { Vec::new() };
        super::broadcast_bytes(pg, &mut bytes, 1).unwrap();
        bytes
    });
    assert!(got.iter().all(|b| b == b"runs/x/checkpoints/step-00000008"), "{got:?}");
}

#[test]
fn a_recorded_group_counts_every_collective_and_describes_the_last() {
    let recorder = crate::flight::Recorder::new(0);
    let mut pg = Recorded::new(Box::new(SingleRank), recorder.track("train"));
    let mut grads = vec![1.0f32; 8];
    pg.all_reduce_f32(&mut grads, ReduceOp::Avg).unwrap();
    pg.broadcast_f64(&mut [2.0, 3.0], 0).unwrap();
    let mut out = vec![0.0f32; 3];
    pg.all_gather_f32(&[1.0, 2.0, 3.0], &mut out).unwrap();
    pg.barrier().unwrap();
    assert_eq!((pg.rank(), pg.world_size(), out), (0, 1, vec![1.0, 2.0, 3.0]), "passed on unchanged");
    let track = &recorder.snapshot().tracks[0];
    assert_eq!((track.started, track.finished), (4, 4));
    assert!(!track.in_flight());
    assert_eq!(track.last.as_ref().unwrap().call(), "barrier");
}
