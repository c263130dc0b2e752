//! The pretraining loop (being written).
use super::{config::PretrainConfig, observer::Observer, MlError, PretrainOutcome, TrainEnv};

/// Pretrain a SimCLR model (being written).
pub fn pretrain(
    _cfg: &PretrainConfig,
    _env: &TrainEnv,
    _obs: &mut dyn Observer,
) -> Result<PretrainOutcome, MlError> {
    Err(MlError::Config("pretrain is not implemented yet".into()))
}
