//! The pretraining loop. SimCLR (section 2.1, Algorithm 1): two augmented views per image,
//! one forward pass over the 2N views (BatchNorm statistics over all 2N, like the official
//! code's global BN on one device), the contrastive loss, backward, an optimizer step at the
//! scheduled learning rate. The supervised baseline (`Method::Supervised`) runs the same
//! loop on one augmented view per image with the cross-entropy of a linear classifier on h
//! (`supervised`). Checkpoints every `checkpoint_every` epochs, on the last epoch and
//! whenever the observer asks to stop.
//!
//! Resume is bit-identical on CPU: weights, BatchNorm running statistics and optimizer state
//! come from the checkpoint, the schedule from the global step, and data order and
//! augmentations are keyed by (seed, epoch, image index, view), so nothing else carries state.
//!
//! Failures are errors, never a crash of the caller: a NaN or infinite loss stops with
//! `MlError::NonFinite` (step and value), allocation failures reported by candle (CUDA) become
//! `MlError::OutOfMemory`, corrupt checkpoints are skipped with a warning on stderr (falling
//! back to an older one, or to a fresh start), and a panic inside training becomes
//! `MlError::Config("internal error ...")`.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{Linear, VarMap};

use crate::ml::augment::device::DeviceImages;
use crate::ml::checkpoint::{self, resume_key, CheckpointMeta, LoadedCheckpoint};
use crate::ml::config::{AugmentOn, Method, Precision, PretrainConfig};
use crate::ml::data::{self, ImageSet, Split};
use crate::ml::error::{classify, no_panic, tensor_err};
use crate::ml::model::init;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, EpochMetrics, Observer, StepMetrics};
use crate::ml::training::loss;
use crate::ml::training::optim::Optimizer;
use crate::ml::training::schedule::lr_at;
use crate::ml::training::supervised;
use crate::ml::{Checkpoint, MlError, PretrainOutcome, TrainEnv};

/// Pretrain a SimCLR model: load the training split (`cfg.dataset`, `env.data_path`),
/// optionally a class-balanced subset of it (`train_subset`, seeded by `cfg.seed`), resume
/// from the first verifiable checkpoint of `env.resume_from`, and train to `cfg.epochs`.
pub fn pretrain(
    cfg: &PretrainConfig,
    env: &TrainEnv,
    obs: &mut dyn Observer,
) -> Result<PretrainOutcome, MlError> {
    no_panic(|| {
        let set = data::load_split_shared(&cfg.dataset, &env.data_path, Split::Train)?;
        let indices = match cfg.dataset.train_subset {
            Some(n) => data::balanced_subset(&set.labels, set.num_classes, n, cfg.seed)?,
            None => (0..set.len()).collect(),
        };
        pretrain_on(cfg, env, set, Arc::new(indices), obs)
    })
}

/// Where the loop stands (what a checkpoint records).
#[derive(Clone, Copy, Debug, Default)]
struct Position {
    epoch: usize,
    step_in_epoch: usize,
    loss_sum: f64,
    acc_sum: f64,
}

/// Restore `loaded` into the model and optimizer, or say why it does not fit this run.
fn restore(
    loaded: &LoadedCheckpoint,
    cfg: &PretrainConfig,
    steps_per_epoch: usize,
    varmap: &VarMap,
    opt: &mut Optimizer,
) -> Result<Position, MlError> {
    let path = &loaded.info.path;
    let bad = |m: String| MlError::Checkpoint {
        path: path.clone(),
        message: m,
    };
    let m = &loaded.meta;
    if resume_key(&m.config) != resume_key(cfg) {
        return Err(bad("written by a different configuration".into()));
    }
    if m.steps_per_epoch != steps_per_epoch
        || m.step != m.epoch * steps_per_epoch + m.step_in_epoch
        || m.step_in_epoch >= steps_per_epoch.max(1)
        || m.epoch > cfg.epochs
    {
        return Err(bad(format!(
            "inconsistent position: epoch {} step {} step_in_epoch {} steps_per_epoch {} (run has {steps_per_epoch})",
            m.epoch, m.step, m.step_in_epoch, m.steps_per_epoch
        )));
    }
    opt.load_state(&loaded.optim)
        .map_err(|e| bad(e.to_string()))?;
    checkpoint::restore_varmap(varmap, &loaded.model, path)?;
    Ok(Position {
        epoch: m.epoch,
        step_in_epoch: m.step_in_epoch,
        loss_sum: m.epoch_loss_sum,
        acc_sum: m.epoch_acc_sum,
    })
}

