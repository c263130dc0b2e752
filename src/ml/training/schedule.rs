//! Learning-rate schedule of the paper (appendix B.1): the base rate scaled with the batch
//! size (`LrScaling`, Figure 9), a linear warmup, then cosine decay to 0 without restarts.
//!
//! Follows the official SimCLR `WarmUpAndCosineDecay`: during warmup
//! `lr = peak * step / warmup_steps` (0 at step 0), after it
//! `lr = peak * 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps)))`.
//! Evaluations that train decay the same way from their peak without warmup
//! ([`cosine_decay`]).

use crate::ml::config::OptimizerConfig;

/// Number of warmup steps: `floor(warmup_epochs * steps_per_epoch)`.
pub fn warmup_steps(cfg: &OptimizerConfig, steps_per_epoch: usize) -> usize {
    (cfg.warmup_epochs.max(0.0) * steps_per_epoch as f64).floor() as usize
}

/// Learning rate of global step `step` (from 0) of a run of `total_steps` steps.
pub fn lr_at(
    cfg: &OptimizerConfig,
    batch_size: usize,
    step: usize,
    steps_per_epoch: usize,
    total_steps: usize,
) -> f64 {
    let peak = cfg.peak_lr(batch_size);
    let warm = warmup_steps(cfg, steps_per_epoch);
    if step < warm {
        return peak * step as f64 / warm as f64;
    }
    if !cfg.cosine {
        return peak;
    }
    let decay = total_steps.saturating_sub(warm);
    if decay == 0 {
        return 0.0;
    }
    let progress = ((step - warm).min(decay)) as f64 / decay as f64;
    half_cosine(peak, std::f64::consts::PI * progress)
}

/// Cosine decay from `peak` to 0 over `total` steps without warmup, at step `step`: the
/// schedule of every evaluation that trains (linear classifiers, the probe, fine-tuning).
///
/// The angle is `(pi * step) / total`, rounded in that order, where [`lr_at`] rounds
/// `pi * (step / total)`: the two orders differ in the last bit on about a quarter of the
/// steps, and each keeps the rounding its stored results were made with.
pub fn cosine_decay(peak: f64, step: usize, total: usize) -> f64 {
    half_cosine(
        peak,
        std::f64::consts::PI * step as f64 / total.max(1) as f64,
    )
}

/// `peak * 0.5 * (1 + cos(angle))`: the cosine schedule's shape, one place for both.
fn half_cosine(peak: f64, angle: f64) -> f64 {
    peak * 0.5 * (1.0 + angle.cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::LrScaling;

    /// Golden values from this python reference:
    /// ```python
    /// def lr(base, B, step, spe, total, warm, cos=True):
    ///     peak = base*B/256; w = int(math.floor(warm*spe))
    ///     if step < w: return peak*step/w
    ///     if not cos: return peak
    ///     d = total - w; p = min(step - w, d)/d if d > 0 else 1.0
    ///     return peak*0.5*(1 + math.cos(math.pi*p))
    /// # lr(1.0, 512, s, 10, 100, 2.0) for s in 0,5,10,15,20,60,99,100:
    /// # 0.0 0.5 1.0 1.5 2.0 1.0 0.000770963759277099 0.0
    /// ```
    #[test]
    fn warmup_then_cosine_matches_reference() {
        let cfg = OptimizerConfig {
            lr: 1.0,
            lr_scaling: LrScaling::Linear,
            warmup_epochs: 2.0,
            cosine: true,
            ..Default::default()
        };
        let want = [
            (0, 0.0),
            (5, 0.5),
            (10, 1.0),
            (15, 1.5),
            (20, 2.0),
            (60, 1.0),
            (99, 0.000770963759277099),
            (100, 0.0),
        ];
        for (step, lr) in want {
            let got = lr_at(&cfg, 512, step, 10, 100);
            assert!((got - lr).abs() < 1e-12, "step {step}: {got} vs {lr}");
        }
    }

    #[test]
    fn constant_after_fractional_warmup_and_sqrt_scaling() {
        let cfg = OptimizerConfig {
            lr: 0.3,
            warmup_epochs: 0.5,
            cosine: false,
            ..Default::default()
        };
        assert_eq!(lr_at(&cfg, 256, 0, 4, 12), 0.0);
        assert!((lr_at(&cfg, 256, 1, 4, 12) - 0.15).abs() < 1e-12);
        assert!((lr_at(&cfg, 256, 7, 4, 12) - 0.3).abs() < 1e-12);
        let sq = OptimizerConfig {
            lr: 0.075,
            lr_scaling: LrScaling::Sqrt,
            warmup_epochs: 0.0,
            cosine: false,
            ..Default::default()
        };
        assert!((lr_at(&sq, 4096, 3, 10, 100) - 0.075 * 64.0).abs() < 1e-12);
    }
}
