//! `sweep status` and `sweep ls`: the sweeps in the store with their progress, or one
//! sweep's stages with their state, attempts, top-1 and failure reasons, then its progress,
//! time left, workers and Slurm jobs (the overview the dashboard shows, [`crate::overview`]).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::{cell_text, runtime};
use crate::cli::Cli;
use crate::exit;
use crate::overview::{self, Progress, SweepOverview};
use crate::store::{RunState, Store};
use crate::vocab::{metric, short_id, StageKind};

/// One sweep of `sweep ls --json`.
#[derive(Serialize)]
struct SweepJson<'a> {
    name: &'a str,
    profile: Option<&'a str>,
    queued: usize,
    running: usize,
    done: usize,
    failed: usize,
    updated_at: i64,
}

impl<'a> From<&'a SweepOverview> for SweepJson<'a> {
    fn from(o: &'a SweepOverview) -> Self {
        let p = &o.progress;
        SweepJson {
            name: &o.name,
            profile: o.profile.as_deref(),
            queued: p.queued,
            running: p.running,
            done: p.done,
            failed: p.failed,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Serialize)]
struct RunStatusJson {
    id: String,
    stage: StageKind,
    label: String,
    state: RunState,
    attempts: i64,
    cell: serde_json::Value,
    top1: Option<f64>,
    failure: Option<String>,
    worker: Option<String>,
    compute_seconds: f64,
}

pub(super) fn status(cli: &Cli, sweep: Option<&str>, json: bool) -> Result<i32> {
    let rt = runtime()?;
    let Some(store) = rt.block_on(Store::open_read_only(&cli.db))? else {
        if json {
            println!("[]");
        } else {
            println!(
                "no database at {} yet: `sweep run SPEC` creates it",
                crate::store::redact(&cli.db)
            );
        }
        return Ok(exit::OK);
    };
    let mut o = std::io::stdout().lock();
    let Some(name) = sweep else {
        let sweeps = rt.block_on(overview::sweeps(&store))?;
        if json {
            let rows: Vec<SweepJson> = sweeps.iter().map(SweepJson::from).collect();
            writeln!(o, "{}", serde_json::to_string_pretty(&rows)?)?;
        } else if sweeps.is_empty() {
            writeln!(o, "no sweeps in {}", crate::store::redact(&cli.db))?;
        } else {
            writeln!(
                o,
                "{:<24} {:<10} {:>7} {:>7} {:>7} {:>7}",
                "sweep", "profile", "done", "running", "queued", "failed"
            )?;
            for s in &sweeps {
                let p = &s.progress;
                writeln!(
                    o,
                    "{:<24} {:<10} {:>7} {:>7} {:>7} {:>7}",
                    s.name,
                    s.profile.as_deref().unwrap_or("-"),
                    p.done,
                    p.running,
                    p.queued,
                    p.failed
                )?;
            }
        }
        return Ok(exit::OK);
    };
    let runs = rt.block_on(store.sweep_runs(name))?;
    let progress = Progress::of_runs(&runs);
    // Each evaluation's top-1 at its last step (as the report reads it), in one query for
    // the sweep rather than one per stage.
    let last = rt.block_on(store.sweep_last_metrics(name, &[metric::EVAL_TOP1]))?;
    let mut rows = Vec::with_capacity(runs.len());
    for r in runs {
        let top1 = match r.stage {
            StageKind::Eval => last
                .get(&r.id)
                .and_then(|m| m.first())
                .map(|m| m.last.value),
            StageKind::Pretrain => None,
        };
        rows.push(RunStatusJson {
            cell: serde_json::from_str(&r.cell).unwrap_or(serde_json::Value::Null),
            id: r.id,
            stage: r.stage,
            label: r.label,
            state: r.state,
            attempts: r.attempts,
            top1,
            failure: r.failure,
            worker: r.lease_host,
            compute_seconds: r.compute_seconds,
        });
    }
    if json {
        writeln!(o, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(exit::OK);
    }
    // The stage column fits the longest label (`probe-color_vs_grayscale@h`), at least 10.
    let w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(10);
    writeln!(
        o,
        "{:<12}  {:<w$}  {:<8}  {:>3}  {:>7}  cell",
        "id", "stage", "state", "try", "top-1"
    )?;
    for r in &rows {
        let cell = match &r.cell {
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", cell_text(v)))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let top1 = r
            .top1
            .map(|t| format!("{:.2}%", t * 100.0))
            .unwrap_or_default();
        writeln!(
            o,
            "{:<12}  {:<w$}  {:<8}  {:>3}  {:>7}  {cell}",
            short_id(&r.id),
            r.label,
            r.state.as_str(),
            r.attempts,
            top1
        )?;
        if let Some(f) = &r.failure {
            writeln!(o, "              failed: {f}")?;
        }
    }
    writeln!(o)?;
    writeln!(o, "progress:  {}", progress.stages_text())?;
    writeln!(o, "time left: {}", progress.time_left_text())?;
    writeln!(o, "workers:   {}", progress.workers_text())?;
    // Workers submitted to Slurm, as squeue shows them.
    let slurm = rt.block_on(overview::slurm_lines(&store, &[name]));
    for line in slurm.iter().flatten() {
        writeln!(o, "{line}")?;
    }
    Ok(exit::OK)
}
