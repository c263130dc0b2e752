//! Evaluation of a pretrained checkpoint with a frozen encoder (section 2.3 / appendix B.6
//! linear protocol; the kNN monitor of later contrastive work), on h or on z (Figure 8).
//!
//! Fine-tuning (`EvalKind::FineTune`) trains the encoder itself and lives in `finetune`.
//! Linear evaluation has two protocols (`EvalConfig::protocol`, part of the eval id):
//! `augmented`, the paper's, lives in `eval_aug` (fresh crops and flips through the encoder
//! every step). Here is the other, `features`, the fast probe, and kNN: features of the train
//! split (or a class-balanced subset seeded by the pretrain seed) and of the test split are
//! extracted once, with BatchNorm in eval mode (running statistics), then:
//! - linear: features standardised with the train mean/std, the classifier of
//!   `linear_head` (zero init, or N(0, 0.01) under BN) trained by minibatch SGD (momentum
//!   0.9, Nesterov if `eval.nesterov`, cosine learning rate from `eval.peak_lr` to 0,
//!   `eval.weight_decay` on the weights, not the bias), order drawn from
//!   `rng::stream(seed, Domain::Eval, ..)`; top-1 / top-5 on the test features.
//! - kNN: cosine similarity to every train feature, the k = min(eval.k, n_train) nearest
//!   (ties: lower train index), each voting exp(sim / temperature) for its class; the class
//!   scores give top-1 and top-5.
//!
//! Table 3's probe (`kind: probe`, predicting the transformation applied) lives in `probe`.
//!
//! Ties between class scores rank the lower class index first.
//!
//! A stop request (the observer's `Control::Stop`) ends an evaluation with
//! [`EvalOutcome::Stopped`], never an error. These two keep no checkpoint (their work is
//! minutes at most and deterministic): the next attempt starts them again and gives the same
//! numbers. The augmented protocol checkpoints and resumes (see `eval_aug`).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;

use super::checkpoint::{self, resume_key};
use super::config::{EvalConfig, EvalKind, EvalProtocol, FeatureSource, PretrainConfig};
use super::data::{self, ImageSet, Split};
use super::error::{no_panic, tensor_err};
use super::linear_head::{self, LinearHead};
use super::model::init;
use super::observer::{Control, Observer};
use super::rng::{self, Domain};
use super::{eval_aug, finetune, probe};
use super::{Checkpoint, EvalOutcome, EvalResult, MlError, TrainEnv};
use crate::ml::model::SimclrModel;
use crate::ml::training::loss::l2_normalize;

/// Evaluate a pretrain checkpoint: verify and load it, extract features, and score the
/// linear classifier or the kNN vote on the test split; or stop when the observer asks.
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

fn subset(set: &ImageSet, n: Option<usize>, seed: u64) -> Result<Vec<usize>, MlError> {
    match n {
        Some(n) => data::balanced_subset(&set.labels, set.num_classes, n, seed),
        None => Ok((0..set.len()).collect()),
    }
}

