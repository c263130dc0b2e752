//! Checkpoints of the evaluations that train for long (the paper's linear evaluation,
//! fine-tuning, Table 3's probe): what is checkpointed ([`Checkpointed`]: named tensors out,
//! the same names back in), where a run stands ([`EvalCheckpointMeta`]), and the resume and
//! save of one evaluation of one encoder ([`CheckpointedEval`]).
//!
//! A checkpoint (the trained state; the position in the epoch and the running train
//! accuracy) is written into `env.checkpoint_dir` under the metadata key of its method
//! ([`MethodNames::checkpoint_tag`]) and reported through `Observer::on_checkpoint`. A
//! later call resumes from the first of `env.resume_from` that verifies and was written for
//! the same evaluation of the same encoder checkpoint, and gives exactly the numbers of an
//! uninterrupted run.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::ml::checkpoint;
use crate::ml::config::EvalConfig;
use crate::ml::error::tensor_err;
use crate::ml::observer::Observer;
use crate::ml::{Checkpoint, MlError, TrainEnv};

const VERSION: u32 = 1;

/// Where a checkpointed evaluation stands, and what it was run for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct EvalCheckpointMeta {
    pub version: u32,
    /// Epochs fully completed.
    pub epoch: usize,
    /// Steps already done in epoch `epoch`.
    pub step_in_epoch: usize,
    pub steps_per_epoch: usize,
    /// Correct predictions and images seen so far in epoch `epoch`.
    pub correct: usize,
    pub seen: usize,
    /// Train top-1 of the last completed epoch.
    pub last_train_top1: Option<f64>,
    /// The sha256 of the pretrain checkpoint whose encoder is evaluated.
    pub encoder_sha256: String,
    pub eval: EvalConfig,
}

/// What an evaluation's checkpoint holds of what it trains: named tensors out, the same
/// names back in.
pub(crate) trait Checkpointed {
    /// Every tensor of the state, named (a checkpoint's contents).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state written by [`Checkpointed::state`], read from the checkpoint at
    /// `path`.
    fn load_state(&mut self, tensors: HashMap<String, Tensor>, path: &Path) -> Result<(), MlError>;
}

/// Splits checkpoint tensors by prefix: those under `prefix`, renamed without it.
pub(crate) fn under(tensors: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    tensors
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
        .collect()
}

/// A copy of tensor `name` of a saved state `t`, on `like`'s device and dtype, checked to
/// have `like`'s shape (`what` names the model in messages). A copy: the state may hold
/// the very tensors it restores.
pub(crate) fn restored(
    t: &HashMap<String, Tensor>,
    name: &str,
    like: &Tensor,
    what: &str,
) -> Result<Tensor, MlError> {
    let v = t
        .get(name)
        .ok_or_else(|| MlError::Config(format!("{what}: missing {name}")))?;
    if v.dims() != like.dims() {
        return Err(MlError::Config(format!(
            "{what}: {name} has shape {:?}, expected {:?}",
            v.dims(),
            like.dims()
        )));
    }
    v.to_device(like.device())
        .and_then(|v| v.to_dtype(like.dtype()))
        .and_then(|v| v.copy())
        .map_err(tensor_err)
}

/// `state`, each name prefixed by `prefix`.
pub(crate) fn prefixed(state: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    state
        .into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect()
}

/// The names one checkpointed method goes by, which keep its checkpoints, random streams
/// and progress reports apart from another's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MethodNames {
    /// Metadata key of its checkpoints (a pretrain's is `simclr-sweep-checkpoint`).
    pub checkpoint_tag: &'static str,
    /// Names its random streams: `<stream>_order`, `<stream>_view`.
    pub stream: &'static str,
    /// What a progress report says it is doing.
    pub progress: &'static str,
}

impl MethodNames {
    /// The key of its epoch-order stream, `<stream>_order`.
    pub fn order_key(&self) -> String {
        format!("{}_order", self.stream)
    }
}

/// One checkpointed evaluation of a loaded encoder.
pub(crate) struct CheckpointedEval<'a> {
    pub eval: &'a EvalConfig,
    /// The pretrain seed (data order, views, the initialisation of what it trains).
    pub seed: u64,
    /// The pretrain checkpoint the encoder was loaded from.
    pub encoder: &'a Checkpoint,
    pub env: &'a TrainEnv,
    pub names: MethodNames,
}

impl CheckpointedEval<'_> {
    /// Where a run of `steps_per_epoch` steps an epoch starts.
    fn start(&self, steps_per_epoch: usize) -> EvalCheckpointMeta {
        EvalCheckpointMeta {
            version: VERSION,
            epoch: 0,
            step_in_epoch: 0,
            steps_per_epoch,
            correct: 0,
            seen: 0,
            last_train_top1: None,
            encoder_sha256: self.encoder.sha256.trim().to_ascii_lowercase(),
            eval: self.eval.clone(),
        }
    }

    /// A state from `fresh` restored from the newest usable checkpoint, and where it
    /// stands; or a fresh state at the start when no checkpoint restores.
    pub fn resume_or_start<L: Checkpointed>(
        &self,
        fresh: &dyn Fn() -> Result<L, MlError>,
        steps_per_epoch: usize,
    ) -> Result<(L, EvalCheckpointMeta), MlError> {
        let mut learner = fresh()?;
        Ok(match self.resume(&mut learner, steps_per_epoch) {
            Some(pos) => (learner, pos),
            // A failed restore may have changed some tensors: start from a fresh state.
            None => (fresh()?, self.start(steps_per_epoch)),
        })
    }

    /// The position of the first checkpoint of `env.resume_from` that verifies and belongs
    /// to this evaluation, with the state restored from it; `None` to start over.
    fn resume(
        &self,
        learner: &mut dyn Checkpointed,
        steps_per_epoch: usize,
    ) -> Option<EvalCheckpointMeta> {
        let want = self.start(steps_per_epoch);
        let tag = self.names.checkpoint_tag;
        for r in &self.env.resume_from {
            let attempt = (|| {
                let (json, tensors) = checkpoint::decode(r, tag, &self.env.device)?;
                let meta: EvalCheckpointMeta = serde_json::from_str(&json)
                    .map_err(|e| MlError::Config(format!("bad metadata: {e}")))?;
                let same = meta.version == want.version
                    && meta.steps_per_epoch == want.steps_per_epoch
                    && meta.encoder_sha256 == want.encoder_sha256
                    && meta.eval == want.eval;
                if !same {
                    return Err(MlError::Config(
                        "written for another evaluation or encoder".into(),
                    ));
                }
                learner.load_state(tensors, &r.path)?;
                Ok(meta)
            })();
            match attempt {
                Ok(meta) => return Some(meta),
                Err(e) => eprintln!("warning: skipping checkpoint {}: {e}", r.path.display()),
            }
        }
        None
    }

    /// Writes the state at `pos` and reports it to the observer.
    pub fn save(
        &self,
        learner: &dyn Checkpointed,
        pos: &EvalCheckpointMeta,
        obs: &mut dyn Observer,
    ) -> Result<(), MlError> {
        let json = serde_json::to_string(pos)
            .map_err(|e| MlError::Config(format!("checkpoint metadata: {e}")))?;
        let bytes = checkpoint::encode(self.names.checkpoint_tag, json, learner.state())?;
        let step = pos.epoch * pos.steps_per_epoch + pos.step_in_epoch;
        let c = checkpoint::save_bytes(&self.env.checkpoint_dir, pos.epoch, step, &bytes)?;
        obs.on_checkpoint(&c).map_err(MlError::Observer)
    }
}