/// Checks that the config can train on `n_images` images; the steps per epoch.
fn checked_steps_per_epoch(cfg: &PretrainConfig, n_images: usize) -> Result<usize, MlError> {
    if cfg.batch_size < 2 {
        let why = match cfg.method {
            Method::Simclr => "leaves no negatives",
            Method::Supervised => "gives BatchNorm no batch statistics",
        };
        return Err(MlError::Config(format!(
            "batch size {} {why} (need >= 2)",
            cfg.batch_size
        )));
    }
    if cfg.checkpoint_every == 0 {
        return Err(MlError::Config(
            "checkpoint_every must be at least 1".into(),
        ));
    }
    let spe = data::steps_per_epoch(n_images, cfg.batch_size);
    if spe == 0 {
        return Err(MlError::Config(format!(
            "batch size {} exceeds the {} training images",
            cfg.batch_size, n_images
        )));
    }
    Ok(spe)
}

/// A freshly initialised model (from the config's seed), the supervised classifier if the
/// run has one, and the optimizer over all of it.
fn fresh(cfg: &PretrainConfig, env: &TrainEnv, num_classes: usize) -> Result<Fresh, MlError> {
    let (vm, model, classifier) =
        init::build_pretrain(cfg, num_classes, &env.device).map_err(tensor_err)?;
    let opt = Optimizer::new(&cfg.optimizer, init::trainable_vars(&vm));
    Ok((vm, model, classifier, opt))
}

type Fresh = (VarMap, SimclrModel, Option<Linear>, Optimizer);

/// Refuses a precision the device cannot run (tf32 and bf16 are CUDA arithmetic; the
/// command line refuses them for CPU workers before anything starts, this is the
/// worker's own check) and sets candle's process-wide TF32 switch for cuBLAS matrix
/// products on for tf32, off otherwise (a worker runs one stage at a time).
fn set_precision(p: Precision, device: &candle_core::Device) -> Result<(), MlError> {
    if p != Precision::F32 && !device.is_cuda() {
        return Err(MlError::Config(format!(
            "precision: {} needs a CUDA device; this worker runs on the CPU (train with \
             precision: f32, or run the sweep with --devices cuda:0)",
            p.name()
        )));
    }
    candle_core::cuda::set_gemm_reduced_precision_f32(p == Precision::Tf32);
    Ok(())
}

/// The views in the dtype the encoder computes in: bfloat16 under `Precision::Bf16` (the
/// encoder casts its float32 weights per step and returns h in float32), else as they are.
pub(crate) fn compute_dtype(x: Tensor, p: Precision) -> Result<Tensor, MlError> {
    match p {
        Precision::Bf16 => x.to_dtype(DType::BF16).map_err(tensor_err),
        Precision::F32 | Precision::Tf32 => Ok(x),
    }
}

/// One pretraining run: its config, its model and optimizer, and the images it trains on.
struct Run<'a> {
    cfg: &'a PretrainConfig,
    env: &'a TrainEnv,
    varmap: VarMap,
    model: SimclrModel,
    /// The supervised baseline's classifier on h (`None` for SimCLR).
    classifier: Option<Linear>,
    opt: Optimizer,
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    steps_per_epoch: usize,
    /// `augment.on: device`: the training set on the device, uploaded at the first epoch.
    on_device: Option<Arc<DeviceImages>>,
}

/// One step's input on the run's device: the views (`[n, 3, H, W]` f32 in [0, 1]; view 1
/// for SimCLR only) and the labels, from the host loader or the device pipeline.
struct StepInput {
    step_in_epoch: usize,
    n: usize,
    x1: Tensor,
    x2: Option<Tensor>,
    labels: Vec<u16>,
}

