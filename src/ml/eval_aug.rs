//! Training on augmented labelled views with checkpoints, the loop shared by the paper's
//! linear evaluation and fine-tuning (`finetune`): a [`Learner`] (here [`FrozenLinear`],
//! the linear classifier on a frozen encoder; there the whole encoder and a new head) takes
//! one SGD step per batch of fresh random resized crops (area U(0.08, 1), aspect 3/4..4/3)
//! and horizontal flips (p = 0.5) of the training images, then the test split is scored
//! un-augmented (the official code does not crop images of 32 pixels or less at test time).
//!
//! The linear evaluation by the paper's protocol (appendix B.6, which follows the
//! fine-tuning procedure of B.5; the official CIFAR-10 recipe `--train_mode=finetune
//! --fine_tune_after_block=4`): the encoder is frozen with BatchNorm in inference mode, and
//! every step passes the views through it before the linear classifier ([`LinearHead`])
//! takes one SGD step (Nesterov momentum by default, cosine decay to 0, no warmup).
//!
//! Randomness: epoch e's order of the training images is drawn from
//! `rng::stream(seed, Domain::Eval, &[key_of("<stream>_order"), e])`, image i's view in
//! epoch e from `&[key_of("<stream>_view"), e, i]` (`<stream>`: `linear_aug`, or
//! `fine_tune`); the last incomplete batch of an epoch is dropped (the official input
//! pipeline's `drop_remainder=True`). Train top-1 is the classifier's accuracy on the
//! augmented batches of the last epoch, each scored just before its update (the official
//! `train_label_accuracy`). So seed + epoch + position in the epoch is the whole RNG state.
//!
//! Stop and resume: a checkpoint (the learner's tensors: classifier, optimizer state and,
//! for fine-tuning, the encoder; the position in the epoch and the running train accuracy,
//! [`EvalCheckpointMeta`]) is written at the end of every epoch and when the observer asks
//! to stop, into `env.checkpoint_dir`, under the metadata key of its kind, and reported
//! through `Observer::on_checkpoint`. A later call resumes from the first of
//! `env.resume_from` that verifies and was written for the same evaluation of the same
//! encoder checkpoint, and gives exactly the numbers of an uninterrupted run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::config::{EvalConfig, FeatureSource};
use super::data::{self, ImageSet};
use super::error::tensor_err;
use super::eval::{extract, features, rank_of, top_k};
use super::linear_head::{self, LinearHead};
use super::observer::{Control, Observer};
use super::rng::{self, Domain};
use super::{Checkpoint, EvalOutcome, EvalResult, MlError, TrainEnv};
use crate::ml::augment::random_crop;
use crate::ml::model::SimclrModel;
use crate::ml::training::optim::Optimizer;

const VERSION: u32 = 1;
const HEAD_PREFIX: &str = "head/";
const OPTIM_PREFIX: &str = "optim/";

/// Where an augmented evaluation stands, and what it was run for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct EvalCheckpointMeta {
    pub version: u32,
    /// Epochs fully completed.
    pub epoch: usize,
    /// Steps already done in epoch `epoch`.
    pub step_in_epoch: usize,
    pub steps_per_epoch: usize,
    /// Correct predictions and images seen so far in epoch `epoch`.
    pub correct: usize,
    pub seen: usize,
    /// Train top-1 of the last completed epoch.
    pub last_train_top1: Option<f64>,
    /// The sha256 of the pretrain checkpoint whose encoder is evaluated.
    pub encoder_sha256: String,
    pub eval: EvalConfig,
}

/// What an evaluation's checkpoint holds of what it trains (this loop's learners, Table 3's
/// probe MLP): named tensors out, the same names back in.
pub(crate) trait Checkpointed {
    /// Every tensor of the state, named (a checkpoint's contents).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state written by [`Checkpointed::state`], read from the checkpoint at
    /// `path`.
    fn load_state(&mut self, tensors: HashMap<String, Tensor>, path: &Path) -> Result<(), MlError>;
}

/// What the loop trains: one step per batch, its state for a checkpoint, and the model and
/// classifier that score the test split.
pub(crate) trait Learner: Checkpointed {
    /// One SGD step on views `x` `[B, 3, H, W]` with labels `y` (u32 `[B]`) at learning
    /// rate `lr`; the training-mode logits (detached).
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        lr: f64,
        epoch: usize,
        step: usize,
    ) -> Result<Tensor, MlError>;
    /// The encoder (BatchNorm in inference mode when scoring) and the classifier on its
    /// features.
    fn scorer(&mut self) -> (&SimclrModel, &mut LinearHead);
}

