//! Linear evaluation by the paper's protocol (appendix B.6, which follows the fine-tuning
//! procedure of B.5; the official CIFAR-10 recipe `--train_mode=finetune
//! --fine_tune_after_block=4`): the encoder is frozen with BatchNorm in inference mode, and
//! every step passes a fresh random resized crop (area U(0.08, 1), aspect 3/4..4/3) and
//! horizontal flip (p = 0.5) of each training image through it before the linear classifier
//! ([`LinearHead`]) takes one SGD step (Nesterov momentum by default, cosine decay to 0, no
//! warmup). The test split is scored un-augmented (the official code does not crop images of
//! 32 pixels or less at test time).
//!
//! Randomness: epoch e's order of the training images is drawn from
//! `rng::stream(seed, Domain::Eval, &[key_of("linear_aug_order"), e])`, image i's view in
//! epoch e from `&[key_of("linear_aug_view"), e, i]`; the last incomplete batch of an epoch
//! is dropped (the official input pipeline's `drop_remainder=True`). Train top-1 is the
//! classifier's accuracy on the augmented batches of the last epoch, each scored just before
//! its update (the official `train_label_accuracy`).
//!
//! Stop and resume: a checkpoint (the classifier, its momentum, the position in the epoch
//! and the running train accuracy; [`EvalCheckpointMeta`]) is written at the end of every
//! epoch and when the observer asks to stop, into `env.checkpoint_dir`, and reported through
//! `Observer::on_checkpoint`. A later call resumes from the first of `env.resume_from` that
//! verifies and was written for the same evaluation of the same encoder checkpoint, and
//! gives exactly the numbers of an uninterrupted run.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::augment::random_crop;
use super::checkpoint;
use super::config::{EvalConfig, FeatureSource};
use super::data::{self, ImageSet};
use super::error::tensor_err;
use super::eval::{extract, features, rank_of, top_k};
use super::linear_head::{self, LinearHead};
use super::model::SimclrModel;
use super::observer::{Control, Observer};
use super::optim::Optimizer;
use super::rng::{self, Domain};
use super::{Checkpoint, EvalOutcome, EvalResult, MlError, TrainEnv};

/// Metadata key of an evaluation checkpoint (a pretrain's is `simclr-sweep-checkpoint`).
const TAG: &str = "simclr-sweep-eval-checkpoint";
const VERSION: u32 = 1;
const HEAD_PREFIX: &str = "head/";
const OPTIM_PREFIX: &str = "optim/";

/// Where an augmented linear evaluation stands, and what it was run for.
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

/// One augmented linear evaluation of a loaded encoder.
pub(crate) struct AugmentedRun<'a> {
    pub model: &'a SimclrModel,
    pub eval: &'a EvalConfig,
    /// The pretrain seed (data order, views, the head's initialisation).
    pub seed: u64,
    /// The pretrain checkpoint the encoder was loaded from.
    pub encoder: &'a Checkpoint,
    pub env: &'a TrainEnv,
}

/// An epoch's order of the training images.
fn epoch_order(indices: &[usize], seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = indices.to_vec();
    order.shuffle(&mut rng::stream(
        seed,
        Domain::Eval,
        &[rng::key_of("linear_aug_order"), epoch as u64],
    ));
    order
}

/// The augmented views of `indices` in epoch `epoch` (`[n, 3, H, W]` f32 in [0, 1]) and
/// their labels.
pub(crate) fn augmented_batch(
    set: &ImageSet,
    indices: &[usize],
    seed: u64,
    epoch: usize,
) -> (Vec<f32>, Vec<u32>) {
    let (h, w) = (set.height, set.width);
    let per = 3 * h * w;
    let mut x = vec![0f32; indices.len() * per];
    let mut y = Vec::with_capacity(indices.len());
    let mut view = Vec::new();
    for (k, &i) in indices.iter().enumerate() {
        let mut r = rng::stream(
            seed,
            Domain::Eval,
            &[rng::key_of("linear_aug_view"), epoch as u64, i as u64],
        );
        random_crop(set.image(i), h, w, 0.08, true, &mut r, &mut view);
        data::to_chw(&view, &mut x[k * per..(k + 1) * per], h * w);
        y.push(set.labels[i] as u32);
    }
    (x, y)
}

