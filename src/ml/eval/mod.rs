//! Evaluation of a pretrained checkpoint: verifies and loads it, picks the images of the
//! evaluation's splits, and runs its method ([`EvalMethod`]) on them.
//!
//! One file per method, each using the shared pieces below it and never another method:
//! - `knn`: the weighted kNN vote on frozen features (the monitor of later contrastive work);
//! - `linear_features`: the fast linear probe on features extracted once;
//! - `linear_augmented`: the paper's linear evaluation (section 2.3 / appendix B.6), fresh
//!   crops and flips through the frozen encoder every step;
//! - `probe`: Table 3's MLP predicting the transformation applied;
//! - `fine_tune`: Table 7's fine-tuning of the whole encoder on few labels.
//!
//! Shared: `splits` (subsets, epoch orders), `features` (extraction with BatchNorm in
//! inference mode, standardisation), `score` (top-k; ties between class scores rank the
//! lower class index first), `linear_head` (the classifier and the evaluations' SGD),
//! `feature_training` (the minibatch loop over features in memory), `checkpointed` (resume
//! and save), `view_training` (the checkpointed loop over augmented views).
//!
//! A stop request (the observer's `Control::Stop`) ends an evaluation with
//! [`EvalOutcome::Stopped`], never an error. kNN and the features probe keep no checkpoint
//! (their work is minutes at most and deterministic): the next attempt starts them again
//! and gives the same numbers. The others checkpoint and resume exactly.

mod checkpointed;
mod feature_training;
mod features;
mod fine_tune;
mod knn;
mod linear_augmented;
mod linear_features;
mod linear_head;
mod probe;
mod score;
mod splits;
mod view_training;

use std::sync::Arc;

use self::checkpointed::CheckpointedEval;
use self::linear_features::FeaturesProbe;
use self::splits::{subset, Splits};
use super::checkpoint::{self, resume_key};
use super::config::{EvalConfig, EvalMethod, PretrainConfig};
use super::data::{self, ImageSet, Split};
use super::error::{no_panic, tensor_err};
use super::model::init;
use super::model::SimclrModel;
use super::observer::Observer;
use super::{Checkpoint, EvalOutcome, MlError, TrainEnv};

/// Evaluate a pretrain checkpoint: verify and load it, and run the evaluation's method on
/// the test split; or stop when the observer asks.
pub fn evaluate(
    pretrain: &PretrainConfig,
    eval: &EvalConfig,
    checkpoint: &Checkpoint,
    env: &TrainEnv,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    no_panic(|| {
        let train = data::load_split_shared(&pretrain.dataset, &env.data_path, Split::Train)?;
        let test = data::load_split_shared(&pretrain.dataset, &env.data_path, Split::Test)?;
        evaluate_on(pretrain, eval, checkpoint, env, train, test, obs)
    })
}

