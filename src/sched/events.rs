//! What a worker tells whoever watches it: JSON lines on stdout under `sweep run` (the
//! coordinator draws progress bars from them), or readable log lines under Slurm and CI.

use serde::{Deserialize, Serialize};

use crate::vocab::StageKind;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage was claimed and is starting (or continuing from a checkpoint).
    Started {
        run: String,
        stage: StageKind,
        label: String,
        attempt: i64,
        /// Global step a pretrain continues from (0: from the start).
        resumed_step: u64,
    },
    Step {
        run: String,
        epoch: usize,
        step: usize,
        total_steps: u64,
        loss: f64,
        contrastive_acc: f64,
        images_per_sec: f64,
    },
    Epoch {
        run: String,
        epoch: usize,
        loss: f64,
        contrastive_acc: f64,
        seconds: f64,
    },
    EvalProgress {
        run: String,
        done: usize,
        total: usize,
        what: String,
    },
    Checkpoint {
        run: String,
        epoch: usize,
        step: usize,
    },
    /// The stage ended: `done`, `failed` (with reason), `released` (graceful stop) or `lost`
    /// (its lease was taken over).
    Finished {
        run: String,
        outcome: String,
        reason: Option<String>,
        top1: Option<f64>,
    },
    /// Nothing left to claim.
    Idle,
}

impl Event {
    /// A log line for humans; `None` for events too frequent to log (steps).
    pub fn log_line(&self) -> Option<String> {
        let short = crate::vocab::short_id;
        Some(match self {
            Event::Started {
                run,
                label,
                attempt,
                resumed_step,
                ..
            } => {
                let from = if *resumed_step > 0 {
                    format!(", from step {resumed_step}")
                } else {
                    String::new()
                };
                format!("{} {label}: started (attempt {attempt}{from})", short(run))
            }
            Event::Step { .. } | Event::EvalProgress { .. } | Event::Idle => return None,
            Event::Epoch {
                run,
                epoch,
                loss,
                contrastive_acc,
                seconds,
            } => format!(
                "{} epoch {}: loss {loss:.4}, contrastive acc {:.3}, {seconds:.1}s",
                short(run),
                epoch + 1,
                contrastive_acc
            ),
            Event::Checkpoint { run, epoch, step } => {
                format!("{} checkpoint at epoch {epoch}, step {step}", short(run))
            }
            Event::Finished {
                run,
                outcome,
                reason,
                top1,
            } => {
                let mut s = format!("{} {outcome}", short(run));
                if let Some(t) = top1 {
                    s.push_str(&format!(": top-1 {:.2}%", t * 100.0));
                }
                if let Some(r) = reason {
                    s.push_str(&format!(": {r}"));
                }
                s
            }
        })
    }
}
