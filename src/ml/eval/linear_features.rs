//! The fast linear probe (`protocol: features`): features of the train subset and of the
//! test split extracted once through the frozen encoder, standardised with the train
//! mean/std, then the classifier of `linear_head` (zero init, or N(0, 0.01) under BN)
//! trained by minibatch SGD (`feature_training`: order from the stream `linear_eval`,
//! momentum, Nesterov if asked, cosine learning rate from the peak to 0, weight decay on the
//! weights, not the bias); top-1 / top-5 on the test features, top-1 on the train features.
//! It keeps no checkpoint (minutes at most, and deterministic): a stopped probe starts
//! again next time and gives the same numbers.

use candle_core::Device;

use super::feature_training::FeatureEpochs;
use super::features::{standardize, Extractor, FeatureSplits};
use super::linear_head::{self, LinearHead};
use super::score::{top_k, Scores};
use super::splits::Splits;
use crate::ml::config::{FeatureSource, LinearConfig};
use crate::ml::error::tensor_err;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, Observer};
use crate::ml::{EvalOutcome, MlError};

/// Where the features probe's run stands: the frozen model, what it reads, its settings
/// and seed.
pub(crate) struct FeaturesProbe<'a> {
    pub model: &'a SimclrModel,
    pub on: FeatureSource,
    pub cfg: &'a LinearConfig,
    /// The pretrain seed (epoch orders, the classifier's initialisation).
    pub seed: u64,
    pub device: &'a Device,
}

impl FeaturesProbe<'_> {
    /// Extracts the features and scores the classifier trained on them; or stops when the
    /// observer asks.
    pub fn evaluate(&self, splits: Splits, obs: &mut dyn Observer) -> Result<EvalOutcome, MlError> {
        let extractor = Extractor {
            model: self.model,
            on: self.on,
            batch_size: self.cfg.training.batch_size.max(1),
            device: self.device,
        };
        let Some(features) = extractor.extract_splits(&splits, obs)? else {
            return Ok(EvalOutcome::Stopped);
        };
        Ok(match fit(&features, self.cfg, self.seed, obs)? {
            Some(scores) => EvalOutcome::Finished(scores.result(features.test.y.len())),
            None => EvalOutcome::Stopped,
        })
    }
}

/// Multinomial logistic regression on standardised features; returns its scores, or `None`
/// when stopped.
pub(crate) fn fit(
    f: &FeatureSplits,
    cfg: &LinearConfig,
    seed: u64,
    obs: &mut dyn Observer,
) -> Result<Option<Scores>, MlError> {
    let (ytr, num_classes, t) = (&f.train.y, f.classes, &cfg.training);
    let (n, d) = f.train.x.dims2().map_err(tensor_err)?;
    if n == 0 || ytr.len() != n || num_classes == 0 {
        return Err(MlError::Config(
            "linear evaluation needs labelled train features".into(),
        ));
    }
    let (xtr, xte) = standardize(&f.train.x, &f.test.x)?;
    let dev = xtr.device().clone();
    let mut head = LinearHead::new(d, num_classes, cfg.head_bn, seed, &dev)?;
    let mut opt = linear_head::optimizer(t, head.params());
    let epochs = FeatureEpochs::new(&xtr, ytr, t, seed, "linear_eval")?;
    for epoch in 0..t.epochs {
        epochs.run_epoch(epoch, |x, y, lr, step| {
            head.train_step(&mut opt, x, y, lr, epoch, step).map(|_| ())
        })?;
        if obs.on_eval_progress(epoch + 1, t.epochs, "linear classifier") == Control::Stop {
            return Ok(None);
        }
    }
    let (top1, top5) = top_k(&head.scores(&xte)?, num_classes, &f.test.y);
    let (train_top1, _) = top_k(&head.scores(&xtr)?, num_classes, ytr);
    Ok(Some(Scores {
        top1,
        top5,
        train_top1: Some(train_top1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::EvalTraining;
    use crate::ml::eval::features::Labelled;
    use crate::ml::observer::NullObserver;
    use crate::ml::rng::{self, Domain};
    use candle_core::Tensor;
    use rand::Rng;
    use rand_distr::{Distribution, Normal};

    /// Gaussian blobs around 4 orthogonal directions in 8-D, a shared offset and scale.
    fn blobs(n: usize, salt: u64) -> Labelled {
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
        let x = Tensor::from_vec(x, (n, 8), &Device::Cpu).unwrap();
        Labelled { x, y }
    }

    #[test]
    fn linear_eval_separates_linearly_separable_features() {
        let f = FeatureSplits {
            train: blobs(64, 1),
            test: blobs(40, 2),
            classes: 4,
        };
        let cfg = LinearConfig {
            train_subset: None,
            training: EvalTraining {
                epochs: 20,
                lr: 0.1,
                batch_size: 16,
                weight_decay: 1e-4,
                ..EvalTraining::features()
            },
            head_bn: false,
        };
        let fit_once = |cfg: &LinearConfig| fit(&f, cfg, 0, &mut NullObserver).unwrap().unwrap();
        let scores = fit_once(&cfg);
        assert_eq!(scores.test(), (1.0, 1.0));
        // Deterministic: the same numbers again.
        assert_eq!(fit_once(&cfg), scores);
        // The classifier also scores the images it was fit on: separable, so all right.
        assert_eq!(scores.train_top1, Some(1.0));
        // Zero epochs leave a zero classifier: every class ties, class 0 wins: 1/4 right.
        let mut none = cfg.clone();
        none.training.epochs = 0;
        assert_eq!(fit_once(&none).top1, 0.25);
    }
}