/// [`evaluate`] on already loaded splits.
pub(crate) fn evaluate_on(
    pretrain: &PretrainConfig,
    eval: &EvalConfig,
    ckpt: &Checkpoint,
    env: &TrainEnv,
    train: Arc<ImageSet>,
    test: Arc<ImageSet>,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    let loaded = checkpoint::load(ckpt, &env.device)?;
    if resume_key(&loaded.meta.config) != resume_key(pretrain) {
        return Err(MlError::Checkpoint {
            path: ckpt.path.clone(),
            message: "written by a different pretraining configuration".into(),
        });
    }
    if train.num_classes != test.num_classes {
        return Err(MlError::Config(format!(
            "train split has {} classes, test split {}",
            train.num_classes, test.num_classes
        )));
    }
    let seed = pretrain.seed;
    let test_idx = Arc::new(subset(&test, eval.test_subset, seed)?);
    let train_idx = Arc::new(match &eval.method {
        EvalMethod::FineTune(c) => fine_tune::label_subset(&train, c.label_fraction, seed)?,
        _ => subset(&train, eval.train_subset(), seed)?,
    });
    let classes = train.num_classes;
    let splits = Splits {
        train,
        train_idx,
        test,
        test_idx,
    };
    let checkpointed = |names| CheckpointedEval {
        eval,
        seed,
        encoder: ckpt,
        env,
        names,
    };
    // Every method but fine-tuning reads the frozen encoder: the variables the pretrain
    // wrote (a supervised run's classifier among them, unused here).
    let frozen = || -> Result<SimclrModel, MlError> {
        let (vm, model, _classifier) =
            init::build_pretrain(pretrain, classes, &env.device).map_err(tensor_err)?;
        checkpoint::restore_varmap(&vm, &loaded.model, &ckpt.path)?;
        Ok(model)
    };
    let dev = &env.device;
    match &eval.method {
        EvalMethod::Knn(c) => knn::evaluate(&frozen()?, eval.on, c, splits, dev, obs),
        EvalMethod::LinearFeatures(cfg) => {
            let model = frozen()?;
            let probe = FeaturesProbe {
                model: &model,
                on: eval.on,
                cfg,
                seed,
                device: dev,
            };
            probe.evaluate(splits, obs)
        }
        EvalMethod::LinearAugmented(c) => {
            let run = checkpointed(linear_augmented::LINEAR_AUGMENTED);
            linear_augmented::evaluate(&run, &frozen()?, c, splits, obs)
        }
        EvalMethod::Probe(c) => {
            let run = checkpointed(probe::PROBE);
            probe::evaluate(&run, &frozen()?, c, splits, obs)
        }
        EvalMethod::FineTune(c) => {
            let run = checkpointed(fine_tune::FINE_TUNE);
            fine_tune::evaluate(&run, pretrain, c, &loaded.model, splits, obs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{FeatureSource, KnnConfig, LinearConfig};
    use crate::ml::observer::{Control, NullObserver};
    use crate::test_support::images::random_images;

    /// Asks to stop at its `n`-th progress report (counted from 0).
    struct StopAfter(usize);
    impl Observer for StopAfter {
        fn on_eval_progress(&mut self, _done: usize, _total: usize, _what: &str) -> Control {
            if self.0 == 0 {
                return Control::Stop;
            }
            self.0 -= 1;
            Control::Continue
        }
    }

    #[test]
    fn evaluate_runs_both_protocols_on_a_checkpoint_stops_on_request_and_rejects_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let (pretrain, r, env) = crate::test_support::untrained_checkpoint(
            dir.path(),
            crate::ml::config::InitScheme::default(),
        );
        let (train, test) = (random_images(32, 1, 5), random_images(16, 2, 5));
        let mut linear = EvalConfig::default().training().cloned().unwrap();
        linear.epochs = 2;
        linear.batch_size = 8;
        // With the progress reports each makes: linear, 2 + 1 batches of features and 2
        // epochs; kNN, one batch of each split's features and the vote.
        let methods = [
            (
                5,
                EvalMethod::LinearFeatures(LinearConfig {
                    train_subset: Some(16),
                    training: linear,
                    head_bn: false,
                }),
                FeatureSource::H,
            ),
            (
                3,
                EvalMethod::Knn(KnnConfig {
                    train_subset: Some(16),
                    k: 200,
                    temperature: 0.1,
                }),
                FeatureSource::Z,
            ),
        ];
        for (reports, method, on) in methods {
            let eval = EvalConfig {
                on,
                test_subset: Some(8),
                method,
            };
            let label = eval.label();
            let run = |obs: &mut dyn Observer| {
                evaluate_on(&pretrain, &eval, &r, &env, train.clone(), test.clone(), obs)
            };
            let Ok(EvalOutcome::Finished(res)) = run(&mut NullObserver) else {
                panic!("{label} did not finish");
            };
            assert_eq!(res.n_test, 8);
            assert!(res.top1 <= res.top5 && res.top5 == 1.0, "{res:?}"); // 4 classes < 5
                                                                         // A stop request at any point of the evaluation is a stop, not a failure.
            for stop_at in 0..reports {
                let mut obs = StopAfter(stop_at);
                assert!(
                    matches!(run(&mut obs), Ok(EvalOutcome::Stopped)),
                    "{label}: stop after {stop_at} progress reports"
                );
            }
        }
        let bad = Checkpoint {
            sha256: "0".repeat(64),
            ..r
        };
        let err = evaluate_on(
            &pretrain,
            &EvalConfig::default(),
            &bad,
            &env,
            train,
            test,
            &mut NullObserver,
        )
        .unwrap_err();
        assert!(matches!(err, MlError::Checkpoint { .. }), "{err}");
    }

    /// Each method's metrics on random images through an untrained encoder, seeded: the
    /// numbers these settings have always given, to the bit.
    #[test]
    fn every_method_gives_the_numbers_it_always_gave() {
        use crate::test_support::{finished, EvalFixture};
        use serde_json::json;
        let f = EvalFixture::new(random_images(48, 1, 5), random_images(16, 2, 5));
        // (spec, top-1, train top-1, test images); top-5 is 1 with 4 classes.
        let cases = [
            (
                json!({"epochs": 3, "batch_size": 8, "lr": 0.5, "weight_decay": 1e-3}),
                0.5,
                Some(0.8541666666666666),
                16,
            ),
            (
                json!({"epochs": 3, "batch_size": 8, "head_bn": true, "on": "z",
                       "train_subset": 24}),
                0.375,
                Some(0.5416666666666666),
                16,
            ),
            (
                json!({"kind": "knn", "k": 5, "temperature": 0.2}),
                0.1875,
                None,
                16,
            ),
            (
                json!({"kind": "knn", "on": "z", "test_subset": 8}),
                0.25,
                None,
                8,
            ),
            (
                json!({"protocol": "augmented", "epochs": 2, "batch_size": 8, "lr": 0.5}),
                0.25,
                Some(0.14583333333333334),
                16,
            ),
            (
                json!({"protocol": "augmented", "epochs": 2, "batch_size": 8, "head_bn": true,
                       "on": "z"}),
                0.25,
                Some(0.2916666666666667),
                16,
            ),
            (
                json!({"kind": "probe", "task": "rotation", "hidden": 32, "epochs": 3,
                       "batch_size": 16, "lr": 0.3}),
                0.375,
                Some(0.8541666666666666),
                16,
            ),
            (
                json!({"kind": "probe", "task": "color_vs_grayscale", "on": "z", "epochs": 2,
                       "batch_size": 16, "momentum": 0.5}),
                1.0,
                Some(0.9583333333333334),
                16,
            ),
            (
                json!({"kind": "fine_tune", "label_fraction": 0.5, "epochs": 2,
                       "batch_size": 8, "lr": 0.5}),
                0.1875,
                Some(0.4583333333333333),
                16,
            ),
        ];
        for (i, (spec, top1, train_top1, n_test)) in cases.into_iter().enumerate() {
            let eval: EvalConfig = serde_json::from_value(spec).unwrap();
            let env = f.env(&format!("e{i}"), vec![]);
            let r = finished(f.run(&eval, &env, &mut NullObserver));
            let got = (r.top1, r.top5, r.train_top1, r.n_test);
            assert_eq!(got, (top1, 1.0, train_top1, n_test), "{}", eval.label());
        }
    }
}
