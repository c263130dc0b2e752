//! `sweep run`: starts local worker processes (`sweep worker --events-json`), each in its
//! own process group and killed with us (PR_SET_PDEATHSIG), splits the CPU cores or the
//! GPUs between them, draws their progress, and forwards a stop request.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;

use super::events::Event;
use super::launch::WorkerLaunch;
use super::progress::Progress;
use super::signals::StopFlag;
use crate::exit;
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

impl RunSummary {
    /// The exit code of `sweep run` for this ending (`stopped`: a stop signal came).
    pub fn exit_code(&self, stopped: bool) -> i32 {
        if stopped {
            exit::INTERRUPTED
        } else if self.failed > 0 {
            exit::RUNS_FAILED
        } else if self.interrupted {
            exit::FAILURE
        } else {
            exit::OK
        }
    }
}

/// Runs the sweep's claimable stages with local workers until none are left.
pub fn coordinate(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    opts: &RunOptions,
    stop: &StopFlag,
) -> Result<RunSummary> {
    super::reclaim_dead_local_leases(rt, store)?;
    let (total, done_before, _) = stage_counts(rt, store, &opts.sweep)?;
    let devices = worker_devices(opts);
    let progress = Progress::new(opts.quiet, devices.len(), total, done_before);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Event)>();
    let mut workers = Vec::with_capacity(devices.len());
    for (i, device) in devices.iter().enumerate() {
        workers.push(LocalWorker::spawn(
            i,
            opts,
            device,
            devices.len(),
            tx.clone(),
        )?);
    }
    drop(tx);
    let codes = supervise(rt, store, opts, stop, &mut workers, &rx, &progress)?;
    for w in workers {
        let _ = w.reader.join();
    }
    while let Ok((i, e)) = rx.try_recv() {
        progress.event(i, &e);
    }
    progress.finish();
    warn_about_crashes(&codes, stop);
    let (total, done, failed) = stage_counts(rt, store, &opts.sweep)?;
    Ok(RunSummary {
        total,
        done,
        failed,
        interrupted: stop.is_set() || done + failed < total,
    })
}

/// (stages, done, failed) of the sweep.
fn stage_counts(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    sweep: &str,
) -> Result<(u64, u64, u64)> {
    let runs = rt.block_on(store.sweep_runs(sweep))?;
    let count = |s: RunState| runs.iter().filter(|r| r.state == s).count() as u64;
    Ok((
        runs.len() as u64,
        count(RunState::Done),
        count(RunState::Failed),
    ))
}

/// One device per worker: the GPUs named, else `--workers` CPU workers.
fn worker_devices(opts: &RunOptions) -> Vec<String> {
    let gpus: Vec<String> = opts
        .devices
        .iter()
        .filter(|d| d.as_str() != "cpu")
        .cloned()
        .collect();
    if gpus.is_empty() {
        vec!["cpu".to_string(); opts.workers as usize]
    } else {
        gpus
    }
}

/// Loader threads for one of `n` workers on `cores` cores. A GPU worker's cores do
/// nothing but prepare batches (unless `augment.on: device`, when they sit idle), so it
/// gets its share of them less one for its main thread; a CPU worker keeps one, since
/// its compute (rayon, `RAYON_NUM_THREADS`) already uses its share. Batches do not depend
/// on the count (`ml::data::view_batches`).
fn loader_threads(device: &str, cores: usize, n: usize) -> usize {
    if device == "cpu" {
        1
    } else {
        (cores / n.max(1)).saturating_sub(1).max(1)
    }
}

/// A worker process and the thread that reads its events.
struct LocalWorker {
    child: Child,
    reader: std::thread::JoinHandle<()>,
}

impl LocalWorker {
    /// Starts worker `i` of `n` on `device` with its share of the cores; its events go to
    /// `tx` tagged with `i`.
    fn spawn(
        i: usize,
        opts: &RunOptions,
        device: &str,
        n: usize,
        tx: crossbeam_channel::Sender<(usize, Event)>,
    ) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let launch = WorkerLaunch {
            exe: std::env::current_exe().context("locating the sweep binary")?,
            data_dir: opts.data_dir.clone(),
            runs_dir: opts.runs_dir.clone(),
            sweep: opts.sweep.clone(),
            device: device.to_string(),
            loader_threads: loader_threads(device, cores, n),
            // Wait for stages others are running: they may unlock evaluations.
            idle_exit_secs: 365 * 24 * 3600,
            lease_secs: opts.lease.as_secs().max(1),
            max_attempts: opts.max_attempts,
            events_json: true,
        };
        let mut cmd = launch.command();
        cmd.env("SWEEP_DB", &opts.db)
            .env("RAYON_NUM_THREADS", (cores / n).max(1).to_string())
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
        Ok(LocalWorker { child, reader })
    }

    /// Asks the worker to finish its step, checkpoint and release its run.
    fn request_stop(&self) {
        // SAFETY: sending a signal to our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }
}

/// Draws progress until every worker has exited, forwarding a stop request once; returns
/// the workers' exit codes.
fn supervise(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    opts: &RunOptions,
    stop: &StopFlag,
    workers: &mut [LocalWorker],
    events: &Receiver<(usize, Event)>,
    progress: &Progress,
) -> Result<Vec<i32>> {
    let mut forwarded = false;
    let mut codes: Vec<Option<i32>> = vec![None; workers.len()];
    while codes.iter().any(Option::is_none) {
        draw_events(rt, store, &opts.sweep, events, progress);
        if stop.is_set() && !forwarded {
            forwarded = true;
            if !opts.quiet {
                eprintln!(
                    "stopping: workers finish their step and checkpoint (Ctrl-C again to exit now)"
                );
            }
            workers.iter().for_each(LocalWorker::request_stop);
        }
        for (w, code) in workers.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                *code = w.child.try_wait()?.map(|s| s.code().unwrap_or(-1));
            }
        }
    }
    Ok(codes.into_iter().flatten().collect())
}

/// Shows the events that arrive within about 200 ms; the overall bar follows the store.
fn draw_events(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    sweep: &str,
    events: &Receiver<(usize, Event)>,
    progress: &Progress,
) {
    let since = Instant::now();
    while let Ok((i, e)) = events.recv_timeout(Duration::from_millis(100)) {
        progress.event(i, &e);
        if matches!(e, Event::Finished { .. }) {
            if let Ok((_, done, failed)) = stage_counts(rt, store, sweep) {
                progress.set_done(done + failed);
            }
        }
        if since.elapsed() > Duration::from_millis(200) {
            break;
        }
    }
}

/// Workers that ended other than done, interrupted or with failed runs crashed: their
/// runs are reclaimed by the next `sweep run`.
fn warn_about_crashes(codes: &[i32], stop: &StopFlag) {
    let crashed: Vec<i32> = codes
        .iter()
        .copied()
        .filter(|c| ![exit::OK, exit::INTERRUPTED, exit::RUNS_FAILED].contains(c))
        .collect();
    if !crashed.is_empty() && !stop.is_set() {
        eprintln!(
            "warning: {} worker process(es) exited abnormally (codes {crashed:?}); their runs are reclaimed by the next `sweep run`",
            crashed.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_workers_get_their_share_of_the_cores_for_loading_and_cpu_workers_one() {
        assert_eq!(loader_threads("cuda:0", 16, 1), 15);
        assert_eq!(loader_threads("cuda:1", 16, 2), 7);
        assert_eq!(loader_threads("cuda:0", 2, 4), 1);
        assert_eq!(loader_threads("cpu", 16, 2), 1);
    }
}