/// Splits checkpoint tensors by prefix: those under `prefix`, renamed without it.
pub(crate) fn under(tensors: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    tensors
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
        .collect()
}

/// A copy of tensor `name` of a saved state `t`, on `like`'s device and dtype, checked to
/// have `like`'s shape (`what` names the model in messages). A copy: the state may hold
/// the very tensors it restores.
pub(crate) fn restored(
    t: &HashMap<String, Tensor>,
    name: &str,
    like: &Tensor,
    what: &str,
) -> Result<Tensor, MlError> {
    let v = t
        .get(name)
        .ok_or_else(|| MlError::Config(format!("{what}: missing {name}")))?;
    if v.dims() != like.dims() {
        return Err(MlError::Config(format!(
            "{what}: {name} has shape {:?}, expected {:?}",
            v.dims(),
            like.dims()
        )));
    }
    v.to_device(like.device())
        .and_then(|v| v.to_dtype(like.dtype()))
        .and_then(|v| v.copy())
        .map_err(tensor_err)
}

/// `state`, each name prefixed by `prefix`.
pub(crate) fn prefixed(state: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    state
        .into_iter()
        .map(|(k, t)| (format!("{prefix}{k}"), t))
        .collect()
}

/// The linear classifier of the paper's linear evaluation on a frozen encoder.
pub(crate) struct FrozenLinear<'a> {
    pub model: &'a SimclrModel,
    pub on: FeatureSource,
    pub head: LinearHead,
    pub opt: Optimizer,
}

impl Learner for FrozenLinear<'_> {
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        lr: f64,
        epoch: usize,
        step: usize,
    ) -> Result<Tensor, MlError> {
        let f = features(self.model, x, self.on)?;
        let (_, logits) = self
            .head
            .train_step(&mut self.opt, &f, y, lr, epoch, step)?;
        Ok(logits)
    }

    fn scorer(&mut self) -> (&SimclrModel, &mut LinearHead) {
        (self.model, &mut self.head)
    }
}

impl Checkpointed for FrozenLinear<'_> {
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = prefixed(self.head.state(), HEAD_PREFIX);
        out.extend(prefixed(self.opt.state(), OPTIM_PREFIX));
        out
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, _: &Path) -> Result<(), MlError> {
        self.head.load_state(&under(&tensors, HEAD_PREFIX))?;
        self.opt.load_state(&under(&tensors, OPTIM_PREFIX))
    }
}

/// The images an evaluation trains on (`train_idx` of `train`) and scores (`test_idx`
/// of `test`).
pub(crate) struct Splits {
    pub train: Arc<ImageSet>,
    pub train_idx: Arc<Vec<usize>>,
    pub test: Arc<ImageSet>,
    pub test_idx: Arc<Vec<usize>>,
}

/// What tells one kind of augmented evaluation's checkpoints, streams and progress apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flavour {
    /// Metadata key of its checkpoints (a pretrain's is `simclr-sweep-checkpoint`).
    pub tag: &'static str,
    /// Names its random streams: `<stream>_order`, `<stream>_view`.
    pub stream: &'static str,
    /// What a progress report says it is doing.
    pub what: &'static str,
}

/// The paper's linear evaluation.
pub(crate) const LINEAR_AUG: Flavour = Flavour {
    tag: "simclr-sweep-eval-checkpoint",
    stream: "linear_aug",
    what: "linear classifier (augmented)",
};

/// One augmented evaluation of a loaded encoder.
pub(crate) struct AugmentedRun<'a> {
    pub eval: &'a EvalConfig,
    /// The pretrain seed (data order, views, the head's initialisation).
    pub seed: u64,
    /// The pretrain checkpoint the encoder was loaded from.
    pub encoder: &'a Checkpoint,
    pub env: &'a TrainEnv,
    pub flavour: Flavour,
}

/// An epoch's order of the training images.
fn epoch_order(indices: &[usize], seed: u64, stream: &str, epoch: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    order.shuffle(&mut rng::stream(
        seed,
        Domain::Eval,
        &[rng::key_of(&format!("{stream}_order")), epoch as u64],
    ));
    order
}

