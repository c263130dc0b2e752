//! The supervised baseline's linear classifier on h (`Method::Supervised`; Table 1 and
//! Figure 7 compare SimCLR against it): `classifier.weight` `[classes, repr_dim]` and
//! `classifier.bias` `[classes]` in the run's `VarMap` (so checkpoints carry it and a resume
//! restores it), drawn like every dense layer under the run's `InitScheme`. It is the
//! official code's supervised head (`model_util.supervised_head`: `linear_layer(num_classes,
//! use_bias=True, use_bn=False)`); evaluations ignore it and read h. Its loss is
//! `training::supervised`'s.

use candle_core::Result;
use candle_nn::{Linear, VarBuilder};

/// Prefix of the classifier's variables.
pub const CLASSIFIER: &str = "classifier";

/// The linear classifier h -> logits over `num_classes`.
pub fn classifier(repr_dim: usize, num_classes: usize, vb: VarBuilder) -> Result<Linear> {
    if num_classes < 2 {
        candle_core::bail!("a supervised run needs at least 2 classes, got {num_classes}");
    }
    candle_nn::linear(repr_dim, num_classes, vb.pp(CLASSIFIER))
}
