//! Reading what a page shows from the store (read-only) into plain views: one sweep with
//! its progress (the shared [`crate::overview`], also the list of sweeps'), its report
//! (the report module's own data, sections and figures) and its stages; one stage with
//! its metrics, checkpoints and evaluations. Rendering is `pages`' job.

use std::collections::HashMap;

use anyhow::Result;

use super::cache::{parse_configs, Cache, KeptSweep, ShownMetrics};
use crate::ml::Checkpoint;
use crate::overview::Progress;
use crate::report::{self, Section, SweepData};
use crate::store::{
    MetricRecord, RunRecord, RunState, StageKind, Store, StoreError, SweepRecord, SweepVersion,
};
use crate::vocab::metric;

/// Above this many pretrain runs the sweep page reads only the metrics its tables need,
/// and of each only its last step (with how many steps it has), not every step's: the
/// training-curves figure is then on each run's page instead.
pub const CURVES_MAX_RUNS: usize = 200;

/// Metrics the sweep page reads when it skips the per-step curves.
const FINAL_METRICS: [&str; 4] = [
    metric::EPOCH_LOSS,
    metric::EPOCH_CONTRASTIVE_ACC,
    metric::EVAL_TOP1,
    metric::EVAL_TOP5,
];

/// Stages per page of a sweep's runs table.
pub const RUNS_PER_PAGE: usize = 250;

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
    pub progress: Progress,
    /// The report's sections (figures still to be drawn).
    pub sections: Vec<Section>,
    pub curves_skipped: bool,
    pub warnings: Vec<String>,
    /// The page of the runs table shown (0-based) and how many there are.
    pub page: usize,
    pub pages: usize,
    /// The rows of that page.
    pub stages: Vec<StageRow>,
}

