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
use crate::exit;
use crate::ml::config::{EvalConfig, Method, PretrainConfig};
use crate::ml::observer::{Control, EpochMetrics, Observer, ObserverError, StepMetrics};
use crate::ml::{self, Checkpoint, EvalOutcome, PretrainOutcome, TrainEnv};
use crate::store::{retry_transient, Claimed, LeaseHolder, MetricRecord, RunRecord, Store};
use crate::vocab::{metric, short_id, StageKind};

/// Everything a worker is told (its command line), besides the store.
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

impl WorkerExit {
    /// The process exit code this ending stands for.
    pub fn code(&self) -> i32 {
        match self {
            WorkerExit::Interrupted => exit::INTERRUPTED,
            WorkerExit::Drained { failed, .. } if *failed > 0 => exit::RUNS_FAILED,
            WorkerExit::Drained { .. } => exit::OK,
        }
    }
}

/// This process as a lease holder: host, pid and a nonce (a pid can be reused).
pub fn this_process() -> LeaseHolder {
    let host = hostname();
    let pid = std::process::id() as i64;
    let nonce = crate::store::now_ms();
    LeaseHolder {
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

/// A worker: the claim loop and everything it carries from one stage to the next.
pub struct Worker<'a> {
    rt: &'a tokio::runtime::Runtime,
    store: &'a Store,
    cfg: WorkerConfig,
    me: LeaseHolder,
    device: ml::Device,
    stop: StopFlag,
    emit: Emitter,
    fingerprints: FingerprintCache,
}

/// How one claimed stage ended, for the loop's counts.
#[derive(Debug, PartialEq, Eq)]
enum StageEnd {
    Done,
    Failed,
    Released,
    Lost,
}

/// What running a stage gave, before it is committed.
enum Executed {
    Completed { top1: Option<f64> },
    Stopped,
}

impl<'a> Worker<'a> {
    /// A worker for `cfg` on `store`; fails on a device this build or machine lacks.
    pub fn new(
        rt: &'a tokio::runtime::Runtime,
        store: &'a Store,
        cfg: WorkerConfig,
        stop: StopFlag,
    ) -> Result<Self> {
        let device = parse_device(&cfg.device)?;
        let emit = Emitter {
            json: cfg.events_json,
            quiet: cfg.quiet,
        };
        Ok(Worker {
            rt,
            store,
            cfg,
            me: this_process(),
            device,
            stop,
            emit,
            fingerprints: FingerprintCache::default(),
        })
    }

    /// Runs the claim loop until nothing is claimable, `max_runs` is reached or a stop
    /// signal arrives.
    pub fn run(&mut self) -> Result<WorkerExit> {
        let (mut done, mut failed, mut ran) = (0u64, 0u64, 0u64);
        while self.cfg.max_runs.is_none_or(|m| ran < m) {
            if self.stop.is_set() {
                return Ok(WorkerExit::Interrupted);
            }
            let Some(claimed) = self.claim_or_wait()? else {
                break;
            };
            ran += 1;
            match self.run_claimed(&claimed) {
                StageEnd::Done => done += 1,
                StageEnd::Failed => failed += 1,
                StageEnd::Released => return Ok(WorkerExit::Interrupted),
                StageEnd::Lost => {}
            }
        }
        self.emit.send(&Event::Idle);
        Ok(WorkerExit::Drained { done, failed })
    }

    /// The next claimable stage. While none is, waits up to `idle_exit` for stages still
    /// running elsewhere (they may unlock evaluations, or come back when their worker
    /// dies); `None` when nothing is left or the wait is over.
    fn claim_or_wait(&self) -> Result<Option<Claimed>> {
        let idle_since = Instant::now();
        let sweep = self.cfg.sweep.as_deref();
        let lease_ms = self.cfg.lease.as_millis() as i64;
        loop {
            super::reclaim_dead_local_leases(self.rt, self.store)?;
            let claim = retry_transient(|| {
                self.store
                    .claim(sweep, &self.me, lease_ms, self.cfg.max_attempts)
            });
            if let Some(c) = self.rt.block_on(claim)? {
                return Ok(Some(c));
            }
            let unfinished = self
                .rt
                .block_on(retry_transient(|| self.store.unfinished(sweep)))?;
            if unfinished == 0 || idle_since.elapsed() >= self.cfg.idle_exit || self.stop.is_set() {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs a claimed stage under a heartbeat and commits how it ended.
    fn run_claimed(&mut self, claimed: &Claimed) -> StageEnd {
        let started = Instant::now();
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = spawn_heartbeat(
            self.rt,
            self.store.clone(),
            claimed.run.id.clone(),
            self.me.clone(),
            self.cfg.lease,
            Arc::clone(&lost),
        );
        let result = self.execute(claimed, &lost);
        heartbeat.abort();
        self.commit(
            &claimed.run.id,
            result,
            &lost,
            started.elapsed().as_secs_f64(),
        )
    }

    /// Records in the store how a stage ended, and tells the watchers.
    fn commit(
        &self,
        run: &str,
        result: Result<Executed>,
        lost: &AtomicBool,
        secs: f64,
    ) -> StageEnd {
        let (end, reason, top1) = match result {
            Ok(Executed::Completed { top1 }) => {
                let finish = retry_transient(|| self.store.finish(run, &self.me, secs));
                match self.rt.block_on(finish) {
                    Ok(true) => (StageEnd::Done, None, top1),
                    Ok(false) => (
                        StageEnd::Lost,
                        Some("lease lost before the result was committed".into()),
                        None,
                    ),
                    Err(e) => (
                        StageEnd::Failed,
                        Some(format!("could not record completion: {e}")),
                        None,
                    ),
                }
            }
            Ok(Executed::Stopped) if lost.load(Ordering::SeqCst) => (
                StageEnd::Lost,
                Some("another worker took over the lease".into()),
                None,
            ),
            Ok(Executed::Stopped) => {
                let _ = self.rt.block_on(self.store.release(run, &self.me, secs));
                let why = "stopped by signal; checkpoint written";
                (StageEnd::Released, Some(why.into()), None)
            }
            Err(e) => {
                let reason = format!("{e:#}");
                let fail = retry_transient(|| self.store.fail(run, &self.me, &reason, secs));
                let _ = self.rt.block_on(fail);
                (StageEnd::Failed, Some(reason), None)
            }
        };
        let outcome = match end {
            StageEnd::Done => "done",
            StageEnd::Failed => "failed",
            StageEnd::Released => "released",
            StageEnd::Lost => "lost",
        };
        self.emit.send(&Event::Finished {
            run: run.to_string(),
            outcome: outcome.into(),
            reason,
            top1,
        });
        end
    }

    /// Runs a pretrain or an evaluation with the ML core, recording as it goes.
    fn execute(&mut self, claimed: &Claimed, lost: &Arc<AtomicBool>) -> Result<Executed> {
        let run = &claimed.run;
        let (pretrain_json, pretrain_id) = match (&claimed.parent_config, &run.parent_id) {
            (Some(c), Some(p)) => (c.as_str(), p.as_str()),
            _ => (run.config.as_str(), run.id.as_str()),
        };
        let pretrain: PretrainConfig = serde_json::from_str(pretrain_json)
            .context("stored pretrain config does not parse (database from another version?)")?;
        // Every stage, pretrain or evaluation, runs its encoder on the ops its pretrain's
        // conv_impl and the device's self-check choose (the check runs before the first).
        let stage_ops = ml::cuda::prepare_stage(&self.device, pretrain.conv_impl)?;
        self.log_stage_ops(&stage_ops);
        let mut env = self.train_env(run, &pretrain, pretrain_id)?;
        // An evaluation reads the pretrain's newest checkpoint and resumes from its own
        // (the augmented linear protocol writes them; the others keep none).
        let encoder = match run.stage {
            StageKind::Pretrain => None,
            StageKind::Eval => {
                let newest = env
                    .resume_from
                    .first()
                    .cloned()
                    .context("the pretrain is done but has no recorded checkpoint")?;
                env.checkpoint_dir = eval_checkpoint_dir(&env.checkpoint_dir, &run.id);
                env.resume_from = self.rt.block_on(self.store.checkpoints(&run.id))?;
                Some(newest)
            }
        };
        let resumed_step = env.resume_from.first().map_or(0, |c| c.step as u64);
        self.emit.send(&Event::Started {
            run: run.id.clone(),
            stage: run.stage,
            label: run.label.clone(),
            attempt: run.attempts,
            resumed_step,
        });
        let mut obs = StoreObserver {
            rt: self.rt,
            store: self.store,
            run_id: run.id.clone(),
            stop: self.stop.clone(),
            lost: Arc::clone(lost),
            emit: &self.emit,
            pending: Vec::new(),
            last_flush: Instant::now(),
            epochs: pretrain.epochs,
            supervised: pretrain.method == Method::Supervised,
        };
        if let Some(check) = &stage_ops.check {
            let cudnn = stage_ops.path == ml::cuda::OpsPath::Cudnn;
            let worst = check.worst_ratio().min(1e30);
            obs.queue(
                0,
                &[
                    (metric::CUDA_CUDNN_OPS, f64::from(u8::from(cudnn))),
                    (
                        metric::CUDA_SELF_CHECK_PASSED,
                        f64::from(u8::from(check.passed())),
                    ),
                    (metric::CUDA_SELF_CHECK_WORST, worst),
                ],
            );
        }
        match encoder {
            None => pretrain_stage(&pretrain, &env, &mut obs),
            Some(encoder) => {
                let eval: EvalConfig = serde_json::from_str(&run.config)
                    .context("stored eval config does not parse")?;
                eval_stage(&pretrain, &eval, &encoder, &env, &mut obs)
            }
        }
    }

    /// The device's self-check in full the first time it runs, and why a stage falls back
    /// to candle's ops whenever one does (stderr, unless quiet and it passed).
    fn log_stage_ops(&self, ops: &ml::cuda::StageOps) {
        if let (Some(check), true) = (&ops.check, ops.first_check) {
            if !self.cfg.quiet || !check.passed() {
                eprintln!(
                    "worker: self-check of the cuDNN ops on {}: {}",
                    self.cfg.device,
                    check.describe()
                );
            }
        }
        if let Some(w) = &ops.warning {
            // Its first line: the whole check is above (first stage) or was (later ones).
            eprintln!("worker: {}", w.lines().next().unwrap_or(w));
        }
    }

    /// Where the stage's pretrain reads data and checkpoints; refuses data that is not
    /// what the run was registered with.
    fn train_env(
        &mut self,
        run: &RunRecord,
        pretrain: &PretrainConfig,
        pretrain_id: &str,
    ) -> Result<TrainEnv> {
        let data_path = ml::data::resolve_path(&pretrain.dataset, &self.cfg.data_dir)?;
        let fp = self.fingerprints.get(&data_path)?;
        if fp != run.dataset_fingerprint {
            anyhow::bail!(
                "the dataset at {} (fingerprint {}) is not the one this run was registered with ({}); \
                 point --data-dir at the original data",
                data_path.display(),
                short_id(&fp),
                short_id(&run.dataset_fingerprint)
            );
        }
        Ok(TrainEnv {
            device: self.device.clone(),
            data_path,
            checkpoint_dir: self.cfg.runs_dir.join(pretrain_id),
            resume_from: self.rt.block_on(self.store.checkpoints(pretrain_id))?,
            loader_threads: self.cfg.loader_threads.max(1),
        })
    }
}

/// Pretrains (or continues) to the end or to a stop request.
fn pretrain_stage(
    pretrain: &PretrainConfig,
    env: &TrainEnv,
    obs: &mut StoreObserver,
) -> Result<Executed> {
    let outcome = ml::pretrain(pretrain, env, obs)?;
    obs.flush()?;
    Ok(match outcome {
        PretrainOutcome::Finished { .. } => Executed::Completed { top1: None },
        PretrainOutcome::Stopped { .. } => Executed::Stopped,
    })
}

/// Where an evaluation keeps its own checkpoints: beside its pretrain's.
fn eval_checkpoint_dir(pretrain_dir: &Path, eval_id: &str) -> PathBuf {
    pretrain_dir.join(format!("eval-{eval_id}"))
}

/// Evaluates the pretrain checkpoint `encoder` and records the result.
fn eval_stage(
    pretrain: &PretrainConfig,
    eval: &EvalConfig,
    encoder: &Checkpoint,
    env: &TrainEnv,
    obs: &mut StoreObserver,
) -> Result<Executed> {
    let result = match ml::evaluate(pretrain, eval, encoder, env, obs)? {
        EvalOutcome::Finished(result) => result,
        EvalOutcome::Stopped => return Ok(Executed::Stopped),
    };
    let metrics = [
        (metric::EVAL_TOP1, result.top1),
        (metric::EVAL_TOP5, result.top5),
        (metric::EVAL_N_TEST, result.n_test as f64),
    ];
    obs.queue(0, &metrics);
    if let Some(train_top1) = result.train_top1 {
        obs.queue(0, &[(metric::EVAL_TRAIN_TOP1, train_top1)]);
    }
    obs.flush()?;
    Ok(Executed::Completed {
        top1: Some(result.top1),
    })
}

/// A device as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    Cpu,
    Cuda(usize),
}

impl DeviceName {
    /// `cpu` or `cuda:N`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "cpu" {
            return Some(DeviceName::Cpu);
        }
        let n = s.strip_prefix("cuda:")?.parse::<usize>().ok()?;
        Some(DeviceName::Cuda(n))
    }
}

/// The device `--device auto` means in an environment (`var` reads a variable): under
/// Slurm's `--gres gpu:N`, the first GPU it allocated to the task. Slurm (and any CUDA
/// launcher) names the allocation in `CUDA_VISIBLE_DEVICES`, which renumbers the visible
/// GPUs from 0: `cuda:0`; an empty list, `-1` or `NoDevFiles` hide every GPU: `cpu`.
/// Without it, Slurm's `SLURM_STEP_GPUS` / `SLURM_JOB_GPUS` hold the GPUs' own indices:
/// `cuda:<first>`. Neither: `cpu`.
pub fn auto_device(var: impl Fn(&str) -> Option<String>) -> String {
    if let Some(visible) = var("CUDA_VISIBLE_DEVICES") {
        let first = visible.split(',').next().unwrap_or("").trim().to_string();
        return if first.is_empty() || first == "-1" || first == "NoDevFiles" {
            "cpu".into()
        } else {
            "cuda:0".into()
        };
    }
    for name in ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS"] {
        let first = var(name).and_then(|v| v.split(',').next()?.trim().parse::<usize>().ok());
        if let Some(n) = first {
            return format!("cuda:{n}");
        }
    }
    "cpu".into()
}

