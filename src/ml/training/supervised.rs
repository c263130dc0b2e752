//! The supervised baseline's objective (`Method::Supervised`; the paper's Table 1 and
//! Figure 7 compare SimCLR against it): a linear classifier on the encoder's h, trained with
//! the encoder by softmax cross-entropy on the labels of one augmented view per image.
//! The training loop, optimizer, schedule and checkpoints are the pretrain's (`trainer`);
//! the classifier is the model's (`model::classifier`); this module owns the step's loss.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Linear, Module};

/// What one supervised step computes: the mean cross-entropy (a scalar tensor, for the
/// backward) and the batch's top-1 accuracy (fraction).
pub struct Objective {
    pub loss: Tensor,
    pub top1: f64,
}

/// Mean softmax cross-entropy of `classifier(h)` against `labels`, and the top-1 accuracy
/// (ties: the lower class index wins, as in the evaluations).
pub fn objective(classifier: &Linear, h: &Tensor, labels: &[u16]) -> Result<Objective> {
    let logits = classifier.forward(h)?;
    let targets: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let n = targets.len();
    let y = Tensor::from_vec(targets.clone(), n, logits.device())?;
    let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
    let scores: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
    let correct = scores
        .iter()
        .zip(&targets)
        .filter(|(row, &t)| argmax(row) == t as usize)
        .count();
    Ok(Objective {
        loss,
        top1: correct as f64 / n.max(1) as f64,
    })
}