impl AugmentedRun<'_> {
    /// Trains the classifier to `eval.epochs` (from the newest usable checkpoint), then
    /// scores the test split; or stops, checkpointed, when the observer asks.
    pub fn evaluate(
        &self,
        train: Arc<ImageSet>,
        tr_idx: Arc<Vec<usize>>,
        test: Arc<ImageSet>,
        te_idx: Arc<Vec<usize>>,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let (eval, dev) = (self.eval, &self.env.device);
        let n = tr_idx.len();
        if n == 0 {
            return Err(MlError::Config(
                "linear evaluation: no training images".into(),
            ));
        }
        let classes = train.num_classes;
        let dim = match eval.on {
            FeatureSource::H => self.model.repr_dim(),
            FeatureSource::Z => self.model.out_dim(),
        };
        let bs = eval.batch_size.clamp(1, n);
        let spe = n / bs;
        let total = spe * eval.epochs;
        let peak = eval.peak_lr(eval.batch_size);
        let fresh = || -> Result<(LinearHead, Optimizer), MlError> {
            let head = LinearHead::new(dim, classes, eval.head_bn, self.seed, dev)?;
            let opt = linear_head::optimizer(eval, &head);
            Ok((head, opt))
        };
        let (mut head, mut opt) = fresh()?;
        let mut pos = match self.resume(&mut head, &mut opt, spe) {
            Some(p) => p,
            None => {
                (head, opt) = fresh()?; // a failed restore may have changed some tensors
                self.start(spe)
            }
        };
        let (h, w) = (train.height, train.width);
        while pos.epoch < eval.epochs {
            let epoch = pos.epoch;
            let order = epoch_order(&tr_idx, self.seed, epoch);
            for s in pos.step_in_epoch..spe {
                let (x, y) =
                    augmented_batch(&train, &order[s * bs..(s + 1) * bs], self.seed, epoch);
                let x = Tensor::from_vec(x, (bs, 3, h, w), dev).map_err(tensor_err)?;
                let labels = Tensor::new(y.as_slice(), dev).map_err(tensor_err)?;
                let f = features(self.model, &x, eval.on)?;
                let global = epoch * spe + s;
                let lr = linear_head::cosine_lr(peak, global, total);
                let (_, logits) = head.train_step(&mut opt, &f, &labels, lr, epoch, global)?;
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
                let stop = obs.on_eval_progress(global + 1, total, "linear classifier (augmented)");
                if stop == Control::Stop {
                    self.save(&head, &opt, &pos, obs)?;
                    return Ok(EvalOutcome::Stopped);
                }
            }
            pos.last_train_top1 = Some(pos.correct as f64 / pos.seen.max(1) as f64);
            pos.epoch += 1;
            pos.step_in_epoch = 0;
            pos.correct = 0;
            pos.seen = 0;
            self.save(&head, &opt, &pos, obs)?;
        }
        let Some((xte, yte)) = extract(
            self.model,
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

    /// The position of the first checkpoint of `env.resume_from` that verifies and belongs
    /// to this evaluation, with `head` and `opt` restored from it; `None` to start over.
    fn resume(
        &self,
        head: &mut LinearHead,
        opt: &mut Optimizer,
        steps_per_epoch: usize,
    ) -> Option<EvalCheckpointMeta> {
        let want = self.start(steps_per_epoch);
        for r in &self.env.resume_from {
            let attempt = (|| {
                let (json, tensors) = checkpoint::decode(r, TAG, &self.env.device)?;
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
                let mut h = HashMap::new();
                let mut o = HashMap::new();
                for (name, t) in tensors {
                    if let Some(k) = name.strip_prefix(HEAD_PREFIX) {
                        h.insert(k.to_string(), t);
                    } else if let Some(k) = name.strip_prefix(OPTIM_PREFIX) {
                        o.insert(k.to_string(), t);
                    }
                }
                head.load_state(&h)?;
                opt.load_state(&o)?;
                Ok(meta)
            })();
            match attempt {
                Ok(meta) => return Some(meta),
                Err(e) => eprintln!("warning: skipping checkpoint {}: {e}", r.path.display()),
            }
        }
        None
    }

    /// Writes the classifier's state at `pos` and reports it to the observer.
    fn save(
        &self,
        head: &LinearHead,
        opt: &Optimizer,
        pos: &EvalCheckpointMeta,
        obs: &mut dyn Observer,
    ) -> Result<(), MlError> {
        let mut tensors: Vec<(String, Tensor)> = head
            .state()
            .into_iter()
            .map(|(k, t)| (format!("{HEAD_PREFIX}{k}"), t))
            .collect();
        tensors.extend(
            opt.state()
                .into_iter()
                .map(|(k, t)| (format!("{OPTIM_PREFIX}{k}"), t)),
        );
        let json = serde_json::to_string(pos)
            .map_err(|e| MlError::Config(format!("checkpoint metadata: {e}")))?;
        let bytes = checkpoint::encode(TAG, json, tensors)?;
        let step = pos.epoch * pos.steps_per_epoch + pos.step_in_epoch;
        let c = checkpoint::save_bytes(&self.env.checkpoint_dir, pos.epoch, step, &bytes)?;
        obs.on_checkpoint(&c).map_err(MlError::Observer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{EvalKind, EvalProtocol, InitScheme};
    use crate::ml::eval::evaluate_on;
    use crate::ml::observer::{NullObserver, ObserverError};
    use crate::test_support::images::{random_images, tiny_images};
    use crate::test_support::untrained_checkpoint;

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

    /// An untrained encoder's checkpoint and the splits it is evaluated on.
    struct Fixture {
        dir: tempfile::TempDir,
        pretrain: crate::ml::config::PretrainConfig,
        ckpt: Checkpoint,
        env: TrainEnv,
        train: Arc<ImageSet>,
        test: Arc<ImageSet>,
    }

    impl Fixture {
        fn new(train: Arc<ImageSet>, test: Arc<ImageSet>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            // Kaiming-normal weights: under PyTorch's smaller default, this untrained
            // ConvNet's eval-mode features are dominated by its biases and barely tell the
            // colour classes apart, and these tests are about the protocol, not the init.
            let (pretrain, ckpt, env) = untrained_checkpoint(dir.path(), InitScheme::KaimingNormal);
            Fixture {
                dir,
                pretrain,
                ckpt,
                env,
                train,
                test,
            }
        }

        /// The environment with its own checkpoint directory `name` and `resume_from`.
        fn env(&self, name: &str, resume_from: Vec<Checkpoint>) -> TrainEnv {
            TrainEnv {
                checkpoint_dir: self.dir.path().join(name),
                resume_from,
                ..self.env.clone()
            }
        }

        fn run(
            &self,
            eval: &EvalConfig,
            env: &TrainEnv,
            obs: &mut dyn Observer,
        ) -> Result<EvalOutcome, MlError> {
            let (train, test) = (self.train.clone(), self.test.clone());
            evaluate_on(&self.pretrain, eval, &self.ckpt, env, train, test, obs)
        }
    }

    /// Records checkpoints and asks to stop at its `stop_at`-th progress report.
    #[derive(Default)]
    struct Recorder {
        stop_at: Option<usize>,
        reports: usize,
        checkpoints: Vec<Checkpoint>,
    }
    impl Observer for Recorder {
        fn on_checkpoint(&mut self, c: &Checkpoint) -> Result<(), ObserverError> {
            self.checkpoints.push(c.clone());
            Ok(())
        }
        fn on_eval_progress(&mut self, _done: usize, _total: usize, _what: &str) -> Control {
            self.reports += 1;
            if Some(self.reports) == self.stop_at {
                Control::Stop
            } else {
                Control::Continue
            }
        }
    }

    fn finished(o: Result<EvalOutcome, MlError>) -> EvalResult {
        match o {
            Ok(EvalOutcome::Finished(r)) => r,
            other => panic!("not finished: {other:?}"),
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
        let (e0, y) = augmented_batch(&set, &[0, 1, 2, 3], 7, 0);
        let (e1, _) = augmented_batch(&set, &[0, 1, 2, 3], 7, 1);
        assert_eq!(augmented_batch(&set, &[0, 1, 2, 3], 7, 0).0, e0);
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
        let mut whole = Recorder::default();
        let reference = finished(f.run(&eval, &f.env("whole", vec![]), &mut whole));
        // 5 steps per epoch, 3 epochs, then the test pass: stop mid-epoch, at an epoch's
        // end, and during the test features.
        assert_eq!(whole.checkpoints.len(), 3, "one per epoch");
        for stop_at in [2, 5, 11, 16] {
            let dir = format!("stop{stop_at}");
            let mut first = Recorder {
                stop_at: Some(stop_at),
                ..Recorder::default()
            };
            let stopped = f.run(&eval, &f.env(&dir, vec![]), &mut first);
            assert!(matches!(stopped, Ok(EvalOutcome::Stopped)));
            let newest_first = first.checkpoints.iter().rev().cloned().collect();
            let mut rest = Recorder::default();
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
