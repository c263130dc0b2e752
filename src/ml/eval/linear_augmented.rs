//! The paper's linear evaluation (`protocol: augmented`; appendix B.6, which follows the
//! fine-tuning procedure of B.5; the official CIFAR-10 recipe `--train_mode=finetune
//! --fine_tune_after_block=4`): the encoder is frozen with BatchNorm in inference mode, and
//! every step passes fresh augmented views through it before the linear classifier
//! ([`LinearHead`]) takes one SGD step (Nesterov momentum by default, cosine decay to 0, no
//! warmup). The loop, its streams (`linear_aug_order`, `linear_aug_view`) and its
//! checkpoints (the classifier `head/` and its optimizer `optim/`) are `view_training`'s.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use super::checkpointed::{prefixed, under, Checkpointed, CheckpointedEval, MethodNames};
use super::features::features;
use super::linear_head::{self, LinearHead};
use super::splits::Splits;
use super::view_training::{Learner, ViewTraining};
use crate::ml::config::{FeatureSource, LinearConfig};
use crate::ml::model::SimclrModel;
use crate::ml::observer::Observer;
use crate::ml::training::optim::Optimizer;
use crate::ml::{EvalOutcome, MlError};

const HEAD_PREFIX: &str = "head/";
const OPTIM_PREFIX: &str = "optim/";

/// The paper's linear evaluation's checkpoints, streams and progress.
pub(crate) const LINEAR_AUGMENTED: MethodNames = MethodNames {
    checkpoint_tag: "simclr-sweep-eval-checkpoint",
    stream: "linear_aug",
    progress: "linear classifier (augmented)",
};

/// The linear classifier of the paper's linear evaluation on a frozen encoder.
struct FrozenLinear<'a> {
    model: &'a SimclrModel,
    on: FeatureSource,
    head: LinearHead,
    opt: Optimizer,
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

/// The paper's linear evaluation of `model` (run under [`LINEAR_AUGMENTED`]): a fresh
/// classifier on its frozen h or z.
pub(crate) fn evaluate(
    run: &CheckpointedEval,
    model: &SimclrModel,
    cfg: &LinearConfig,
    splits: Splits,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    let on = run.eval.on;
    let dim = match on {
        FeatureSource::H => model.repr_dim(),
        FeatureSource::Z => model.out_dim(),
    };
    let classes = splits.train.num_classes;
    let fresh = || -> Result<FrozenLinear, MlError> {
        let head = LinearHead::new(dim, classes, cfg.head_bn, run.seed, &run.env.device)?;
        let opt = linear_head::optimizer(&cfg.training, head.params());
        Ok(FrozenLinear {
            model,
            on,
            head,
            opt,
        })
    };
    let training = ViewTraining {
        run,
        training: &cfg.training,
        on,
    };
    training.run(&fresh, splits, obs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::ml::config::{EvalConfig, EvalMethod};
    use crate::ml::data::ImageSet;
    use crate::ml::observer::NullObserver;
    use crate::ml::rng::{self, Domain};
    use crate::ml::EvalOutcome;
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

    /// The augmented protocol for `epochs` at batch 8, lr 0.5, with `edit` applied to its
    /// linear settings.
    fn augmented(
        epochs: usize,
        edit: impl FnOnce(&mut crate::ml::config::LinearConfig),
    ) -> EvalConfig {
        let mut eval = EvalConfig::augmented();
        let EvalMethod::LinearAugmented(c) = &mut eval.method else {
            unreachable!("the augmented protocol")
        };
        c.training.epochs = epochs;
        c.training.batch_size = 8;
        c.training.lr = 0.5;
        edit(c);
        eval
    }

    #[test]
    fn the_augmented_protocol_learns_a_separable_set_and_is_deterministic() {
        let f = Fixture::new(colours(48, 1), colours(24, 2));
        let eval = augmented(6, |_| {});
        let a = finished(f.run(&eval, &f.env("a", vec![]), &mut NullObserver));
        assert_eq!(a.top1, 1.0, "{a:?}");
        assert_eq!(a.n_test, 24);
        assert!(a.train_top1.unwrap() > 0.9, "{a:?}");
        // Same seed, same numbers (from scratch: a fresh checkpoint directory).
        let b = finished(f.run(&eval, &f.env("b", vec![]), &mut NullObserver));
        assert_eq!(b, a);
    }

    #[test]
    fn the_augmented_protocol_differs_from_the_features_probe() {
        let f = Fixture::new(random_images(48, 1, 5), random_images(32, 2, 5));
        let aug = augmented(3, |_| {});
        let EvalMethod::LinearAugmented(c) = &aug.method else {
            unreachable!()
        };
        let probe = EvalConfig {
            method: EvalMethod::LinearFeatures(c.clone()),
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
        let eval = augmented(3, |c| c.head_bn = true);
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
        let other = augmented(3, |c| {
            c.head_bn = true;
            c.training.lr = 0.3;
        });
        let foreign = whole.checkpoints.iter().rev().cloned().collect();
        let a = f.run(&other, &f.env("other", foreign), &mut NullObserver);
        let b = f.run(&other, &f.env("other-fresh", vec![]), &mut NullObserver);
        assert_eq!(finished(a), finished(b));
    }
}
