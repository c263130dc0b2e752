//! The commands that run stages: `sweep run` (register, then local workers), `sweep resume`
//! (the same with the stored spec), `sweep retry` (requeue failures) and `sweep worker`
//! (one claim loop: what `run` starts and what a Slurm task runs).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::staging::{check_precision, load_plan, register, stage};
use super::{open_existing, runtime, UserError};
use crate::cli::{Cli, ExecArgs, SpecArgs, WorkerArgs};
use crate::exit;
use crate::sched::{self, signals, DeviceName};
use crate::spec::{self, LoadOptions};
use crate::store::Store;

pub(super) fn run(cli: &Cli, args: &SpecArgs, exec: &ExecArgs) -> Result<i32> {
    let devices = parse_devices(&exec.devices)?;
    let plan = load_plan(args)?;
    check_precision(&plan, &devices)?;
    // Data first: a missing or corrupt dataset is refused before a database is created.
    let staged = stage(&plan, &cli.data_dir)?;
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    register(&rt, &store, &plan, &staged, cli.quiet)?;
    execute(cli, &rt, &store, &plan.name, exec, devices)
}

pub(super) fn resume(cli: &Cli, name: &str, exec: &ExecArgs) -> Result<i32> {
    let devices = parse_devices(&exec.devices)?;
    let rt = runtime()?;
    let store = open_existing(&rt, &cli.db)?;
    let rec = rt.block_on(store.sweep(name))?;
    rt.block_on(store.close());
    // Re-expand the stored spec: the same text gives the same runs; the store keeps them.
    let opts = LoadOptions {
        profile: rec.profile.clone(),
        overrides: rec.overrides.clone(),
    };
    let plan = spec::load_str(&rec.spec_text, Path::new(&rec.spec_path), &opts)?;
    check_precision(&plan, &devices)?;
    let staged = stage(&plan, &cli.data_dir)?;
    let store = rt.block_on(Store::open(&cli.db))?;
    register(&rt, &store, &plan, &staged, cli.quiet)?;
    execute(cli, &rt, &store, name, exec, devices)
}

pub(super) fn retry(cli: &Cli, name: &str) -> Result<i32> {
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    let n = rt.block_on(store.retry_failed(name))?;
    rt.block_on(store.close());
    println!("{n} failed stage(s) of {name} requeued; `sweep resume {name}` runs them");
    Ok(exit::OK)
}

pub(super) fn worker(cli: &Cli, args: &WorkerArgs) -> Result<i32> {
    let stop = signals::install().context("installing signal handlers")?;
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    let cfg = sched::WorkerConfig {
        sweep: args.sweep.clone(),
        max_runs: args.max_runs,
        idle_exit: Duration::from_secs(args.idle_exit),
        device: args.device.clone(),
        loader_threads: args.loader_threads,
        data_dir: cli.data_dir.clone(),
        runs_dir: cli.runs_dir.clone(),
        lease: Duration::from_secs(args.lease_secs.max(1)),
        max_attempts: args.max_attempts,
        events_json: args.events_json,
        quiet: cli.quiet,
    };
    let ended = sched::Worker::new(&rt, &store, cfg, stop)?.run()?;
    rt.block_on(store.close());
    Ok(ended.code())
}

/// `--devices cpu` or `cuda:0,cuda:1,...`, checked before anything is written.
fn parse_devices(list: &str) -> Result<Vec<String>> {
    let devices: Vec<String> = list
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    if let Some(bad) = devices.iter().find(|d| DeviceName::parse(d).is_none()) {
        return Err(UserError(format!(
            "--devices: unknown device `{bad}`; use cpu or cuda:0,cuda:1"
        ))
        .into());
    }
    Ok(devices)
}

/// Runs the registered sweep with local workers to its end or a stop signal.
fn execute(
    cli: &Cli,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    sweep: &str,
    exec: &ExecArgs,
    devices: Vec<String>,
) -> Result<i32> {
    let stop = signals::install().context("installing signal handlers")?;
    let opts = sched::RunOptions {
        sweep: sweep.to_string(),
        workers: exec.workers,
        devices,
        max_attempts: exec.max_attempts,
        lease: Duration::from_secs(exec.lease_secs.max(1)),
        db: cli.db.clone(),
        data_dir: cli.data_dir.clone(),
        runs_dir: cli.runs_dir.clone(),
        quiet: cli.quiet,
    };
    let summary = sched::coordinate(rt, store, &opts, &stop)?;
    rt.block_on(store.close());
    if !cli.quiet {
        eprintln!(
            "sweep {sweep}: {} of {} stages done, {} failed{}",
            summary.done,
            summary.total,
            summary.failed,
            if summary.interrupted {
                "; interrupted: `sweep resume` continues"
            } else {
                ""
            }
        );
    }
    Ok(summary.exit_code(stop.is_set()))
}
