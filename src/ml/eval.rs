//! Linear and kNN evaluation (being written).
use super::{
    config::{EvalConfig, PretrainConfig},
    observer::Observer,
    CheckpointRef, EvalResult, MlError, TrainEnv,
};

/// Evaluate a pretrain checkpoint (being written).
pub fn evaluate(
    _pretrain: &PretrainConfig,
    _eval: &EvalConfig,
    _checkpoint: &CheckpointRef,
    _env: &TrainEnv,
    _obs: &mut dyn Observer,
) -> Result<EvalResult, MlError> {
    Err(MlError::Config("evaluate is not implemented yet".into()))
}
