//! Keeping ranks in agreement: initial weights broadcast from rank 0, gradients averaged between
//! backward and the optimizer step (flattened into one bucket per network, so a step costs one
//! collective per network, not one per tensor), and a periodic check that every rank still holds
//! bit-identical parameters.
use std::hash::Hasher;

use tch::{nn, Kind, Tensor};

use gan_core::comm::{ProcessGroup, ReduceOp};
use gan_core::error::{Error, Result};

/// Averages the gradients of `params` over all ranks, one collective per bucket of about
/// `bucket_bytes` (consecutive gradients, in the optimizer's order, which is the same on every
/// rank). A world of one has nothing to agree on.
pub fn all_reduce_gradients<'a>(
    pg: &mut dyn ProcessGroup,
    params: impl Iterator<Item = &'a Tensor>,
    bucket_bytes: usize,
) -> Result<()> {
    if pg.world_size() == 1 {
        return Ok(());
    }
    let grads: Vec<Tensor> = params.map(|p| p.grad()).filter(|g| g.defined()).collect();
    for bucket in buckets(&grads, bucket_bytes) {
        if bucket[0].device().is_cuda() && all_reduce_on_device(pg, bucket)? {
            continue;
        }
        let mut flat = flatten(bucket);
        pg.all_reduce_f32(&mut flat, ReduceOp::Avg)?;
        unflatten_into(&flat, bucket);
    }
    Ok(())
}

/// Averages a bucket of GPU gradients in GPU memory (one contiguous copy, reduced in place on the
/// stream that produced it, copied back); false when the group has no device path.
fn all_reduce_on_device(pg: &mut dyn ProcessGroup, bucket: &[Tensor]) -> Result<bool> {
    let flat = Tensor::cat(&bucket.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0)
        .to_kind(Kind::Float)
        .contiguous();
    // SAFETY: `flat` is a live contiguous f32 CUDA tensor of numel elements, owned here and not
    // written by anything else until the call returns.
    let reduced = unsafe { pg.all_reduce_device_f32(flat.data_ptr() as u64, flat.numel(), ReduceOp::Avg)? };
    if reduced {
        let mut offset = 0;
        tch::no_grad(|| {
            for g in bucket {
                let n = g.numel() as i64;
                g.shallow_clone().copy_(&flat.narrow(0, offset, n).view_as(g));
                offset += n;
            }
        });
    }
    Ok(reduced)
}

/// Splits tensors into runs of at most `bucket_bytes` (a tensor larger than that is a bucket alone).
pub fn buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<&[Tensor]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * 4;
        if i > start && bytes + size > bucket_bytes {
            out.push(&tensors[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < tensors.len() {
        out.push(&tensors[start..]);
    }
    out
}

/// Every variable of `vs` (parameters and buffers), in name order: the same order on every rank.
fn ordered_variables(vs: &nn::VarStore) -> Vec<Tensor> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(_, t)| t).collect()
}

/// Overwrites every variable of `vs` with rank 0's values.
pub fn broadcast_from_rank0(pg: &mut dyn ProcessGroup, vs: &nn::VarStore) -> Result<()> {
    if pg.world_size() == 1 {
        return Ok(());
    }
    let vars = ordered_variables(vs);
    let mut bucket = flatten(&vars);
    pg.broadcast_f32(&mut bucket, 0)?;
    unflatten_into(&bucket, &vars);
    Ok(())
}

/// A hash of the exact bits of every variable of the given stores.
pub fn parameter_hash(stores: &[&nn::VarStore]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new(); // fixed keys: same on every rank
    for vs in stores {
        for value in flatten(&ordered_variables(vs)) {
            hasher.write_u32(value.to_bits());
        }
    }
    hasher.finish()
}

/// Fails loudly when any rank's parameters differ from rank 0's: data-parallel training is only
/// correct while they are identical.
pub fn check_parameters_agree(pg: &mut dyn ProcessGroup, stores: &[&nn::VarStore], step: u64) -> Result<()> {
    if pg.world_size() == 1 {
        return Ok(());
    }
    let hash = parameter_hash(stores);
    // Two exact 32-bit halves, so the f64 collective carries the hash losslessly.
    let mine = [(hash >> 32) as f64, (hash & 0xFFFF_FFFF) as f64];
    let mut all = vec![0.0; 2 * pg.world_size() as usize];
    pg.all_gather_f64(&mine, &mut all)?;
    let differing: Vec<usize> =
        all.chunks_exact(2).enumerate().filter(|(_, h)| h != &&all[..2]).map(|(r, _)| r).collect();
    if !differing.is_empty() {
        return Err(Error::Collective(format!(
            "parameters diverged at step {step}: rank(s) {differing:?} differ from rank 0"
        )));
    }
    tracing::debug!(step, hash = format!("{hash:016x}"), "parameters identical on all ranks");
    Ok(())
}

/// Averages over ranks the running means every rank updates from its own fakes (StyleGAN2's
/// `w_avg` and path-length mean): they then equal the update from the global batch, and stay
/// identical on every rank, so the parameter check and a checkpoint see one value. One small
/// collective per step, only for families that have such state.
pub fn average_running_means(s: &mut super::setup::Setup) -> Result<()> {
    if s.pg.world_size() == 1 {
        return Ok(());
    }
    let mut tensors = s.g.running_means();
    if s.cfg.train.pl_weight > 0.0 {
        tensors.push(s.pl_mean.shallow_clone());
    }
    if tensors.is_empty() {
        return Ok(());
    }
    let mut flat = flatten(&tensors);
    s.pg.all_reduce_f32(&mut flat, ReduceOp::Avg)?;
    unflatten_into(&flat, &tensors);
    Ok(())
}

