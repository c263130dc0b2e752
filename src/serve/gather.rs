//! Reading what a page shows from the store (read-only) into plain views: the sweeps
//! with their progress, estimated time left, workers and Slurm state; one sweep with its
//! report (the report module's own data, sections and figures) and its stages; one
//! stage with its metrics, checkpoints and evaluations. Rendering is `pages`' job.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;

use super::cache::Cache;
use crate::ml::Checkpoint;
use crate::report::{self, Section, SweepData};
use crate::sched::slurm;
use crate::store::{
    MetricRecord, RunRecord, RunState, StageBrief, StageFilter, StageKind, Store, StoreError,
    SweepRecord, SweepSummary,
};
use crate::vocab::metric;

/// Above this many pretrain runs the sweep page reads only the metrics its tables need,
/// not every step's (the training-curves figure is then on each run's page instead).
pub const CURVES_MAX_RUNS: usize = 200;

/// Metrics the sweep page reads when it skips the per-step curves.
const FINAL_METRICS: [&str; 4] = [
    metric::EPOCH_LOSS,
    metric::EPOCH_CONTRASTIVE_ACC,
    metric::EVAL_TOP1,
    metric::EVAL_TOP5,
];

/// One row of the list of sweeps.
pub struct SweepOverview {
    pub summary: SweepSummary,
    /// Seconds of compute left divided among the running workers; `None` while no stage
    /// of a kind that is left has finished yet (nothing to estimate from).
    pub eta_seconds: Option<f64>,
    /// Running workers per host.
    pub hosts: BTreeMap<String, usize>,
    /// One line per Slurm job array, where squeue answers.
    pub slurm: Vec<String>,
}

