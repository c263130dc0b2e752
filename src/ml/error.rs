//! Errors of the SimCLR core. Every failure of a run becomes one of these, never a panic
//! of the caller: the scheduler records the message as the run's failure reason.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// A data file is missing, truncated or corrupt.
    #[error("data: {path}: {message}")]
    Data { path: PathBuf, message: String },
    /// The configuration cannot be trained as given (e.g. batch larger than the subset).
    #[error("config: {0}")]
    Config(String),
    /// Loss became NaN or infinite.
    #[error("non-finite loss {value} at step {step} (epoch {epoch}); lower the learning rate or check the data")]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f64,
    },
    /// A checkpoint could not be read, written or verified.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// Memory could not be allocated.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("io: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The observer (store, progress) failed.
    #[error("{0:#}")]
    Observer(anyhow::Error),
}

pub type Result<T, E = MlError> = std::result::Result<T, E>;
