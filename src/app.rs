//! One function per subcommand: thin glue between the CLI, the spec, the store, the
//! scheduler and the report. Errors carry context; `main` prints them once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{
    Cli, Command, DataCommand, ExecArgs, FetchDataset, SpecArgs, SubmitArgs, WorkerArgs,
};
use crate::ml::config::{Arch, DatasetName};
use crate::sched::{self, signals};
use crate::spec::{self, LoadOptions, Plan};
use crate::store::{NewStage, NewSweep, RunState, Store};

/// Bad input from the user (flag, data, state): exit code 2, nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Process exit codes (documented in `cli`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const RUNS_FAILED: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// Runs the parsed command; returns the exit code.
pub fn main(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Plan { spec, json } => plan(&cli, spec, *json),
        Command::Run { spec, exec } => run(&cli, spec, exec),
        Command::Resume { name, exec } => resume(&cli, name, exec),
        Command::Retry { name, .. } => retry(&cli, name),
        Command::Status { sweep, json } => status(&cli, sweep.as_deref(), *json),
        Command::Ls { json } => status(&cli, None, *json),
        Command::Report { sweep, out, format } => {
            let out = out
                .clone()
                .unwrap_or_else(|| PathBuf::from("reports").join(sweep));
            let rt = runtime()?;
            let store = rt
                .block_on(Store::open_read_only(&cli.db))?
                .ok_or_else(|| {
                    UserError(format!(
                        "no database at {}; run a sweep first",
                        crate::store::redact(&cli.db)
                    ))
                })?;
            let written = rt.block_on(crate::report::write(&store, sweep, &out, format))?;
            println!("wrote {} files to {}", written.len(), out.display());
            Ok(exit::OK)
        }
        Command::Worker(args) => worker(&cli, args),
        Command::Submit(args) => submit(&cli, args),
        Command::Data(DataCommand::Fetch {
            dataset,
            url,
            sha256,
        }) => {
            let name = match dataset {
                FetchDataset::Cifar10 => DatasetName::Cifar10,
                FetchDataset::Cifar100 => DatasetName::Cifar100,
            };
            let path = crate::fetch::fetch(
                name,
                url.as_deref(),
                sha256.as_deref(),
                &cli.data_dir,
                cli.quiet,
            )?;
            println!("{}", path.display());
            Ok(exit::OK)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn load_plan(args: &SpecArgs) -> Result<Plan> {
    let opts = LoadOptions {
        profile: args.profile.clone(),
        overrides: args.overrides.clone(),
    };
    Ok(spec::load(&args.spec, &opts)?)
}

/// A planned run's stages and the dataset fingerprint they were computed with.
struct Staged {
    stages: Vec<NewStage>,
    /// Per planned run: (pretrain id, eval ids).
    per_run: Vec<(String, Vec<(String, String)>)>,
    datasets: Vec<(PathBuf, String)>,
}

/// Resolves data locations, fingerprints them, and computes every stage's id.
fn stage(plan: &Plan, data_dir: &Path) -> Result<Staged> {
    let mut fps: HashMap<PathBuf, String> = HashMap::new();
    let mut out = Staged {
        stages: Vec::new(),
        per_run: Vec::new(),
        datasets: Vec::new(),
    };
    for r in &plan.runs {
        let ds = &r.config.pretrain.dataset;
        let path =
            crate::ml::data::resolve_path(ds, data_dir).map_err(|e| UserError(e.to_string()))?;
        let fp = match fps.get(&path) {
            Some(f) => f.clone(),
            None => {
                let f =
                    crate::ml::data::fingerprint(&path).map_err(|e| UserError(e.to_string()))?;
                fps.insert(path.clone(), f.clone());
                out.datasets.push((path.clone(), f.clone()));
                f
            }
        };
        let cell: serde_json::Map<String, serde_json::Value> = r.cell.iter().cloned().collect();
        let cell = serde_json::Value::Object(cell).to_string();
        let stages = spec::stages(&r.config, &fp);
        let evals = stages[1..]
            .iter()
            .map(|s| (s.id.0.clone(), s.label.clone()))
            .collect();
        out.per_run.push((stages[0].id.0.clone(), evals));
        for s in stages {
            out.stages.push(NewStage {
                id: s.id.0.clone(),
                stage: s.kind.as_str().into(),
                parent_id: s.parent.map(|p| p.0),
                label: s.label,
                config: spec::canonical_json(&s.config),
                dataset_fingerprint: fp.clone(),
                semantics_version: spec::SEMANTICS_VERSION as i64,
                cell: cell.clone(),
            });
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct PlanJson<'a> {
    name: &'a str,
    profile: Option<&'a str>,
    pretrain_runs: usize,
    stages: usize,
    merged_duplicates: usize,
    excluded: usize,
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

fn plan(cli: &Cli, args: &SpecArgs, json: bool) -> Result<i32> {
    let plan = load_plan(args)?;
    let staged = stage(&plan, &cli.data_dir)?;
    let rt = runtime()?;
    let states = match rt.block_on(Store::open_read_only(&cli.db))? {
        Some(store) => {
            let ids: Vec<String> = staged.stages.iter().map(|s| s.id.clone()).collect();
            let st = rt.block_on(store.states(&ids))?;
            rt.block_on(store.close());
            st
        }
        None => HashMap::new(),
    };
    let state_of = |id: &str| states.get(id).map_or("new", |s| s.as_str()).to_string();
    let cost: f64 = plan.runs.iter().map(|r| estimate_seconds(&r.config)).sum();
    if json {
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
        let out = PlanJson {
            name: &plan.name,
            profile: plan.options.profile.as_deref(),
            pretrain_runs: plan.runs.len(),
            stages: staged.stages.len(),
            merged_duplicates: plan.merged_duplicates,
            excluded: plan.excluded,
            warnings: &plan.warnings,
            estimated_cpu_seconds: cost,
            runs,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "sweep {}{}: {} pretrain runs, {} stages in all",
        plan.name,
        plan.options
            .profile
            .as_ref()
            .map(|p| format!(" (profile {p})"))
            .unwrap_or_default(),
        plan.runs.len(),
        staged.stages.len()
    )?;
    if let Some(d) = &plan.description {
        writeln!(o, "  {d}")?;
    }
    for (path, fp) in &staged.datasets {
        writeln!(o, "dataset {} (fingerprint {})", path.display(), &fp[..12])?;
    }
    if plan.merged_duplicates > 0 || plan.excluded > 0 {
        writeln!(
            o,
            "{} grid points excluded, {} merged as duplicates",
            plan.excluded, plan.merged_duplicates
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
    // Column width per axis: the widest of its name and its values.
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
                        .map(|(_, v)| compact(v))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
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
        let mut line = format!("{:>4}  {:<12}  {:<8}", i + 1, &pid[..12], state_of(pid));
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
    writeln!(o)?;
    writeln!(o, "estimated compute: {} on this kind of 2-core CPU (pretrain + evaluation, from measured throughput)", human_duration(cost))?;
    for w in &plan.warnings {
        writeln!(o, "warning: {w}")?;
    }
    Ok(exit::OK)
}

/// A cell value for a table: strings bare, lists `[a,b]`, mappings `k=v k=v` without nulls.
fn compact(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::String(s) => s.clone(),
        J::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string().replace('"', ""),
    }
}

fn human_duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 48.0 * 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}

/// Rough CPU seconds of a run on the 2-core development machine, from end-to-end stage
/// times of the augment_pairs smoke sweep (ConvNet: 6,000 pairs pretrained in 7.3 s on
/// average, an evaluation over 4,000 images in 2.2 s; checkpoints and loading included),
/// and for the ResNets the ConvNet's ratio to them in bench/run.sh (about 70 for ResNet-18;
/// deeper ones scaled by their FLOPs). Width w costs w^2.
fn estimate_seconds(run: &spec::RunConfig) -> f64 {
    let p = &run.pretrain;
    let pairs_per_sec = match p.encoder.arch {
        Arch::Convnet => 830.0,
        Arch::Resnet18 => 12.0,
        Arch::Resnet34 => 6.0,
        Arch::Resnet50 => 3.0,
    } / (p.encoder.width * p.encoder.width) as f64;
    let n_train = p.dataset.train_subset.unwrap_or(50_000) as f64;
    let pretrain = n_train * p.epochs as f64 / pairs_per_sec;
    // Evaluation: forward passes only, about 2.2 images per training pair-time.
    let eval: f64 = run
        .evals
        .iter()
        .map(|e| {
            let n = e.train_subset.unwrap_or(50_000) + e.test_subset.unwrap_or(10_000);
            n as f64 / (pairs_per_sec * 2.2)
        })
        .sum();
    pretrain + eval
}

/// Registers the plan's sweep; returns its name.
fn register(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    plan: &Plan,
    data_dir: &Path,
    quiet: bool,
) -> Result<()> {
    let staged = stage(plan, data_dir)?;
    let sweep = NewSweep {
        name: plan.name.clone(),
        spec_path: plan.spec_path.to_string_lossy().into_owned(),
        spec_text: plan.spec_text.clone(),
        profile: plan.options.profile.clone(),
        overrides: plan.options.overrides.clone(),
    };
    let reg = rt.block_on(store.register(&sweep, &staged.stages))?;
    if !quiet {
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        eprintln!(
            "sweep {}: {} stages ({} new, {} already in the store)",
            plan.name,
            staged.stages.len(),
            reg.new_stages,
            reg.existing_stages
        );
    }
    Ok(())
}

fn run(cli: &Cli, args: &SpecArgs, exec: &ExecArgs) -> Result<i32> {
    let plan = load_plan(args)?;
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    register(&rt, &store, &plan, &cli.data_dir, cli.quiet)?;
    execute(cli, &rt, &store, &plan.name, exec)
}

fn resume(cli: &Cli, name: &str, exec: &ExecArgs) -> Result<i32> {
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    let rec = rt.block_on(store.sweep(name))?;
    // Re-expand the stored spec: the same text gives the same runs; the store keeps them.
    let opts = LoadOptions {
        profile: rec.profile.clone(),
        overrides: rec.overrides.clone(),
    };
    let plan = spec::load_str(&rec.spec_text, Path::new(&rec.spec_path), &opts)?;
    register(&rt, &store, &plan, &cli.data_dir, cli.quiet)?;
    execute(cli, &rt, &store, name, exec)
}

fn execute(
    cli: &Cli,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    sweep: &str,
    exec: &ExecArgs,
) -> Result<i32> {
    let stop = signals::install().context("installing signal handlers")?;
    let devices: Vec<String> = exec
        .devices
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    for d in &devices {
        let cuda = d
            .strip_prefix("cuda:")
            .is_some_and(|n| n.parse::<usize>().is_ok());
        if d != "cpu" && !cuda {
            return Err(UserError(format!(
                "--devices: unknown device `{d}`; use cpu or cuda:0,cuda:1"
            ))
            .into());
        }
    }
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
    Ok(if stop.is_set() {
        exit::INTERRUPTED
    } else if summary.failed > 0 {
        exit::RUNS_FAILED
    } else if summary.interrupted {
        exit::FAILURE
    } else {
        exit::OK
    })
}

fn worker(cli: &Cli, args: &WorkerArgs) -> Result<i32> {
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
    let exit_code = match sched::run_worker(&rt, &store, &cfg, &stop)? {
        sched::WorkerExit::Interrupted => exit::INTERRUPTED,
        sched::WorkerExit::Drained { failed, .. } if failed > 0 => exit::RUNS_FAILED,
        sched::WorkerExit::Drained { .. } => exit::OK,
    };
    rt.block_on(store.close());
    Ok(exit_code)
}

/// `sweep submit SPEC --slurm`: registers the sweep, then submits an sbatch array of
/// workers (DESIGN.md section 6); prints the job id. `--dry-run` prints the script.
fn submit(cli: &Cli, args: &SubmitArgs) -> Result<i32> {
    use crate::sched::slurm;
    use crate::store::Backend;
    if !args.slurm {
        return Err(UserError(
            "sweep submit needs an executor: --slurm (to run on this machine, use `sweep run`)"
                .into(),
        )
        .into());
    }
    let abs =
        |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    // The workers run elsewhere: they get the store as an absolute path or a URL.
    let worker_db = match Backend::of(&cli.db) {
        Backend::Postgres => cli.db.clone(),
        Backend::Sqlite if !args.allow_sqlite => {
            return Err(UserError(format!(
                "--slurm with a SQLite store ({}): SQLite is a file on one machine's disk, and its \
                 locks (WAL shared memory, fcntl) do not work across nodes or on network filesystems, \
                 so workers on other nodes would corrupt it or fail with \"database is locked\". \
                 Use PostgreSQL (--db postgres://user@host/db, password in DATABASE_URL), or pass \
                 --allow-sqlite if every worker runs on this node and the file is on local disk",
                cli.db
            ))
            .into())
        }
        Backend::Sqlite => abs(Path::new(
            cli.db
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:"),
        ))?
        .to_string_lossy()
        .into_owned(),
    };
    let plan = load_plan(&args.spec)?;
    stage(&plan, &cli.data_dir)?; // the data must be there before workers start
    let runs_dir = abs(&cli.runs_dir)?;
    let gpu = args.gres.as_deref().is_some_and(|g| g.contains("gpu"));
    let opts = slurm::SlurmOptions {
        sweep: plan.name.clone(),
        workers: args.workers,
        partition: args.partition.clone(),
        gres: args.gres.clone(),
        time: args.time.clone(),
        cpus_per_task: args.cpus_per_task,
        device: args
            .device
            .clone()
            .unwrap_or_else(|| if gpu { "cuda:0" } else { "cpu" }.into()),
        loader_threads: args.loader_threads,
        exe: std::env::current_exe().context("finding the sweep binary")?,
        data_dir: abs(&cli.data_dir)?,
        log_dir: runs_dir.join("slurm-logs"),
        runs_dir,
        idle_exit_secs: args.idle_exit.unwrap_or(args.lease_secs * 2 + 60),
        lease_secs: args.lease_secs.max(1),
        max_attempts: args.max_attempts,
        signal_secs: 90,
    };
    let script = slurm::script(&opts);
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
    register(&rt, &store, &plan, &cli.data_dir, cli.quiet)?;
    std::fs::create_dir_all(&opts.log_dir)
        .with_context(|| format!("creating the log directory {}", opts.log_dir.display()))?;
    let job = slurm::submit(&script, &worker_db)?;
    rt.block_on(store.record_slurm_job(&crate::store::SlurmJobRecord {
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

fn retry(cli: &Cli, name: &str) -> Result<i32> {
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&cli.db))?;
    let n = rt.block_on(store.retry_failed(name))?;
    rt.block_on(store.close());
    println!("{n} failed stage(s) of {name} requeued; `sweep resume {name}` runs them");
    Ok(exit::OK)
}

#[derive(Serialize)]
struct RunStatusJson {
    id: String,
    stage: String,
    label: String,
    state: RunState,
    attempts: i64,
    cell: serde_json::Value,
    top1: Option<f64>,
    failure: Option<String>,
    worker: Option<String>,
    compute_seconds: f64,
}

fn status(cli: &Cli, sweep: Option<&str>, json: bool) -> Result<i32> {
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
        let sweeps = rt.block_on(store.sweeps())?;
        if json {
            writeln!(o, "{}", serde_json::to_string_pretty(&sweeps)?)?;
        } else if sweeps.is_empty() {
            writeln!(o, "no sweeps in {}", crate::store::redact(&cli.db))?;
        } else {
            writeln!(
                o,
                "{:<24} {:<10} {:>7} {:>7} {:>7} {:>7}",
                "sweep", "profile", "done", "running", "queued", "failed"
            )?;
            for s in sweeps {
                writeln!(
                    o,
                    "{:<24} {:<10} {:>7} {:>7} {:>7} {:>7}",
                    s.name,
                    s.profile.unwrap_or_else(|| "-".into()),
                    s.done,
                    s.running,
                    s.queued,
                    s.failed
                )?;
            }
        }
        return Ok(exit::OK);
    };
    let runs = rt.block_on(store.sweep_runs(name))?;
    let mut rows = Vec::with_capacity(runs.len());
    for r in runs {
        let top1 = if r.stage == "eval" {
            rt.block_on(store.metrics(&r.id))?
                .into_iter()
                .find(|m| m.name == "eval/top1")
                .map(|m| m.value)
        } else {
            None
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
    writeln!(
        o,
        "{:<12}  {:<10}  {:<8}  {:>3}  {:>7}  cell",
        "id", "stage", "state", "try", "top-1"
    )?;
    for r in &rows {
        let cell = match &r.cell {
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", compact(v)))
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
            "{:<12}  {:<10}  {:<8}  {:>3}  {:>7}  {cell}",
            &r.id[..12],
            r.label,
            r.state.as_str(),
            r.attempts,
            top1
        )?;
        if let Some(f) = &r.failure {
            writeln!(o, "              failed: {f}")?;
        }
    }
    // Workers submitted to Slurm, where squeue answers (an older store has no such table).
    let jobs = rt.block_on(store.slurm_jobs(name)).unwrap_or_default();
    if !jobs.is_empty() {
        let ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
        match sched::slurm::squeue(&ids) {
            Some(tasks) => {
                for j in &jobs {
                    writeln!(
                        o,
                        "{}",
                        sched::slurm::describe(&j.job_id, j.workers, &tasks)
                    )?;
                }
            }
            None => writeln!(
                o,
                "slurm jobs {} (squeue does not answer here)",
                ids.join(", ")
            )?,
        }
    }
    Ok(exit::OK)
}
