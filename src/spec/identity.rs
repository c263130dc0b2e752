//! Run identity (docs/ARCHITECTURE.md#run-identity): a RunId is the sha256 of the canonical
//! resolved stage config (sorted keys, numbers as their typed values print), the dataset
//! fingerprint and a semantics version. Pretrain and each evaluation are separate stages
//! with their own ids; an evaluation's id includes its pretrain's id, so changing only
//! evaluation settings reuses the finished pretrain.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::run::RunConfig;
pub use crate::ml::config::percent;
use crate::ml::config::{EvalConfig, PretrainConfig};
pub use crate::vocab::StageKind;

/// Bump when a change to the code changes what a stored config means (training
/// semantics): every RunId changes, so old results are never mistaken for new ones.
///
/// 2: `one_branch` became the paper's Figure 5 protocol (the old one is `one_branch_raw`),
/// and the default initialisation, projection-head output BN and zero-initialised residual
/// BN scales changed what an unchanged config trains.
pub const SEMANTICS_VERSION: u32 = 2;

/// Fields that do not change a run's result: where the data lives (its content is the
/// fingerprint) and how often checkpoints are written (resume is exact).
const NON_SEMANTIC: &[&str] = &["checkpoint_every", "dataset.path"];

/// Content hash of a stage, hex-encoded (64 characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        crate::vocab::short_id(&self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node of the run graph: a pretrain, or an evaluation of one pretrain.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub id: RunId,
    pub kind: StageKind,
    /// The pretrain an evaluation reads (None for a pretrain).
    pub parent: Option<RunId>,
    /// The stage's resolved config as stored: a PretrainConfig or an EvalConfig.
    pub config: Value,
    /// Short human label: "pretrain" or "linear@h", "knn@z"...
    pub label: String,
}

/// The stages of a run: its pretrain first, then each evaluation.
pub fn stages(run: &RunConfig, dataset_fingerprint: &str) -> Vec<Stage> {
    let pre = pretrain_stage(&run.pretrain, dataset_fingerprint);
    let mut out = Vec::with_capacity(1 + run.evals.len());
    for e in &run.evals {
        out.push(eval_stage(&pre.id, e));
    }
    out.insert(0, pre);
    out
}

pub fn pretrain_stage(cfg: &PretrainConfig, dataset_fingerprint: &str) -> Stage {
    let config = serde_json::to_value(cfg).expect("config serialises");
    let mut semantic = config.clone();
    for path in NON_SEMANTIC {
        remove_path(&mut semantic, path);
    }
    let id = hash(&serde_json::json!({
        "semantics": SEMANTICS_VERSION,
        "stage": "pretrain",
        "dataset_fingerprint": dataset_fingerprint,
        "config": semantic,
    }));
    Stage {
        id,
        kind: StageKind::Pretrain,
        parent: None,
        config,
        label: "pretrain".into(),
    }
}

pub fn eval_stage(pretrain: &RunId, cfg: &EvalConfig) -> Stage {
    let config = serde_json::to_value(cfg).expect("config serialises");
    let id = hash(&serde_json::json!({
        "semantics": SEMANTICS_VERSION,
        "stage": "eval",
        "pretrain": pretrain.0,
        "config": config,
    }));
    Stage {
        id,
        kind: StageKind::Eval,
        parent: Some(pretrain.clone()),
        config,
        label: cfg.label(),
    }
}

fn hash(v: &Value) -> RunId {
    RunId(hex::encode(Sha256::digest(canonical_json(v).as_bytes())))
}

/// JSON with object keys sorted at every level and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).expect("json serialises")
}

