//! Fine-tuning with few labels (`kind: fine_tune`; the paper's Table 7 and appendix
//! B.5): the whole pretrained encoder, BatchNorm in training mode, and a new linear head on
//! h (zero-initialised, the official `--zero_init_logits_layer=True`; the projection head
//! is discarded) are trained together by softmax cross-entropy on a class-balanced
//! `label_fraction` of the training split, every step on fresh random resized crops and
//! flips (the only augmentation B.5 uses), by SGD with (Nesterov) momentum at the
//! training's peak learning rate with cosine decay and no warmup; the test split is then
//! scored through the fine-tuned encoder (BatchNorm in inference mode) and head. Under the random-weights
//! control (an untrained encoder) the same stage is training from scratch on the same
//! labels, the row Table 7 compares SimCLR against.
//!
//! The loop, its random streams (`fine_tune_order`, `fine_tune_view`), its checkpoints and
//! exact resume are `view_training`'s ([`ViewTraining`]); a checkpoint here holds every model
//! variable (`model/`, BatchNorm running statistics included), the head (`head/`) and the
//! optimizer's momentum (`optim/`) under its own metadata key.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

use super::checkpointed::{prefixed, under, Checkpointed, CheckpointedEval, MethodNames};
use super::linear_head::{self, LinearHead};
use super::splits::Splits;
use super::view_training::{Learner, ViewTraining};
use crate::ml::checkpoint;
use crate::ml::config::{FeatureSource, FineTuneConfig, PretrainConfig};
use crate::ml::data::{self, ImageSet};
use crate::ml::error::tensor_err;
use crate::ml::model::init;
use crate::ml::model::SimclrModel;
use crate::ml::observer::Observer;
use crate::ml::training::optim::Optimizer;
use crate::ml::{EvalOutcome, MlError};

/// Fine-tuning's checkpoints, streams and progress label.
pub(crate) const FINE_TUNE: MethodNames = MethodNames {
    checkpoint_tag: "simclr-sweep-finetune-checkpoint",
    stream: "fine_tune",
    progress: "fine-tuning",
};

const MODEL_PREFIX: &str = "model/";
const HEAD_PREFIX: &str = "head/";
const OPTIM_PREFIX: &str = "optim/";

/// The training images whose labels fine-tuning uses: `floor(fraction x n / classes)` of
/// each class, drawn by [`data::balanced_subset`] from `seed` (sorted). An error when that
/// leaves no image of a class.
pub(crate) fn label_subset(
    set: &ImageSet,
    fraction: f64,
    seed: u64,
) -> Result<Vec<usize>, MlError> {
    let classes = set.num_classes.max(1);
    let per_class = (fraction * set.len() as f64 / classes as f64 + 1e-9).floor() as usize;
    if per_class == 0 {
        return Err(MlError::Config(format!(
            "fine_tune: label_fraction {fraction} of {} training images leaves no image of \
             each of the {classes} classes; raise label_fraction",
            set.len()
        )));
    }
    data::balanced_subset(&set.labels, set.num_classes, per_class * classes, seed)
}

/// The encoder being fine-tuned, its new head, and one optimizer over both.
struct FineTuner {
    varmap: VarMap,
    model: SimclrModel,
    head: LinearHead,
    opt: Optimizer,
}

impl Learner for FineTuner {
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        lr: f64,
        epoch: usize,
        step: usize,
    ) -> Result<Tensor, MlError> {
        // Training mode, not detached: the loss reaches every encoder weight.
        let h = self
            .model
            .encode(x, true)
            .and_then(|h| h.to_dtype(DType::F32))
            .map_err(tensor_err)?;
        let (_, logits) = self
            .head
            .train_step(&mut self.opt, &h, y, lr, epoch, step)?;
        Ok(logits)
    }

    fn scorer(&mut self) -> (&SimclrModel, &mut LinearHead) {
        (&self.model, &mut self.head)
    }
}

impl Checkpointed for FineTuner {
    fn state(&self) -> Vec<(String, Tensor)> {
        let vars: Vec<(String, Tensor)> = match self.varmap.data().lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        }
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
        let mut out = prefixed(vars, MODEL_PREFIX);
        out.extend(prefixed(self.head.state(), HEAD_PREFIX));
        out.extend(prefixed(self.opt.state(), OPTIM_PREFIX));
        out
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, path: &Path) -> Result<(), MlError> {
        checkpoint::restore_varmap(&self.varmap, &under(&tensors, MODEL_PREFIX), path)?;
        self.head.load_state(&under(&tensors, HEAD_PREFIX))?;
        self.opt.load_state(&under(&tensors, OPTIM_PREFIX))
    }
}