fn parse_device(s: &str) -> Result<ml::Device> {
    if s == "auto" {
        let resolved = auto_device(|k| std::env::var(k).ok());
        eprintln!("worker: --device auto is {resolved} (from CUDA_VISIBLE_DEVICES / SLURM_*_GPUS)");
        return parse_device(&resolved);
    }
    match DeviceName::parse(s) {
        None => anyhow::bail!("unknown device `{s}`: use cpu, cuda:N or auto"),
        Some(DeviceName::Cpu) => Ok(ml::Device::Cpu),
        Some(DeviceName::Cuda(n)) => ml::Device::new_cuda(n)
            .with_context(|| format!("device {s} (this build needs `--features cuda` and a GPU)")),
    }
}

fn spawn_heartbeat(
    rt: &tokio::runtime::Runtime,
    store: Store,
    run_id: String,
    me: LeaseHolder,
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
    /// A supervised pretrain: its step accuracy is classification top-1, recorded as
    /// `train/top1` and `epoch/top1`, never under the contrastive names.
    supervised: bool,
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
        let pending = &self.pending;
        let record = retry_transient(|| self.store.record_metrics(&self.run_id, pending));
        self.rt.block_on(record)?;
        self.pending.clear();
        self.last_flush = Instant::now();
        Ok(())
    }
}

