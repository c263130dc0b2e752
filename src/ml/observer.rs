//! How training reports progress without knowing who listens (burn-train's event model):
//! the scheduler turns these events into store rows and progress bars.

use super::Checkpoint;

/// Metrics of one optimisation step (global step numbering, from 0).
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    pub epoch: usize,
    /// Global step index (epoch * steps_per_epoch + step_in_epoch).
    pub step: usize,
    pub steps_per_epoch: usize,
    pub loss: f64,
    pub lr: f64,
    /// Strict contrastive accuracy: the positive is the most similar of the 2N-1 candidates.
    /// A supervised run (`Method::Supervised`) reports its batch's classification top-1
    /// here and in the cross-view field; the store records it as `train/top1`.
    pub contrastive_acc: f64,
    /// The paper's contrastive accuracy (Table 5): argmax over the N cross-view candidates.
    pub contrastive_acc_cross_view: f64,
    pub images_per_sec: f64,
}

/// Means over a finished epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub loss: f64,
    /// Mean of the steps' `contrastive_acc` (a supervised run's: training top-1).
    pub contrastive_acc: f64,
    pub seconds: f64,
}

/// What the listener wants after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Checkpoint now and return `Outcome::Stopped` (first Ctrl-C, SIGTERM, lease lost).
    Stop,
}

/// Why a listener could not take an event (any error of the caller's layer).
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Receives training events. Errors returned by the listener abort training with
/// `MlError::Observer` (for example: the store could not record a checkpoint).
pub trait Observer {
    fn on_step(&mut self, _m: &StepMetrics) -> Control {
        Control::Continue
    }
    fn on_epoch(&mut self, _m: &EpochMetrics) -> Result<(), ObserverError> {
        Ok(())
    }
    fn on_checkpoint(&mut self, _c: &Checkpoint) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Progress of feature extraction / classifier training during an evaluation.
    fn on_eval_progress(&mut self, _done: usize, _total: usize, _what: &str) -> Control {
        Control::Continue
    }
}

/// An observer that ignores everything (tests, benchmarks).
pub struct NullObserver;
impl Observer for NullObserver {}
