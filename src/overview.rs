//! A sweep at a glance, computed once for every view of it: its progress (stages done,
//! running, queued, failed), the estimated time left, the running workers per host, and
//! the state of its Slurm job arrays. Plain structs built from store records; `sweep
//! status` (`app::status`) prints them and the dashboard (`serve`) renders them, so the
//! two always agree.
//!
//! Why here, beside `vocab` and `units` rather than in `app` or `serve`: both views need
//! it, and `serve` must not reach into `app` (the command layer) nor into `sched` (the
//! scheduler) for what it shows. This module reads only `store` (its records), `slurm`
//! (the queue) and `units`; only the views import it, so it adds no cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;

use crate::slurm;
use crate::store::{RunRecord, RunState, SlurmJobRecord, StageBrief, StageKind, Store};
use crate::units::human_duration;

/// Where a sweep's stages stand, from its stage records.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Progress {
    pub done: usize,
    pub running: usize,
    pub queued: usize,
    pub failed: usize,
    /// Seconds of compute left divided among the running workers; `None` while no stage
    /// of a kind that is left has finished yet (nothing to estimate from).
    pub eta_seconds: Option<f64>,
    /// Running workers per host.
    pub workers: BTreeMap<String, usize>,
}

impl Progress {
    /// From the sweep's stages in brief (grouped as the store groups them, or one each).
    pub(crate) fn of_briefs(stages: &[&StageBrief]) -> Progress {
        let mut p = Progress {
            eta_seconds: eta_seconds(stages),
            workers: workers(stages),
            ..Progress::default()
        };
        for s in stages {
            let n = s.count.max(0) as usize;
            match s.state {
                RunState::Done => p.done += n,
                RunState::Running => p.running += n,
                RunState::Queued => p.queued += n,
                RunState::Failed => p.failed += n,
            }
        }
        p
    }

    /// From the sweep's stage rows (as `sweep status` and the sweep page read them).
    pub(crate) fn of_runs(rows: &[RunRecord]) -> Progress {
        let briefs = briefs(rows);
        Progress::of_briefs(&briefs.iter().collect::<Vec<_>>())
    }

    pub(crate) fn total(&self) -> usize {
        self.done + self.running + self.queued + self.failed
    }

    /// Stages still to finish.
    pub(crate) fn left(&self) -> usize {
        self.running + self.queued
    }

    /// `3 of 10 stages done, 1 running, 6 queued, 0 failed`.
    pub(crate) fn stages_text(&self) -> String {
        format!(
            "{} of {} stages done, {} running, {} queued, {} failed",
            self.done,
            self.total(),
            self.running,
            self.queued,
            self.failed
        )
    }

    /// `finished`, `about 4.2 min`, or why there is no estimate yet.
    pub(crate) fn time_left_text(&self) -> String {
        match self.eta_seconds {
            _ if self.left() == 0 => "finished".into(),
            Some(s) => format!("about {}", human_duration(s)),
            None => "— (nothing finished yet)".into(),
        }
    }