/// `None`: no such sweep. Brings `kept` (this sweep's stages as the dashboard keeps them)
/// to `version`: on a first view (or a new membership) every stage with its config and
/// the metrics the page needs; else only the stages the store stamped since the kept
/// version, with their metrics. Then builds the view, runs table page `page` (0-based).
pub async fn sweep(
    store: &Store,
    cache: &Cache,
    kept: &mut Option<KeptSweep>,
    name: &str,
    version: SweepVersion,
    page: usize,
) -> Result<Option<SweepView>> {
    let record = match store.sweep(name).await {
        Ok(r) => r,
        Err(StoreError::NoSuchSweep(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match kept {
        Some(k) if k.version.membership == version.membership => {
            if version.changed > k.version.changed {
                refresh(store, name, k, version).await?;
            }
        }
        _ => *kept = Some(first_view(store, cache, name, version).await?),
    }
    let k = kept.as_ref().expect("kept above");
    let curves_skipped = pretrains(&k.rows) > CURVES_MAX_RUNS;
    let data = cache.with_configs(|config_of| {
        SweepData::assemble_parsed(record.clone(), &k.rows, &k.metrics, config_of)
    });
    let mut sections = report::sections(&data);
    if curves_skipped {
        sections.retain(|s| !is_curves(s));
    }
    let pages = k.rows.len().div_ceil(RUNS_PER_PAGE).max(1);
    let page = page.min(pages - 1);
    let of_page = &k.rows
        [(page * RUNS_PER_PAGE).min(k.rows.len())..((page + 1) * RUNS_PER_PAGE).min(k.rows.len())];
    let planned: HashMap<&str, usize> = data
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.config.epochs))
        .collect();
    let stages = of_page
        .iter()
        .map(|run| {
            let m = k.metrics.get(&run.id).map_or(&[][..], |m| &m[..]);
            let done = k.epochs.get(&run.id).copied().unwrap_or(0);
            let epochs = planned.get(run.id.as_str()).copied().unwrap_or(0);
            stage_row(run.clone(), m, (done, epochs))
        })
        .collect();
    Ok(Some(SweepView {
        progress: Progress::of_runs(&k.rows),
        sections,
        curves_skipped,
        warnings: data.warnings.clone(),
        page,
        pages,
        stages,
        sweep: record,
    }))
}

fn pretrains(rows: &[RunRecord]) -> usize {
    rows.iter()
        .filter(|s| s.stage == StageKind::Pretrain)
        .count()
}

/// Whether a sweep of `rows` reads every step's metrics for its training curves, or (above
/// [`CURVES_MAX_RUNS`] pretrains) only the last step of those its tables need.
fn draws_curves(rows: &[RunRecord]) -> bool {
    pretrains(rows) <= CURVES_MAX_RUNS
}

/// Every stage of the sweep (configs parsed into `cache`) and its metrics, under
/// `version` (read before them: whatever changes meanwhile is read again next time).
/// Three bulk reads at once, one on each of the read-only pool's connections: the
/// sweep's distinct configs (then parsed off the async threads), the last step of the
/// metrics its tables need, and the stage rows without their configs; every step's
/// metrics instead on a sweep small enough to draw its curves.
async fn first_view(
    store: &Store,
    cache: &Cache,
    name: &str,
    version: SweepVersion,
) -> Result<KeptSweep> {
    let configs = async {
        let unknown = cache.unknown_configs(store.sweep_configs(name).await?);
        let parsed = tokio::task::spawn_blocking(move || parse_configs(unknown)).await?;
        cache.keep_configs(parsed);
        anyhow::Ok(())
    };
    let finals = async { anyhow::Ok(store.sweep_last_metrics(name, &FINAL_METRICS).await?) };
    let stages = async { anyhow::Ok(store.sweep_stages(name).await?) };
    let ((), finals, rows) = tokio::try_join!(configs, finals, stages)?;
    let metrics = match draws_curves(&rows) {
        false => ShownMetrics::last(finals),
        true => ShownMetrics::every(store.sweep_metrics(name, None).await?),
    };
    // Stages that joined the sweep between the reads: their configs by id.
    let missing = cache.without_config(&rows);
    if !missing.is_empty() {
        cache.keep_configs(parse_configs(store.configs_of_stages(&missing).await?));
    }
    Ok(KeptSweep::new(version, rows, metrics))
}

/// Brings `kept` to `version`: the stages stamped since its version, read again with
/// their metrics.
async fn refresh(
    store: &Store,
    name: &str,
    kept: &mut KeptSweep,
    version: SweepVersion,
) -> Result<()> {
    let moved = store
        .sweep_stages_changed_since(name, kept.version.changed)
        .await?;
    // Most stages moved: one query over the sweep is cheaper.
    let whole = moved.len() * 2 > kept.rows.len();
    let ids: Vec<&str> = moved.iter().map(|r| r.id.as_str()).collect();
    let fresh = match (draws_curves(&kept.rows), whole) {
        (true, true) => ShownMetrics::every(store.sweep_metrics(name, None).await?),
        (true, false) => ShownMetrics::every(store.metrics_of_stages(&ids, None).await?),
        (false, true) => ShownMetrics::last(store.sweep_last_metrics(name, &FINAL_METRICS).await?),
        (false, false) => {
            ShownMetrics::last(store.last_metrics_of_stages(&ids, &FINAL_METRICS).await?)
        }
    };
    kept.patch(version, moved, fresh);
    Ok(())
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

/// `epochs`: the pretrain's epochs done and planned (from its parsed config).
fn stage_row(run: RunRecord, metrics: &[MetricRecord], epochs: (usize, usize)) -> StageRow {
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
    StageRow {
        epochs: Some(epochs),
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

    /// Sweep `a` through `cache` (kept between calls, as the routes keep it): each
    /// stage's (state, attempt, host, loss), and the page's body.
    async fn look(store: &Store, cache: &Cache) -> (Vec<Shown>, String) {
        let version = store.sweep_version("a").await.unwrap().unwrap();
        let slot = cache.sweep("a");
        let mut kept = slot.lock().await;
        let v = sweep(store, cache, &mut kept, "a", version, 0)
            .await
            .unwrap()
            .unwrap();
        let rows = v
            .stages
            .iter()
            .map(|r| {
                let run = &r.run;
                (run.state, run.attempts, run.lease_host.clone(), r.loss)
            })
            .collect();
        (rows, super::super::pages::sweep(&v))
    }

    /// A stage as the runs table shows it: state, attempt, host, loss.
    type Shown = (RunState, i64, Option<String>, Option<f64>);

    /// [`look`] through `cache`, checked against a first view (nothing kept): a refresh
    /// shows exactly what reading everything anew shows.
    async fn fresh_look(store: &Store, cache: &Cache) -> Vec<Shown> {
        let (rows, body) = look(store, cache).await;
        let (cold_rows, cold_body) = look(store, &Cache::default()).await;
        assert_eq!(rows, cold_rows, "a refresh shows what a first view shows");
        assert_eq!(body, cold_body);
        rows
    }

    #[test]
    fn a_refresh_shows_every_change_and_a_new_membership_everything() {
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
            // Over CURVES_MAX_RUNS pretrains: the path that keeps table metrics only.
            let n = CURVES_MAX_RUNS + 1;
            store.register(&spec, &stages(n)).await.unwrap();
            let cache = Cache::default();
            let rows = fresh_look(&store, &cache).await;
            assert_eq!(rows.len(), n);
            assert!(rows.iter().all(|r| r.0 == RunState::Queued));
            let holder = |id: &str| LeaseHolder {
                id: id.into(),
                host: format!("host-{id}"),
                pid: 1,
            };
            let (w, w2) = (holder("w"), holder("w2"));
            let host = |w: &LeaseHolder| Some(w.host.clone());
            let loss = |value| MetricRecord {
                name: metric::EPOCH_LOSS.into(),
                step: 0,
                value,
            };
            // A worker claims the first stage, records an epoch and finishes it; then it
            // claims the second.
            let claim = |w: &LeaseHolder, lease_ms| {
                let (store, w) = (&store, w.clone());
                async move {
                    store
                        .claim(Some("a"), &w, lease_ms, 3)
                        .await
                        .unwrap()
                        .unwrap()
                }
            };
            let first = claim(&w, 60_000).await;
            let id = first.run.id.clone();
            store.record_metrics(&id, &[loss(4.5)]).await.unwrap();
            let c = Checkpoint {
                step: 1,
                epoch: 1,
                path: "c".into(),
                sha256: "h".into(),
            };
            store.record_checkpoint(&id, &c).await.unwrap();
            assert!(store.finish(&id, &w, 2.0).await.unwrap());
            let id = claim(&w, 60_000).await.run.id;
            let rows = fresh_look(&store, &cache).await;
            assert_eq!(rows[0], (RunState::Done, 1, host(&w), Some(4.5)));
            assert_eq!(rows[1], (RunState::Running, 1, host(&w), None));
            // A heartbeat changes nothing shown: the same version.
            let before = store.sweep_version("a").await.unwrap();
            assert!(store.heartbeat(&id, &w, 60_000).await.unwrap());
            assert_eq!(store.sweep_version("a").await.unwrap(), before);
            // A metric alone (an epoch of a running stage) shows.
            store.record_metrics(&id, &[loss(3.0)]).await.unwrap();
            assert_eq!(fresh_look(&store, &cache).await[1].3, Some(3.0));
            // Given back (requeued): queued, the attempt not counted, no host.
            store.release(&id, &w, 1.0).await.unwrap();
            let rows = fresh_look(&store, &cache).await;
            assert_eq!(rows[1], (RunState::Queued, 0, None, Some(3.0)));
            // Claimed under a lease that has expired at once, and reclaimed by another
            // worker.
            assert_eq!(claim(&w, -1).await.run.id, id);
            assert_eq!(claim(&w2, 60_000).await.run.id, id);
            let rows = fresh_look(&store, &cache).await;
            assert_eq!(rows[1], (RunState::Running, 2, host(&w2), Some(3.0)));
            // Failed, then requeued by a retry.
            store.fail(&id, &w2, "out of memory", 1.0).await.unwrap();
            assert_eq!(fresh_look(&store, &cache).await[1].0, RunState::Failed);
            assert_eq!(store.retry_failed("a").await.unwrap(), 1);
            assert_eq!(fresh_look(&store, &cache).await[1].0, RunState::Queued);
            // The sweep registered with other stages: its rows are read anew.
            store.register(&spec, &stages(3)).await.unwrap();
            assert_eq!(fresh_look(&store, &cache).await.len(), 3);
            store.close().await;
        });
    }
}
