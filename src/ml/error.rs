//! Errors of the SimCLR core. Every failure of a run becomes one of these, never a panic
//! of the caller: the scheduler records the message as the run's failure reason.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// A data file is missing, truncated or corrupt.
    #[error("data file or directory {path}: {message}")]
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
    /// The observer (store, progress) failed; the message holds its whole chain of causes.
    #[error("{}", chain(.0.as_ref()))]
    Observer(super::observer::ObserverError),
}

pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// `error: cause: cause ...`, as `anyhow`'s alternate format prints it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Turn a candle error into `OutOfMemory` when it says so, else `Candle`.
pub(crate) fn tensor_err(e: candle_core::Error) -> MlError {
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("out of memory")
        || lower.contains("out_of_memory")
        || lower.contains("memory allocation")
        || lower.contains("failed to allocate")
    {
        MlError::OutOfMemory(msg)
    } else {
        MlError::Candle(e)
    }
}

/// `tensor_err` for errors already wrapped in `MlError`.
pub(crate) fn classify(e: MlError) -> MlError {
    match e {
        MlError::Candle(c) => tensor_err(c),
        other => other,
    }
}

/// Run `f`, turning a panic into an error.
pub(crate) fn no_panic<T>(f: impl FnOnce() -> Result<T, MlError>) -> Result<T, MlError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(classify),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(MlError::Config(format!("internal error (panic): {msg}")))
        }
    }
}
