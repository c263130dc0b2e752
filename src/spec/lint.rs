//! Warnings on known pitfalls of SimCLR experiments (docs/ARCHITECTURE.md#specs): the spec
//! is valid, but probably not what a careful researcher meant.

use std::collections::BTreeSet;

use super::expand::Axis;
use super::PlannedRun;
use crate::ml::config::{AugOp, DatasetName, LossKind, LrScaling, Stem};

pub(crate) fn lint(runs: &[PlannedRun], axes: &[Axis]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in runs {
        let p = &r.config.pretrain;
        let cifar = matches!(p.dataset.name, DatasetName::Cifar10 | DatasetName::Cifar100);
        if cifar && p.encoder.stem == Stem::Imagenet {
            out.insert("CIFAR with the imagenet stem (7x7/2 conv + max-pool) shrinks 32x32 images to 8x8 before the first block; appendix B.9 uses the cifar stem (3x3 stride 1, no max-pool)".to_string());
        }
        if cifar
            && p.augment.ops.contains(&AugOp::Blur)
            && p.augment.protocol == crate::ml::config::AugProtocol::Symmetric
        {
            out.insert(
                "gaussian blur on 32x32 CIFAR images: appendix B.9 drops blur for CIFAR-10"
                    .to_string(),
            );
        }
        if p.augment.crop_flip
            && p.augment.ops.contains(&AugOp::Crop)
            && p.augment.ops.contains(&AugOp::Flip)
        {
            out.insert("ops list both crop (which flips unless augment.crop_flip: false) and flip: two independent coin flips, still a flip with p = 0.5; set crop_flip: false to make flip the only one".to_string());
        }
        if !p.loss.l2_norm && p.loss.kind != LossKind::Margin && p.loss.temperature < 1.0 {
            out.insert(format!(
                "temperature {} without l2 normalisation: unnormalised dot products divided by a small temperature overflow easily (Table 5 pairs no-l2 with tau 10 or 100)",
                p.loss.temperature
            ));
        }
    }
    let batch_varies = axes
        .iter()
        .any(|a| a.paths.iter().any(|p| p == "batch_size"));
    let lr_zipped = axes.iter().any(|a| {
        a.paths.iter().any(|p| p == "batch_size")
            && a.paths.iter().any(|p| p.starts_with("optimizer"))
    });
    if batch_varies
        && !lr_zipped
        && runs
            .iter()
            .any(|r| r.config.pretrain.optimizer.lr_scaling == LrScaling::None)
    {
        out.insert("batch_size varies but the learning rate does not scale with it (lr_scaling: none and no zipped optimizer.lr): state a rule, linear (0.3 x B/256) or sqrt (0.075 x sqrt(B)) as in Figure 9".to_string());
    }
    out.into_iter().collect()
}
