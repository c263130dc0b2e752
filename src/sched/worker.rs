//! A worker: claims runnable stages from the store, runs them with the ML core, records
//! metrics and checkpoints as they happen, heartbeats its lease, and reports events. The
//! same loop serves `sweep run` (as child processes) and Slurm jobs (`sweep worker`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::events::Event;
use super::signals::StopFlag;
use crate::ml::config::{EvalConfig, PretrainConfig};
use crate::ml::observer::{CheckpointInfo, Control, EpochMetrics, Observer, StepMetrics};
use crate::ml::{self, CheckpointRef, MlError, PretrainOutcome, TrainEnv};
use crate::store::{CheckpointRecord, Claimed, MetricRecord, Store, Worker};

/// Everything a worker needs besides the store.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub sweep: Option<String>,
    pub max_runs: Option<u64>,
    pub idle_exit: Duration,
    pub device: String,
    pub loader_threads: usize,
    pub data_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub lease: Duration,
    pub max_attempts: i64,
    /// JSON lines on stdout instead of log lines on stderr.
    pub events_json: bool,
    pub quiet: bool,
}

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// Nothing left (or max_runs reached). `failed`: stages this worker saw fail.
    Drained { done: u64, failed: u64 },
    /// A stop signal: the current stage was checkpointed and released.
    Interrupted,
}

