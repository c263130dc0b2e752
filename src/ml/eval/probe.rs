//! Table 3's probe (section 4.2: "we train additional MLPs on h or g(h) to predict the
//! transformation applied"): what a frozen encoder's h or z = g(h) keeps about a
//! transformation of its input.
//!
//! The labelled sets: the un-augmented images of the train subset (`train_subset`)
//! and of the test subset (`test_subset`), each image transformed by the class it is
//! given ([`ProbeTask`]: grayscale, one of four rotations, Gaussian noise, Sobel). Classes
//! follow a permutation drawn from `rng::stream(seed, Domain::Eval, &[key_of("probe_classes"),
//! task, split])`, so each class has its exact share (`ProbeTask::class_at`); image i's noise
//! is drawn from `&[key_of("probe_noise"), split, i]`. Features are extracted with
//! BatchNorm in inference mode (`features`) and standardised with the train statistics.
//!
//! The MLP: `fc1` (`D x hidden`, ReLU) then `fc2` (`hidden x classes`), weights and biases
//! U(+-1/sqrt(fan_in)) (PyTorch's `nn.Linear`) from `&[key_of(name)]`; softmax
//! cross-entropy, SGD with momentum (`linear_head::optimizer`: weight decay on the weights
//! only), cosine decay from the peak learning rate to 0 without warmup, the training's
//! epochs of minibatches in an order drawn from `&[key_of("probe_order"), epoch]`
//! (`feature_training`; the last batch of an epoch may be smaller). Scored on the
//! test set: top-1 (and top-5, which is 1 with at most five classes); its train top-1 too.
//!
//! Stop and resume (`checkpointed`, under the probe's own metadata key): the MLP
//! and its momentum are checkpointed at every epoch's end; a stop request (checked after each epoch and during extraction) ends with
//! `EvalOutcome::Stopped`, and the next call extracts the features again (deterministic)
//! and continues from the newest checkpoint of this evaluation and encoder, giving exactly
//! the numbers of an uninterrupted run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::Rng;

use super::checkpointed::{prefixed, restored, under, Checkpointed, CheckpointedEval, MethodNames};
use super::feature_training::FeatureEpochs;
use super::features::{standardize, Extractor};
use super::linear_head;
use super::score::{top_k, Scores};
use super::splits::Splits;
use crate::ml::augment::{grayscale, random_noise, rotate90, sobel};
use crate::ml::config::{ProbeConfig, ProbeTask};
use crate::ml::data::ImageSet;
use crate::ml::error::tensor_err;
use crate::ml::model::encoder::relu;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, Observer};
use crate::ml::rng::{self, Domain};
use crate::ml::training::optim::Optimizer;
use crate::ml::{EvalOutcome, MlError};

/// Which split a labelled set is drawn from (a key of its streams).
#[derive(Clone, Copy)]
enum Part {
    Train = 0,
    Test = 1,
}

/// The images `indices` of `set`, each transformed by its class of `task`, labelled with
/// that class.
fn labelled_set(
    set: &ImageSet,
    indices: &[usize],
    task: ProbeTask,
    seed: u64,
    part: Part,
) -> Result<ImageSet, MlError> {
    let (h, w) = (set.height, set.width);
    if task == ProbeTask::Rotation && h != w {
        return Err(MlError::Config(format!(
            "probe rotation needs square images, these are {h}x{w}"
        )));
    }
    let mut pos: Vec<usize> = (0..indices.len()).collect();
    pos.shuffle(&mut rng::stream(
        seed,
        Domain::Eval,
        &[
            rng::key_of("probe_classes"),
            rng::key_of(task.name()),
            part as u64,
        ],
    ));
    let mut images = Vec::with_capacity(indices.len() * set.image_bytes());
    let mut labels = Vec::with_capacity(indices.len());
    let mut out = Vec::new();
    for (j, &i) in indices.iter().enumerate() {
        let class = task.class_at(pos[j]);
        let mut img = set.image(i).to_vec();
        match (task, class) {
            (_, 0) => {}
            (ProbeTask::ColorVsGrayscale, _) => grayscale(&mut img),
            (ProbeTask::Rotation, k) => {
                rotate90(&img, h, w, k as usize, &mut out);
                std::mem::swap(&mut img, &mut out);
            }
            (ProbeTask::Corrupted, _) => {
                let mut r = rng::stream(
                    seed,
                    Domain::Eval,
                    &[rng::key_of("probe_noise"), part as u64, i as u64],
                );
                random_noise(&mut img, &mut r);
            }
            (ProbeTask::Sobel, _) => {
                sobel(&img, h, w, &mut out);
                std::mem::swap(&mut img, &mut out);
            }
        }
        images.extend_from_slice(&img);
        labels.push(class);
    }
    Ok(ImageSet {
        images,
        labels,
        height: h,
        width: w,
        num_classes: task.classes(),
        class_names: (0..task.classes()).map(|c| c.to_string()).collect(),
    })
}