/// Unwraps a step that may have been stopped: `Some(value)` continues, `None` returns
/// `Ok(EvalOutcome::Stopped)` from the enclosing function.
macro_rules! or_stopped {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Ok(EvalOutcome::Stopped),
        }
    };
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
    let te_idx = Arc::new(subset(&test, eval.test_subset, pretrain.seed)?);
    let tr_idx = Arc::new(match eval.kind {
        EvalKind::FineTune => finetune::label_subset(&train, eval.label_fraction, pretrain.seed)?,
        EvalKind::Linear | EvalKind::Knn | EvalKind::Probe => {
            subset(&train, eval.train_subset, pretrain.seed)?
        }
    });
    let splits = || eval_aug::Splits {
        train: train.clone(),
        train_idx: tr_idx.clone(),
        test: test.clone(),
        test_idx: te_idx.clone(),
    };
    if eval.kind == EvalKind::FineTune {
        return finetune::evaluate(pretrain, eval, ckpt, &loaded.model, env, splits(), obs);
    }
    // The variables the pretrain wrote (a supervised run's classifier among them, unused
    // here: every other evaluation reads the frozen h or z).
    let (vm, model, _classifier) =
        init::build_pretrain(pretrain, train.num_classes, &env.device).map_err(tensor_err)?;
    checkpoint::restore_varmap(&vm, &loaded.model, &ckpt.path)?;
    let run = eval_aug::AugmentedRun {
        eval,
        seed: pretrain.seed,
        encoder: ckpt,
        env,
        flavour: eval_aug::LINEAR_AUG,
    };
    if eval.kind == EvalKind::Probe {
        let run = eval_aug::AugmentedRun {
            flavour: probe::PROBE,
            ..run
        };
        return run.evaluate_probe(&model, splits(), obs);
    }
    if eval.kind == EvalKind::Linear && eval.protocol == EvalProtocol::Augmented {
        return run.evaluate_linear(&model, splits(), obs);
    }
    let bs = eval.batch_size.max(1);
    let (xtr, ytr) = or_stopped!(extract(
        &model,
        &train,
        tr_idx,
        eval.on,
        bs,
        &env.device,
        obs,
        "features (train)",
    )?);
    let (xte, yte) = or_stopped!(extract(
        &model,
        &test,
        te_idx,
        eval.on,
        bs,
        &env.device,
        obs,
        "features (test)",
    )?);
    let scored = match eval.kind {
        EvalKind::Linear => linear_eval(
            &xtr,
            &ytr,
            &xte,
            &yte,
            train.num_classes,
            eval,
            pretrain.seed,
            obs,
        )?,
        EvalKind::FineTune | EvalKind::Probe => {
            return Err(MlError::Config(
                "fine-tuning and the probe have their own loops (finetune, probe)".into(),
            ))
        }
        EvalKind::Knn => knn_eval(
            &xtr,
            &ytr,
            &xte,
            &yte,
            train.num_classes,
            eval.k,
            eval.temperature,
            obs,
        )?,
    };
    let scores = or_stopped!(scored);
    Ok(EvalOutcome::Finished(EvalResult {
        top1: scores.top1,
        top5: scores.top5,
        train_top1: scores.train_top1,
        n_test: yte.len(),
    }))
}

/// What a protocol scored: test top-1 and top-5, and for the linear classifier its top-1
/// on the train features it was fit on (the gap to test top-1 shows over-fitting).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scores {
    pub top1: f64,
    pub top5: f64,
    pub train_top1: Option<f64>,
}

#[cfg(test)]
impl Scores {
    /// (top-1, top-5) on the test split.
    pub fn test(&self) -> (f64, f64) {
        (self.top1, self.top5)
    }
}

/// Features `[n, D]` (on `device`) and labels of `indices`, BatchNorm in eval mode;
/// `None` when stopped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn extract(
    model: &SimclrModel,
    set: &Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
    on: FeatureSource,
    batch_size: usize,
    device: &Device,
    obs: &mut dyn Observer,
    what: &str,
) -> Result<Option<(Tensor, Vec<u16>)>, MlError> {
    let total = indices.len();
    if total == 0 {
        return Err(MlError::Config(format!("{what}: no images")));
    }
    let (h, w) = (set.height, set.width);
    let mut feats = Vec::new();
    let mut labels = Vec::with_capacity(total);
    for (x, y) in data::plain_batches(set.clone(), indices, batch_size) {
        let n = y.len();
        let x = Tensor::from_vec(x, (n, 3, h, w), device).map_err(tensor_err)?;
        let f = features(model, &x, on)?;
        feats.push(f);
        labels.extend_from_slice(&y);
        if obs.on_eval_progress(labels.len(), total, what) == Control::Stop {
            return Ok(None);
        }
    }
    let x = Tensor::cat(&feats, 0).map_err(tensor_err)?;
    Ok(Some((x, labels)))
}

/// The frozen encoder's representation of images `x` (BatchNorm in inference mode): h, or
/// z = g(h); detached, f32.
pub(crate) fn features(
    model: &SimclrModel,
    x: &Tensor,
    on: FeatureSource,
) -> Result<Tensor, MlError> {
    match on {
        FeatureSource::H => model.encode(x, false),
        FeatureSource::Z => model.forward_t(x, false).map(|(_, z)| z),
    }
    .and_then(|f| f.detach().to_dtype(DType::F32))
    .map_err(tensor_err)
}