/// The augmented views of `indices` in epoch `epoch` (`[n, 3, H, W]` f32 in [0, 1]) and
/// their labels, from the random streams named `stream`.
pub(crate) fn augmented_batch(
    set: &ImageSet,
    indices: &[usize],
    seed: u64,
    stream: &str,
    epoch: usize,
) -> (Vec<f32>, Vec<u32>) {
    let (h, w) = (set.height, set.width);
    let per = 3 * h * w;
    let mut x = vec![0f32; indices.len() * per];
    let mut y = Vec::with_capacity(indices.len());
    let mut view = Vec::new();
    let key = rng::key_of(&format!("{stream}_view"));
    for (k, &i) in indices.iter().enumerate() {
        let mut r = rng::stream(seed, Domain::Eval, &[key, epoch as u64, i as u64]);
        random_crop(set.image(i), h, w, 0.08, true, &mut r, &mut view);
        data::to_chw(&view, &mut x[k * per..(k + 1) * per], h * w);
        y.push(set.labels[i] as u32);
    }
    (x, y)
}

impl AugmentedRun<'_> {
    /// The paper's linear evaluation of `model`: a fresh classifier on its frozen h or z.
    pub fn evaluate_linear(
        &self,
        model: &SimclrModel,
        splits: Splits,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let (eval, dev) = (self.eval, &self.env.device);
        let dim = match eval.on {
            FeatureSource::H => model.repr_dim(),
            FeatureSource::Z => model.out_dim(),
        };
        let classes = splits.train.num_classes;
        let fresh = || -> Result<FrozenLinear, MlError> {
            let head = LinearHead::new(dim, classes, eval.head_bn, self.seed, dev)?;
            let opt = linear_head::optimizer(eval, head.params());
            Ok(FrozenLinear {
                model,
                on: eval.on,
                head,
                opt,
            })
        };
        self.evaluate(&fresh, splits, obs)
    }

    /// Trains the learner `fresh` builds to `eval.epochs` (from the newest usable
    /// checkpoint), then scores the test split; or stops, checkpointed, when the observer
    /// asks.
    pub fn evaluate<L: Learner>(
        &self,
        fresh: &dyn Fn() -> Result<L, MlError>,
        splits: Splits,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let (eval, dev, stream) = (self.eval, &self.env.device, self.flavour.stream);
        let Splits {
            train,
            train_idx: tr_idx,
            test,
            test_idx: te_idx,
        } = splits;
        let n = tr_idx.len();
        if n == 0 {
            return Err(MlError::Config(format!(
                "{}: no training images",
                self.flavour.what
            )));
        }
        let classes = train.num_classes;
        let bs = eval.batch_size.clamp(1, n);
        let spe = n / bs;
        let total = spe * eval.epochs;
        let peak = eval.peak_lr(eval.batch_size);
        let (mut learner, mut pos) = self.resume_or_start(fresh, spe)?;
        let (h, w) = (train.height, train.width);
        while pos.epoch < eval.epochs {
            let epoch = pos.epoch;
            let order = epoch_order(&tr_idx, self.seed, stream, epoch);
            for s in pos.step_in_epoch..spe {
                let batch = &order[s * bs..(s + 1) * bs];
                let (x, y) = augmented_batch(&train, batch, self.seed, stream, epoch);
                let x = Tensor::from_vec(x, (bs, 3, h, w), dev).map_err(tensor_err)?;
                let labels = Tensor::new(y.as_slice(), dev).map_err(tensor_err)?;
                let global = epoch * spe + s;
                let lr = linear_head::cosine_lr(peak, global, total);
                let logits = learner.train_step(&x, &labels, lr, epoch, global)?;
                let scores: Vec<f32> = logits
                    .flatten_all()
                    .and_then(|l| l.to_vec1())
                    .map_err(tensor_err)?;
                pos.correct += scores
                    .chunks_exact(classes)
                    .zip(&y)
                    .filter(|(row, &c)| rank_of(row, c as usize) == 0)
                    .count();
                pos.seen += bs;
                pos.step_in_epoch = s + 1;
                let stop = obs.on_eval_progress(global + 1, total, self.flavour.what);
                if stop == Control::Stop {
                    self.save(&learner, &pos, obs)?;
                    return Ok(EvalOutcome::Stopped);
                }
            }
            pos.last_train_top1 = Some(pos.correct as f64 / pos.seen.max(1) as f64);
            pos.epoch += 1;
            pos.step_in_epoch = 0;
            pos.correct = 0;
            pos.seen = 0;
            self.save(&learner, &pos, obs)?;
        }
        let (model, head) = learner.scorer();
        let Some((xte, yte)) = extract(
            model,
            &test,
            te_idx,
            eval.on,
            eval.batch_size.max(1),
            dev,
            obs,
            "features (test)",
        )?
        else {
            return Ok(EvalOutcome::Stopped);
        };
        let (top1, top5) = top_k(&head.scores(&xte)?, classes, &yte);
        Ok(EvalOutcome::Finished(EvalResult {
            top1,
            top5,
            train_top1: pos.last_train_top1,
            n_test: yte.len(),
        }))
    }

    /// Where a run of `steps_per_epoch` steps an epoch starts.
    fn start(&self, steps_per_epoch: usize) -> EvalCheckpointMeta {
        EvalCheckpointMeta {
            version: VERSION,
            epoch: 0,
            step_in_epoch: 0,
            steps_per_epoch,
            correct: 0,
            seen: 0,
            last_train_top1: None,
            encoder_sha256: self.encoder.sha256.trim().to_ascii_lowercase(),
            eval: self.eval.clone(),
        }
    }

    /// A learner from `fresh` restored from the newest usable checkpoint, and where it
    /// stands; or a fresh learner at the start when no checkpoint restores.
    pub(crate) fn resume_or_start<L: Checkpointed>(
        &self,
        fresh: &dyn Fn() -> Result<L, MlError>,
        steps_per_epoch: usize,
    ) -> Result<(L, EvalCheckpointMeta), MlError> {
        let mut learner = fresh()?;
        Ok(match self.resume(&mut learner, steps_per_epoch) {
            Some(pos) => (learner, pos),
            // A failed restore may have changed some tensors: start from a fresh learner.
            None => (fresh()?, self.start(steps_per_epoch)),
        })
    }

    /// The position of the first checkpoint of `env.resume_from` that verifies and belongs
    /// to this evaluation, with the learner restored from it; `None` to start over.
    fn resume(
        &self,
        learner: &mut dyn Checkpointed,
        steps_per_epoch: usize,
    ) -> Option<EvalCheckpointMeta> {
        let want = self.start(steps_per_epoch);
        for r in &self.env.resume_from {
            let attempt = (|| {
                let (json, tensors) = checkpoint::decode(r, self.flavour.tag, &self.env.device)?;
                let meta: EvalCheckpointMeta = serde_json::from_str(&json)
                    .map_err(|e| MlError::Config(format!("bad metadata: {e}")))?;
                let same = meta.version == want.version
                    && meta.steps_per_epoch == want.steps_per_epoch
                    && meta.encoder_sha256 == want.encoder_sha256
                    && meta.eval == want.eval;
                if !same {
                    return Err(MlError::Config(
                        "written for another evaluation or encoder".into(),
                    ));
                }
                learner.load_state(tensors, &r.path)?;
                Ok(meta)
            })();
            match attempt {
                Ok(meta) => return Some(meta),
                Err(e) => eprintln!("warning: skipping checkpoint {}: {e}", r.path.display()),
            }
        }
        None
    }

    /// Writes the learner's state at `pos` and reports it to the observer.
    pub(crate) fn save(
        &self,
        learner: &dyn Checkpointed,
        pos: &EvalCheckpointMeta,
        obs: &mut dyn Observer,
    ) -> Result<(), MlError> {
        let json = serde_json::to_string(pos)
            .map_err(|e| MlError::Config(format!("checkpoint metadata: {e}")))?;
        let bytes = checkpoint::encode(self.flavour.tag, json, learner.state())?;
        let step = pos.epoch * pos.steps_per_epoch + pos.step_in_epoch;
        let c = checkpoint::save_bytes(&self.env.checkpoint_dir, pos.epoch, step, &bytes)?;
        obs.on_checkpoint(&c).map_err(MlError::Observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{EvalConfig, EvalKind, EvalProtocol};
    use crate::ml::observer::NullObserver;
    use crate::test_support::images::{random_images, tiny_images};
    use crate::test_support::{finished, EvalFixture as Fixture, EvalRecorder};

    /// 8x8 images whose class is their colour (red, green, blue, grey) under pixel noise:
    /// separable after any crop and flip.
    fn colours(n: usize, salt: u64) -> Arc<ImageSet> {
        let mut r = rng::stream(salt, Domain::Eval, &[11]);
        tiny_images(n, |j| {
            let (img, ch) = (j / 192, j % 3);
            let bright = match img % 4 {
                3 => true,
                c => c == ch,
            };
            let noise = rand::Rng::gen_range(&mut r, 0..40u8);
            if bright {
                200 + noise
            } else {
                noise
            }
        })
    }

    fn augmented(epochs: usize) -> EvalConfig {
        EvalConfig {
            kind: EvalKind::Linear,
            epochs,
            batch_size: 8,
            lr: 0.5,
            ..EvalConfig::augmented()
        }
    }

    #[test]
    fn the_augmented_protocol_learns_a_separable_set_and_is_deterministic() {
        let f = Fixture::new(colours(48, 1), colours(24, 2));
        let eval = augmented(6);
        let a = finished(f.run(&eval, &f.env("a", vec![]), &mut NullObserver));
        assert_eq!(a.top1, 1.0, "{a:?}");
        assert_eq!(a.n_test, 24);
        assert!(a.train_top1.unwrap() > 0.9, "{a:?}");
        // Same seed, same numbers (from scratch: a fresh checkpoint directory).
        let b = finished(f.run(&eval, &f.env("b", vec![]), &mut NullObserver));
        assert_eq!(b, a);
    }

    #[test]
    fn augmented_views_are_fresh_per_epoch_and_reproducible() {
        let set = random_images(4, 3, 1);
        let (e0, y) = augmented_batch(&set, &[0, 1, 2, 3], 7, "linear_aug", 0);
        let (e1, _) = augmented_batch(&set, &[0, 1, 2, 3], 7, "linear_aug", 1);
        assert_eq!(
            augmented_batch(&set, &[0, 1, 2, 3], 7, "linear_aug", 0).0,
            e0
        );
        assert_ne!(e0, e1, "a new crop and flip every epoch");
        let mut plain = vec![0f32; e0.len()];
        for i in 0..4 {
            data::to_chw(set.image(i), &mut plain[i * 192..(i + 1) * 192], 64);
        }
        assert_ne!(e0, plain, "the classifier never sees the raw images");
        assert_eq!(y, vec![0, 1, 2, 3]);
    }

    #[test]
    fn the_augmented_protocol_differs_from_the_features_probe() {
        let f = Fixture::new(random_images(48, 1, 5), random_images(32, 2, 5));
        let aug = augmented(3);
        let probe = EvalConfig {
            protocol: EvalProtocol::Features,
            ..aug.clone()
        };
        let a = finished(f.run(&aug, &f.env("a", vec![]), &mut NullObserver));
        let p = finished(f.run(&probe, &f.env("p", vec![]), &mut NullObserver));
        assert_ne!(
            (a.top1, a.train_top1),
            (p.top1, p.train_top1),
            "same classifier settings, different protocol: {a:?} {p:?}"
        );
    }

    #[test]
    fn a_stop_anywhere_then_resume_gives_the_uninterrupted_numbers() {
        let f = Fixture::new(random_images(40, 1, 5), random_images(16, 2, 5));
        let eval = EvalConfig {
            head_bn: true,
            ..augmented(3)
        };
        let mut whole = EvalRecorder::default();
        let reference = finished(f.run(&eval, &f.env("whole", vec![]), &mut whole));
        // 5 steps per epoch, 3 epochs, then the test pass: stop mid-epoch, at an epoch's
        // end, and during the test features.
        assert_eq!(whole.checkpoints.len(), 3, "one per epoch");
        for stop_at in [2, 5, 11, 16] {
            let dir = format!("stop{stop_at}");
            let mut first = EvalRecorder {
                stop_at: Some(stop_at),
                ..EvalRecorder::default()
            };
            let stopped = f.run(&eval, &f.env(&dir, vec![]), &mut first);
            assert!(matches!(stopped, Ok(EvalOutcome::Stopped)));
            let newest_first = first.checkpoints.iter().rev().cloned().collect();
            let mut rest = EvalRecorder::default();
            let resumed = f.run(&eval, &f.env(&dir, newest_first), &mut rest);
            assert_eq!(finished(resumed), reference, "stopped at report {stop_at}");
            // It resumed where it stopped (training steps are not redone) rather than
            // starting over.
            assert_eq!(rest.reports, whole.reports - stop_at.min(15), "{stop_at}");
        }
        // A checkpoint of another evaluation is not resumed from: the run starts over.
        let other = EvalConfig {
            lr: 0.3,
            ..eval.clone()
        };
        let foreign = whole.checkpoints.iter().rev().cloned().collect();
        let a = f.run(&other, &f.env("other", foreign), &mut NullObserver);
        let b = f.run(&other, &f.env("other-fresh", vec![]), &mut NullObserver);
        assert_eq!(finished(a), finished(b));
    }
}