/// What one optimisation step measured. For the supervised baseline both accuracies are
/// the batch's classification top-1.
struct StepResult {
    loss: f64,
    contrastive_acc: f64,
    contrastive_acc_cross_view: f64,
    lr: f64,
}

impl<'a> Run<'a> {
    fn new(
        cfg: &'a PretrainConfig,
        env: &'a TrainEnv,
        set: Arc<ImageSet>,
        indices: Arc<Vec<usize>>,
    ) -> Result<Self, MlError> {
        let steps_per_epoch = checked_steps_per_epoch(cfg, indices.len())?;
        set_precision(cfg.precision, &env.device)?;
        crate::ml::cuda::prepare_stage(&env.device, cfg.conv_impl)?;
        let (varmap, model, classifier, opt) = fresh(cfg, env, set.num_classes)?;
        Ok(Run {
            cfg,
            env,
            varmap,
            model,
            classifier,
            opt,
            set,
            indices,
            steps_per_epoch,
            on_device: None,
        })
    }

    /// Restores the first checkpoint of `env.resume_from` that verifies and fits: the
    /// position to continue from and that checkpoint, or the start and none.
    fn resume(&mut self) -> Result<(Position, Option<Checkpoint>), MlError> {
        let mut dirty = false;
        for r in &self.env.resume_from {
            let attempt = checkpoint::load(r, &self.env.device).and_then(|l| {
                dirty = true;
                let p = restore(
                    &l,
                    self.cfg,
                    self.steps_per_epoch,
                    &self.varmap,
                    &mut self.opt,
                )?;
                Ok((p, l.info))
            });
            match attempt {
                Ok((p, info)) => return Ok((p, Some(info))),
                Err(e) => eprintln!("warning: skipping checkpoint {}: {e}", r.path.display()),
            }
        }
        if dirty {
            // A failed restore may have changed some variables: start from clean weights.
            (self.varmap, self.model, self.classifier, self.opt) =
                fresh(self.cfg, self.env, self.set.num_classes)?;
        }
        Ok((Position::default(), None))
    }

