//! Gradient synchronisation: the one place between backward and the optimizer step where ranks
//! agree on gradients. All of a network's gradients are flattened into one bucket so a step costs
//! one collective per network, not one per tensor; the average over ranks is written back.
use tch::{Kind, Tensor};

use gan_core::comm::{ProcessGroup, ReduceOp};
use gan_core::error::Result;

/// Averages the gradients of `params` over all ranks. A world of one has nothing to agree on.
pub fn all_reduce_gradients<'a>(
    pg: &mut dyn ProcessGroup,
    params: impl Iterator<Item = &'a Tensor>,
) -> Result<()> {
    if pg.world_size() == 1 {
        return Ok(());
    }
    let grads: Vec<Tensor> = params.map(|p| p.grad()).filter(|g| g.defined()).collect();
    let mut bucket = flatten(&grads);
    pg.all_reduce_f32(&mut bucket, ReduceOp::Avg)?;
    unflatten_into(&bucket, &grads);
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
