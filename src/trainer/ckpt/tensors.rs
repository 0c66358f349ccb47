//! Between libtorch tensors and the checkpoint library's raw host tensors, with the checks a
//! load needs: every variable present, nothing extra, shapes equal (errors name the tensor).
use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use gan_core::checkpoint::{self, Dtype, RawTensor, Shapes, TensorFile};
use gan_core::error::{Error, Result};

fn dtype_of(kind: Kind) -> Dtype {
    match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::Bool,
        other => panic!("no checkpoint dtype for {other:?}; the trainer only keeps the kinds above"),
    }
}

fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
    }
}

/// A copy of `t` on the host (the copy is what lets training go on while the file is written).
pub fn to_raw(name: &str, t: &Tensor) -> RawTensor {
    let t = t.detach().to_device(Device::Cpu).contiguous();
    let dtype = dtype_of(t.kind());
    let numel = t.numel();
    let mut data = vec![0u8; numel * dtype.size_bytes()];
    t.copy_data_u8(&mut data, numel);
    RawTensor { name: name.into(), dtype, shape: shape_of(&t), data }
}

/// Every variable of a VarStore (parameters and buffers such as batch-norm statistics).
pub fn varstore_raw(vs: &nn::VarStore) -> Vec<RawTensor> {
    named_raw(&vs.variables().into_iter().collect::<Vec<_>>())
}

pub fn named_raw(named: &[(String, Tensor)]) -> Vec<RawTensor> {
    named.iter().map(|(name, t)| to_raw(name, t)).collect()
}

/// The tensors of a checkpoint file, on the host.
pub fn read_named(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let file = TensorFile::open(path)?;
    Ok(file
        .tensors()?
        .into_iter()
        .map(|v| {
            let shape: Vec<i64> = v.shape.iter().map(|&d| d as i64).collect();
            (v.name, Tensor::from_data_size(v.data, &shape, kind_of(v.dtype)))
        })
        .collect())
}

/// The variables of a VarStore with their shapes, as checkpoints are compared by.
pub fn shapes(vs: &nn::VarStore) -> Shapes {
    vs.variables().into_iter().map(|(name, t)| (name, shape_of(&t))).collect()
}

fn shape_of(t: &Tensor) -> Vec<usize> {
    t.size().iter().map(|&d| d as usize).collect()
}

/// Copies a checkpoint file into `vs`'s variables in place (so optimizers and EMA, which hold
/// the same tensors, see the loaded values), after checking that it holds exactly those variables
/// with their shapes (`checkpoint::compare_shapes`). `what` names the network in errors.
pub fn load_varstore(vs: &nn::VarStore, path: &Path, what: &str) -> Result<()> {
    let saved = read_named(path)?;
    let theirs: Shapes = saved.iter().map(|(name, t)| (name.clone(), shape_of(t))).collect();
    checkpoint::compare_shapes(&shapes(vs), &theirs, what)
        .map_err(|message| Error::Checkpoint { path: path.to_path_buf(), message })?;
    for (name, var) in vs.variables() {
        tch::no_grad(|| var.shallow_clone().copy_(&saved[&name]));
    }
    Ok(())
}