impl StoreObserver<'_> {
    /// Deletes this run's checkpoint files older than its two newest recorded ones, now that
    /// `c` is recorded (`ml::checkpoint::prune_recorded`: never a file the store may point
    /// to, never one newer than those). A file that cannot be deleted costs disk, not
    /// results: a warning, and the stage goes on.
    fn prune_older_checkpoints(&self, c: &Checkpoint) -> Result<()> {
        let read = retry_transient(|| self.store.checkpoints(&self.run_id));
        let recorded = self.rt.block_on(read)?;
        let steps: Vec<usize> = recorded.iter().map(|r| r.step).collect();
        let Some(dir) = c.path.parent() else {
            return Ok(());
        };
        if let Err(e) = ml::checkpoint::prune_recorded(dir, &steps, ml::checkpoint::KEEP_RECORDED) {
            eprintln!(
                "warning: old checkpoints of {} not deleted: {e}",
                self.run_id
            );
        }
        Ok(())
    }
}

impl Observer for StoreObserver<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        let mut metrics = vec![
            (metric::TRAIN_LOSS, m.loss),
            (metric::TRAIN_LR, m.lr),
            (metric::TRAIN_IMAGES_PER_SEC, m.images_per_sec),
        ];
        if self.supervised {
            metrics.push((metric::TRAIN_TOP1, m.contrastive_acc));
        } else {
            metrics.push((metric::TRAIN_CONTRASTIVE_ACC, m.contrastive_acc));
            metrics.push((
                metric::TRAIN_CONTRASTIVE_ACC_CROSS_VIEW,
                m.contrastive_acc_cross_view,
            ));
        }
        self.queue(m.step, &metrics);
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

    fn on_epoch(&mut self, m: &EpochMetrics) -> Result<(), ObserverError> {
        let acc = if self.supervised {
            metric::EPOCH_TOP1
        } else {
            metric::EPOCH_CONTRASTIVE_ACC
        };
        self.queue(
            m.epoch,
            &[
                (metric::EPOCH_LOSS, m.loss),
                (acc, m.contrastive_acc),
                (metric::EPOCH_SECONDS, m.seconds),
            ],
        );
        self.emit.send(&Event::Epoch {
            run: self.run_id.clone(),
            epoch: m.epoch,
            loss: m.loss,
            contrastive_acc: m.contrastive_acc,
            seconds: m.seconds,
        });
        Ok(self.flush()?)
    }

    fn on_checkpoint(&mut self, c: &Checkpoint) -> Result<(), ObserverError> {
        // Metrics first: once the checkpoint is recorded, a resume starts after them.
        self.flush()?;
        let record = retry_transient(|| self.store.record_checkpoint(&self.run_id, c));
        self.rt.block_on(record)?;
        crate::ml::fault::point(&format!("checkpoint_recorded@{}", c.step));
        self.prune_older_checkpoints(c)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn auto_takes_the_gpu_slurm_allocated_and_the_cpu_without_one() {
        // Slurm with device constraints or not: the allocation is renumbered from 0.
        assert_eq!(auto_device(env(&[("CUDA_VISIBLE_DEVICES", "3")])), "cuda:0");
        assert_eq!(
            auto_device(env(&[
                ("CUDA_VISIBLE_DEVICES", "2,5"),
                ("SLURM_JOB_GPUS", "2,5")
            ])),
            "cuda:0"
        );
        // Only Slurm's own list: every GPU is visible, so its index is the device.
        assert_eq!(auto_device(env(&[("SLURM_JOB_GPUS", "6,7")])), "cuda:6");
        assert_eq!(
            auto_device(env(&[("SLURM_STEP_GPUS", "1"), ("SLURM_JOB_GPUS", "0,1")])),
            "cuda:1"
        );
        for hidden in ["", "-1", "NoDevFiles"] {
            assert_eq!(auto_device(env(&[("CUDA_VISIBLE_DEVICES", hidden)])), "cpu");
        }
        assert_eq!(auto_device(env(&[])), "cpu");
        assert_eq!(auto_device(env(&[("SLURM_JOB_GPUS", "")])), "cpu");
    }
}
