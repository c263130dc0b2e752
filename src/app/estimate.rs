//! What `sweep plan` says a sweep will cost: CPU seconds per run from measured throughput,
//! and durations as a person reads them.

use crate::ml::config::{Arch, EvalMethod, Method, Stem};
use crate::spec::RunConfig;

/// Rough CPU seconds of a run on the 2-core development machine, from end-to-end stage
/// times of the augment_pairs smoke sweep (ConvNet: 6,000 pairs pretrained in 7.3 s on
/// average, an evaluation over 4,000 images in 2.2 s; checkpoints and loading included),
/// and for the ResNets the ConvNet's ratio to them in bench/run.sh (about 70 for ResNet-18;
/// deeper ones scaled by their FLOPs). Width w costs w^2.
pub(super) fn estimate_seconds(run: &RunConfig) -> f64 {
    let p = &run.pretrain;
    let pairs_per_sec = match p.encoder.arch {
        Arch::Convnet => 830.0,
        Arch::Resnet18 => 12.0,
        Arch::Resnet34 => 6.0,
        Arch::Resnet50 => 3.0,
    } / (p.encoder.width * p.encoder.width) as f64
        * stem_speedup(p.encoder.stem);
    let n_train = p.dataset.train_subset.unwrap_or(50_000) as f64;
    // A supervised step passes one view per image instead of two: about half the time
    // (color_strength smoke: 1.4-2.3 s against about 4 s per 2,000-image ConvNet epoch).
    let views = match p.method {
        Method::Simclr => 1.0,
        Method::Supervised => 0.5,
    };
    let pretrain = n_train * p.epochs as f64 / pairs_per_sec * views;
    // Evaluation: forward passes only, about 2.2 images per training pair-time; the
    // augmented linear protocol passes the train images through the encoder every epoch.
    let eval: f64 = run
        .evals
        .iter()
        .map(|e| {
            let passes = match &e.method {
                EvalMethod::LinearAugmented(c) => c.training.epochs.max(1),
                EvalMethod::FineTune(c) => {
                    // Forward and backward through the encoder, one view per labelled image
                    // per epoch: a supervised pretrain's step, about half a SimCLR pair's.
                    let n = (50_000.0 * c.label_fraction).floor() * c.training.epochs as f64;
                    let test = e.test_subset.unwrap_or(10_000) as f64;
                    return n * 0.5 / pairs_per_sec + test / (pairs_per_sec * 2.2);
                }
                _ => 1,
            };
            let n = e.train_subset().unwrap_or(50_000) * passes + e.test_subset.unwrap_or(10_000);
            n as f64 / (pairs_per_sec * 2.2)
        })
        .sum();
    pretrain + eval
}

/// How much faster an encoder runs on 32x32 images with `stem` than with the CIFAR stem.
/// The ImageNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) leaves 1/16 of the feature
/// map's area, but the 8x8 maps it leaves keep per-op overheads: the model_size smoke
/// (ResNet-18/34/50 at 1x and 2x, ImageNet stem) measured 53 stage-minutes where the CIFAR
/// stem's rates say about 170, so 3x, not 16x.
fn stem_speedup(stem: Stem) -> f64 {
    match stem {
        Stem::Cifar => 1.0,
        Stem::Imagenet => 3.0,
    }
}