/// Rank of `label` in `scores` (0 = best): classes scoring higher, or equal with a lower
/// index, come first.
pub(crate) fn rank_of(scores: &[f32], label: usize) -> usize {
    let s = scores[label];
    scores
        .iter()
        .enumerate()
        .filter(|&(c, &v)| v > s || (v == s && c < label))
        .count()
}

/// (top-1, top-5) of score rows `[n, C]` against `labels`.
pub(crate) fn top_k(scores: &[f32], num_classes: usize, labels: &[u16]) -> (f64, f64) {
    let mut hit1 = 0usize;
    let mut hit5 = 0usize;
    for (row, &y) in scores.chunks_exact(num_classes).zip(labels) {
        let r = rank_of(row, y as usize);
        hit1 += (r < 1) as usize;
        hit5 += (r < 5) as usize;
    }
    let n = labels.len().max(1) as f64;
    (hit1 as f64 / n, hit5 as f64 / n)
}

/// `xtr` and `xte` standardised with the mean and standard deviation of `xtr` per feature.
pub(crate) fn standardize(xtr: &Tensor, xte: &Tensor) -> Result<(Tensor, Tensor), MlError> {
    let mean = xtr.mean_keepdim(0).map_err(tensor_err)?; // [1, D]
    let std = xtr
        .broadcast_sub(&mean)
        .and_then(|c| c.sqr())
        .and_then(|c| c.mean_keepdim(0))
        .and_then(|v| (v + 1e-8)?.sqrt())
        .map_err(tensor_err)?; // [1, D]
    let norm = |x: &Tensor| x.broadcast_sub(&mean)?.broadcast_div(&std);
    Ok((
        norm(xtr).map_err(tensor_err)?,
        norm(xte).map_err(tensor_err)?,
    ))
}

/// Multinomial logistic regression on standardised features; returns its scores, or `None`
/// when stopped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_eval(
    xtr: &Tensor,
    ytr: &[u16],
    xte: &Tensor,
    yte: &[u16],
    num_classes: usize,
    eval: &EvalConfig,
    seed: u64,
    obs: &mut dyn Observer,
) -> Result<Option<Scores>, MlError> {
    let dev = xtr.device().clone();
    let (n, d) = xtr.dims2().map_err(tensor_err)?;
    if n == 0 || ytr.len() != n || num_classes == 0 {
        return Err(MlError::Config(
            "linear evaluation needs labelled train features".into(),
        ));
    }
    let (xtr, xte) = standardize(xtr, xte)?;
    let ytr_t = Tensor::from_vec(ytr.iter().map(|&y| y as u32).collect::<Vec<_>>(), n, &dev)
        .map_err(tensor_err)?;

    let mut head = LinearHead::new(d, num_classes, eval.head_bn, seed, &dev)?;
    let mut opt = linear_head::optimizer(eval, head.params());
    let bs = eval.batch_size.clamp(1, n);
    let spe = n.div_ceil(bs);
    let total = (spe * eval.epochs).max(1);
    let peak = eval.peak_lr(eval.batch_size);
    let mut step = 0usize;
    for epoch in 0..eval.epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng::stream(
            seed,
            Domain::Eval,
            &[rng::key_of("linear_eval"), epoch as u64],
        ));
        for chunk in order.chunks(bs) {
            let idx = Tensor::new(chunk, &dev).map_err(tensor_err)?;
            let x = xtr.index_select(&idx, 0).map_err(tensor_err)?;
            let y = ytr_t.index_select(&idx, 0).map_err(tensor_err)?;
            let lr = linear_head::cosine_lr(peak, step, total);
            head.train_step(&mut opt, &x, &y, lr, epoch, step)?;
            step += 1;
        }
        if obs.on_eval_progress(epoch + 1, eval.epochs, "linear classifier") == Control::Stop {
            return Ok(None);
        }
    }
    let (top1, top5) = top_k(&head.scores(&xte)?, num_classes, yte);
    let (train_top1, _) = top_k(&head.scores(&xtr)?, num_classes, ytr);
    Ok(Some(Scores {
        top1,
        top5,
        train_top1: Some(train_top1),
    }))
}

