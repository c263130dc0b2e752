//! Features of a frozen encoder (BatchNorm in inference mode): h or z = g(h) of a split's
//! images extracted in batches, and standardised with the train statistics.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::splits::Splits;
use crate::ml::config::FeatureSource;
use crate::ml::data::{self, ImageSet};
use crate::ml::error::tensor_err;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, Observer};
use crate::ml::MlError;

/// Features `[n, D]` of some images and their labels.
pub(crate) struct Labelled {
    pub x: Tensor,
    pub y: Vec<u16>,
}

/// The features a method fits (`train`) and scores (`test`), of `classes` classes.
pub(crate) struct FeatureSplits {
    pub train: Labelled,
    pub test: Labelled,
    pub classes: usize,
}

/// How features are extracted: which representation of which model, in batches of
/// `batch_size` on `device`.
pub(crate) struct Extractor<'a> {
    pub model: &'a SimclrModel,
    pub on: FeatureSource,
    pub batch_size: usize,
    pub device: &'a Device,
}

impl Extractor<'_> {
    /// Features (on the device) and labels of `indices` of `set`, reported to `obs` as
    /// `what`; `None` when stopped.
    pub fn extract(
        &self,
        set: &Arc<ImageSet>,
        indices: Arc<Vec<usize>>,
        what: &str,
        obs: &mut dyn Observer,
    ) -> Result<Option<Labelled>, MlError> {
        let total = indices.len();
        if total == 0 {
            return Err(MlError::Config(format!("{what}: no images")));
        }
        let (h, w) = (set.height, set.width);
        let mut feats = Vec::new();
        let mut labels = Vec::with_capacity(total);
        for (x, y) in data::plain_batches(set.clone(), indices, self.batch_size) {
            let n = y.len();
            let x = Tensor::from_vec(x, (n, 3, h, w), self.device).map_err(tensor_err)?;
            feats.push(features(self.model, &x, self.on)?);
            labels.extend_from_slice(&y);
            if obs.on_eval_progress(labels.len(), total, what) == Control::Stop {
                return Ok(None);
            }
        }
        let x = Tensor::cat(&feats, 0).map_err(tensor_err)?;
        Ok(Some(Labelled { x, y: labels }))
    }

    /// The features of both splits' images (train first); `None` when stopped.
    pub fn extract_splits(
        &self,
        splits: &Splits,
        obs: &mut dyn Observer,
    ) -> Result<Option<FeatureSplits>, MlError> {
        let idx = splits.train_idx.clone();
        let Some(train) = self.extract(&splits.train, idx, "features (train)", obs)? else {
            return Ok(None);
        };
        let idx = splits.test_idx.clone();
        let Some(test) = self.extract(&splits.test, idx, "features (test)", obs)? else {
            return Ok(None);
        };
        Ok(Some(FeatureSplits {
            train,
            test,
            classes: splits.train.num_classes,
        }))
    }
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