fn remove_path(v: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (p.split('.').try_fold(&mut *v, |n, s| n.get_mut(s)), l),
        None => (Some(v), path),
    };
    if let Some(Value::Object(m)) = parent {
        m.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::run::RunConfig;

    fn run_from_yaml(yaml: &str) -> RunConfig {
        RunConfig::from_tree(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn key_order_and_number_formatting_do_not_change_the_id() {
        let a = run_from_yaml(
            "optimizer: {lr: 1, momentum: 0.9}\nbatch_size: 256\nloss: {temperature: 0.5}",
        );
        let b = run_from_yaml(
            "loss: {temperature: 5.0e-1}\nbatch_size: 256\noptimizer: {momentum: 0.90, lr: 1.0}",
        );
        assert_eq!(stages(&a, "fp"), stages(&b, "fp"));
    }

    #[test]
    fn any_semantic_change_gives_another_id_but_checkpoint_interval_and_path_do_not() {
        let base = run_from_yaml("{}");
        let id = |r: &RunConfig| stages(r, "fp")[0].id.clone();
        let edits: &[&str] = &[
            "batch_size: 128",
            "epochs: 10",
            "seed: 1",
            "optimizer: {lr: 0.5}",
            "loss: {temperature: 0.1}",
            "augment: {ops: [crop]}",
            "head: {out_dim: 64}",
            "encoder: {arch: convnet}",
            "dataset: {train_subset: 1000}",
            "init: kaiming_normal",
            "init: official",
            "head: {output_bn: false}",
            "encoder: {zero_init_residual: false}",
            "precision: tf32",
            "precision: bf16",
            "augment: {on: device}",
            "conv_impl: cudnn",
            "conv_impl: candle",
        ];
        for e in edits {
            assert_ne!(id(&run_from_yaml(e)), id(&base), "{e} must change the id");
        }
        assert_ne!(
            stages(&base, "other-data")[0].id,
            id(&base),
            "dataset fingerprint"
        );
        assert_eq!(id(&run_from_yaml("checkpoint_every: 5")), id(&base));
        // Written out at their defaults, the fields added later leave the id alone.
        assert_eq!(
            id(&run_from_yaml(
                "precision: f32\naugment: {on: host}\nconv_impl: auto"
            )),
            id(&base)
        );
        // An untrained encoder runs no step: neither field splits the control.
        assert_eq!(
            id(&run_from_yaml(
                "epochs: 0\nprecision: bf16\naugment: {on: device}\nconv_impl: candle"
            )),
            id(&run_from_yaml("epochs: 0"))
        );
        assert_eq!(id(&run_from_yaml("dataset: {path: /elsewhere}")), id(&base));
    }

    #[test]
    fn eval_ids_depend_on_eval_settings_only_through_their_own_stage() {
        let a = run_from_yaml("evals: [{kind: linear, epochs: 100}]");
        let b = run_from_yaml("evals: [{kind: linear, epochs: 50}]");
        let (sa, sb) = (stages(&a, "fp"), stages(&b, "fp"));
        assert_eq!(sa[0].id, sb[0].id, "pretrain reused");
        assert_ne!(sa[1].id, sb[1].id);
        assert_eq!(sa[1].parent.as_ref(), Some(&sa[0].id));
        assert_eq!(sa[1].label, "linear@h");
    }

    #[test]
    fn the_linear_protocol_is_part_of_the_eval_id_and_label() {
        let fast = run_from_yaml("evals: [{kind: linear}]");
        let paper = run_from_yaml("evals: [{kind: linear, protocol: augmented}]");
        let (sf, sp) = (stages(&fast, "fp"), stages(&paper, "fp"));
        assert_eq!(sf[0].id, sp[0].id, "same pretrain");
        assert_ne!(sf[1].id, sp[1].id, "protocol changes the eval id");
        assert_eq!(sf[1].label, "linear@h");
        assert_eq!(sp[1].label, "linear-aug@h");
        // The augmented protocol's defaults are the official CIFAR-10 recipe; writing them
        // out gives the same evaluation.
        let explicit = run_from_yaml(
            "evals: [{kind: linear, protocol: augmented, epochs: 100, lr: 0.1, \
             lr_scaling: linear, batch_size: 512, weight_decay: 0, nesterov: true, head_bn: false}]",
        );
        assert_eq!(stages(&explicit, "fp")[1].id, sp[1].id);
        // Each hyper-parameter still overrides the protocol's default.
        let bn = run_from_yaml("evals: [{kind: linear, protocol: augmented, head_bn: true}]");
        assert_ne!(stages(&bn, "fp")[1].id, sp[1].id);
    }

    #[test]
    fn fine_tuning_is_labelled_by_its_fraction_and_its_id_follows_its_fields() {
        let id = |evals: &str| {
            let s = stages(&run_from_yaml(&format!("evals: [{evals}]")), "fp");
            (s[1].id.clone(), s[1].label.clone(), s[1].config.clone())
        };
        let (one, label1, json1) = id("{kind: fine_tune, label_fraction: 0.01}");
        let (ten, label10, json10) = id("{kind: fine_tune, label_fraction: 0.1}");
        assert_eq!(
            (label1.as_str(), label10.as_str()),
            ("fine_tune-1%@h", "fine_tune-10%@h")
        );
        assert_ne!(one, ten);
        // B.5's epochs per fraction, the rest of its recipe at batch 100.
        assert_eq!(
            (json1["epochs"].as_u64(), json10["epochs"].as_u64()),
            (Some(60), Some(30))
        );
        assert_eq!(json1["label_fraction"], serde_json::json!(0.01));
        assert_eq!(json1["nesterov"], serde_json::json!(true));
        // Writing the defaults out is the same stage; each field changes it.
        assert_eq!(
            id(
                "{kind: fine_tune, label_fraction: 0.01, epochs: 60, batch_size: 100, lr: 0.05, \
                lr_scaling: linear, momentum: 0.9, nesterov: true, weight_decay: 0}"
            )
            .0,
            one
        );
        for edit in [
            "epochs: 10",
            "batch_size: 50",
            "lr: 0.1",
            "momentum: 0.8",
            "nesterov: false",
            "weight_decay: 0.0001",
            "test_subset: 1000",
        ] {
            let (other, ..) = id(&format!(
                "{{kind: fine_tune, label_fraction: 0.01, {edit}}}"
            ));
            assert_ne!(other, one, "{edit} must change the id");
        }
        // What fine-tuning ignores does not split it.
        assert_eq!(
            id("{kind: fine_tune, label_fraction: 0.01, protocol: augmented, k: 5}").0,
            one
        );
        // The new fields stay out of every other evaluation's JSON at their defaults, so
        // runs made before they existed keep their ids.
        let (_, _, linear) = id("{kind: linear, protocol: augmented}");
        assert!(linear.get("momentum").is_none() && linear.get("label_fraction").is_none());
        let (_, _, knn) = id("{kind: knn, label_fraction: 0.1, momentum: 0.5}");
        assert!(knn.get("momentum").is_none() && knn.get("label_fraction").is_none());
        let (_, _, moved) = id("{kind: linear, momentum: 0.5}");
        assert_eq!(moved["momentum"], serde_json::json!(0.5));
    }

    #[test]
    fn probe_fields_are_part_of_the_probe_id_and_absent_from_every_other() {
        let id = |y: &str| stages(&run_from_yaml(y), "fp")[1].id.clone();
        let label = |y: &str| stages(&run_from_yaml(y), "fp")[1].label.clone();
        let base = "evals: [{kind: probe, task: rotation}]";
        assert_eq!(label(base), "probe-rotation@h");
        assert_eq!(
            label("evals: [{kind: probe, task: color_vs_grayscale, on: z}]"),
            "probe-color_vs_grayscale@z"
        );
        for other in [
            "evals: [{kind: probe, task: sobel}]",
            "evals: [{kind: probe, task: rotation, on: z}]",
            "evals: [{kind: probe, task: rotation, hidden: 256}]",
            "evals: [{kind: probe, task: rotation, epochs: 10}]",
            "evals: [{kind: probe, task: rotation, lr: 0.5}]",
            "evals: [{kind: probe, task: rotation, test_subset: 100}]",
        ] {
            assert_ne!(id(other), id(base), "{other} must change the probe's id");
        }
        // The default width written out, and fields a probe ignores, change nothing.
        assert_eq!(
            id("evals: [{kind: probe, task: rotation, hidden: 512}]"),
            id(base)
        );
        assert_eq!(
            id("evals: [{kind: probe, task: rotation, k: 5, head_bn: true}]"),
            id(base)
        );
        // Other kinds never carry the probe's fields: the ids of before stay.
        let linear = stages(
            &run_from_yaml("evals: [{kind: linear, task: sobel, hidden: 8}]"),
            "fp",
        );
        assert_eq!(
            linear[1].id,
            stages(&run_from_yaml("evals: [{kind: linear}]"), "fp")[1].id
        );
        let json = canonical_json(&linear[1].config);
        assert!(!json.contains("task") && !json.contains("hidden"), "{json}");
    }

    #[test]
    fn extra_augmentations_change_the_pretrain_id_and_are_absent_when_empty() {
        let base = run_from_yaml("{}");
        let id = |r: &RunConfig| stages(r, "fp")[0].id.clone();
        let json = canonical_json(&stages(&base, "fp")[0].config);
        assert!(!json.contains("extra"), "{json}");
        assert_eq!(id(&run_from_yaml("augment: {extra: []}")), id(&base));
        let rot = run_from_yaml("augment: {extra: [{op: rotate, p: 0.75}]}");
        assert_ne!(id(&rot), id(&base));
        assert_ne!(
            id(&run_from_yaml("augment: {extra: [{op: rotate, p: 0.5}]}")),
            id(&rot)
        );
    }

    /// One evaluation stage of a committed study (`reports/*/runs.csv`): its pretrain's id,
    /// its config as stored and its stored id.
    #[derive(Deserialize)]
    struct StoredEval {
        study: String,
        label: String,
        pretrain: String,
        id: String,
        config: Value,
    }

    #[test]
    fn every_stored_evaluation_reads_back_to_the_same_config_bytes_label_and_id() {
        let stored: Vec<StoredEval> =
            serde_json::from_str(include_str!("fixtures/eval_ids.json")).unwrap();
        assert!(stored.len() >= 300, "{} stored evaluations", stored.len());
        for s in &stored {
            let at = format!("{} {} {}", s.study, s.label, s.id);
            let cfg: EvalConfig =
                serde_json::from_value(s.config.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
            let written = serde_json::to_value(&cfg).unwrap();
            assert_eq!(canonical_json(&written), canonical_json(&s.config), "{at}");
            let stage = eval_stage(&RunId(s.pretrain.clone()), &cfg);
            assert_eq!(stage.id.0, s.id, "{at}");
            assert_eq!(stage.label, s.label, "{at}");
        }
    }

    #[test]
    fn fields_a_kind_ignores_do_not_split_runs() {
        let a = run_from_yaml("head: {kind: none, out_dim: 64}");
        let b = run_from_yaml("head: {kind: none}");
        assert_eq!(stages(&a, "fp")[0].id, stages(&b, "fp")[0].id);
        let c = run_from_yaml("head: {kind: none, output_bn: false}");
        assert_eq!(stages(&c, "fp")[0].id, stages(&b, "fp")[0].id);
        // The ConvNet has no residual blocks to zero-initialise.
        let d = run_from_yaml("encoder: {arch: convnet, zero_init_residual: false}");
        let e = run_from_yaml("encoder: {arch: convnet}");
        assert_eq!(stages(&d, "fp")[0].id, stages(&e, "fp")[0].id);
    }
}