/// Index of the largest value, the first on ties.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::classifier::classifier;
    use candle_core::Device;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn cross_entropy_and_accuracy_of_a_known_classifier() {
        let d = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &d);
        let c = classifier(2, 3, vb).unwrap();
        // Set W = [[1,0],[0,1],[0,0]], b = 0: logits = (h0, h1, 0).
        let w = Tensor::new(&[[1f32, 0.], [0., 1.], [0., 0.]], &d).unwrap();
        let data = map.data().lock().unwrap();
        data["classifier.weight"].set(&w).unwrap();
        data["classifier.bias"]
            .set(&Tensor::zeros(3, DType::F32, &d).unwrap())
            .unwrap();
        drop(data);
        let h = Tensor::new(&[[2f32, 0.], [0., 2.]], &d).unwrap();
        // Row 0 is class 0 (right), row 1 is class 2 (wrong: class 1 scores highest).
        let o = objective(&c, &h, &[0, 2]).unwrap();
        assert_eq!(o.top1, 0.5);
        let lse = (2f64.exp() + 2.0).ln(); // log(e^2 + e^0 + e^0)
        let want = ((lse - 2.0) + lse) / 2.0;
        let got: f32 = o.loss.to_scalar().unwrap();
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        assert!(classifier(
            2,
            1,
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &d)
        )
        .is_err());
    }

    mod training {
        //! The supervised stage end to end on a toy set: it learns, its checkpoint feeds
        //! the evaluations, and a stopped run resumes to the same numbers.

        use std::sync::Arc;

        use crate::ml::config::{AugOp, AugmentConfig, EvalConfig, Method, PretrainConfig};
        use crate::ml::data::ImageSet;
        use crate::ml::observer::{Control, EpochMetrics, Observer, ObserverError, StepMetrics};
        use crate::ml::rng::{self, Domain};
        use crate::ml::{
            eval, training::trainer, Checkpoint, EvalOutcome, PretrainOutcome, TrainEnv,
        };
        use crate::test_support::cpu_env as env;
        use rand::Rng;

        /// `n` 8x8 images of 4 classes: dim noise everywhere, and the quadrant of the
        /// image's class lit. Separable, but not by a fixed colour: the colour jitter
        /// changes every pixel.
        fn quadrants(n: usize, salt: u64) -> Arc<ImageSet> {
            let mut r = rng::stream(salt, Domain::Eval, &[11]);
            let mut images = Vec::with_capacity(n * 8 * 8 * 3);
            for i in 0..n {
                let c = i % 4;
                for y in 0..8 {
                    for x in 0..8 {
                        let lit = (y / 4) * 2 + x / 4 == c;
                        for _ in 0..3 {
                            let base: u8 = r.gen_range(0..90);
                            images.push(if lit { base + 160 } else { base });
                        }
                    }
                }
            }
            Arc::new(ImageSet {
                images,
                labels: (0..n).map(|i| (i % 4) as u16).collect(),
                height: 8,
                width: 8,
                num_classes: 4,
                class_names: (0..4).map(|i| i.to_string()).collect(),
            })
        }

        fn cfg(epochs: usize) -> PretrainConfig {
            PretrainConfig {
                method: Method::Supervised,
                augment: AugmentConfig {
                    ops: vec![AugOp::Color],
                    ..Default::default()
                },
                optimizer: crate::test_support::plain_sgd(0.1),
                batch_size: 16,
                epochs,
                seed: 5,
                ..crate::test_support::tiny_convnet()
            }
        }

        #[derive(Default)]
        struct Rec {
            steps: Vec<(usize, f64, f64)>,
            epochs: Vec<EpochMetrics>,
            stop_after: Option<usize>,
        }
        impl Observer for Rec {
            fn on_step(&mut self, m: &StepMetrics) -> Control {
                self.steps.push((m.step, m.loss, m.contrastive_acc));
                match self.stop_after {
                    Some(k) if self.steps.len() >= k => Control::Stop,
                    _ => Control::Continue,
                }
            }
            fn on_epoch(&mut self, m: &EpochMetrics) -> Result<(), ObserverError> {
                self.epochs.push(m.clone());
                Ok(())
            }
        }

        fn train(c: &PretrainConfig, e: &TrainEnv, rec: &mut Rec) -> PretrainOutcome {
            let set = quadrants(64, 1);
            let idx = Arc::new((0..set.len()).collect::<Vec<_>>());
            trainer::pretrain_on(c, e, set, idx, rec).unwrap()
        }

        fn linear_top1(c: &PretrainConfig, ck: &Checkpoint, e: &TrainEnv) -> f64 {
            let mut ev = EvalConfig::default();
            let t = ev.training_mut().expect("the linear classifier trains");
            t.epochs = 30;
            t.batch_size = 16;
            let (tr, te) = (quadrants(64, 1), quadrants(40, 2));
            match eval::evaluate_on(
                c,
                &ev,
                ck,
                e,
                tr,
                te,
                &mut crate::ml::observer::NullObserver,
            )
            .unwrap()
            {
                EvalOutcome::Finished(r) => r.top1,
                EvalOutcome::Stopped => panic!("stopped"),
            }
        }

        #[test]
        fn the_supervised_stage_learns_a_separable_toy_set() {
            let d = tempfile::tempdir().unwrap();
            let c = cfg(8);
            let mut rec = Rec::default();
            let PretrainOutcome::Finished { checkpoint } =
                train(&c, &env(d.path(), vec![]), &mut rec)
            else {
                panic!("did not finish")
            };
            assert_eq!(rec.steps.len(), 8 * 4);
            let (first, last) = (&rec.epochs[0], &rec.epochs[7]);
            // Chance is 25% over 4 classes; the classifier and encoder learn the quadrants.
            assert!(
                last.contrastive_acc >= 0.9,
                "training top-1 {}",
                last.contrastive_acc
            );
            assert!(
                last.loss < 0.5 * first.loss,
                "{} -> {}",
                first.loss,
                last.loss
            );
            // Its checkpoint (classifier included) feeds the linear evaluation of h, which
            // scores held-out images well above chance.
            let top1 = linear_top1(&c, &checkpoint, &env(d.path(), vec![]));
            assert!(top1 >= 0.75, "linear@h on held-out images: {top1}");
        }

        #[test]
        fn a_stopped_supervised_run_resumes_to_the_same_weights_and_metrics() {
            let d_full = tempfile::tempdir().unwrap();
            let mut full = Rec::default();
            let PretrainOutcome::Finished {
                checkpoint: end_full,
            } = train(&cfg(3), &env(d_full.path(), vec![]), &mut full)
            else {
                panic!()
            };
            // Stopped mid-epoch (step 6 of 12, in epoch 1), then two steps later at an epoch's
            // end, then to
            // the end: every run continues from the checkpoint the previous one wrote.
            let d = tempfile::tempdir().unwrap();
            let mut joined = Rec::default();
            let mut resume = vec![];
            for stop_after in [Some(6), Some(2), None] {
                let mut rec = Rec {
                    stop_after,
                    ..Default::default()
                };
                let out = train(&cfg(3), &env(d.path(), resume.clone()), &mut rec);
                joined.steps.extend(rec.steps);
                joined.epochs.extend(rec.epochs);
                match out {
                    PretrainOutcome::Stopped { checkpoint } => resume = vec![checkpoint],
                    PretrainOutcome::Finished { checkpoint } => {
                        assert_eq!(checkpoint.sha256, end_full.sha256, "final weights differ");
                        let e = env(d.path(), vec![]);
                        assert_eq!(
                            linear_top1(&cfg(3), &checkpoint, &e),
                            linear_top1(&cfg(3), &end_full, &e)
                        );
                    }
                }
            }
            assert_eq!(joined.steps, full.steps, "per-step loss and top-1 differ");
            let means = |r: &Rec| -> Vec<(usize, f64, f64)> {
                r.epochs
                    .iter()
                    .map(|e| (e.epoch, e.loss, e.contrastive_acc))
                    .collect()
            };
            assert_eq!(means(&joined), means(&full), "epoch means differ");
            assert!(full.steps.iter().any(|s| s.1 != full.steps[0].1));
        }
    }
}
