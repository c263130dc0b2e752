//! The SimCLR core (Chen et al. 2020) on candle: data, augmentations, encoders, heads,
//! losses, optimizers, schedules, checkpoints, training and evaluation.
//!
//! Knows nothing of the database, the CLI, progress bars or tokio: it takes plain config
//! structs (`config`) and a device, and reports through an [`observer::Observer`].

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod data;
pub mod error;
pub mod eval;
pub mod fault;
pub mod heap;
pub mod kernels;
pub mod model;
pub mod observer;
pub mod rng;
pub mod training;

use std::path::PathBuf;

pub use candle_core::Device;
pub use error::MlError;

/// A checkpoint that was written, fsynced and renamed into place, with the sha256 of its
/// bytes: what the trainer reports, the store records, and a resume or an evaluation reads
/// back (the hash is verified before anything in the file is used).
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// Epochs fully completed at this checkpoint.
    pub epoch: usize,
    /// Global step of the next step to run.
    pub step: usize,
    pub sha256: String,
}

/// Where and how a pretrain runs; none of this changes its result.
#[derive(Clone, Debug)]
pub struct TrainEnv {
    pub device: Device,
    /// Resolved dataset location (extracted directory or archive).
    pub data_path: PathBuf,
    /// Directory that holds this run's checkpoints (created if missing).
    pub checkpoint_dir: PathBuf,
    /// Known checkpoints, newest first. The trainer resumes from the first whose sha256
    /// verifies; corrupt ones are skipped with a warning. Empty: start from scratch.
    pub resume_from: Vec<Checkpoint>,
    /// Threads preparing augmented batches in the background.
    pub loader_threads: usize,
}

/// How a pretrain call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum PretrainOutcome {
    /// All epochs done; `checkpoint` holds the final weights.
    Finished { checkpoint: Checkpoint },
    /// The observer asked to stop; `checkpoint` lets a later call continue.
    Stopped { checkpoint: Checkpoint },
}

/// Final numbers of one evaluation (fractions in [0, 1]).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalResult {
    pub top1: f64,
    pub top5: f64,
    /// The linear classifier's top-1 on the images it was trained on (kNN: none).
    pub train_top1: Option<f64>,
    /// Number of test images scored.
    pub n_test: usize,
}

/// How an evaluation call ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalOutcome {
    Finished(EvalResult),
    /// The observer asked to stop; nothing is kept, the next call starts it again.
    Stopped,
}

pub use eval::evaluate;
pub use training::trainer::pretrain;
