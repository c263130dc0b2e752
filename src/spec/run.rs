//! The fully resolved run: one pretrain configuration and the evaluations that hang off
//! it. Canonicalisation clears fields that have no meaning for the chosen kind, so that
//! they cannot split one experiment into two RunIds; validation rejects values that cannot
//! train.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::ml::config::{
    AugProtocol, DatasetConfig, DatasetName, EvalConfig, EvalConfigSpec, FeatureSource, HeadConfig,
    HeadKind, LossKind, Method, OptimizerConfig, OptimizerKind, PretrainConfig,
    DEFAULT_FOLDER_IMAGE_SIZE,
};

/// One grid point, fully resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub pretrain: PretrainConfig,
    pub evals: Vec<EvalConfig>,
}

/// A field path (dotted, relative to the run) and what is wrong with it.
pub(crate) type FieldError = (String, String);

/// The evaluations a run gets when the spec lists none: linear and kNN on h.
pub fn default_evals() -> Vec<EvalConfig> {
    vec![EvalConfig::default(), EvalConfig::knn()]
}

impl RunConfig {
    /// Builds a run from a merged YAML tree (the run config's fields plus `evals`).
    pub(crate) fn from_tree(mut tree: Value) -> Result<Self, FieldError> {
        let evals = match tree.as_mapping_mut().and_then(|m| m.remove("evals")) {
            None | Some(Value::Null) => default_evals(),
            Some(v) => typed::<Vec<EvalConfigSpec>>(v)
                .map_err(|(p, m)| (join("evals", &p), m))?
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    e.resolve()
                        .map_err(|(field, m)| (format!("evals.{i}.{field}"), m))
                })
                .collect::<Result<_, _>>()?,
        };
        let pretrain = typed::<PretrainConfig>(tree)?;
        let mut run = RunConfig { pretrain, evals };
        run.canonicalize();
        run.validate()?;
        Ok(run)
    }

    /// Resets fields that the chosen kinds ignore to their defaults (an evaluation's
    /// config has no place for what its method ignores) and merges repeated evaluations.
    pub fn canonicalize(&mut self) {
        let p = &mut self.pretrain;
        if p.method == Method::Supervised {
            // No projection head and no contrastive loss: they cannot split its id.
            p.head = HeadConfig {
                kind: HeadKind::None,
                ..HeadConfig::default()
            };
            p.loss = crate::ml::config::LossConfig::default();
        }
        if p.head.kind == HeadKind::None {
            p.head.out_dim = None;
            p.head.hidden = None;
            p.head.layers = crate::ml::config::HeadConfig::default().layers;
            p.head.output_bn = crate::ml::config::HeadConfig::default().output_bn;
        }
        if p.encoder.arch == crate::ml::config::Arch::Convnet {
            // No residual blocks: the option changes nothing, so it does not fork the id.
            p.encoder.zero_init_residual =
                crate::ml::config::EncoderConfig::default().zero_init_residual;
        }
        if p.head.kind == HeadKind::Linear {
            p.head.hidden = None;
            p.head.layers = 1;
        }
        let defaults = crate::ml::config::LossConfig::default();
        match p.loss.kind {
            LossKind::NtXent => {
                p.loss.margin = defaults.margin;
                // NT-Xent weighs its negatives by the softmax, never by this option.
                p.loss.negative_weighting = defaults.negative_weighting;
            }
            LossKind::NtLogistic => p.loss.margin = defaults.margin,
            LossKind::Margin => p.loss.temperature = defaults.temperature,
        }
        if !p.loss.semi_hard {
            p.loss.semi_hard_pick = defaults.semi_hard_pick;
            p.loss.semi_hard_fallback = defaults.semi_hard_fallback;
        }
        if p.epochs == 0 {
            // An untrained encoder: no step runs, so neither the arithmetic of a step, the
            // implementation of its ops nor where its views are made can change a result.
            p.precision = crate::ml::config::Precision::F32;
            p.augment.on = crate::ml::config::AugmentOn::Host;
            p.conv_impl = crate::ml::config::ConvImpl::Auto;
        }
        canonical_optimizer(&mut p.optimizer);
        if p.dataset.name == DatasetName::ImageFolder && p.dataset.image_size.is_none() {
            // The resolution the folder is read at, spelled out in the id.
            p.dataset.image_size = Some(DEFAULT_FOLDER_IMAGE_SIZE);
        }
        // The same evaluation listed twice is one stage.
        let mut seen = Vec::new();
        self.evals.retain(|e| {
            let dup = seen.contains(e);
            if !dup {
                seen.push(e.clone());
            }
            !dup
        });
    }

    /// Rejects values that cannot train, naming the field.
    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        let p = &self.pretrain;
        let err = |path: &str, msg: String| Err((path.to_string(), msg));
        if p.batch_size < 2 {
            return err(
                "batch_size",
                format!(
                    "must be at least 2 (NT-Xent needs negatives), got {}",
                    p.batch_size
                ),
            );
        }
        // epochs: 0 is allowed: the random-initialisation baseline (evaluations of the
        // untrained encoder), the reference every representation is compared against.
        if p.checkpoint_every == 0 {
            return err(
                "checkpoint_every",
                "must be at least 1 (epochs between checkpoints)".into(),
            );
        }
        if let Some(n) = p.dataset.train_subset {
            if n < p.batch_size {
                return err(
                    "dataset.train_subset",
                    format!("{n} images is fewer than one batch of {}", p.batch_size),
                );
            }
        }
        let d = &p.dataset;
        if d.name == DatasetName::ImageFolder {
            if d.image_size.is_some_and(|s| s < 8) {
                return err(
                    "dataset.image_size",
                    format!(
                        "must be at least 8 pixels, got {}",
                        d.image_size.unwrap_or(0)
                    ),
                );
            }
            if !(d.test_fraction > 0.0 && d.test_fraction < 1.0) {
                return err(
                    "dataset.test_fraction",
                    format!(
                        "must be in (0, 1) (the share of each class held out when the folder \
                         has no train/ and test/), got {}",
                        d.test_fraction
                    ),
                );
            }
        } else {
            let folder_only = DatasetConfig::default();
            let cifar = "applies to image_folder only: CIFAR images are 32x32 with their own \
                         test split; remove it";
            if d.image_size.is_some() {
                return err("dataset.image_size", cifar.into());
            }
            if d.test_fraction != folder_only.test_fraction {
                return err("dataset.test_fraction", cifar.into());
            }
            if d.split_seed != folder_only.split_seed {
                return err("dataset.split_seed", cifar.into());
            }
        }
        if !matches!(p.encoder.width, 1..=16) {
            return err(
                "encoder.width",
                format!(
                    "must be 1..=16 (1, 2, 4 in the paper), got {}",
                    p.encoder.width
                ),
            );
        }
        match (p.head.kind, p.head.out_dim) {
            (HeadKind::None, _) => {}
            (_, None) => {
                return err(
                    "head.out_dim",
                    "required for linear and nonlinear heads".into(),
                )
            }
            (_, Some(0)) => return err("head.out_dim", "must be at least 1".into()),
            _ => {}
        }
        if p.head.kind == HeadKind::Nonlinear && p.head.layers < 2 {
            return err(
                "head.layers",
                "a nonlinear head has at least 2 layers (use kind: linear for 1)".into(),
            );
        }
        if p.head.hidden == Some(0) {
            return err("head.hidden", "must be at least 1".into());
        }
        positive("loss.temperature", p.loss.temperature)?;
        if !(p.loss.margin.is_finite() && p.loss.margin >= 0.0) {
            return err(
                "loss.margin",
                format!("must be >= 0, got {}", p.loss.margin),
            );
        }
        if p.loss.semi_hard && p.loss.kind == LossKind::NtXent {
            return err(
                "loss.semi_hard",
                "semi-hard mining applies to nt_logistic and margin (Table 4), not nt_xent".into(),
            );
        }
        if !(p.augment.color_strength.is_finite() && p.augment.color_strength >= 0.0) {
            return err(
                "augment.color_strength",
                format!("must be >= 0, got {}", p.augment.color_strength),
            );
        }
        if !(p.augment.crop_min_scale > 0.0 && p.augment.crop_min_scale <= 1.0) {
            return err(
                "augment.crop_min_scale",
                format!("must be in (0, 1], got {}", p.augment.crop_min_scale),
            );
        }
        if p.method == Method::Supervised && p.augment.protocol != AugProtocol::Symmetric {
            return err(
                "augment.protocol",
                "a supervised run sees one view per image; the one-branch protocols pair two \
                 views (remove protocol or use method: simclr)"
                    .into(),
            );
        }
        if let Some((i, e)) = p
            .augment
            .extra
            .iter()
            .enumerate()
            .find(|(_, e)| !(0.0..=1.0).contains(&e.p))
        {
            return err(
                &format!("augment.extra.{i}.p"),
                format!(
                    "the probability of {} must be in [0, 1], got {}",
                    e.op.name(),
                    e.p
                ),
            );
        }
        if !p.augment.extra.is_empty() && p.augment.on != crate::ml::config::AugmentOn::Host {
            return err(
                "augment.extra",
                "the extra transformations are applied by the host pipeline only; remove \
                 augment.on: device or the extras"
                    .into(),
            );
        }
        if matches!(
            p.augment.protocol,
            AugProtocol::OneBranch | AugProtocol::OneBranchRaw
        ) && p.augment.ops.is_empty()
        {
            return err(
                "augment.ops",
                "one_branch needs at least one op: the targeted transformation (Figure 5)".into(),
            );
        }
        let o = &p.optimizer;
        positive("optimizer.lr", o.lr)?;
        if !(0.0..1.0).contains(&o.momentum) {
            return err(
                "optimizer.momentum",
                format!("must be in [0, 1), got {}", o.momentum),
            );
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return err(
                "optimizer.weight_decay",
                format!("must be >= 0, got {}", o.weight_decay),
            );
        }
        if !(o.warmup_epochs.is_finite() && o.warmup_epochs >= 0.0) {
            return err(
                "optimizer.warmup_epochs",
                format!("must be >= 0, got {}", o.warmup_epochs),
            );
        }
        positive("optimizer.trust_coefficient", o.trust_coefficient)?;
        if self.evals.is_empty() {
            return err(
                "evals",
                "list at least one evaluation (kind: linear, knn, fine_tune or probe)".into(),
            );
        }
        for (i, e) in self.evals.iter().enumerate() {
            validate_eval(e, p.method).map_err(|(f, m)| (format!("evals.{i}.{f}"), m))?;
        }
        Ok(())
    }
}

