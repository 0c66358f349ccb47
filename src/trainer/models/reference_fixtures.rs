//! Test helpers for the fixtures the reference implementations computed (`*/testdata/`):
//! loading their weights by the reference's state-dict names and comparing outputs.
use std::collections::BTreeMap;

use tch::{nn, Tensor};

/// The fixture's tensors, by name.
pub fn read(path: &std::path::Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

/// Copies the fixture's `prefix`-named tensors into `vs`, whose names must be exactly the
/// fixture's (the reference's state dict, less the filters it keeps as buffers).
pub fn load_named(vs: &nn::VarStore, fixture: &BTreeMap<String, Tensor>, prefix: &str) {
    let theirs: BTreeMap<&str, &Tensor> =
        fixture.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v))).collect();
    let ours = vs.variables();
    let mut our_names: Vec<&str> = ours.keys().map(String::as_str).collect();
    our_names.sort_unstable();
    assert_eq!(our_names, theirs.keys().copied().collect::<Vec<_>>(), "{prefix} state-dict names");
    tch::no_grad(|| {
        for (name, var) in &ours {
            var.shallow_clone().copy_(theirs[name.as_str()]);
        }
    });
}

/// max |ours - theirs| / max |theirs|, over the same number of elements in any shape.
pub fn max_rel_err(ours: &Tensor, theirs: &Tensor) -> f64 {
    assert_eq!(ours.numel(), theirs.numel());
    let err = (ours.reshape(theirs.size()) - theirs).abs().max().double_value(&[]);
    err / theirs.abs().max().double_value(&[])
}
