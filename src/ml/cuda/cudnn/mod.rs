//! The cuDNN implementation of the training ops (`CudnnOps`), built with the `cuda`
//! feature: `conv` (forward, backward-data, backward-filter) and `bn` (training-mode
//! BatchNorm forward and backward), over `handle`'s per-thread, per-device cuDNN state.

mod bn;
mod conv;
mod handle;

use candle_core::{Result, Tensor};
use candle_nn::BatchNorm;

use super::ops::TrainOps;

/// cuDNN for every direction of the convolution and for training-mode BatchNorm.
pub(crate) struct CudnnOps;

impl TrainOps for CudnnOps {
    fn name(&self) -> &'static str {
        "cudnn"
    }

    fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        conv::conv2d(x, w, stride, pad)
    }

    fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
        bn::batch_norm_train(x, bn)
    }
}
