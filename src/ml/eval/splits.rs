//! The images an evaluation trains on and scores: class-balanced subsets of the train and
//! test splits, drawn from the pretrain seed; and the order a trained evaluation visits
//! its training images in each epoch.

use std::sync::Arc;

use crate::ml::data::{self, ImageSet};
use crate::ml::rng::{self, Domain};
use crate::ml::MlError;

/// The images an evaluation trains on (`train_idx` of `train`) and scores (`test_idx`
/// of `test`).
pub(crate) struct Splits {
    pub train: Arc<ImageSet>,
    pub train_idx: Arc<Vec<usize>>,
    pub test: Arc<ImageSet>,
    pub test_idx: Arc<Vec<usize>>,
}

/// A class-balanced subset of `n` images of `set` drawn from `seed` (`None`: all of them).
pub(crate) fn subset(set: &ImageSet, n: Option<usize>, seed: u64) -> Result<Vec<usize>, MlError> {
    match n {
        Some(n) => data::balanced_subset(&set.labels, set.num_classes, n, seed),
        None => Ok((0..set.len()).collect()),
    }
}

/// Epoch `epoch`'s order of `indices`, drawn from `rng::stream(seed, Domain::Eval,
/// &[key_of(key), epoch])`.
pub(crate) fn epoch_order(indices: &[usize], seed: u64, key: &str, epoch: usize) -> Vec<usize> {
    let mut stream = rng::stream(seed, Domain::Eval, &[rng::key_of(key), epoch as u64]);
    data::epoch_order(indices, &mut stream)
}