/// Weighted kNN vote on cosine similarity; returns its test scores, or `None` when stopped.
#[allow(clippy::too_many_arguments)]
pub(crate) fn knn_eval(
    xtr: &Tensor,
    ytr: &[u16],
    xte: &Tensor,
    yte: &[u16],
    num_classes: usize,
    k: usize,
    temperature: f64,
    obs: &mut dyn Observer,
) -> Result<Option<Scores>, MlError> {
    let ntr = ytr.len();
    if ntr == 0 || k == 0 || num_classes == 0 || temperature <= 0.0 {
        return Err(MlError::Config(
            "kNN needs train features, k >= 1 and a positive temperature".into(),
        ));
    }
    let k = k.min(ntr);
    let trt = l2_normalize(xtr).and_then(|t| t.t()).map_err(tensor_err)?; // [D, Ntr]
    let te = l2_normalize(xte).map_err(tensor_err)?; // [Nte, D]
    let nte = yte.len();
    let mut scores = vec![0f32; nte * num_classes];
    const CHUNK: usize = 256;
    let mut order: Vec<usize> = Vec::with_capacity(ntr);
    for start in (0..nte).step_by(CHUNK) {
        let len = CHUNK.min(nte - start);
        let sim: Vec<f32> = te
            .narrow(0, start, len)
            .and_then(|q| q.matmul(&trt))
            .and_then(|s| s.flatten_all())
            .and_then(|s| s.to_vec1())
            .map_err(tensor_err)?; // [len, Ntr]
        for (r, row) in sim.chunks_exact(ntr).enumerate() {
            order.clear();
            order.extend(0..ntr);
            let cmp = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            if k < ntr {
                order.select_nth_unstable_by(k - 1, cmp);
            }
            let out = &mut scores[(start + r) * num_classes..(start + r + 1) * num_classes];
            for &j in &order[..k] {
                let c = ytr[j] as usize;
                if c < num_classes {
                    out[c] += ((row[j] as f64) / temperature).exp() as f32;
                }
            }
        }
        if obs.on_eval_progress(start + len, nte, "kNN") == Control::Stop {
            return Ok(None);
        }
    }
    let (top1, top5) = top_k(&scores, num_classes, yte);
    Ok(Some(Scores {
        top1,
        top5,
        train_top1: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::observer::NullObserver;
    use crate::test_support::images::random_images;
    use rand::Rng;
    use rand_distr::{Distribution, Normal};

    fn t(v: &[f32], rows: usize) -> Tensor {
        Tensor::from_vec(v.to_vec(), (rows, v.len() / rows), &Device::Cpu).unwrap()
    }

    #[test]
    fn knn_on_hand_made_features_gives_the_known_votes() {
        // Train: class 0 along +x, class 1 along +y, class 2 along -x.
        let xtr = t(
            &[1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, 0.2, 1.0, -1.0, 0.0],
            6,
        );
        let ytr = [0u16, 0, 1, 1, 1, 2];
        // Test 0 at 30 degrees: its 3 nearest are (1,0) [cos .866], (.9,.1) [.908], (.2,1)
        // [.66]: weights exp(.908/.1) + exp(.866/.1) for class 0 beat exp(.66/.1): class 0.
        // Test 1 along -x: nearest (-1,0) (class 2) then the two closest of the rest.
        // Test 2 at 60 degrees, labelled 1: class 1's neighbours win.
        let xte = t(&[0.866, 0.5, -1.0, 0.0, 0.5, 0.866], 3);
        let yte = [0u16, 0, 1];
        let (top1, top5) = knn_eval(&xtr, &ytr, &xte, &yte, 3, 3, 0.1, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        // Test 1 is labelled 0 but its nearest neighbour is class 2: 2 of 3 right at top-1,
        // all at top-5 (3 classes).
        assert!((top1 - 2.0 / 3.0).abs() < 1e-12, "{top1}");
        assert_eq!(top5, 1.0);
        // k larger than the bank is clamped; k = 1 is plain nearest neighbour.
        let (t1, _) = knn_eval(&xtr, &ytr, &xte, &yte, 3, 1000, 0.1, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert!((0.0..=1.0).contains(&t1));
        let (nn1, _) = knn_eval(&xtr, &ytr, &xte, &[0, 2, 1], 3, 1, 0.1, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert_eq!(nn1, 1.0);
    }

    #[test]
    fn top_k_ranks_ties_by_class_index() {
        let scores = [1.0f32, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(rank_of(&scores, 0), 0);
        assert_eq!(rank_of(&scores, 1), 1);
        assert_eq!(rank_of(&scores, 6), 6);
        let (t1, t5) = top_k(&scores, 7, &[1]);
        assert_eq!((t1, t5), (0.0, 1.0));
    }

    /// Gaussian blobs around 4 orthogonal directions in 8-D, a shared offset and scale.
    fn blobs(n: usize, salt: u64) -> (Tensor, Vec<u16>) {
        let mut r = rng::stream(salt, Domain::Eval, &[7]);
        let noise = Normal::new(0.0f32, 0.3).unwrap();
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = (i % 4) as u16;
            for j in 0..8 {
                let centre = if j == c as usize { 3.0 } else { 0.0 };
                x.push(5.0 + 10.0 * (centre + noise.sample(&mut r)) + r.gen::<f32>() * 0.01);
            }
            y.push(c);
        }
        (t(&x, n), y)
    }

    #[test]
    fn linear_eval_separates_linearly_separable_features() {
        let (xtr, ytr) = blobs(64, 1);
        let (xte, yte) = blobs(40, 2);
        let eval = EvalConfig {
            epochs: 20,
            lr: 0.1,
            batch_size: 16,
            weight_decay: 1e-4,
            ..Default::default()
        };
        let (top1, top5) = linear_eval(&xtr, &ytr, &xte, &yte, 4, &eval, 0, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert_eq!(top1, 1.0);
        assert_eq!(top5, 1.0);
        // Deterministic: the same numbers again.
        let again = linear_eval(&xtr, &ytr, &xte, &yte, 4, &eval, 0, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert_eq!(again, (top1, top5));
        // The classifier also scores the images it was fit on: separable, so all right.
        let fit = linear_eval(&xtr, &ytr, &xte, &yte, 4, &eval, 0, &mut NullObserver)
            .unwrap()
            .unwrap();
        assert_eq!(fit.train_top1, Some(1.0));
        // Zero epochs leave a zero classifier: every class ties, class 0 wins: 1/4 right.
        let none = EvalConfig { epochs: 0, ..eval };
        let (t1, _) = linear_eval(&xtr, &ytr, &xte, &yte, 4, &none, 0, &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert_eq!(t1, 0.25);
    }

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
        for (kind, on) in [
            (EvalKind::Linear, FeatureSource::H),
            (EvalKind::Knn, FeatureSource::Z),
        ] {
            let eval = EvalConfig {
                kind,
                on,
                train_subset: Some(16),
                test_subset: Some(8),
                epochs: 2,
                batch_size: 8,
                ..Default::default()
            };
            let run = |obs: &mut dyn Observer| {
                evaluate_on(&pretrain, &eval, &r, &env, train.clone(), test.clone(), obs)
            };
            let Ok(EvalOutcome::Finished(res)) = run(&mut NullObserver) else {
                panic!("{kind:?}@{on:?} did not finish");
            };
            assert_eq!(res.n_test, 8);
            assert!(res.top1 <= res.top5 && res.top5 == 1.0, "{res:?}"); // 4 classes < 5
                                                                         // A stop request at any point of the evaluation is a stop, not a failure.
            for stop_at in 0..4 {
                let mut obs = StopAfter(stop_at);
                assert!(
                    matches!(run(&mut obs), Ok(EvalOutcome::Stopped)),
                    "{kind:?}: stop after {stop_at} progress reports"
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
}
