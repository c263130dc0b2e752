//! `sweep plan`: the grid a spec expands to, which of its stages the store already holds
//! and in what state, and what the rest will cost. Writes nothing.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use super::estimate::estimate_seconds;
use super::staging::{load_plan, stage, Staged};
use super::{cell_text, runtime};
use crate::cli::{Cli, SpecArgs};
use crate::exit;
use crate::spec::Plan;
use crate::store::{RunState, Store};
use crate::units::human_duration;
use crate::vocab::short_id;

pub(super) fn plan(cli: &Cli, args: &SpecArgs, json: bool) -> Result<i32> {
    let plan = load_plan(args)?;
    let staged = stage(&plan, &cli.data_dir)?;
    let states = stored_states(&cli.db, &staged)?;
    let state_of = |id: &str| states.get(id).map_or("new", |s| s.as_str()).to_string();
    let cost: f64 = plan.runs.iter().map(|r| estimate_seconds(&r.config)).sum();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan_json(&plan, &staged, &state_of, cost))?
        );
        return Ok(exit::OK);
    }
    let mut o = std::io::stdout().lock();
    write_header(&mut o, cli, &plan, &staged, &state_of)?;
    write_runs(&mut o, &plan, &staged, &state_of)?;
    writeln!(o)?;
    writeln!(o, "estimated compute: {} on this kind of 2-core CPU (pretrain + evaluation, from measured throughput)", human_duration(cost))?;
    for w in &plan.warnings {
        writeln!(o, "warning: {w}")?;
    }
    Ok(exit::OK)
}

/// States of the planned stages the store already holds (none without a database).
fn stored_states(db: &str, staged: &Staged) -> Result<HashMap<String, RunState>> {
    let rt = runtime()?;
    let Some(store) = rt.block_on(Store::open_read_only(db))? else {
        return Ok(HashMap::new());
    };
    let ids: Vec<String> = staged.stages.iter().map(|s| s.id.clone()).collect();
    let states = rt.block_on(store.states(&ids))?;
    rt.block_on(store.close());
    Ok(states)
}

#[derive(Serialize)]
struct PlanJson<'a> {
    name: &'a str,
    profile: Option<&'a str>,
    pretrain_runs: usize,
    stages: usize,
    merged_duplicates: usize,
    excluded: usize,
    /// Random-weights control runs among `pretrain_runs` (the last ones).
    controls: usize,
    warnings: &'a [String],
    estimated_cpu_seconds: f64,
    runs: Vec<PlanRunJson>,
}

#[derive(Serialize)]
struct PlanRunJson {
    pretrain_id: String,
    state: String,
    cell: serde_json::Value,
    evals: Vec<(String, String, String)>,
}

fn plan_json<'a>(
    plan: &'a Plan,
    staged: &Staged,
    state_of: &dyn Fn(&str) -> String,
    cost: f64,
) -> PlanJson<'a> {
    let runs = plan
        .runs
        .iter()
        .zip(&staged.per_run)
        .map(|(r, (pid, evals))| PlanRunJson {
            pretrain_id: pid.clone(),
            state: state_of(pid),
            cell: serde_json::Value::Object(r.cell.iter().cloned().collect()),
            evals: evals
                .iter()
                .map(|(id, label)| (id.clone(), label.clone(), state_of(id)))
                .collect(),
        })
        .collect();
    PlanJson {
        name: &plan.name,
        profile: plan.options.profile.as_deref(),
        pretrain_runs: plan.runs.len(),
        stages: staged.stages.len(),
        merged_duplicates: plan.merged_duplicates,
        excluded: plan.excluded,
        controls: plan.controls,
        warnings: &plan.warnings,
        estimated_cpu_seconds: cost,
        runs,
    }
}

/// The sweep, its data, what was merged or excluded, and the stages per state.
fn write_header(
    o: &mut impl Write,
    cli: &Cli,
    plan: &Plan,
    staged: &Staged,
    state_of: &dyn Fn(&str) -> String,
) -> Result<()> {
    let profile = plan
        .options
        .profile
        .as_ref()
        .map(|p| format!(" (profile {p})"))
        .unwrap_or_default();
    writeln!(
        o,
        "sweep {}{profile}: {} pretrain runs, {} stages in all",
        plan.name,
        plan.runs.len(),
        staged.stages.len()
    )?;
    if let Some(d) = &plan.description {
        writeln!(o, "  {d}")?;
    }
    for (path, fp) in &staged.datasets {
        writeln!(
            o,
            "dataset {} (fingerprint {})",
            path.display(),
            short_id(fp)
        )?;
    }
    if plan.merged_duplicates > 0 || plan.excluded > 0 {
        writeln!(
            o,
            "{} grid points excluded, {} merged as duplicates",
            plan.excluded, plan.merged_duplicates
        )?;
    }
    if plan.controls > 0 {
        writeln!(
            o,
            "{} random-weights control run(s) (epochs 0, the same evaluations; `control: false` drops them)",
            plan.controls
        )?;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in &staged.stages {
        *counts.entry(state_of(&s.id)).or_default() += 1;
    }
    let mut summary: Vec<String> = ["new", "queued", "running", "done", "failed"]
        .iter()
        .filter_map(|k| counts.get(*k).map(|n| format!("{n} {k}")))
        .collect();
    if summary.is_empty() {
        summary.push("nothing".into());
    }
    writeln!(
        o,
        "store {}: {}",
        crate::store::redact(&cli.db),
        summary.join(", ")
    )?;
    writeln!(o)?;
    Ok(())
}

/// One line per planned run: its pretrain, its cell on every axis, its evaluations.
fn write_runs(
    o: &mut impl Write,
    plan: &Plan,
    staged: &Staged,
    state_of: &dyn Fn(&str) -> String,
) -> Result<()> {
    let cells: Vec<Vec<String>> = plan
        .runs
        .iter()
        .map(|r| {
            plan.axes
                .iter()
                .map(|a| {
                    r.cell
                        .iter()
                        .find(|(k, _)| k == a)
                        .map(|(_, v)| cell_text(v))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    // Column width per axis: the widest of its name and its values.
    let widths: Vec<usize> = plan
        .axes
        .iter()
        .enumerate()
        .map(|(j, a)| {
            cells
                .iter()
                .map(|c| c[j].len())
                .chain([a.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut header = format!("{:>4}  {:<12}  {:<8}", "#", "pretrain", "state");
    for (a, w) in plan.axes.iter().zip(&widths) {
        header.push_str(&format!("  {a:<w$}"));
    }
    header.push_str("  evaluations");
    writeln!(o, "{header}")?;
    for (i, ((pid, evals), cell)) in staged.per_run.iter().zip(&cells).enumerate() {
        let mut line = format!("{:>4}  {:<12}  {:<8}", i + 1, short_id(pid), state_of(pid));
        for (v, w) in cell.iter().zip(&widths) {
            line.push_str(&format!("  {v:<w$}"));
        }
        let ev: Vec<String> = evals
            .iter()
            .map(|(id, label)| format!("{label} {}", state_of(id)))
            .collect();
        line.push_str(&format!("  {}", ev.join(", ")));
        writeln!(o, "{}", line.trim_end())?;
    }
    Ok(())
}