/// The probe: one hidden layer with ReLU.
struct Mlp {
    params: Vec<(String, Var)>,
}

impl Mlp {
    const NAMES: [&'static str; 4] = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

    fn new(
        dim: usize,
        hidden: usize,
        classes: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<Self, MlError> {
        let shapes = [
            (vec![dim, hidden], dim),
            (vec![hidden], dim),
            (vec![hidden, classes], hidden),
            (vec![classes], hidden),
        ];
        let mut params = Vec::new();
        for (name, (shape, fan_in)) in Self::NAMES.iter().zip(shapes) {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let mut r = rng::stream(seed, Domain::Eval, &[rng::key_of(&format!("probe.{name}"))]);
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| r.gen_range(-bound..bound)).collect();
            let var = Tensor::from_vec(v, shape, dev)
                .and_then(|t| Var::from_tensor(&t))
                .map_err(tensor_err)?;
            params.push((name.to_string(), var));
        }
        Ok(Mlp { params })
    }

    fn t(&self, i: usize) -> &Tensor {
        self.params[i].1.as_tensor()
    }

    /// Logits `[B, C]` of features `x` `[B, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, MlError> {
        x.matmul(self.t(0))
            .and_then(|y| y.broadcast_add(self.t(1)))
            .and_then(|y| relu(&y))
            .and_then(|y| y.matmul(self.t(2)))
            .and_then(|y| y.broadcast_add(self.t(3)))
            .map_err(tensor_err)
    }

    /// Logits of `x`, flattened row-major.
    fn scores(&self, x: &Tensor) -> Result<Vec<f32>, MlError> {
        self.forward(x)?
            .flatten_all()
            .and_then(|l| l.to_vec1())
            .map_err(tensor_err)
    }
}

/// The probe's checkpointed state: the MLP and its optimizer.
struct ProbeLearner {
    mlp: Mlp,
    opt: Optimizer,
}

const MLP_PREFIX: &str = "mlp/";
const OPTIM_PREFIX: &str = "optim/";

impl Checkpointed for ProbeLearner {
    fn state(&self) -> Vec<(String, Tensor)> {
        let mlp = self
            .mlp
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let mut out = prefixed(mlp, MLP_PREFIX);
        out.extend(prefixed(self.opt.state(), OPTIM_PREFIX));
        out
    }

    fn load_state(&mut self, tensors: HashMap<String, Tensor>, _: &Path) -> Result<(), MlError> {
        let t = under(&tensors, MLP_PREFIX);
        if t.len() != self.mlp.params.len() {
            return Err(MlError::Config(format!(
                "probe MLP: {} tensors, expected {}",
                t.len(),
                self.mlp.params.len()
            )));
        }
        // Check everything before changing anything.
        let mut values = Vec::new();
        for (name, var) in &self.mlp.params {
            values.push(restored(&t, name, var.as_tensor(), "probe MLP")?);
        }
        for ((_, var), v) in self.mlp.params.iter().zip(values) {
            var.set(&v).map_err(tensor_err)?;
        }
        self.opt.load_state(&under(&tensors, OPTIM_PREFIX))
    }
}

/// Table 3's probe: its checkpoints, streams and progress.
pub(crate) const PROBE: MethodNames = MethodNames {
    checkpoint_tag: "simclr-sweep-probe-checkpoint",
    stream: "probe",
    progress: "probe MLP",
};

