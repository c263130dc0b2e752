//! Plain types the store takes and returns; callers never see SQL rows.

use serde::Serialize;

pub use crate::vocab::StageKind;

/// Lifecycle of a run (docs/ARCHITECTURE.md#run-lifecycle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Done,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "done" => RunState::Done,
            "failed" => RunState::Failed,
            _ => return None,
        })
    }
}

/// A sweep as `sweep run` registers it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSweep {
    pub name: String,
    pub spec_path: String,
    pub spec_text: String,
    pub profile: Option<String>,
    pub overrides: Vec<String>,
}

/// One stage of the sweep, in grid order.
#[derive(Clone, Debug, PartialEq)]
pub struct NewStage {
    pub id: String,
    pub stage: StageKind,
    pub parent_id: Option<String>,
    pub label: String,
    /// Canonical JSON of the stage config.
    pub config: String,
    pub dataset_fingerprint: String,
    pub semantics_version: i64,
    /// JSON object of the run's cell coordinates (axis path -> value).
    pub cell: String,
}

/// What registering changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registered {
    pub new_stages: usize,
    pub existing_stages: usize,
    /// The sweep row or its membership was written (false: nothing changed at all).
    pub changed: bool,
}

/// A stored sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepRecord {
    pub name: String,
    pub spec_path: String,
    pub spec_text: String,
    pub profile: Option<String>,
    pub overrides: Vec<String>,
    pub created_at: i64,
    /// Moves whenever the sweep is registered with a different spec, profile, overrides
    /// or set of stages.
    pub updated_at: i64,
}

/// Where a sweep stands, for readers that keep its rows (`sweep serve`): `membership`
/// moves when it is registered with other stages or another spec (its `updated_at`),
/// `changed` when one of its stages changes or records a metric (the store's change
/// counter, in commit order: the sweep's stages that changed since a read made under
/// `changed = T` are exactly those stamped above T).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepVersion {
    pub membership: i64,
    pub changed: i64,
}

impl std::fmt::Display for SweepVersion {
    /// The change token the dashboard's pages poll.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.membership, self.changed)
    }
}

/// A sweep and how many of its stages are in each state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepSummary {
    pub name: String,
    pub profile: Option<String>,
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
    pub updated_at: i64,
}

/// One stage of one sweep, in brief (the list of sweeps: progress, cost, workers).
#[derive(Clone, Debug, PartialEq)]
pub struct StageBrief {
    pub sweep: String,
    pub stage: StageKind,
    pub state: RunState,
    /// How many stages this brief stands for (they share everything else here).
    pub count: i64,
    /// Their compute, summed.
    pub compute_seconds: f64,
    pub lease_owner: Option<String>,
    pub lease_host: Option<String>,
}

/// A stored stage, with its place in one sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub stage: StageKind,
    pub parent_id: Option<String>,
    pub label: String,
    pub config: String,
    pub dataset_fingerprint: String,
    pub state: RunState,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_host: Option<String>,
    pub heartbeat_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub compute_seconds: f64,
    pub failure: Option<String>,
    /// Position in the sweep's grid order, and the cell coordinates (JSON).
    pub position: i64,
    pub cell: String,
}

/// A run handed to a worker by [`crate::store::Store::claim`].
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub run: RunRecord,
    /// The parent pretrain's config (evaluations only).
    pub parent_config: Option<String>,
}

/// Who holds a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    pub id: String,
    pub host: String,
    pub pid: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricRecord {
    pub name: String,
    pub step: i64,
    pub value: f64,
}

/// A stage's metric as a page that draws no curves reads it: its value at its highest
/// step, and how many steps it has.
#[derive(Clone, Debug, PartialEq)]
pub struct LastMetric {
    pub last: MetricRecord,
    pub steps: usize,
}

/// One config text and the stages that have it (of one kind): a sweep's evaluations
/// mostly share a few texts, so each is read, and parsed, once.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedConfig {
    pub stage: StageKind,
    pub text: String,
    pub ids: Vec<String>,
}

/// A Slurm job array of workers submitted for a sweep (`sweep submit --slurm`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlurmJobRecord {
    pub job_id: String,
    pub sweep: String,
    pub workers: i64,
    /// Where the workers' logs go (`%A_%a.out` per array task).
    pub log_dir: String,
    pub submitted_at: i64,
}