/// Rejects an evaluation that cannot run on this pretraining, naming its field: what only
/// the pair can tell (z of a supervised run), then what its method's own type refuses
/// ([`EvalConfig::validate`]).
fn validate_eval(e: &EvalConfig, method: Method) -> Result<(), FieldError> {
    if e.on == FeatureSource::Z && method == Method::Supervised {
        return Err((
            "on".into(),
            "a supervised run has no projection head, so no z; evaluate on h".into(),
        ));
    }
    // `on: z` without a head (z = h) is allowed: the same number as `on: h`.
    e.validate()
        .map_err(|(field, msg)| (field.to_string(), msg))
}

fn canonical_optimizer(o: &mut OptimizerConfig) {
    let d = OptimizerConfig::default();
    if o.kind != OptimizerKind::Lars {
        o.trust_coefficient = d.trust_coefficient;
    }
    if o.kind == OptimizerKind::Adamw {
        o.momentum = d.momentum;
        o.nesterov = d.nesterov;
    } else {
        o.beta1 = d.beta1;
        o.beta2 = d.beta2;
        o.eps = d.eps;
    }
}

fn positive(path: &'static str, v: f64) -> Result<(), FieldError> {
    crate::ml::config::require_positive(path, v).map_err(|(field, msg)| (field.to_string(), msg))
}

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        prefix.to_string()
    } else {
        format!("{prefix}.{path}")
    }
}

/// Deserialises `v` into `T`, returning the dotted path of the offending field.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e
            .path()
            .to_string()
            .replace('[', ".")
            .replace(']', "")
            .trim_start_matches('.')
            .to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}