pub fn this_worker() -> Worker {
    let host = hostname();
    let pid = std::process::id() as i64;
    let nonce = crate::store::now_ms();
    Worker {
        id: format!("{host}:{pid}:{nonce}"),
        host,
        pid,
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Runs the claim loop until nothing is claimable, `max_runs` is reached or a stop signal.
pub fn run_worker(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    cfg: &WorkerConfig,
    stop: &StopFlag,
) -> Result<WorkerExit> {
    let me = this_worker();
    let emit = Emitter {
        json: cfg.events_json,
        quiet: cfg.quiet,
    };
    let device = parse_device(&cfg.device)?;
    let mut fingerprints = FingerprintCache::default();
    let (mut done, mut failed, mut ran) = (0u64, 0u64, 0u64);
    let mut idle_since = Instant::now();
    loop {
        if stop.is_set() {
            return Ok(WorkerExit::Interrupted);
        }
        if cfg.max_runs.is_some_and(|m| ran >= m) {
            break;
        }
        super::reclaim_dead_local_leases(rt, store)?;
        let lease_ms = cfg.lease.as_millis() as i64;
        let Some(claimed) =
            rt.block_on(store.claim(cfg.sweep.as_deref(), &me, lease_ms, cfg.max_attempts))?
        else {
            // Stages still running elsewhere may unlock evaluations, or come back when
            // their worker dies: wait for them up to `idle_exit`.
            let unfinished = rt.block_on(store.unfinished(cfg.sweep.as_deref()))?;
            if unfinished == 0 || idle_since.elapsed() >= cfg.idle_exit {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        ran += 1;
        let outcome = run_claimed(
            rt,
            store,
            cfg,
            &me,
            &device,
            &claimed,
            stop,
            &emit,
            &mut fingerprints,
        );
        match outcome {
            StageEnd::Done => done += 1,
            StageEnd::Failed => failed += 1,
            StageEnd::Released => return Ok(WorkerExit::Interrupted),
            StageEnd::Lost => {}
        }
        idle_since = Instant::now();
    }
    emit.send(&Event::Idle);
    Ok(WorkerExit::Drained { done, failed })
}

#[derive(Debug, PartialEq, Eq)]
enum StageEnd {
    Done,
    Failed,
    Released,
    Lost,
}

#[allow(clippy::too_many_arguments)]
fn run_claimed(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    cfg: &WorkerConfig,
    me: &Worker,
    device: &ml::Device,
    claimed: &Claimed,
    stop: &StopFlag,
    emit: &Emitter,
    fingerprints: &mut FingerprintCache,
) -> StageEnd {
    let run = &claimed.run;
    let started = Instant::now();
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = spawn_heartbeat(
        rt,
        store.clone(),
        run.id.clone(),
        me.clone(),
        cfg.lease,
        Arc::clone(&lost),
    );
    let result = execute(
        rt,
        store,
        cfg,
        device,
        claimed,
        stop,
        &lost,
        emit,
        fingerprints,
    );
    heartbeat.abort();
    let secs = started.elapsed().as_secs_f64();
    let finished = |outcome: &str, reason: Option<String>, top1: Option<f64>| {
        emit.send(&Event::Finished {
            run: run.id.clone(),
            outcome: outcome.into(),
            reason,
            top1,
        });
    };
    match result {
        Ok(Executed::Completed { top1 }) => match rt.block_on(store.finish(&run.id, me, secs)) {
            Ok(true) => {
                finished("done", None, top1);
                StageEnd::Done
            }
            Ok(false) => {
                finished(
                    "lost",
                    Some("lease lost before the result was committed".into()),
                    None,
                );
                StageEnd::Lost
            }
            Err(e) => {
                finished(
                    "failed",
                    Some(format!("could not record completion: {e}")),
                    None,
                );
                StageEnd::Failed
            }
        },
        Ok(Executed::Stopped) if lost.load(Ordering::SeqCst) => {
            finished(
                "lost",
                Some("another worker took over the lease".into()),
                None,
            );
            StageEnd::Lost
        }
        Ok(Executed::Stopped) => {
            let _ = rt.block_on(store.release(&run.id, me, secs));
            finished(
                "released",
                Some("stopped by signal; checkpoint written".into()),
                None,
            );
            StageEnd::Released
        }
        Err(e) => {
            let reason = format!("{e:#}");
            let _ = rt.block_on(store.fail(&run.id, me, &reason, secs));
            finished("failed", Some(reason), None);
            StageEnd::Failed
        }
    }
}

enum Executed {
    Completed { top1: Option<f64> },
    Stopped,
}

#[allow(clippy::too_many_arguments)]
fn execute(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    cfg: &WorkerConfig,
    device: &ml::Device,
    claimed: &Claimed,
    stop: &StopFlag,
    lost: &Arc<AtomicBool>,
    emit: &Emitter,
    fingerprints: &mut FingerprintCache,
) -> Result<Executed> {
    let run = &claimed.run;
    let (pretrain_json, pretrain_id) = match (&claimed.parent_config, &run.parent_id) {
        (Some(c), Some(p)) => (c.as_str(), p.as_str()),
        _ => (run.config.as_str(), run.id.as_str()),
    };
    let pretrain: PretrainConfig = serde_json::from_str(pretrain_json)
        .context("stored pretrain config does not parse (database from another version?)")?;
    let data_path = ml::data::resolve_path(&pretrain.dataset, &cfg.data_dir)?;
    let fp = fingerprints.get(&data_path)?;
    if fp != run.dataset_fingerprint {
        anyhow::bail!(
            "the dataset at {} (fingerprint {}) is not the one this run was registered with ({}); \
             point --data-dir at the original data",
            data_path.display(),
            &fp[..12],
            &run.dataset_fingerprint[..12.min(run.dataset_fingerprint.len())]
        );
    }
    let checkpoints = rt.block_on(store.checkpoints(pretrain_id))?;
    let resume_from: Vec<CheckpointRef> = checkpoints
        .iter()
        .map(|c| CheckpointRef {
            path: PathBuf::from(&c.path),
            sha256: c.sha256.clone(),
        })
        .collect();
    let env = TrainEnv {
        device: device.clone(),
        data_path,
        checkpoint_dir: cfg.runs_dir.join(pretrain_id),
        resume_from,
        loader_threads: cfg.loader_threads.max(1),
    };
    let mut obs = StoreObserver {
        rt,
        store,
        run_id: run.id.clone(),
        stop: stop.clone(),
        lost: Arc::clone(lost),
        emit,
        pending: Vec::new(),
        last_flush: Instant::now(),
        epochs: pretrain.epochs,
    };
    if run.stage == "pretrain" {
        let resumed = checkpoints.first().map_or(0, |c| c.step as u64);
        emit.send(&Event::Started {
            run: run.id.clone(),
            stage: run.stage.clone(),
            label: run.label.clone(),
            attempt: run.attempts,
            resumed_step: resumed,
        });
        let outcome = ml::pretrain(&pretrain, &env, &mut obs).map_err(ml_error)?;
        obs.flush()?;
        match outcome {
            PretrainOutcome::Finished { .. } => Ok(Executed::Completed { top1: None }),
            PretrainOutcome::Stopped { .. } => Ok(Executed::Stopped),
        }
    } else {
        let eval: EvalConfig =
            serde_json::from_str(&run.config).context("stored eval config does not parse")?;
        let newest = env
            .resume_from
            .first()
            .cloned()
            .context("the pretrain is done but has no recorded checkpoint")?;
        emit.send(&Event::Started {
            run: run.id.clone(),
            stage: run.stage.clone(),
            label: run.label.clone(),
            attempt: run.attempts,
            resumed_step: 0,
        });
        let result = ml::evaluate(&pretrain, &eval, &newest, &env, &mut obs).map_err(ml_error)?;
        if stop.is_set() {
            return Ok(Executed::Stopped);
        }
        let metrics = [
            MetricRecord {
                name: "eval/top1".into(),
                step: 0,
                value: result.top1,
            },
            MetricRecord {
                name: "eval/top5".into(),
                step: 0,
                value: result.top5,
            },
            MetricRecord {
                name: "eval/n_test".into(),
                step: 0,
                value: result.n_test as f64,
            },
        ];
        rt.block_on(store.record_metrics(&run.id, &metrics))?;
        Ok(Executed::Completed {
            top1: Some(result.top1),
        })
    }
}

fn ml_error(e: MlError) -> anyhow::Error {
    anyhow::Error::new(e)
}

fn parse_device(s: &str) -> Result<ml::Device> {
    if s == "cpu" {
        return Ok(ml::Device::Cpu);
    }
    let Some(n) = s
        .strip_prefix("cuda:")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        anyhow::bail!("unknown device `{s}`: use cpu or cuda:N");
    };
    ml::Device::new_cuda(n)
        .with_context(|| format!("device {s} (this build needs `--features cuda` and a GPU)"))
}

fn spawn_heartbeat(
    rt: &tokio::runtime::Runtime,
    store: Store,
    run_id: String,
    me: Worker,
    lease: Duration,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        let every = (lease / 4).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            match store
                .heartbeat(&run_id, &me, lease.as_millis() as i64)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(_) => {} // transient (locked, I/O): try again next beat
            }
        }
    })
}