/// Fine-tunes the encoder of `run`'s checkpoint (its verified model tensors `weights`,
/// written by `pretrain`) on the training images of `splits` (see [`label_subset`]) and
/// scores its test images; or stops, checkpointed, when the observer asks.
pub(crate) fn evaluate(
    run: &CheckpointedEval,
    pretrain: &PretrainConfig,
    cfg: &FineTuneConfig,
    weights: &HashMap<String, Tensor>,
    splits: Splits,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    let (dev, classes) = (&run.env.device, splits.train.num_classes);
    let fresh = || -> Result<FineTuner, MlError> {
        let (varmap, model, _) =
            init::build_pretrain(pretrain, classes, dev).map_err(tensor_err)?;
        checkpoint::restore_varmap(&varmap, weights, &run.encoder.path)?;
        let head = LinearHead::new(model.repr_dim(), classes, cfg.head_bn, run.seed, dev)?;
        // The encoder's weights and BatchNorm parameters (not its running statistics,
        // which the optimizer skips), then the head's; the projection head and a supervised
        // run's classifier stay as they were, unused.
        let mut params: Vec<(String, Var)> = init::trainable_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| name.starts_with("encoder."))
            .collect();
        params.extend(head.params());
        let opt = linear_head::optimizer(&cfg.training, params);
        Ok(FineTuner {
            varmap,
            model,
            head,
            opt,
        })
    };
    let training = ViewTraining {
        run,
        training: &cfg.training,
        // It trains a new head on h (the projection head is discarded).
        on: FeatureSource::H,
    };
    training.run(&fresh, splits, obs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{AugOp, AugmentConfig, EvalConfig, EvalMethod};
    use crate::ml::eval::evaluate_on;
    use crate::ml::observer::NullObserver;
    use crate::ml::{training::trainer, Checkpoint, PretrainOutcome, TrainEnv};
    use crate::test_support::images::random_images;
    use crate::test_support::{cpu_env, finished, EvalRecorder};

    /// The tiny ConvNet, pretrained by SimCLR for `epochs` on 32 random images (0: the
    /// random-weights control's untrained encoder, as the sweep's control writes it).
    fn pretrained(dir: &Path, epochs: usize) -> (PretrainConfig, Checkpoint) {
        let cfg = PretrainConfig {
            augment: AugmentConfig {
                ops: vec![AugOp::Crop, AugOp::Color],
                ..Default::default()
            },
            optimizer: crate::test_support::plain_sgd(0.1),
            batch_size: 8,
            epochs,
            seed: 3,
            ..crate::test_support::tiny_convnet()
        };
        let set = random_images(32, 9, 1);
        let idx = std::sync::Arc::new((0..set.len()).collect());
        let env = cpu_env(dir, vec![]);
        match trainer::pretrain_on(&cfg, &env, set, idx, &mut NullObserver).unwrap() {
            PretrainOutcome::Finished { checkpoint } => (cfg, checkpoint),
            other => panic!("{other:?}"),
        }
    }

    fn fine_tune(epochs: usize) -> EvalConfig {
        let mut eval = EvalConfig::fine_tune(0.5);
        let t = eval.training_mut().expect("fine-tuning trains");
        t.epochs = epochs;
        t.batch_size = 8;
        t.lr = 0.5;
        eval
    }

    /// Runs `eval` on the encoder `(cfg, ckpt)` with its checkpoints in `dir/name`.
    fn run(
        dir: &Path,
        name: &str,
        (cfg, ckpt): &(PretrainConfig, Checkpoint),
        eval: &EvalConfig,
        resume_from: Vec<Checkpoint>,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let env = TrainEnv {
            checkpoint_dir: dir.join(name),
            ..cpu_env(dir, resume_from)
        };
        let (train, test) = (random_images(48, 1, 5), random_images(16, 2, 5));
        evaluate_on(cfg, eval, ckpt, &env, train, test, obs)
    }

    /// A checkpoint's model variables under `prefix` (a fine-tuning checkpoint's `model/`,
    /// a pretrain's `model/` too), by name, as plain vectors.
    fn encoder_weights(c: &Checkpoint, tag: &str) -> Vec<(String, Vec<f32>)> {
        let (_, t) = checkpoint::decode(c, tag, &candle_core::Device::Cpu).unwrap();
        let mut out: Vec<(String, Vec<f32>)> = under(&t, MODEL_PREFIX)
            .into_iter()
            .filter(|(k, _)| k.starts_with("encoder.") && !k.contains("running"))
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn the_label_subset_is_class_balanced_exact_and_nested() {
        // 1,000 images of 4 classes, 250 each: 1% is 2 per class, 10% 25 per class.
        let set = random_images(1000, 1, 1);
        let one = label_subset(&set, 0.01, 0).unwrap();
        let ten = label_subset(&set, 0.1, 0).unwrap();
        for (subset, per_class) in [(&one, 2), (&ten, 25)] {
            assert_eq!(subset.len(), 4 * per_class);
            for c in 0..4 {
                let n = subset.iter().filter(|&&i| set.labels[i] == c).count();
                assert_eq!(n, per_class, "class {c}");
            }
        }
        assert!(one.iter().all(|i| ten.contains(i)), "1% lies inside 10%");
        assert_eq!(one, label_subset(&set, 0.01, 0).unwrap(), "deterministic");
        assert_ne!(
            ten,
            label_subset(&set, 0.1, 1).unwrap(),
            "drawn from the seed"
        );
        let e = label_subset(&set, 0.001, 0).unwrap_err().to_string();
        assert!(
            e.contains("label_fraction 0.001") && e.contains("raise"),
            "{e}"
        );
    }

    #[test]
    fn fine_tuning_updates_the_encoder_and_a_pretrain_differs_from_scratch() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = pretrained(&dir.path().join("control"), 0);
        let simclr = pretrained(&dir.path().join("simclr"), 2);
        let eval = fine_tune(2);
        let mut obs = EvalRecorder::default();
        let from_pretrain = finished(run(dir.path(), "a", &simclr, &eval, vec![], &mut obs));
        let from_scratch = finished(run(
            dir.path(),
            "b",
            &scratch,
            &eval,
            vec![],
            &mut NullObserver,
        ));
        // 24 labelled images (half of 48, 6 per class), batch 8: 3 steps per epoch.
        assert_eq!(
            obs.reports,
            2 * 3 + 2,
            "6 steps, then 2 batches of test features"
        );
        assert_eq!(from_pretrain.n_test, 16);
        assert!(from_pretrain.train_top1.is_some());
        assert_ne!(
            from_pretrain, from_scratch,
            "same labels, different encoders"
        );
        // The last checkpoint holds the fine-tuned encoder: every weight tensor moved
        // away from the pretrain's (the head is not all that learns).
        let tuned = encoder_weights(obs.checkpoints.last().unwrap(), FINE_TUNE.checkpoint_tag);
        let before = encoder_weights(&simclr.1, "simclr-sweep-checkpoint");
        assert_eq!(tuned.len(), before.len());
        assert!(!tuned.is_empty());
        for ((name, a), (_, b)) in tuned.iter().zip(&before) {
            assert_ne!(a, b, "{name} did not change");
        }
        // Deterministic: the same numbers again from a fresh directory.
        let again = run(dir.path(), "c", &simclr, &eval, vec![], &mut NullObserver);
        assert_eq!(finished(again), from_pretrain);
    }

    #[test]
    fn a_stop_anywhere_then_resume_gives_the_uninterrupted_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let enc = pretrained(&dir.path().join("simclr"), 1);
        let eval = fine_tune(3);
        let mut whole = EvalRecorder::default();
        let reference = finished(run(dir.path(), "whole", &enc, &eval, vec![], &mut whole));
        // 3 steps per epoch, 3 epochs, then the test pass (two reports): stop mid-epoch,
        // at an epoch's end, and during the test features.
        assert_eq!(whole.checkpoints.len(), 3, "one per epoch");
        for stop_at in [2, 3, 7, 10] {
            let name = format!("stop{stop_at}");
            let mut first = EvalRecorder {
                stop_at: Some(stop_at),
                ..EvalRecorder::default()
            };
            let stopped = run(dir.path(), &name, &enc, &eval, vec![], &mut first);
            assert!(matches!(stopped, Ok(EvalOutcome::Stopped)), "{stop_at}");
            let newest_first = first.checkpoints.iter().rev().cloned().collect();
            let mut rest = EvalRecorder::default();
            let resumed = run(dir.path(), &name, &enc, &eval, newest_first, &mut rest);
            assert_eq!(finished(resumed), reference, "stopped at report {stop_at}");
            // It went on from where it stopped: no training step is done twice.
            assert_eq!(rest.reports, whole.reports - stop_at.min(9), "{stop_at}");
        }
        // A linear evaluation's checkpoint is not a fine-tuning one: it starts over.
        let EvalMethod::FineTune(c) = &eval.method else {
            unreachable!("fine-tuning")
        };
        let mut linear = EvalConfig::augmented();
        if let EvalMethod::LinearAugmented(l) = &mut linear.method {
            l.training = c.training.clone();
        }
        let mut lin = EvalRecorder::default();
        finished(run(dir.path(), "lin", &enc, &linear, vec![], &mut lin));
        let foreign = lin.checkpoints.iter().rev().cloned().collect();
        let mut rest = EvalRecorder::default();
        let r = run(dir.path(), "lin-ft", &enc, &eval, foreign, &mut rest);
        assert_eq!(finished(r), reference);
        assert_eq!(rest.reports, whole.reports, "started over");
    }
}