    /// Trains epoch `pos.epoch` from `pos.step_in_epoch` on, advancing `pos`; true when
    /// the observer asked to stop (then the epoch may be unfinished).
    fn train_epoch(&mut self, pos: &mut Position, obs: &mut dyn Observer) -> Result<bool, MlError> {
        let (cfg, spe) = (self.cfg, self.steps_per_epoch);
        let epoch = pos.epoch;
        let views = match cfg.method {
            Method::Simclr => data::Views::Pair,
            Method::Supervised => data::Views::Single,
        };
        let pair = views == data::Views::Pair;
        let inputs: Box<dyn Iterator<Item = Result<StepInput, MlError>>> = match cfg.augment.on {
            AugmentOn::Host => {
                let (h, w, device) = (self.set.height, self.set.width, self.env.device.clone());
                let batches = data::view_batches(
                    self.set.clone(),
                    self.indices.clone(),
                    &data::EpochViews {
                        views,
                        aug: &cfg.augment,
                        seed: cfg.seed,
                        epoch,
                        batch_size: cfg.batch_size,
                        start_step: pos.step_in_epoch,
                        threads: self.env.loader_threads,
                    },
                )?;
                Box::new(batches.map(move |b| {
                    let t = |v: Vec<f32>| Tensor::from_vec(v, (b.n, 3, h, w), &device);
                    Ok(StepInput {
                        step_in_epoch: b.step_in_epoch,
                        n: b.n,
                        x1: t(b.v1).map_err(tensor_err)?,
                        x2: if pair {
                            Some(t(b.v2).map_err(tensor_err)?)
                        } else {
                            None
                        },
                        labels: b.labels,
                    })
                }))
            }
            AugmentOn::Device => {
                if self.on_device.is_none() {
                    let up = DeviceImages::upload(&self.set, &self.env.device);
                    self.on_device = Some(Arc::new(up.map_err(tensor_err)?));
                }
                let images = self.on_device.clone().expect("uploaded above");
                let order = data::epoch_order(
                    &self.indices,
                    &mut data::pretrain_order_stream(cfg.seed, epoch),
                );
                let (set, aug, n) = (self.set.clone(), cfg.augment.clone(), cfg.batch_size);
                let seed = cfg.seed;
                Box::new((pos.step_in_epoch..spe).map(move |s| {
                    let idx = &order[s * n..(s + 1) * n];
                    let (x1, x2) = images
                        .views(idx, &aug, seed, epoch, pair)
                        .map_err(tensor_err)?;
                    Ok(StepInput {
                        step_in_epoch: s,
                        n,
                        x1,
                        x2,
                        labels: idx.iter().map(|&i| set.labels[i]).collect(),
                    })
                }))
            }
        };
        for b in inputs {
            let b = b?;
            let t0 = Instant::now();
            let global = epoch * spe + b.step_in_epoch;
            let (n, step_in_epoch) = (b.n, b.step_in_epoch);
            let step = self.step(b, epoch, global)?;
            pos.step_in_epoch = step_in_epoch + 1;
            pos.loss_sum += step.loss;
            pos.acc_sum += step.contrastive_acc;
            let secs = t0.elapsed().as_secs_f64();
            let m = StepMetrics {
                epoch,
                step: global,
                steps_per_epoch: spe,
                loss: step.loss,
                lr: step.lr,
                contrastive_acc: step.contrastive_acc,
                contrastive_acc_cross_view: step.contrastive_acc_cross_view,
                images_per_sec: if secs > 0.0 { n as f64 / secs } else { 0.0 },
            };
            if obs.on_step(&m) == Control::Stop {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One step on a batch: the forward pass and the method's loss (SimCLR: both views
    /// together through encoder and head, the contrastive loss; supervised: the one view
    /// through the encoder, the classifier's cross-entropy), backward, an optimizer step at
    /// the scheduled learning rate.
    fn step(&mut self, b: StepInput, epoch: usize, global: usize) -> Result<StepResult, MlError> {
        let cfg = self.cfg;
        let n = b.n;
        let x1 = compute_dtype(b.x1, cfg.precision)?;
        let (loss_t, acc, acc_cross_view) = match &self.classifier {
            None => {
                let x2 =
                    b.x2.ok_or_else(|| MlError::Config("a pair batch without view 1".into()))?;
                let x2 = compute_dtype(x2, cfg.precision)?;
                let x = Tensor::cat(&[&x1, &x2], 0).map_err(tensor_err)?; // [2N, 3, H, W]
                let (_h, z) = self.model.forward_t(&x, true).map_err(tensor_err)?; // z [2N, D]
                let z1 = z.narrow(0, 0, n).map_err(tensor_err)?;
                let z2 = z.narrow(0, n, n).map_err(tensor_err)?;
                let out = loss::contrastive_loss(&z1, &z2, &cfg.loss).map_err(tensor_err)?;
                (out.loss, out.accuracy, out.accuracy_cross_view)
            }
            Some(classifier) => {
                let h = self.model.encode(&x1, true).map_err(tensor_err)?;
                let out = supervised::objective(classifier, &h, &b.labels).map_err(tensor_err)?;
                (out.loss, out.top1, out.top1)
            }
        };
        let value = loss_t
            .to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .map_err(tensor_err)?;
        if !value.is_finite() {
            return Err(MlError::NonFinite {
                epoch,
                step: global,
                value,
            });
        }
        let grads = loss_t.backward().map_err(tensor_err)?;
        let spe = self.steps_per_epoch;
        let lr = lr_at(
            &cfg.optimizer,
            cfg.batch_size,
            global,
            spe,
            spe * cfg.epochs,
        );
        self.opt.step(&grads, lr).map_err(classify)?;
        Ok(StepResult {
            loss: value,
            contrastive_acc: acc,
            contrastive_acc_cross_view: acc_cross_view,
            lr,
        })
    }

    /// Reports the finished epoch `pos.epoch`, moves `pos` to the next epoch's start and
    /// checkpoints there when due (always when stopping); the checkpoint, if written.
    fn end_epoch(
        &mut self,
        pos: &mut Position,
        seconds: f64,
        stop: bool,
        obs: &mut dyn Observer,
    ) -> Result<Option<Checkpoint>, MlError> {
        let spe = self.steps_per_epoch as f64;
        obs.on_epoch(&EpochMetrics {
            epoch: pos.epoch,
            loss: pos.loss_sum / spe,
            contrastive_acc: pos.acc_sum / spe,
            seconds,
        })
        .map_err(MlError::Observer)?;
        *pos = Position {
            epoch: pos.epoch + 1,
            ..Position::default()
        };
        if stop || pos.epoch % self.cfg.checkpoint_every == 0 || pos.epoch == self.cfg.epochs {
            return self.save(pos, obs).map(Some);
        }
        Ok(None)
    }

    fn save(&self, pos: &Position, obs: &mut dyn Observer) -> Result<Checkpoint, MlError> {
        let meta = CheckpointMeta {
            version: checkpoint::FORMAT_VERSION,
            epoch: pos.epoch,
            step: pos.epoch * self.steps_per_epoch + pos.step_in_epoch,
            step_in_epoch: pos.step_in_epoch,
            steps_per_epoch: self.steps_per_epoch,
            epoch_loss_sum: pos.loss_sum,
            epoch_acc_sum: pos.acc_sum,
            config: self.cfg.clone(),
        };
        let info = checkpoint::save(
            &self.env.checkpoint_dir,
            &meta,
            &self.varmap,
            &self.opt.state(),
        )?;
        obs.on_checkpoint(&info).map_err(MlError::Observer)?;
        Ok(info)
    }
}

/// [`pretrain`] on an already loaded image set and the indices of the images to train on.
pub(crate) fn pretrain_on(
    cfg: &PretrainConfig,
    env: &TrainEnv,
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    obs: &mut dyn Observer,
) -> Result<PretrainOutcome, MlError> {
    let mut run = Run::new(cfg, env, set, indices)?;
    let (mut pos, mut last) = run.resume()?;
    while pos.epoch < cfg.epochs {
        let t_epoch = Instant::now();
        let stop = run.train_epoch(&mut pos, obs)?;
        if pos.step_in_epoch < run.steps_per_epoch {
            // Stopped mid-epoch: checkpoint the position inside the epoch.
            let info = run.save(&pos, obs)?;
            return Ok(PretrainOutcome::Stopped { checkpoint: info });
        }
        let seconds = t_epoch.elapsed().as_secs_f64();
        if let Some(info) = run.end_epoch(&mut pos, seconds, stop, obs)? {
            last = Some(info);
        }
        if stop && pos.epoch < cfg.epochs {
            let checkpoint = last.ok_or_else(|| MlError::Config("no checkpoint".into()))?;
            return Ok(PretrainOutcome::Stopped { checkpoint });
        }
    }
    if cfg.epochs == 0 && last.is_none() {
        // The random-initialisation baseline: evaluations read the untrained weights.
        last = Some(run.save(&pos, obs)?);
    }
    match last {
        Some(checkpoint) => Ok(PretrainOutcome::Finished { checkpoint }),
        // Only reachable when resuming a finished run whose checkpoint is then missing.
        None => Err(MlError::Config("finished without a checkpoint".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{AugOp, AugmentConfig, AugmentOn, OptimizerConfig, OptimizerKind};
    use crate::ml::observer::NullObserver;
    use crate::ml::observer::ObserverError;
    use crate::test_support::cpu_env as env;
    use crate::test_support::images::random_images;
    use candle_core::Device;

    fn tiny_cfg(epochs: usize) -> PretrainConfig {
        PretrainConfig {
            augment: AugmentConfig {
                ops: vec![AugOp::Crop, AugOp::Color],
                ..Default::default()
            },
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Lars,
                lr: 1.0,
                warmup_epochs: 1.0,
                ..Default::default()
            },
            batch_size: 8,
            epochs,
            seed: 3,
            checkpoint_every: 1,
            ..crate::test_support::tiny_convnet()
        }
    }

    /// Records losses and checkpoints; stops after `stop_after` steps if set.
    #[derive(Default)]
    struct Rec {
        losses: Vec<(usize, f64)>,
        epochs: Vec<EpochMetrics>,
        ckpts: Vec<Checkpoint>,
        stop_after: Option<usize>,
    }
    impl Observer for Rec {
        fn on_step(&mut self, m: &StepMetrics) -> Control {
            self.losses.push((m.step, m.loss));
            match self.stop_after {
                Some(k) if self.losses.len() >= k => Control::Stop,
                _ => Control::Continue,
            }
        }
        fn on_epoch(&mut self, m: &EpochMetrics) -> Result<(), ObserverError> {
            self.epochs.push(m.clone());
            Ok(())
        }
        fn on_checkpoint(&mut self, c: &Checkpoint) -> Result<(), ObserverError> {
            self.ckpts.push(c.clone());
            Ok(())
        }
    }

    fn run(
        cfg: &PretrainConfig,
        env: &TrainEnv,
        rec: &mut Rec,
    ) -> Result<PretrainOutcome, MlError> {
        let set = random_images(32, 1, 99); // 32 random images, 4 classes
        let idx = Arc::new((0..set.len()).collect::<Vec<_>>());
        no_panic(|| pretrain_on(cfg, env, set, idx, rec))
    }

    fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<(String, Vec<f32>)> = candle_core::safetensors::load(path, &Device::Cpu)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("model/"))
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn reduced_precision_on_the_cpu_is_refused_before_a_step_or_a_checkpoint() {
        for p in [Precision::Tf32, Precision::Bf16] {
            let d = tempfile::tempdir().unwrap();
            let mut rec = Rec::default();
            let cfg = PretrainConfig {
                precision: p,
                ..tiny_cfg(1)
            };
            let err = run(&cfg, &env(d.path(), vec![]), &mut rec).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("precision: {} needs a CUDA device", p.name())),
                "{msg}"
            );
            assert!(rec.losses.is_empty() && rec.ckpts.is_empty());
        }
    }

    /// `augment.on: device` on the CPU: a run stopped mid-epoch and resumed gives exactly
    /// the uninterrupted run's losses and weights, and it trains on the host pipeline's
    /// views up to rounding, so its first losses are the host run's to a few 1e-3.
    #[test]
    fn device_augmentation_resumes_exactly_and_tracks_the_host_pipeline() {
        let cfg = PretrainConfig {
            augment: AugmentConfig {
                on: AugmentOn::Device,
                ..tiny_cfg(2).augment
            },
            ..tiny_cfg(2)
        };
        let d_full = tempfile::tempdir().unwrap();
        let mut full = Rec::default();
        let out = run(&cfg, &env(d_full.path(), vec![]), &mut full).unwrap();
        let PretrainOutcome::Finished {
            checkpoint: end_full,
        } = out
        else {
            panic!("{out:?}")
        };
        let d = tempfile::tempdir().unwrap();
        let mut a = Rec {
            stop_after: Some(3),
            ..Default::default()
        };
        let PretrainOutcome::Stopped { checkpoint } =
            run(&cfg, &env(d.path(), vec![]), &mut a).unwrap()
        else {
            panic!("not stopped")
        };
        assert_eq!((checkpoint.epoch, checkpoint.step), (0, 3), "mid-epoch");
        let mut b = Rec::default();
        let PretrainOutcome::Finished { checkpoint: end } =
            run(&cfg, &env(d.path(), vec![checkpoint]), &mut b).unwrap()
        else {
            panic!("not finished")
        };
        let joined: Vec<(usize, f64)> = a.losses.iter().chain(&b.losses).copied().collect();
        assert_eq!(joined, full.losses);
        assert_eq!(end.sha256, end_full.sha256);
        let mut host = Rec::default();
        let dh = tempfile::tempdir().unwrap();
        run(&tiny_cfg(2), &env(dh.path(), vec![]), &mut host).unwrap();
        let (l_dev, l_host) = (full.losses[0].1, host.losses[0].1);
        assert!((l_dev - l_host).abs() < 5e-3, "{l_dev} vs {l_host}");
    }

    #[test]
    fn resume_reproduces_the_uninterrupted_run_exactly() {
        // Uninterrupted: 4 epochs of 4 steps.
        let d_full = tempfile::tempdir().unwrap();
        let mut full = Rec::default();
        let out = run(&tiny_cfg(4), &env(d_full.path(), vec![]), &mut full).unwrap();
        let PretrainOutcome::Finished {
            checkpoint: end_full,
        } = out
        else {
            panic!("{out:?}")
        };
        assert_eq!(full.losses.len(), 16);
        assert_eq!(full.ckpts.len(), 4);
        // The trainer deletes none: old files go once the store records newer ones.
        assert_eq!(std::fs::read_dir(d_full.path()).unwrap().count(), 4);

        // Interrupted: stop after 2 epochs, then resume and finish.
        let d = tempfile::tempdir().unwrap();
        let mut a = Rec {
            stop_after: Some(8),
            ..Default::default()
        };
        let out = run(&tiny_cfg(4), &env(d.path(), vec![]), &mut a).unwrap();
        let PretrainOutcome::Stopped { checkpoint } = out else {
            panic!("{out:?}")
        };
        assert_eq!((checkpoint.epoch, checkpoint.step), (2, 8));
        let mut b = Rec::default();
        let out = run(
            &tiny_cfg(4),
            &env(d.path(), vec![checkpoint.clone()]),
            &mut b,
        )
        .unwrap();
        let PretrainOutcome::Finished { checkpoint: end } = out else {
            panic!("{out:?}")
        };
        let joined: Vec<(usize, f64)> = a.losses.iter().chain(&b.losses).copied().collect();
        assert_eq!(joined, full.losses, "loss sequences differ");
        assert_eq!(
            a.epochs
                .iter()
                .chain(&b.epochs)
                .map(|e| e.loss)
                .collect::<Vec<_>>(),
            full.epochs.iter().map(|e| e.loss).collect::<Vec<_>>()
        );
        // Same final weights and BatchNorm running statistics.
        let w_end = weights(&end.path);
        assert!(w_end.iter().any(|(k, _)| k.ends_with("running_var")));
        // The head's output BN (on by default) is saved and restored with the rest.
        let out_gamma = w_end.iter().find(|(k, _)| k.ends_with("head.bn1.weight"));
        assert!(out_gamma.is_some_and(|(_, g)| g.iter().any(|&x| x != 1.0)));
        assert_eq!(w_end, weights(&end_full.path));
        // The losses moved: the test compares a real training trajectory.
        assert!(full.losses.iter().any(|l| l.1 != full.losses[0].1));
        assert_eq!(end.sha256, end_full.sha256);
    }

    #[test]
    fn mid_epoch_stop_resumes_exactly() {
        let d_full = tempfile::tempdir().unwrap();
        let mut full = Rec::default();
        run(&tiny_cfg(2), &env(d_full.path(), vec![]), &mut full).unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut a = Rec {
            stop_after: Some(3),
            ..Default::default()
        };
        let PretrainOutcome::Stopped { checkpoint } =
            run(&tiny_cfg(2), &env(d.path(), vec![]), &mut a).unwrap()
        else {
            panic!()
        };
        assert_eq!((checkpoint.epoch, checkpoint.step), (0, 3));
        let mut b = Rec::default();
        run(
            &tiny_cfg(2),
            &env(d.path(), vec![checkpoint.clone()]),
            &mut b,
        )
        .unwrap();
        let joined: Vec<(usize, f64)> = a.losses.iter().chain(&b.losses).copied().collect();
        assert_eq!(joined, full.losses);
        assert_eq!(b.epochs[0].loss, full.epochs[0].loss);
    }

    #[test]
    fn corrupt_checkpoint_falls_back_to_the_older_one_or_scratch() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Rec::default();
        run(&tiny_cfg(2), &env(d.path(), vec![]), &mut a).unwrap();
        let (older, newer) = (a.ckpts[0].clone(), a.ckpts[1].clone());
        // Corrupt the newest checkpoint.
        let mut bytes = std::fs::read(&newer.path).unwrap();
        let k = bytes.len() / 2;
        bytes[k] ^= 1;
        std::fs::write(&newer.path, &bytes).unwrap();
        let mut b = Rec::default();
        let out = run(
            &tiny_cfg(2),
            &env(d.path(), vec![newer.clone(), older.clone()]),
            &mut b,
        )
        .unwrap();
        assert!(matches!(out, PretrainOutcome::Finished { .. }));
        // Resumed from epoch 1: only the second epoch's steps ran again, identically.
        assert_eq!(b.losses, a.losses[4..].to_vec());

        // Nothing valid: train from scratch.
        let d2 = tempfile::tempdir().unwrap();
        let mut c = Rec::default();
        let bogus = Checkpoint {
            path: d2.path().join("missing.safetensors"),
            sha256: "ab".repeat(32),
            ..older.clone()
        };
        let bad_sha = Checkpoint {
            sha256: "00".repeat(32),
            ..older
        };
        run(&tiny_cfg(2), &env(d2.path(), vec![bogus, bad_sha]), &mut c).unwrap();
        assert_eq!(c.losses, a.losses);
    }

    #[test]
    fn huge_learning_rate_is_a_non_finite_error_with_the_step() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = tiny_cfg(2);
        cfg.optimizer = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 1e30,
            warmup_epochs: 0.0,
            ..Default::default()
        };
        let mut rec = Rec::default();
        let err = run(&cfg, &env(d.path(), vec![]), &mut rec).unwrap_err();
        match err {
            MlError::NonFinite { step, value, .. } => {
                assert!(!value.is_finite());
                assert_eq!(step, rec.losses.len());
                assert!(step >= 1);
            }
            e => panic!("expected NonFinite, got {e}"),
        }
    }

    #[test]
    fn pretrain_reads_the_dataset_and_its_balanced_subset() {
        let d = tempfile::tempdir().unwrap();
        let data = crate::test_support::cifar::write_cifar10_dir(d.path(), 10); // 50 train images
        let mut cfg = tiny_cfg(1);
        cfg.dataset.train_subset = Some(10);
        cfg.batch_size = 5;
        let mut e = env(d.path(), vec![]);
        e.data_path = data;
        e.checkpoint_dir = d.path().join("ckpt");
        let mut rec = Rec::default();
        let out = pretrain(&cfg, &e, &mut rec).unwrap();
        // 10 images / batch 5 = 2 steps; the final checkpoint verifies.
        assert_eq!(rec.losses.len(), 2);
        let PretrainOutcome::Finished { checkpoint } = out else {
            panic!("{out:?}")
        };
        assert_eq!((checkpoint.epoch, checkpoint.step), (1, 2));
        checkpoint::load(&checkpoint, &Device::Cpu).unwrap();
        // A subset that is not class-balanced is a config error, not a panic.
        cfg.dataset.train_subset = Some(7);
        let err = pretrain(&cfg, &e, &mut Rec::default()).unwrap_err();
        assert!(matches!(err, MlError::Config(_)), "{err}");
    }

    #[test]
    fn stop_on_the_last_step_still_finishes() {
        let d = tempfile::tempdir().unwrap();
        let mut rec = Rec {
            stop_after: Some(4),
            ..Default::default()
        };
        let out = run(&tiny_cfg(1), &env(d.path(), vec![]), &mut rec).unwrap();
        assert!(matches!(out, PretrainOutcome::Finished { .. }), "{out:?}");
    }

    #[test]
    fn batch_larger_than_the_data_is_a_config_error() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = tiny_cfg(1);
        cfg.batch_size = 64;
        let err = run(&cfg, &env(d.path(), vec![]), &mut Rec::default()).unwrap_err();
        assert!(matches!(err, MlError::Config(_)), "{err}");
        let _ = NullObserver;
    }
}