pub async fn sweeps(store: &Store) -> Result<Vec<SweepOverview>> {
    let summaries = store.sweeps().await?;
    let briefs = store.stage_briefs().await?;
    let mut by_sweep: HashMap<&str, Vec<&StageBrief>> = HashMap::new();
    for b in &briefs {
        by_sweep.entry(b.sweep.as_str()).or_default().push(b);
    }
    let mut out = Vec::with_capacity(summaries.len());
    let mut jobs = Vec::new();
    for s in &summaries {
        // An older store has no slurm_jobs table: no Slurm state, not an error.
        jobs.push(store.slurm_jobs(&s.name).await.unwrap_or_default());
    }
    let ids: Vec<String> = jobs.iter().flatten().map(|j| j.job_id.clone()).collect();
    let tasks = if ids.is_empty() {
        None
    } else {
        tokio::task::spawn_blocking(move || slurm::squeue(&ids))
            .await
            .ok()
            .flatten()
    };
    for (summary, jobs) in summaries.into_iter().zip(jobs) {
        let stages = by_sweep.remove(summary.name.as_str()).unwrap_or_default();
        let slurm = match (&tasks, jobs.is_empty()) {
            (_, true) => Vec::new(),
            (Some(tasks), false) => jobs
                .iter()
                .map(|j| slurm::describe(&j.job_id, j.workers, tasks))
                .collect(),
            (None, false) => vec![format!(
                "slurm jobs {} (squeue does not answer here)",
                jobs.iter()
                    .map(|j| j.job_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        };
        out.push(SweepOverview {
            eta_seconds: eta_seconds(&stages),
            hosts: hosts(&stages),
            slurm,
            summary,
        });
    }
    Ok(out)
}

/// Running workers per host.
fn hosts(stages: &[&StageBrief]) -> BTreeMap<String, usize> {
    let mut workers: BTreeSet<(String, String)> = BTreeSet::new();
    for s in stages.iter().filter(|s| s.state == RunState::Running) {
        if let Some(owner) = &s.lease_owner {
            let host = s.lease_host.clone().unwrap_or_else(|| "?".into());
            workers.insert((host, owner.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for (host, _) in workers {
        *out.entry(host).or_insert(0) += 1;
    }
    out
}

/// Compute left (stages not finished x the mean compute of finished stages of the same
/// kind) divided by the running workers (at least one).
pub fn eta_seconds(stages: &[&StageBrief]) -> Option<f64> {
    let mut left = 0.0;
    for kind in [StageKind::Pretrain, StageKind::Eval] {
        let of_kind = || stages.iter().filter(move |s| s.stage == kind);
        let (mut done, mut done_seconds) = (0, 0.0);
        for s in of_kind().filter(|s| s.state == RunState::Done) {
            done += s.count;
            done_seconds += s.compute_seconds;
        }
        let open: i64 = of_kind()
            .filter(|s| matches!(s.state, RunState::Queued | RunState::Running))
            .map(|s| s.count)
            .sum();
        if open == 0 {
            continue;
        }
        if done == 0 {
            return None;
        }
        left += open as f64 * done_seconds / done as f64;
    }
    let workers: usize = hosts(stages).values().sum();
    Some(left / workers.max(1) as f64)
}

/// One stage's row in the sweep's runs table.
pub struct StageRow {
    pub run: RunRecord,
    /// Epochs finished and planned (pretrains).
    pub epochs: Option<(usize, usize)>,
    pub loss: Option<f64>,
    /// Percent (evaluations).
    pub top1: Option<f64>,
}

pub struct SweepView {
    pub sweep: SweepRecord,
    pub counts: [usize; 4],
    pub eta_seconds: Option<f64>,
    pub hosts: BTreeMap<String, usize>,
    /// The report's sections (figures still to be drawn).
    pub sections: Vec<Section>,
    pub curves_skipped: bool,
    pub warnings: Vec<String>,
    pub stages: Vec<StageRow>,
}

/// `None`: no such sweep. Reads the stages (without their configs, which `cache` keeps)
/// and the metrics the page needs: on a large sweep only those of stages that are running
/// or changed since `cache` last saw them.
pub async fn sweep(store: &Store, cache: &Cache, name: &str) -> Result<Option<SweepView>> {
    let record = match store.sweep(name).await {
        Ok(r) => r,
        Err(StoreError::NoSuchSweep(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (rows, first_metrics) = match cache.take_stages(name, record.updated_at) {
        // A first view: every stage with its config, and the table metrics, at once (two
        // connections).
        None => {
            let (stages, finals) = tokio::try_join!(
                store.sweep_runs(name),
                store.sweep_metrics(name, Some(&FINAL_METRICS[..]))
            )?;
            (stages, Some(finals))
        }
        Some(kept) => (refresh(store, name, kept).await?, None),
    };
    let stages = cache.keep_stages(name, record.updated_at, rows);
    let pretrains = stages
        .iter()
        .filter(|s| s.stage == StageKind::Pretrain)
        .count();
    let curves_skipped = pretrains > CURVES_MAX_RUNS;
    let stale = cache.stale(&stages);
    let fresh = if !curves_skipped {
        // A small sweep: every step's metrics, for its training curves.
        store.sweep_metrics(name, None).await?
    } else {
        match first_metrics {
            Some(finals) => finals,
            // Most stages changed since the last view: one query over the sweep is cheaper.
            None if stale.len() * 2 > stages.len() => {
                store.sweep_metrics(name, Some(&FINAL_METRICS[..])).await?
            }
            None => store.metrics_of_stages(&stale, &FINAL_METRICS).await?,
        }
    };
    let metrics: HashMap<String, Arc<[MetricRecord]>> = if curves_skipped {
        cache.merge_metrics(&stages, &stale, fresh)
    } else {
        fresh.into_iter().map(|(id, m)| (id, m.into())).collect()
    };
    let data = SweepData::assemble_parsed(record.clone(), &stages, &metrics, &|s| cache.config(s));
    let mut sections = report::sections(&data);
    if curves_skipped {
        sections.retain(|s| !is_curves(s));
    }
    let briefs: Vec<StageBrief> = stages
        .iter()
        .map(|s| StageBrief {
            sweep: name.to_string(),
            stage: s.stage,
            state: s.state,
            count: 1,
            compute_seconds: s.compute_seconds,
            lease_owner: s.lease_owner.clone(),
            lease_host: s.lease_host.clone(),
        })
        .collect();
    let refs: Vec<&StageBrief> = briefs.iter().collect();
    let mut counts = [0usize; 4];
    for s in &stages {
        counts[s.state as usize] += 1;
    }
    let planned: HashMap<&str, usize> = data
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.config.epochs))
        .collect();
    let rows = stages
        .into_iter()
        .map(|run| {
            let m = metrics.get(&run.id).map_or(&[][..], |m| &m[..]);
            let epochs = planned.get(run.id.as_str()).copied().unwrap_or(0);
            stage_row(run, m, epochs)
        })
        .collect();
    Ok(Some(SweepView {
        counts,
        eta_seconds: eta_seconds(&refs),
        hosts: hosts(&refs),
        sections,
        curves_skipped,
        warnings: data.warnings.clone(),
        stages: rows,
        sweep: record,
    }))
}

/// The sweep's stage rows `kept` from an earlier view, with those that were not done then
/// read again (a done stage never changes).
async fn refresh(store: &Store, name: &str, mut kept: Vec<RunRecord>) -> Result<Vec<RunRecord>> {
    let index: HashMap<String, usize> = kept
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let mut open = store
        .sweep_runs_without_config(name, StageFilter::NotDone)
        .await?;
    let still_open: HashSet<&str> = open.iter().map(|r| r.id.as_str()).collect();
    // Open when kept and not open now: done since.
    let done_since: Vec<&str> = kept
        .iter()
        .filter(|r| r.state != RunState::Done && !still_open.contains(r.id.as_str()))
        .map(|r| r.id.as_str())
        .collect();
    let mut changed = store
        .sweep_runs_without_config(name, StageFilter::Ids(&done_since))
        .await?;
    changed.append(&mut open);
    for r in changed {
        if let Some(&i) = index.get(&r.id) {
            kept[i] = r;
        }
    }
    Ok(kept)
}

fn is_curves(s: &Section) -> bool {
    s.title == "Training curves"
}

fn last(metrics: &[MetricRecord], name: &str) -> Option<f64> {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .max_by_key(|m| m.step)
        .map(|m| m.value)
}

/// `planned`: the pretrain's epochs (from its parsed config).
fn stage_row(run: RunRecord, metrics: &[MetricRecord], planned: usize) -> StageRow {
    if run.stage == StageKind::Eval {
        let top1 = last(metrics, metric::EVAL_TOP1)
            .filter(|_| run.state == RunState::Done)
            .map(|v| v * 100.0);
        return StageRow {
            run,
            epochs: None,
            loss: None,
            top1,
        };
    }
    let done = metrics
        .iter()
        .filter(|m| m.name == metric::EPOCH_LOSS)
        .count();
    StageRow {
        epochs: Some((done, planned)),
        loss: last(metrics, metric::EPOCH_LOSS),
        top1: None,
        run,
    }
}

pub struct RunView {
    pub run: RunRecord,
    pub sweeps: Vec<String>,
    pub metrics: Vec<MetricRecord>,
    pub checkpoints: Vec<Checkpoint>,
    /// Evaluations of a pretrain, each with its last top-1 and top-5 (percent).
    pub evaluations: Vec<(RunRecord, Option<f64>, Option<f64>)>,
}

/// `None`: no such stage.
pub async fn run(store: &Store, id: &str) -> Result<Option<RunView>> {
    let Some(run) = store.run(id).await? else {
        return Ok(None);
    };
    let sweeps = store.sweeps_of_run(id).await?;
    let metrics = store.metrics(id).await?;
    let checkpoints = store.checkpoints(id).await?;
    let mut evaluations = Vec::new();
    for e in store.evaluations_of(id).await? {
        let m = store.metrics(&e.id).await?;
        let done = e.state == RunState::Done;
        let pct = |n: &str| last(&m, n).filter(|_| done).map(|v| v * 100.0);
        let (t1, t5) = (pct(metric::EVAL_TOP1), pct(metric::EVAL_TOP5));
        evaluations.push((e, t1, t5));
    }
    Ok(Some(RunView {
        run,
        sweeps,
        metrics,
        checkpoints,
        evaluations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LeaseHolder, NewStage, NewSweep};

    fn stages(n: usize) -> Vec<NewStage> {
        (0..n)
            .map(|i| NewStage {
                id: format!("p{i:03}"),
                stage: StageKind::Pretrain,
                parent_id: None,
                label: "pretrain".into(),
                config: "{\"epochs\": 3}".into(),
                dataset_fingerprint: "fp".into(),
                semantics_version: 2,
                cell: format!("{{\"loss.temperature\": {i}}}"),
            })
            .collect()
    }

    /// The view of sweep `a` through `cache`: (queued, running, done) and each stage's
    /// (state, loss).
    async fn look(store: &Store, cache: &Cache) -> ([usize; 3], Vec<(RunState, Option<f64>)>) {
        let v = sweep(store, cache, "a").await.unwrap().unwrap();
        let rows = v.stages.iter().map(|r| (r.run.state, r.loss)).collect();
        ([v.counts[0], v.counts[1], v.counts[2]], rows)
    }

    #[test]
    fn a_refresh_reads_what_changed_and_a_new_membership_everything() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        rt.block_on(async {
            let store = Store::open(db.to_str().unwrap()).await.unwrap();
            let spec = NewSweep {
                name: "a".into(),
                spec_path: "a.yaml".into(),
                spec_text: "name: a".into(),
                profile: None,
                overrides: vec![],
            };
            // Over CURVES_MAX_RUNS pretrains: the path that keeps metrics between views.
            let n = CURVES_MAX_RUNS + 1;
            store.register(&spec, &stages(n)).await.unwrap();
            let cache = Cache::default();
            let (counts, rows) = look(&store, &cache).await;
            assert_eq!(counts, [n, 0, 0]);
            assert_eq!(rows[0], (RunState::Queued, None));
            // A worker claims the first stage, records an epoch and finishes it; another
            // claims the second: the next view shows both, from the rows it re-reads.
            let w = LeaseHolder {
                id: "w".into(),
                host: "h".into(),
                pid: 1,
            };
            let first = store
                .claim(Some("a"), &w, 60_000, 3)
                .await
                .unwrap()
                .unwrap();
            let loss = MetricRecord {
                name: metric::EPOCH_LOSS.into(),
                step: 0,
                value: 4.5,
            };
            store.record_metrics(&first.run.id, &[loss]).await.unwrap();
            let c = Checkpoint {
                step: 1,
                epoch: 1,
                path: "c".into(),
                sha256: "h".into(),
            };
            store.record_checkpoint(&first.run.id, &c).await.unwrap();
            assert!(store.finish(&first.run.id, &w, 2.0).await.unwrap());
            let second = store
                .claim(Some("a"), &w, 60_000, 3)
                .await
                .unwrap()
                .unwrap();
            let (counts, rows) = look(&store, &cache).await;
            assert_eq!(counts, [n - 2, 1, 1]);
            let at = |id: &str| rows[id[1..].parse::<usize>().unwrap()];
            assert_eq!(at(&first.run.id), (RunState::Done, Some(4.5)));
            assert_eq!(at(&second.run.id), (RunState::Running, None));
            // Unchanged: the same view again.
            assert_eq!(look(&store, &cache).await.1, rows);
            // The sweep registered with other stages: its rows are read anew.
            store.register(&spec, &stages(3)).await.unwrap();
            let (counts, rows) = look(&store, &cache).await;
            assert_eq!(rows.len(), 3);
            assert_eq!(counts.iter().sum::<usize>(), 3);
            store.close().await;
        });
    }

    fn brief(stage: StageKind, state: RunState, secs: f64, owner: Option<&str>) -> StageBrief {
        StageBrief {
            sweep: "s".into(),
            stage,
            state,
            count: 1,
            compute_seconds: secs,
            lease_owner: owner.map(String::from),
            lease_host: owner.map(|_| "vm".to_string()),
        }
    }

    #[test]
    fn time_left_is_the_mean_cost_of_each_kind_shared_by_the_running_workers() {
        let stages = [
            brief(StageKind::Pretrain, RunState::Done, 10.0, None),
            brief(StageKind::Pretrain, RunState::Done, 20.0, None),
            brief(StageKind::Pretrain, RunState::Running, 0.0, Some("w1")),
            brief(StageKind::Pretrain, RunState::Running, 0.0, Some("w2")),
            brief(StageKind::Pretrain, RunState::Queued, 0.0, None),
            brief(StageKind::Eval, RunState::Done, 2.0, None),
            brief(StageKind::Eval, RunState::Queued, 0.0, None),
        ];
        let refs: Vec<&StageBrief> = stages.iter().collect();
        // (3 x 15 s + 1 x 2 s) / 2 workers.
        assert_eq!(eta_seconds(&refs), Some(23.5));
        assert_eq!(hosts(&refs).get("vm"), Some(&2));
        // Briefs grouped as the store returns them (two done pretrains in one) give the same.
        let mut grouped = brief(StageKind::Pretrain, RunState::Done, 30.0, None);
        grouped.count = 2;
        let mut refs: Vec<&StageBrief> = stages[2..].iter().collect();
        refs.push(&grouped);
        assert_eq!(eta_seconds(&refs), Some(23.5));
        // Nothing of a kind still to run has finished: no estimate.
        let first = [brief(StageKind::Pretrain, RunState::Queued, 0.0, None)];
        assert_eq!(eta_seconds(&first.iter().collect::<Vec<_>>()), None);
    }
}