/// Concatenates tensors into one host buffer, in order.
pub fn flatten(tensors: &[Tensor]) -> Vec<f32> {
    if tensors.is_empty() {
        return Vec::new();
    }
    let flat: Vec<Tensor> = tensors.iter().map(|t| t.detach().to_kind(Kind::Float).reshape([-1])).collect();
    let joined = Tensor::cat(&flat, 0).to_device(tch::Device::Cpu);
    Vec::try_from(&joined).expect("a float tensor converts to Vec<f32>")
}

/// Copies consecutive slices of `bucket` back into `tensors` (same order and sizes as `flatten`).
pub fn unflatten_into(bucket: &[f32], tensors: &[Tensor]) {
    let mut offset = 0usize;
    tch::no_grad(|| {
        for t in tensors {
            let n = t.numel();
            let src = Tensor::from_slice(&bucket[offset..offset + n]).view(t.size().as_slice());
            t.shallow_clone().copy_(&src.to_device(t.device()));
            offset += n;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradients of a linear least-squares model on rows `rows` of fixed data, after
    /// synchronisation over `pg` (the update any optimizer then applies is a function of them).
    fn linear_step(pg: &mut dyn ProcessGroup, rows: std::ops::Range<i64>, bucket_bytes: usize) -> Vec<f32> {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &(Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).view([6, 4]) / 10.0));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.0]));
        let x = Tensor::arange(96, (Kind::Float, tch::Device::Cpu)).view([16, 6]).sin();
        let y = Tensor::arange(64, (Kind::Float, tch::Device::Cpu)).view([16, 4]).cos();
        let (x, y) =
            (x.narrow(0, rows.start, rows.end - rows.start), y.narrow(0, rows.start, rows.end - rows.start));
        (x.matmul(&w) + &b - y).square().mean(Kind::Float).backward();
        all_reduce_gradients(pg, [&w, &b].into_iter(), bucket_bytes).unwrap();
        assert_eq!(vs.variables().len(), 2);
        flatten(&[w.grad(), b.grad()])
    }

    /// 2 ranks x batch 8 get the gradients of 1 rank x batch 16 (no batch-coupled layers), so
    /// they take the same step: the average of the half-batch mean gradients is the full-batch
    /// mean gradient. Tolerance 1e-6 relative, for float32 summation order.
    #[test]
    fn two_ranks_of_half_batches_match_one_rank_of_the_full_batch() {
        use gan_core::comm::{RingGroup, SingleRank};
        use gan_core::rendezvous::{StoreClient, StoreServer};
        let single = linear_step(&mut SingleRank, 0..16, 1 << 20);
        let server = StoreServer::bind("127.0.0.1:0", "t").unwrap();
        let addr = server.local_addr().to_string();
        let timeout = std::time::Duration::from_secs(20);
        let ranks: Vec<_> = (0..2u32)
            .map(|rank| {
                let addr = addr.clone();
                std::thread::spawn(move || {
                    let mut store =
                        StoreClient::connect(&addr, "t", "dp", &format!("rank {rank}"), timeout).unwrap();
                    let mut ring =
                        RingGroup::connect(&mut store, rank, 2, "127.0.0.1", "127.0.0.1", timeout).unwrap();
                    let rows = i64::from(rank) * 8..i64::from(rank) * 8 + 8;
                    linear_step(&mut ring, rows, 40) // small buckets: w and b go separately
                })
            })
            .collect();
        let half = linear_step(&mut SingleRank, 0..8, 1 << 20);
        assert!(
            half.iter().zip(&single).any(|(a, b)| (a - b).abs() > 1e-3),
            "the halves must differ from the whole"
        );
        for rank in ranks {
            let got = rank.join().unwrap();
            for (a, b) in got.iter().zip(&single) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{got:?} vs {single:?}");
            }
        }
    }

    #[test]
    fn buckets_respect_the_size_and_keep_order() {
        let t = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
        let tensors = [t(10), t(10), t(30), t(5), t(1)];
        let sizes: Vec<Vec<i64>> =
            buckets(&tensors, 80).iter().map(|b| b.iter().map(|x| x.numel() as i64).collect()).collect();
        assert_eq!(sizes, [vec![10, 10], vec![30], vec![5, 1]]);
        assert_eq!(buckets(&tensors, 1).len(), 5, "oversized tensors go alone");
        assert!(buckets(&[], 80).is_empty());
    }

    #[test]
    fn flatten_and_unflatten_round_trip() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        let b = Tensor::from_slice(&[5.0f32]);
        let bucket = flatten(&[a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(bucket, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let halved: Vec<f32> = bucket.iter().map(|x| x / 2.0).collect();
        unflatten_into(&halved, &[a.shallow_clone(), b.shallow_clone()]);
        assert_eq!(Vec::<f32>::try_from(&a.reshape([-1])).unwrap(), [0.5, 1.0, 1.5, 2.0]);
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), [2.5]);
    }
}