/// Extracts the labelled features of `model`, trains the MLP to the training's epochs (from
/// the newest usable checkpoint of `run`, which runs under [`PROBE`]) and scores the test
/// set; or stops when the observer asks.
pub(crate) fn evaluate(
    run: &CheckpointedEval,
    model: &SimclrModel,
    cfg: &ProbeConfig,
    splits: Splits,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    let (t, dev, seed, task) = (&cfg.training, &run.env.device, run.seed, cfg.task);
    let extractor = Extractor {
        model,
        on: run.eval.on,
        batch_size: t.batch_size.max(1),
        device: dev,
    };
    let feats = |set: &ImageSet, idx: &[usize], part: Part, what: &str, obs: &mut dyn Observer| {
        let set = Arc::new(labelled_set(set, idx, task, seed, part)?);
        let all = Arc::new((0..set.len()).collect::<Vec<_>>());
        extractor.extract(&set, all, what, obs)
    };
    let (train, test) = (&splits.train, &splits.test);
    let Some(tr) = feats(
        train,
        &splits.train_idx,
        Part::Train,
        "probe features (train)",
        obs,
    )?
    else {
        return Ok(EvalOutcome::Stopped);
    };
    let Some(te) = feats(
        test,
        &splits.test_idx,
        Part::Test,
        "probe features (test)",
        obs,
    )?
    else {
        return Ok(EvalOutcome::Stopped);
    };
    let (xtr, xte) = standardize(&tr.x, &te.x)?;
    let (_, dim) = xtr.dims2().map_err(tensor_err)?;
    let classes = task.classes();
    let order_key = PROBE.order_key();
    let epochs = FeatureEpochs::new(&xtr, &tr.y, t, seed, &order_key)?;
    let fresh = || -> Result<ProbeLearner, MlError> {
        let mlp = Mlp::new(dim, cfg.hidden, classes, seed, dev)?;
        let opt = linear_head::optimizer(t, mlp.params.clone());
        Ok(ProbeLearner { mlp, opt })
    };
    let (mut learner, mut pos) = run.resume_or_start(&fresh, epochs.steps_per_epoch())?;
    while pos.epoch < t.epochs {
        let epoch = pos.epoch;
        epochs.run_epoch(epoch, |x, y, lr, step| {
            let logits = learner.mlp.forward(x)?;
            linear_head::cross_entropy_step(&mut learner.opt, &logits, y, lr, epoch, step)
                .map(|_| ())
        })?;
        pos.epoch += 1;
        run.save(&learner, &pos, obs)?;
        if obs.on_eval_progress(pos.epoch, t.epochs, PROBE.progress) == Control::Stop {
            return Ok(EvalOutcome::Stopped);
        }
    }
    let (top1, top5) = top_k(&learner.mlp.scores(&xte)?, classes, &te.y);
    let (train_top1, _) = top_k(&learner.mlp.scores(&xtr)?, classes, &tr.y);
    let scores = Scores {
        top1,
        top5,
        train_top1: Some(train_top1),
    };
    Ok(EvalOutcome::Finished(scores.result(te.y.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{EvalConfig, EvalMethod, FeatureSource};
    use crate::ml::observer::NullObserver;
    use crate::test_support::images::tiny_images;
    use crate::test_support::{finished, EvalFixture, EvalRecorder};

    /// 8x8 images, each one random saturated colour under pixel noise: whether an image was
    /// made gray is visible in every pixel.
    fn colourful(n: usize, salt: u64) -> Arc<ImageSet> {
        let mut r = rng::stream(salt, Domain::Eval, &[13]);
        let colours: Vec<[u8; 3]> = (0..n)
            .map(|_| {
                let mut c = [
                    r.gen_range(0..80u8),
                    r.gen_range(0..80u8),
                    r.gen_range(0..80u8),
                ];
                c[r.gen_range(0..3usize)] = r.gen_range(170..=255u8);
                c
            })
            .collect();
        tiny_images(n, |j| {
            let noise = r.gen_range(0..20u8);
            colours[j / 192][j % 3].saturating_add(noise)
        })
    }

    fn probe(task: ProbeTask, on: FeatureSource, epochs: usize) -> EvalConfig {
        let mut eval = EvalConfig {
            on,
            ..EvalConfig::probe(task)
        };
        if let EvalMethod::Probe(p) = &mut eval.method {
            p.hidden = 32;
            p.training.epochs = epochs;
            p.training.batch_size = 16;
            p.training.lr = 0.1;
        }
        eval
    }

    fn fixture() -> EvalFixture {
        EvalFixture::new(colourful(120, 1), colourful(60, 2))
    }

    #[test]
    fn labelled_sets_hold_each_class_in_its_share_transformed_by_its_class() {
        let set = colourful(40, 3);
        let idx: Vec<usize> = (0..40).collect();
        for task in ProbeTask::ALL {
            let l = labelled_set(&set, &idx, task, 0, Part::Train).unwrap();
            assert_eq!((l.len(), l.num_classes), (40, task.classes()));
            let mut counts = vec![0usize; task.classes()];
            for (i, &c) in l.labels.iter().enumerate() {
                counts[c as usize] += 1;
                let (orig, got) = (set.image(i), l.image(i));
                let mut want = orig.to_vec();
                match (task, c) {
                    (_, 0) => {}
                    (ProbeTask::ColorVsGrayscale, _) => grayscale(&mut want),
                    (ProbeTask::Rotation, k) => rotate90(orig, 8, 8, k as usize, &mut want),
                    (ProbeTask::Sobel, _) => sobel(orig, 8, 8, &mut want),
                    (ProbeTask::Corrupted, _) => {
                        assert_ne!(got, orig, "image {i} corrupted");
                        continue;
                    }
                }
                assert_eq!(got, &want[..], "{task:?} image {i} class {c}");
            }
            // The majority class's share is the random guess of the report's table.
            let majority = *counts.iter().max().unwrap() as f64 / 40.0 * 100.0;
            assert_eq!(majority, task.random_guess(), "{task:?} {counts:?}");
            // The test part draws other classes than the train part.
            let t = labelled_set(&set, &idx, task, 0, Part::Test).unwrap();
            assert_ne!(t.labels, l.labels, "{task:?}");
        }
    }

    #[test]
    fn the_probe_tells_grayscale_from_colour_but_not_rotations_of_uniform_blobs() {
        let f = fixture();
        // Grayscale removes the colour every pixel carries: the probe on h beats the 80%
        // of always answering "colour" by far, on images it was not trained on.
        let eval = probe(ProbeTask::ColorVsGrayscale, FeatureSource::H, 30);
        let res = finished(f.run(&eval, &f.env("h", vec![]), &mut NullObserver));
        assert!(res.top1 >= 0.95, "{res:?}");
        assert_eq!(res.n_test, 60);
        // Deterministic: the same numbers again, from scratch.
        assert_eq!(
            finished(f.run(&eval, &f.env("h2", vec![]), &mut NullObserver)),
            res
        );
        // z too reads the frozen encoder (through the untrained head).
        let z = probe(ProbeTask::ColorVsGrayscale, FeatureSource::Z, 30);
        assert!(finished(f.run(&z, &f.env("z", vec![]), &mut NullObserver)).top1 > 0.8);
        // Rotations of colour blobs under pixel noise are all alike: the same probe stays
        // near its 25% chance, so the score above is the transformation, not the MLP.
        let rot = probe(ProbeTask::Rotation, FeatureSource::H, 30);
        let r = finished(f.run(&rot, &f.env("rot", vec![]), &mut NullObserver));
        assert!(r.top1 < 0.5, "{r:?}");
    }

    #[test]
    fn a_stop_anywhere_then_resume_gives_the_uninterrupted_numbers() {
        let f = fixture();
        let eval = probe(ProbeTask::Sobel, FeatureSource::H, 4);
        let mut whole = EvalRecorder::default();
        let reference = finished(f.run(&eval, &f.env("whole", vec![]), &mut whole));
        assert_eq!(whole.checkpoints.len(), 4, "one per epoch");
        // Reports: 8 train-extraction batches (120 / 16), 4 test batches, 4 epochs.
        assert_eq!(whole.reports, 16);
        for stop_at in [3, 10, 13, 14, 16] {
            let dir = format!("stop{stop_at}");
            let mut first = EvalRecorder {
                stop_at: Some(stop_at),
                ..EvalRecorder::default()
            };
            let stopped = f.run(&eval, &f.env(&dir, vec![]), &mut first);
            assert!(matches!(stopped, Ok(EvalOutcome::Stopped)), "{stop_at}");
            let newest_first = first.checkpoints.iter().rev().cloned().collect();
            let mut rest = EvalRecorder::default();
            let resumed = finished(f.run(&eval, &f.env(&dir, newest_first), &mut rest));
            assert_eq!(resumed, reference, "stopped at report {stop_at}");
            // Features are extracted again (12 reports); the epochs done are not redone.
            let epochs_done = stop_at.saturating_sub(12);
            assert_eq!(rest.reports, 16 - epochs_done, "{stop_at}");
        }
        // Checkpoints of another evaluation are not resumed from.
        let mut other = eval.clone();
        other.training_mut().expect("the probe trains").lr = 0.05;
        let foreign = whole.checkpoints.iter().rev().cloned().collect();
        let a = finished(f.run(&other, &f.env("other", foreign), &mut NullObserver));
        let b = finished(f.run(&other, &f.env("other-fresh", vec![]), &mut NullObserver));
        assert_eq!(a, b);
    }
}
