//! Variables and gradients by name: what [`Adam`](crate::Adam) updates and checkpoints
//! save.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// The gradients of `params` in `store`, by name (vars without one are left out).
pub fn named_grads(params: &BTreeMap<String, Var>, store: &GradStore) -> BTreeMap<String, Tensor> {
    params
        .iter()
        .filter_map(|(k, v)| store.get(v.as_tensor()).map(|g| (k.clone(), g.clone())))
        .collect()
}

/// The variables of a candle-nn [`VarMap`](candle_nn::VarMap) by name, in name order
/// (what [`Adam`](crate::Adam) and the safetensors writers take).
pub fn named_vars(vars: &candle_nn::VarMap) -> BTreeMap<String, Var> {
    let data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