    /// `vm1 (2 workers), vm2 (1 worker)`, or `none running`.
    pub(crate) fn workers_text(&self) -> String {
        if self.workers.is_empty() {
            return "none running".into();
        }
        self.workers
            .iter()
            .map(|(h, n)| format!("{h} ({n} worker{})", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One sweep of the list of sweeps: its progress and its Slurm job arrays.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SweepOverview {
    pub name: String,
    pub profile: Option<String>,
    /// When the sweep last changed (ms since the Unix epoch).
    pub updated_at: i64,
    pub progress: Progress,
    /// One line per Slurm job array, where squeue answers; one line naming them where it
    /// does not; none for a sweep not submitted to Slurm.
    pub slurm: Vec<String>,
}

/// Every sweep in the store (most recently changed first) with its overview: two queries
/// for all the sweeps' stages, one per sweep for its Slurm jobs, and one squeue call.
pub(crate) async fn sweeps(store: &Store) -> Result<Vec<SweepOverview>> {
    let summaries = store.sweeps().await?;
    let briefs = store.stage_briefs().await?;
    let mut by_sweep: HashMap<&str, Vec<&StageBrief>> = HashMap::new();
    for b in &briefs {
        by_sweep.entry(b.sweep.as_str()).or_default().push(b);
    }
    let names: Vec<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    let slurm = slurm_lines(store, &names).await;
    Ok(summaries
        .into_iter()
        .zip(slurm)
        .map(|(s, slurm)| {
            let stages = by_sweep.remove(s.name.as_str()).unwrap_or_default();
            SweepOverview {
                progress: Progress::of_briefs(&stages),
                slurm,
                name: s.name,
                profile: s.profile,
                updated_at: s.updated_at,
            }
        })
        .collect())
}

/// The Slurm lines of each of `sweeps` (in their order): their job arrays, described from
/// one squeue call for all of them. A store older than Slurm support has no jobs table:
/// no Slurm lines, not an error.
pub(crate) async fn slurm_lines(store: &Store, sweeps: &[&str]) -> Vec<Vec<String>> {
    let mut jobs: Vec<Vec<SlurmJobRecord>> = Vec::with_capacity(sweeps.len());
    for name in sweeps {
        jobs.push(store.slurm_jobs(name).await.unwrap_or_default());
    }
    let ids: Vec<String> = jobs.iter().flatten().map(|j| j.job_id.clone()).collect();
    let queue = if ids.is_empty() {
        None
    } else {
        tokio::task::spawn_blocking(move || slurm::squeue(&ids))
            .await
            .ok()
            .flatten()
    };
    jobs.iter()
        .map(|of_sweep| {
            let arrays: Vec<(&str, i64)> = of_sweep
                .iter()
                .map(|j| (j.job_id.as_str(), j.workers))
                .collect();
            slurm::describe_arrays(&arrays, queue.as_deref())
        })
        .collect()
}

/// Running workers per host.
fn workers(stages: &[&StageBrief]) -> BTreeMap<String, usize> {
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
fn eta_seconds(stages: &[&StageBrief]) -> Option<f64> {
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
    let workers: usize = workers(stages).values().sum();
    Some(left / workers.max(1) as f64)
}

/// A sweep's stage rows in brief, as the store's [`Store::stage_briefs`] groups them: one
/// per kind, state and holder.
fn briefs(rows: &[RunRecord]) -> Vec<StageBrief> {
    type Key<'a> = (StageKind, RunState, Option<&'a str>, Option<&'a str>);
    let mut groups: HashMap<Key, (i64, f64)> = HashMap::new();
    for s in rows {
        let key = (
            s.stage,
            s.state,
            s.lease_owner.as_deref(),
            s.lease_host.as_deref(),
        );
        let g = groups.entry(key).or_default();
        g.0 += 1;
        g.1 += s.compute_seconds;
    }
    groups
        .into_iter()
        .map(
            |((stage, state, owner, host), (count, compute_seconds))| StageBrief {
                sweep: String::new(),
                stage,
                state,
                count,
                compute_seconds,
                lease_owner: owner.map(String::from),
                lease_host: host.map(String::from),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn stages() -> Vec<StageBrief> {
        vec![
            brief(StageKind::Pretrain, RunState::Done, 10.0, None),
            brief(StageKind::Pretrain, RunState::Done, 20.0, None),
            brief(StageKind::Pretrain, RunState::Running, 0.0, Some("w1")),
            brief(StageKind::Pretrain, RunState::Running, 0.0, Some("w2")),
            brief(StageKind::Pretrain, RunState::Queued, 0.0, None),
            brief(StageKind::Eval, RunState::Done, 2.0, None),
            brief(StageKind::Eval, RunState::Queued, 0.0, None),
            brief(StageKind::Eval, RunState::Failed, 1.0, None),
        ]
    }

    #[test]
    fn progress_counts_the_stages_and_shares_the_mean_cost_left_among_the_workers() {
        let stages = stages();
        let p = Progress::of_briefs(&stages.iter().collect::<Vec<_>>());
        assert_eq!(
            (p.done, p.running, p.queued, p.failed),
            (3, 2, 2, 1),
            "{p:?}"
        );
        assert_eq!((p.total(), p.left()), (8, 4));
        // (3 pretrains left x 15 s + 1 evaluation x 2 s) / 2 workers.
        assert_eq!(p.eta_seconds, Some(23.5));
        assert_eq!(p.workers.get("vm"), Some(&2));
        assert_eq!(
            p.stages_text(),
            "3 of 8 stages done, 2 running, 2 queued, 1 failed"
        );
        assert_eq!(p.time_left_text(), "about 23.5 s");
        assert_eq!(p.workers_text(), "vm (2 workers)");
        // Briefs grouped as the store returns them (two done pretrains in one) give the same.
        let mut grouped = brief(StageKind::Pretrain, RunState::Done, 30.0, None);
        grouped.count = 2;
        let mut refs: Vec<&StageBrief> = stages[2..].iter().collect();
        refs.push(&grouped);
        assert_eq!(Progress::of_briefs(&refs), p);
    }

    #[test]
    fn nothing_left_is_finished_and_nothing_finished_has_no_estimate() {
        let first = [brief(StageKind::Pretrain, RunState::Queued, 0.0, None)];
        let p = Progress::of_briefs(&first.iter().collect::<Vec<_>>());
        assert_eq!(p.eta_seconds, None);
        assert_eq!(p.time_left_text(), "— (nothing finished yet)");
        assert_eq!(p.workers_text(), "none running");
        let over = [brief(StageKind::Pretrain, RunState::Done, 5.0, None)];
        let p = Progress::of_briefs(&over.iter().collect::<Vec<_>>());
        assert_eq!((p.done, p.left()), (1, 0));
        assert_eq!(p.time_left_text(), "finished");
    }

    #[test]
    fn stage_rows_give_the_progress_their_briefs_give() {
        let row = |i: usize, b: &StageBrief| RunRecord {
            id: format!("r{i}"),
            stage: b.stage,
            parent_id: None,
            label: "l".into(),
            config: "{}".into(),
            dataset_fingerprint: "fp".into(),
            state: b.state,
            attempts: 1,
            lease_owner: b.lease_owner.clone(),
            lease_host: b.lease_host.clone(),
            heartbeat_at: None,
            started_at: None,
            finished_at: None,
            compute_seconds: b.compute_seconds,
            failure: None,
            position: i as i64,
            cell: "{}".into(),
        };
        let stages = stages();
        let rows: Vec<RunRecord> = stages.iter().enumerate().map(|(i, b)| row(i, b)).collect();
        assert_eq!(
            Progress::of_runs(&rows),
            Progress::of_briefs(&stages.iter().collect::<Vec<_>>())
        );
    }
}