/// Sends events: JSON lines on stdout, or log lines on stderr.
pub(crate) struct Emitter {
    json: bool,
    quiet: bool,
}

impl Emitter {
    fn send(&self, e: &Event) {
        if self.json {
            use std::io::Write;
            let line = serde_json::to_string(e).expect("events serialise");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        } else if !self.quiet {
            if let Some(l) = e.log_line() {
                eprintln!("{l}");
            }
        }
    }
}

/// Records training events in the store (metrics in batches, checkpoints at once) and
/// turns stop signals and lost leases into `Control::Stop`.
struct StoreObserver<'a> {
    rt: &'a tokio::runtime::Runtime,
    store: &'a Store,
    run_id: String,
    stop: StopFlag,
    lost: Arc<AtomicBool>,
    emit: &'a Emitter,
    pending: Vec<MetricRecord>,
    last_flush: Instant,
    /// Epochs of the pretrain (for the progress total).
    epochs: usize,
}

impl StoreObserver<'_> {
    /// Adds metrics at `step` to the next batch written to the store.
    fn queue(&mut self, step: usize, metrics: &[(&str, f64)]) {
        for (name, value) in metrics {
            let (name, step, value) = (name.to_string(), step as i64, *value);
            self.pending.push(MetricRecord { name, step, value });
        }
    }

    /// Writes the pending metrics; on error they stay pending for the next flush.
    fn flush(&mut self) -> Result<()> {
        self.rt
            .block_on(self.store.record_metrics(&self.run_id, &self.pending))?;
        self.pending.clear();
        self.last_flush = Instant::now();
        Ok(())
    }
}

impl Observer for StoreObserver<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        self.queue(
            m.step,
            &[
                ("train/loss", m.loss),
                ("train/lr", m.lr),
                ("train/contrastive_acc", m.contrastive_acc),
                ("train/images_per_sec", m.images_per_sec),
            ],
        );
        self.emit.send(&Event::Step {
            run: self.run_id.clone(),
            epoch: m.epoch,
            step: m.step,
            total_steps: (m.steps_per_epoch * self.epochs) as u64,
            loss: m.loss,
            contrastive_acc: m.contrastive_acc,
            images_per_sec: m.images_per_sec,
        });
        if self.last_flush.elapsed() > Duration::from_secs(2) {
            // A failed flush keeps the metrics pending; the checkpoint's flush must succeed.
            let _ = self.flush();
        }
        if self.stop.is_set() || self.lost.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn on_epoch(&mut self, m: &EpochMetrics) -> anyhow::Result<()> {
        self.queue(
            m.epoch,
            &[
                ("epoch/loss", m.loss),
                ("epoch/contrastive_acc", m.contrastive_acc),
                ("epoch/seconds", m.seconds),
            ],
        );
        self.emit.send(&Event::Epoch {
            run: self.run_id.clone(),
            epoch: m.epoch,
            loss: m.loss,
            contrastive_acc: m.contrastive_acc,
            seconds: m.seconds,
        });
        self.flush()
    }

    fn on_checkpoint(&mut self, c: &CheckpointInfo) -> anyhow::Result<()> {
        // Metrics first: once the checkpoint is recorded, a resume starts after them.
        self.flush()?;
        let rec = CheckpointRecord {
            run_id: self.run_id.clone(),
            step: c.step as i64,
            epoch: c.epoch as i64,
            path: c.path.to_string_lossy().into_owned(),
            sha256: c.sha256.clone(),
        };
        self.rt.block_on(self.store.record_checkpoint(&rec))?;
        self.emit.send(&Event::Checkpoint {
            run: self.run_id.clone(),
            epoch: c.epoch,
            step: c.step,
        });
        Ok(())
    }

    fn on_eval_progress(&mut self, done: usize, total: usize, what: &str) -> Control {
        self.emit.send(&Event::EvalProgress {
            run: self.run_id.clone(),
            done,
            total,
            what: what.into(),
        });
        if self.stop.is_set() || self.lost.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Dataset fingerprints, computed once per path per process.
#[derive(Default)]
pub(crate) struct FingerprintCache(HashMap<PathBuf, String>);

impl FingerprintCache {
    pub(crate) fn get(&mut self, path: &Path) -> Result<String> {
        if let Some(f) = self.0.get(path) {
            return Ok(f.clone());
        }
        let f = ml::data::fingerprint(path)?;
        self.0.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }
}
