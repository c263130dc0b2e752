//! `sweep submit SPEC --slurm`: registers the sweep, then submits an sbatch array of
//! workers (docs/ARCHITECTURE.md#multi-machine); prints the job id. `--dry-run` prints
//! the script. Holds the path rules of a cluster: workers on other nodes get the store as a
//! URL or an absolute path, and the binary, data and runs directories as absolute paths.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::staging::{check_precision, load_plan, register, stage};
use super::{runtime, UserError};
use crate::cli::{Cli, SubmitArgs};
use crate::exit;
use crate::sched::{slurm_array, WorkerLaunch};
use crate::slurm;
use crate::store::{Backend, SlurmJobRecord, Store};

pub(super) fn submit(cli: &Cli, args: &SubmitArgs) -> Result<i32> {
    if !args.slurm {
        return Err(UserError(
            "sweep submit needs an executor: --slurm (to run on this machine, use `sweep run`)"
                .into(),
        )
        .into());
    }
    let worker_db = store_for_workers(&cli.db, args.allow_sqlite)?;
    let plan = load_plan(&args.spec)?;
    let staged = stage(&plan, &cli.data_dir)?; // the data must be there before workers start
    let opts = slurm_options(cli, args, &plan.name)?;
    check_precision(&plan, std::slice::from_ref(&opts.worker.device))?;
    let script = slurm_array::script(&opts);
    if args.dry_run {
        print!("{script}");
        if !cli.quiet {
            eprintln!(
                "dry run: nothing registered or submitted; sbatch would get SWEEP_DB={} in its environment",
                crate::store::redact(&worker_db)
            );
        }
        return Ok(exit::OK);
    }
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    register(&rt, &store, &plan, &staged, cli.quiet)?;
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("creating the log directory {}", opts.log_dir.display()))?;
    let job = slurm::submit(&script, &worker_db)?;
    rt.block_on(store.record_slurm_job(&SlurmJobRecord {
        job_id: job.clone(),
        sweep: plan.name.clone(),
        workers: i64::from(args.workers),
        log_dir: opts.log_dir.to_string_lossy().into_owned(),
        submitted_at: crate::store::now_ms(),
    }))?;
    rt.block_on(store.close());
    println!("{job}");
    if !cli.quiet {
        eprintln!(
            "submitted slurm job {job}: {} workers for sweep {}; logs in {}; `sweep status {}` shows progress",
            args.workers,
            plan.name,
            opts.log_dir.display(),
            plan.name
        );
    }
    Ok(exit::OK)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// The store as workers on other nodes reach it: a PostgreSQL URL as is; a SQLite file as
/// an absolute path, and only when the user says every worker runs on this node.
fn store_for_workers(db: &str, allow_sqlite: bool) -> Result<String> {
    match Backend::of(db) {
        Backend::Postgres => Ok(db.to_string()),
        Backend::Sqlite if !allow_sqlite => Err(UserError(format!(
            "--slurm with a SQLite store ({db}): SQLite is a file on one machine's disk, and its \
             locks (WAL shared memory, fcntl) do not work across nodes or on network filesystems, \
             so workers on other nodes would corrupt it or fail with \"database is locked\". \
             Use PostgreSQL (--db postgres://user@host/db, password in DATABASE_URL), or pass \
             --allow-sqlite if every worker runs on this node and the file is on local disk"
        ))
        .into()),
        Backend::Sqlite => {
            let file = db
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            Ok(absolute(Path::new(file))?.to_string_lossy().into_owned())
        }
    }
}

/// The job array: each task's worker command line, resources and log directory.
fn slurm_options(cli: &Cli, args: &SubmitArgs, sweep: &str) -> Result<slurm_array::SlurmOptions> {
    let runs_dir = absolute(&cli.runs_dir)?;
    let gpu = args.gres.as_deref().is_some_and(|g| g.contains("gpu"));
    let device = args
        .device
        .clone()
        .unwrap_or_else(|| if gpu { "auto" } else { "cpu" }.into());
    Ok(slurm_array::SlurmOptions {
        worker: WorkerLaunch {
            exe: std::env::current_exe().context("finding the sweep binary")?,
            data_dir: absolute(&cli.data_dir)?,
            runs_dir: runs_dir.clone(),
            sweep: sweep.to_string(),
            device,
            loader_threads: args.loader_threads,
            idle_exit_secs: args.idle_exit.unwrap_or(args.lease_secs * 2 + 60),
            lease_secs: args.lease_secs.max(1),
            max_attempts: args.max_attempts,
            events_json: false,
        },
        workers: args.workers,
        partition: args.partition.clone(),
        gres: args.gres.clone(),
        time: args.time.clone(),
        cpus_per_task: args.cpus_per_task,
        log_dir: runs_dir.join("slurm-logs"),
        signal_secs: 90,
    })
}
