//! Training on fresh augmented views of labelled images, with checkpoints: the loop of the
//! paper's linear evaluation (`linear_augmented`) and of fine-tuning (`fine_tune`). A
//! [`Learner`] takes one SGD step per batch of fresh random resized crops (area U(0.08, 1),
//! aspect 3/4..4/3) and horizontal flips (p = 0.5) of the training images, then the test
//! split is scored un-augmented (the official code does not crop images of 32 pixels or
//! less at test time).
//!
//! Randomness: epoch e's order of the training images is drawn from
//! `rng::stream(seed, Domain::Eval, &[key_of("<stream>_order"), e])`, image i's view in
//! epoch e from `&[key_of("<stream>_view"), e, i]` (`<stream>`: the method's
//! [`MethodNames::stream`]); the last incomplete batch of an epoch is dropped (the official
//! input pipeline's `drop_remainder=True`). Train top-1 is the classifier's accuracy on the
//! augmented batches of the last epoch, each scored just before its update (the official
//! `train_label_accuracy`). So seed + epoch + position in the epoch is the whole RNG state.
//!
//! Stop and resume: the learner's state and the position in the epoch are checkpointed
//! (`checkpointed`) at the end of every epoch and when the observer asks to stop.

use candle_core::Tensor;

use super::checkpointed::{Checkpointed, CheckpointedEval, MethodNames};
use super::features::Extractor;
use super::linear_head::LinearHead;
use super::score::{rank_of, top_k, Scores};
use super::splits::{epoch_order, Splits};
use crate::ml::augment::random_crop;
use crate::ml::config::{EvalTraining, FeatureSource};
use crate::ml::data::{self, ImageSet};
use crate::ml::error::tensor_err;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, Observer};
use crate::ml::rng::{self, Domain};
use crate::ml::training::schedule::cosine_decay;
use crate::ml::{EvalOutcome, MlError};

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

/// How a learner is trained on views and scored.
pub(crate) struct ViewTraining<'a> {
    pub run: &'a CheckpointedEval<'a>,
    pub training: &'a EvalTraining,
    /// The representation the classifier reads when the test split is scored.
    pub on: FeatureSource,
}

impl ViewTraining<'_> {
    /// Trains the learner `fresh` builds to `training.epochs` (from the newest usable
    /// checkpoint), then scores the test split; or stops, checkpointed, when the observer
    /// asks.
    pub fn run<L: Learner>(
        &self,
        fresh: &dyn Fn() -> Result<L, MlError>,
        splits: Splits,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let (run, t) = (self.run, self.training);
        let (dev, seed) = (&run.env.device, run.seed);
        let MethodNames {
            stream, progress, ..
        } = run.names;
        let Splits {
            train,
            train_idx: tr_idx,
            test,
            test_idx: te_idx,
        } = splits;
        let n = tr_idx.len();
        if n == 0 {
            return Err(MlError::Config(format!("{progress}: no training images")));
        }
        let classes = train.num_classes;
        let bs = t.batch_size.clamp(1, n);
        let spe = n / bs;
        let total = spe * t.epochs;
        let peak = t.peak_lr();
        let (mut learner, mut pos) = run.resume_or_start(fresh, spe)?;
        let (h, w) = (train.height, train.width);
        let order_key = run.names.order_key();
        while pos.epoch < t.epochs {
            let epoch = pos.epoch;
            let order = epoch_order(&tr_idx, seed, &order_key, epoch);
            for s in pos.step_in_epoch..spe {
                let batch = &order[s * bs..(s + 1) * bs];
                let (x, y) = augmented_batch(&train, batch, seed, stream, epoch);
                let x = Tensor::from_vec(x, (bs, 3, h, w), dev).map_err(tensor_err)?;
                let labels = Tensor::new(y.as_slice(), dev).map_err(tensor_err)?;
                let global = epoch * spe + s;
                let lr = cosine_decay(peak, global, total);
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
                if obs.on_eval_progress(global + 1, total, progress) == Control::Stop {
                    run.save(&learner, &pos, obs)?;
                    return Ok(EvalOutcome::Stopped);
                }
            }
            pos.last_train_top1 = Some(pos.correct as f64 / pos.seen.max(1) as f64);
            pos.epoch += 1;
            pos.step_in_epoch = 0;
            pos.correct = 0;
            pos.seen = 0;
            run.save(&learner, &pos, obs)?;
        }
        let (model, head) = learner.scorer();
        let extractor = Extractor {
            model,
            on: self.on,
            batch_size: t.batch_size.max(1),
            device: dev,
        };
        let Some(test) = extractor.extract(&test, te_idx, "features (test)", obs)? else {
            return Ok(EvalOutcome::Stopped);
        };
        let (top1, top5) = top_k(&head.scores(&test.x)?, classes, &test.y);
        let scores = Scores {
            top1,
            top5,
            train_top1: pos.last_train_top1,
        };
        Ok(EvalOutcome::Finished(scores.result(test.y.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::images::random_images;

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
}
