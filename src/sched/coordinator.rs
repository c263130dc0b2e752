//! `sweep run`: starts local worker processes (`sweep worker --events-json`), each in its
//! own process group and killed with us (PR_SET_PDEATHSIG), splits the CPU cores or the
//! GPUs between them, draws their progress, and forwards a stop request.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::events::Event;
use super::progress::Progress;
use super::signals::StopFlag;
use crate::store::{RunState, Store};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub sweep: String,
    pub workers: u32,
    /// `cpu` or CUDA devices (one worker per device).
    pub devices: Vec<String>,
    pub max_attempts: i64,
    pub lease: Duration,
    pub db: String,
    pub data_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub quiet: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub interrupted: bool,
}

struct Spawned {
    child: Child,
    reader: std::thread::JoinHandle<()>,
}

/// Runs the sweep's claimable stages with local workers until none are left.
pub fn coordinate(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    opts: &RunOptions,
    stop: &StopFlag,
) -> Result<RunSummary> {
    super::reclaim_dead_local_leases(rt, store)?;
    let counts = |rt: &tokio::runtime::Runtime| -> Result<(u64, u64, u64)> {
        let runs = rt.block_on(store.sweep_runs(&opts.sweep))?;
        let done = runs.iter().filter(|r| r.state == RunState::Done).count() as u64;
        let failed = runs.iter().filter(|r| r.state == RunState::Failed).count() as u64;
        Ok((runs.len() as u64, done, failed))
    };
    let (total, done0, _) = counts(rt)?;
    let gpus: Vec<&String> = opts
        .devices
        .iter()
        .filter(|d| d.as_str() != "cpu")
        .collect();
    let n = if gpus.is_empty() {
        opts.workers as usize
    } else {
        gpus.len()
    };
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads_each = (cores / n).max(1);

    let progress = Progress::new(opts.quiet, n, total, done0);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Event)>();
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let device = gpus.get(i).map_or("cpu".to_string(), |d| d.to_string());
        let mut cmd = Command::new(std::env::current_exe().context("locating the sweep binary")?);
        cmd.arg("worker")
            // The store through the environment: a PostgreSQL URL's password must not show
            // in `ps`.
            .env("SWEEP_DB", &opts.db)
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .arg("--runs-dir")
            .arg(&opts.runs_dir)
            .args(["--sweep", &opts.sweep, "--device", &device, "--events-json"])
            .args(["--max-attempts", &opts.max_attempts.to_string()])
            .args(["--lease-secs", &opts.lease.as_secs().max(1).to_string()])
            // Wait for stages others are running: they may unlock evaluations.
            .args(["--idle-exit", "31536000"])
            .env("RAYON_NUM_THREADS", threads_each.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting a worker process")?;
        let stdout = child.stdout.take().expect("piped");
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(e) => {
                        let _ = tx.send((i, e));
                    }
                    Err(_) => eprintln!("[w{i}] {line}"),
                }
            }
        });
        children.push(Spawned { child, reader });
    }
    drop(tx);

    let mut forwarded = false;
    let mut last_poll = Instant::now();
    let mut exit_codes = vec![None; n];
    loop {
        while let Ok((i, e)) = rx.recv_timeout(Duration::from_millis(100)) {
            progress.event(i, &e);
            if matches!(e, Event::Finished { .. }) {
                if let Ok((_, d, f)) = counts(rt) {
                    progress.set_done(d + f);
                }
            }
            if last_poll.elapsed() > Duration::from_millis(200) {
                break;
            }
        }
        last_poll = Instant::now();
        if stop.is_set() && !forwarded {
            forwarded = true;
            if !opts.quiet {
                eprintln!(
                    "stopping: workers finish their step and checkpoint (Ctrl-C again to exit now)"
                );
            }
            for c in &children {
                // SAFETY: sending a signal to our own child's pid.
                unsafe { libc::kill(c.child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        for (i, c) in children.iter_mut().enumerate() {
            if exit_codes[i].is_none() {
                if let Some(status) = c.child.try_wait()? {
                    exit_codes[i] = Some(status.code().unwrap_or(-1));
                }
            }
        }
        if exit_codes.iter().all(Option::is_some) {
            break;
        }
    }
    for c in children {
        let _ = c.reader.join();
    }
    while let Ok((i, e)) = rx.try_recv() {
        progress.event(i, &e);
    }
    progress.finish();
    let (total, done, failed) = counts(rt)?;
    let crashed: Vec<i32> = exit_codes
        .iter()
        .flatten()
        .copied()
        .filter(|c| *c != 0 && *c != 130 && *c != 3)
        .collect();
    if !crashed.is_empty() && !stop.is_set() {
        eprintln!("warning: {} worker process(es) exited abnormally (codes {crashed:?}); their runs are reclaimed by the next `sweep run`", crashed.len());
    }
    Ok(RunSummary {
        total,
        done,
        failed,
        interrupted: stop.is_set() || done + failed < total,
    })
}
