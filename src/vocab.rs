//! The names every layer shares, spelled once: the kinds of stage in the run graph, the
//! names of recorded metrics, and the short form of a run id. `spec` assigns stage kinds,
//! the store keeps them, workers record the metrics, and `report` and the views read them.

use serde::{Deserialize, Serialize};

/// A node of the run graph: a pretrain, or an evaluation of one pretrain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Pretrain,
    Eval,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Pretrain => "pretrain",
            StageKind::Eval => "eval",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pretrain" => Some(StageKind::Pretrain),
            "eval" => Some(StageKind::Eval),
            _ => None,
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metric names as the store keeps them (`train/*` per step, `epoch/*` per epoch with the
/// epoch index as step, `eval/*` once per evaluation at step 0).
pub mod metric {
    pub const TRAIN_LOSS: &str = "train/loss";
    pub const TRAIN_LR: &str = "train/lr";
    /// Strict: the positive beats all 2N-2 negatives, same-view ones included.
    pub const TRAIN_CONTRASTIVE_ACC: &str = "train/contrastive_acc";
    /// The paper's (Table 5): argmax over the N cross-view candidates.
    pub const TRAIN_CONTRASTIVE_ACC_CROSS_VIEW: &str = "train/contrastive_acc_cross_view";
    pub const TRAIN_IMAGES_PER_SEC: &str = "train/images_per_sec";
    /// The supervised baseline's classification top-1 on the training batch (its
    /// counterpart of the contrastive accuracy).
    pub const TRAIN_TOP1: &str = "train/top1";
    pub const EPOCH_LOSS: &str = "epoch/loss";
    pub const EPOCH_CONTRASTIVE_ACC: &str = "epoch/contrastive_acc";
    pub const EPOCH_SECONDS: &str = "epoch/seconds";
    /// The supervised baseline's mean training top-1 over the epoch.
    pub const EPOCH_TOP1: &str = "epoch/top1";
    pub const EVAL_TOP1: &str = "eval/top1";
    pub const EVAL_TOP5: &str = "eval/top5";
    pub const EVAL_N_TEST: &str = "eval/n_test";
    /// The linear classifier's top-1 on its own training images (linear evaluations only).
    pub const EVAL_TRAIN_TOP1: &str = "eval/train_top1";
    /// On CUDA, once per stage at step 0: 1 if the stage's convolutions and BatchNorm ran
    /// through cuDNN (`ml::cuda`), 0 if through candle's ops.
    pub const CUDA_CUDNN_OPS: &str = "cuda/cudnn_ops";
    /// On CUDA, once per stage at step 0: 1 if the device's self-check of the cuDNN ops
    /// passed in this worker, else 0.
    pub const CUDA_SELF_CHECK_PASSED: &str = "cuda/self_check_passed";
    /// On CUDA, once per stage at step 0: the check's largest error as a fraction of its
    /// tolerance (below 1 passes; very large when an op failed to run).
    pub const CUDA_SELF_CHECK_WORST: &str = "cuda/self_check_worst";
}

/// Characters of a run id (or dataset fingerprint) shown to people: enough to be unique in
/// any sweep, short enough for a table column.
pub const SHORT_ID_LEN: usize = 12;

/// The first [`SHORT_ID_LEN`] characters of a run id or fingerprint.
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_kinds_round_trip_and_short_ids_never_panic() {
        for k in [StageKind::Pretrain, StageKind::Eval] {
            assert_eq!(StageKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(StageKind::parse("linear"), None);
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
