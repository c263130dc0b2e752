//! "An implementation of the encoder's training ops": a convolution with both gradients and
//! training-mode BatchNorm that updates its running statistics. The encoder's CUDA path
//! calls them through this trait, the self-check (`check`) compares one implementation
//! with another through it, and [`CandleOps`], candle's own ops, is the reference.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::BatchNorm;

/// The ops a CUDA training step takes from one implementation.
pub(crate) trait TrainOps: Sync {
    /// What the log and the store call it.
    fn name(&self) -> &'static str;

    /// `x [N, C_in, H, W]` convolved with `w [C_out, C_in, kH, kW]` (no bias, dilation 1),
    /// differentiable in both; same dtype for both.
    fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor>;

    /// `bn.forward_t(x, true)`: batch statistics over all but the channel axis,
    /// differentiable in x and bn's scale and shift, and bn's running mean and (unbiased)
    /// variance moved by its momentum, in place.
    fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor>;
}

/// candle's ops: `Tensor::conv2d` (on CUDA its cuDNN forward, its own kernels for the
/// gradients) and candle_nn's BatchNorm.
pub(crate) struct CandleOps;

impl TrainOps for CandleOps {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
        x.conv2d(w, pad, stride, 1, 1)
    }

    fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
        bn.forward_t(x, true)
    }
}
