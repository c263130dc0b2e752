//! Spec tests: grid expansion of the committed specs (snapshot), generators, profiles,
//! overrides, and one test per class of bad input.

use std::path::Path;

use super::*;
use crate::test_support::snapshot;

fn plan(text: &str, opts: &LoadOptions) -> Result<Plan, SpecError> {
    load_str(text, Path::new("test.yaml"), opts)
}

fn committed(name: &str, profile: Option<&str>) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sweeps")
        .join(name);
    let opts = LoadOptions {
        profile: profile.map(str::to_string),
        overrides: vec![],
    };
    load(&path, &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> SpecError {
    plan(text, &LoadOptions::default()).expect_err("spec must be rejected")
}

/// One line per run: its cell coordinates, compact.
fn render_cells(p: &Plan) -> String {
    let mut s = format!("{} runs, axes {:?}\n", p.runs.len(), p.axes);
    for r in &p.runs {
        let cell: Vec<String> = r.cell.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&cell.join(" "));
        s.push('\n');
    }
    s
}

/// Where this module's snapshots are committed.
const SNAPSHOTS: &str = "src/spec/snapshots";

#[test]
fn augment_pairs_expands_to_the_49_cells_of_figure_5() {
    for profile in [None, Some("smoke")] {
        let p = committed("augment_pairs.yaml", profile);
        assert_eq!(p.grid().len(), 49);
        let ops: Vec<Vec<&str>> = p
            .grid()
            .iter()
            .map(|r| {
                r.config
                    .pretrain
                    .augment
                    .ops
                    .iter()
                    .map(|o| o.name())
                    .collect()
            })
            .collect();
        assert_eq!(ops[0], ["crop"], "diagonal first cell is the single op");
        assert_eq!(
            ops[1],
            ["crop", "cutout"],
            "row = first op, column = second"
        );
        assert_eq!(ops[8], ["cutout"]);
        assert_eq!(ops.iter().filter(|o| o.len() == 1).count(), 7);
    }
    snapshot(
        SNAPSHOTS,
        "augment_pairs_smoke.txt",
        &render_cells(&committed("augment_pairs.yaml", Some("smoke"))),
    );
}

#[test]
fn head_dims_expands_to_15_runs_with_none_having_no_dimension() {
    let p = committed("head_dims.yaml", None);
    assert_eq!(p.grid().len(), 15);
    let none: Vec<_> = p
        .grid()
        .iter()
        .filter(|r| r.config.pretrain.head.kind == crate::ml::config::HeadKind::None)
        .collect();
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].config.pretrain.head.out_dim, None);
    snapshot(SNAPSHOTS, "head_dims.txt", &render_cells(&p));
}

#[test]
fn the_other_paper_specs_expand_to_their_tables() {
    assert_eq!(committed("losses.yaml", None).grid().len(), 100);
    assert_eq!(committed("batch_epochs.yaml", None).grid().len(), 20);
    assert_eq!(
        committed("batch_epochs.yaml", Some("smoke")).grid().len(),
        6
    );
    let t = committed("temperature.yaml", None);
    assert_eq!(t.grid().len(), 6);
    let rows: Vec<(bool, f64)> = t
        .grid()
        .iter()
        .map(|r| {
            (
                r.config.pretrain.loss.l2_norm,
                r.config.pretrain.loss.temperature,
            )
        })
        .collect();
    assert_eq!(
        rows[4],
        (false, 10.0),
        "zip pairs the two lists element by element"
    );
}

#[test]
fn color_strength_expands_to_table_1_for_both_methods_with_one_shared_control() {
    use crate::ml::config::{AugOp, HeadKind, Method};
    for profile in [None, Some("smoke")] {
        let p = committed("color_strength.yaml", profile);
        let cols: Vec<(Method, f64, Vec<AugOp>)> = p
            .grid()
            .iter()
            .map(|r| {
                let c = &r.config.pretrain;
                (c.method, c.augment.color_strength, c.augment.ops.clone())
            })
            .collect();
        let (cc, ccb) = (
            vec![AugOp::Crop, AugOp::Color],
            vec![AugOp::Crop, AugOp::Color, AugOp::Blur],
        );
        let mut want = Vec::new();
        for m in [Method::Simclr, Method::Supervised] {
            for s in [0.125, 0.25, 0.5, 1.0] {
                want.push((m, s, cc.clone()));
            }
            want.push((m, 1.0, ccb.clone()));
        }
        assert_eq!(
            cols, want,
            "Table 1's five columns, SimCLR row then supervised"
        );
        for r in p.grid() {
            let c = &r.config.pretrain;
            if c.method == Method::Supervised {
                // No projection head, no contrastive loss: they cannot split its id.
                assert_eq!(c.head.kind, HeadKind::None);
                assert_eq!(c.loss, crate::ml::config::LossConfig::default());
            } else {
                assert_eq!(c.head.kind, HeadKind::Nonlinear);
            }
        }
        // Method and augmentation are training-only: one random-weights control per seed.
        let controls = p.control_runs();
        assert_eq!(controls.len(), 1);
        assert_eq!(controls[0].config.pretrain.method, Method::Simclr);
        assert_eq!(controls[0].config.pretrain.epochs, 0);
    }
    snapshot(
        SNAPSHOTS,
        "color_strength_smoke.txt",
        &render_cells(&committed("color_strength.yaml", Some("smoke"))),
    );
}

#[test]
fn few_labels_fine_tunes_each_seed_and_its_control_on_one_and_ten_percent() {
    use crate::ml::config::EvalMethod;
    for (profile, epochs) in [(None, [60, 30]), (Some("smoke"), [30, 6])] {
        let p = committed("few_labels.yaml", profile);
        assert_eq!(p.grid().len(), 3, "one SimCLR pretrain per seed");
        // The control is "from scratch": the untrained encoder under the same evaluations.
        let controls = p.control_runs();
        assert_eq!(controls.len(), 3);
        for (run, control) in p.grid().iter().zip(controls) {
            assert_eq!(control.config.pretrain.epochs, 0);
            assert_eq!(control.config.pretrain.seed, run.config.pretrain.seed);
            assert_eq!(control.config.evals, run.config.evals);
            let fine: Vec<(f64, usize)> = run
                .config
                .evals
                .iter()
                .filter_map(|e| match &e.method {
                    EvalMethod::FineTune(f) => Some((f.label_fraction, f.training.epochs)),
                    _ => None,
                })
                .collect();
            assert_eq!(fine, [(0.01, epochs[0]), (0.1, epochs[1])], "{profile:?}");
            let labels: Vec<String> = crate::spec::stages(&run.config, "fp")
                .iter()
                .map(|s| s.label.clone())
                .collect();
            assert!(labels.contains(&"fine_tune-1%@h".to_string()), "{labels:?}");
        }
    }
}

#[test]
fn fine_tuning_refuses_a_fraction_outside_0_1_a_train_subset_and_z() {
    for (eval, path, says) in [
        (
            "{kind: fine_tune, label_fraction: 0}",
            "label_fraction",
            "(0, 1]",
        ),
        (
            "{kind: fine_tune, label_fraction: 1.5}",
            "label_fraction",
            "(0, 1]",
        ),
        (
            "{kind: fine_tune, label_fraction: 0.1, train_subset: 500}",
            "train_subset",
            "label_fraction",
        ),
        (
            "{kind: fine_tune, label_fraction: 0.1, on: z}",
            "on",
            "projection head is discarded",
        ),
        (
            "{kind: fine_tune, label_fraction: 0.1, momentum: 1}",
            "momentum",
            "[0, 1)",
        ),
    ] {
        let e = err(&format!("name: t\nbase:\n  evals: [{eval}]\n"));
        assert_eq!(e.path, format!("base.evals.0.{path}"), "{e}");
        assert!(e.message.contains(says), "{e}");
    }
}

#[test]
fn model_size_expands_to_figure_7s_depth_by_width_grid_with_a_control_per_encoder() {
    use crate::ml::config::{Arch, Method, Stem};
    for (profile, widths, stem) in [
        (None, vec![1, 2, 4], Stem::Cifar),
        (Some("smoke"), vec![1, 2], Stem::Imagenet),
    ] {
        let p = committed("model_size.yaml", profile);
        let grid: Vec<(Arch, usize, Method)> = p
            .grid()
            .iter()
            .map(|r| {
                let c = &r.config.pretrain;
                assert_eq!(c.encoder.stem, stem, "{profile:?}");
                (c.encoder.arch, c.encoder.width, c.method)
            })
            .collect();
        let mut want = Vec::new();
        for a in [Arch::Resnet18, Arch::Resnet34, Arch::Resnet50] {
            for &w in &widths {
                for m in [Method::Simclr, Method::Supervised] {
                    want.push((a, w, m));
                }
            }
        }
        assert_eq!(
            grid, want,
            "{profile:?}: depth x width x method, in file order"
        );
        // The control keeps the encoder: one untrained encoder per depth and width, each
        // standing beside both methods' cells.
        let controls: Vec<(Arch, usize)> = p
            .control_runs()
            .iter()
            .map(|r| {
                let c = &r.config.pretrain;
                assert_eq!((c.epochs, c.method), (0, Method::Simclr));
                (c.encoder.arch, c.encoder.width)
            })
            .collect();
        assert_eq!(controls.len(), 3 * widths.len(), "{profile:?}");
        assert_eq!(controls[0], (Arch::Resnet18, 1));
        let labels: Vec<String> = p.runs[0]
            .config
            .evals
            .iter()
            .map(crate::ml::config::EvalConfig::label)
            .collect();
        let want = match profile {
            None => ["linear-aug@h", "knn@h"],
            Some(_) => ["linear@h", "knn@h"],
        };
        assert_eq!(labels, want);
    }
    snapshot(
        SNAPSHOTS,
        "model_size_smoke.txt",
        &render_cells(&committed("model_size.yaml", Some("smoke"))),
    );
}

#[test]
fn what_to_predict_pretrains_with_and_without_the_extras_and_probes_each_task_on_h_and_z() {
    use crate::ml::config::{AugOp, EvalMethod, FeatureSource, ProbeTask};
    for profile in [None, Some("smoke"), Some("study")] {
        let p = committed("what_to_predict.yaml", profile);
        let mut extras: Vec<Vec<AugOp>> = Vec::new();
        for r in p.grid() {
            extras.push(
                r.config
                    .pretrain
                    .augment
                    .extra
                    .iter()
                    .map(|e| e.op)
                    .collect(),
            );
        }
        let seeds = p.grid().len() / 2;
        let mut want = Vec::new();
        for _ in 0..seeds {
            want.push(vec![]);
            want.push(vec![AugOp::Rotate, AugOp::Noise, AugOp::Sobel]);
        }
        assert_eq!(extras, want, "{profile:?}");
        for r in p.grid() {
            let probes: Vec<(ProbeTask, FeatureSource)> = r
                .config
                .evals
                .iter()
                .filter_map(|e| match &e.method {
                    EvalMethod::Probe(c) => Some((c.task, e.on)),
                    _ => None,
                })
                .collect();
            let want: Vec<_> = ProbeTask::ALL
                .iter()
                .flat_map(|&t| [(t, FeatureSource::H), (t, FeatureSource::Z)])
                .collect();
            assert_eq!(probes, want, "{profile:?}");
            assert!(r.config.evals.iter().any(|e| matches!(
                e.method,
                EvalMethod::LinearFeatures(_) | EvalMethod::LinearAugmented(_)
            )));
        }
        // The extras are training-only: the controls (h, and the head's for z) have none.
        for c in p.control_runs() {
            assert!(c.config.pretrain.augment.extra.is_empty());
        }
    }
    snapshot(
        SNAPSHOTS,
        "what_to_predict_smoke.txt",
        &render_cells(&committed("what_to_predict.yaml", Some("smoke"))),
    );
}

#[test]
fn every_committed_spec_plans_under_every_profile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps");
    let mut specs = 0;
    let mut stages = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    entries.sort_by_key(|e| e.as_ref().map(|e| e.path()).ok());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let raw = parse_raw(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut profiles: Vec<Option<String>> = vec![None];
        for k in raw.profiles.unwrap_or_default().keys() {
            profiles.push(Some(k.as_str().expect("profile names are strings").into()));
        }
        for profile in profiles {
            let p = committed(&name, profile.as_deref());
            assert!(!p.grid().is_empty(), "{name} {profile:?}: an empty grid");
            stages.push(format!("{name} {}\n", profile.as_deref().unwrap_or("-")));
            stages.push(render_eval_stages(&p));
        }
        specs += 1;
    }
    assert!(specs >= 8, "only {specs} specs found in {}", dir.display());
    // Each spec and profile resolves to the same evaluation stages: labels, configs, ids.
    snapshot(SNAPSHOTS, "eval_stages.txt", &stages.concat());
}

/// The distinct evaluation stages of a plan, sorted: label and id (under a fixed dataset
/// fingerprint, so it hashes the pretrain's config and the evaluation's canonical config).
fn render_eval_stages(p: &Plan) -> String {
    let mut lines: Vec<String> = p
        .runs
        .iter()
        .flat_map(|r| identity::stages(&r.config, "fp"))
        .filter(|s| s.kind == StageKind::Eval)
        .map(|s| format!("  {} {}\n", s.label, s.id.short()))
        .collect();
    lines.sort();
    lines.dedup();
    lines.concat()
}

#[test]
fn a_probe_without_a_task_or_with_a_bad_extra_is_refused_by_field() {
    let t = err("name: t
base:
  evals: [{kind: probe, on: h}]
");
    assert_eq!(t.path, "base.evals.0.task", "{t}");
    assert!(t.message.contains("rotation"), "{t}");
    let p = err("name: t
base:
  evals: [{kind: probe, task: sobel, protocol: augmented}]
");
    assert_eq!(p.path, "base.evals.0.protocol", "{p}");
    let x = err("name: t
base:
  augment: {extra: [{op: noise, p: 2}]}
");
    assert_eq!(x.path, "base.augment.extra.0.p", "{x}");
}

#[test]
fn a_supervised_run_refuses_what_needs_a_second_view_or_a_head() {
    let z = err("name: t
base:
  method: supervised
  evals: [{kind: linear, on: z}]
");
    assert_eq!(z.path, "base.evals.0.on", "{z}");
    assert!(z.message.contains("no projection head"), "{z}");
    let proto = err("name: t
base:
  method: supervised
  augment: {protocol: one_branch}
");
    assert_eq!(proto.path, "base.augment.protocol", "{proto}");
    let m = err("name: t
base:
  method: supervize
");
    assert!(
        m.hint.as_deref().unwrap_or("").contains("`supervised`"),
        "{m}"
    );
    // A head or loss written for a supervised run changes nothing, so not its id either.
    let a = plan(
        "name: t
base:
  method: supervised
  head: {out_dim: 64}
  loss: {temperature: 0.1}
",
        &LoadOptions::default(),
    )
    .unwrap();
    let b = plan(
        "name: t
base:
  method: supervised
",
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(a.runs[0].config, b.runs[0].config);
}

#[test]
fn losses_tunes_each_loss_over_its_own_axes_as_appendix_b10_lists_them() {
    use crate::ml::config::{LossKind, Negatives};
    let p = committed("losses.yaml", None);
    let lrs = [0.01, 0.1, 0.3, 0.5, 1.0];
    // (kind, semi-hard) -> the (lr, temperature or margin) pairs it is trained with.
    type Tried = Vec<(f64, f64)>;
    let mut grid: Vec<((LossKind, bool), Tried)> = Vec::new();
    for r in p.grid() {
        let c = &r.config.pretrain;
        assert_eq!(
            c.loss.negatives,
            Negatives::OneView,
            "B.10: one view's negatives"
        );
        let tuned = match c.loss.kind {
            LossKind::Margin => c.loss.margin,
            _ => c.loss.temperature,
        };
        let key = (c.loss.kind, c.loss.semi_hard);
        match grid.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push((c.optimizer.lr, tuned)),
            None => grid.push((key, vec![(c.optimizer.lr, tuned)])),
        }
    }
    let families: Vec<(LossKind, bool)> = grid.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        families,
        [
            (LossKind::Margin, false),
            (LossKind::Margin, true),
            (LossKind::NtLogistic, false),
            (LossKind::NtLogistic, true),
            (LossKind::NtXent, false),
        ]
    );
    for ((kind, _), cells) in &grid {
        let values: &[f64] = match kind {
            LossKind::Margin => &[0.0, 0.4, 0.8, 1.6],
            _ => &[0.1, 0.2, 0.5, 1.0],
        };
        let want: Vec<(f64, f64)> = values
            .iter()
            .flat_map(|&v| lrs.iter().map(move |&lr| (lr, v)))
            .collect();
        assert_eq!(cells, &want, "{kind:?}: every value x every learning rate");
    }
    let smoke = committed("losses.yaml", Some("smoke"));
    assert_eq!(
        smoke.grid().len(),
        40,
        "the 20 loss settings x 2 learning rates"
    );
}

#[test]
fn cases_takes_each_cases_product_one_case_after_the_other() {
    let text = "name: t\ngrid:\n  loss:\n    cases:\n      - {kind: margin, margin: [0.4, 0.8], semi_hard: [false, true]}\n      - {kind: nt_xent}\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    let got: Vec<String> = p.grid().iter().map(|r| r.cell[0].1.to_string()).collect();
    assert_eq!(
        got,
        [
            r#"{"kind":"margin","margin":0.4,"semi_hard":false}"#,
            r#"{"kind":"margin","margin":0.4,"semi_hard":true}"#,
            r#"{"kind":"margin","margin":0.8,"semi_hard":false}"#,
            r#"{"kind":"margin","margin":0.8,"semi_hard":true}"#,
            r#"{"kind":"nt_xent"}"#,
        ]
    );
    assert_eq!(
        p.grid()[4].config.pretrain.loss.kind,
        crate::ml::config::LossKind::NtXent
    );
    for (bad, field, says) in [
        ("    cases: []\n", "grid.loss.cases", "has no cases"),
        (
            "    cases: [margin]\n",
            "grid.loss.cases.0",
            "a case is a mapping",
        ),
        (
            "    cases: [{margin: []}]\n",
            "grid.loss.cases.0.margin",
            "has no values",
        ),
        (
            "    cases: {kind: margin}\n",
            "grid.loss.cases",
            "expected a list",
        ),
    ] {
        let e = err(&format!("name: t\ngrid:\n  loss:\n{bad}"));
        assert_eq!(e.path, field, "{bad}");
        assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
}

#[test]
fn loss_options_that_do_not_apply_do_not_split_a_run() {
    // NT-Xent has no negative weighting; without semi-hard mining its options mean
    // nothing: such runs are one run (one id), not several.
    let text = "name: t\ngrid:\n  loss:\n    - {kind: nt_xent, negative_weighting: sum}\n    - {kind: nt_xent}\n    - {kind: margin, semi_hard_pick: band}\n    - {kind: margin}\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    assert_eq!(p.grid().len(), 2);
    assert_eq!(p.merged_duplicates, 2);
}

#[test]
fn the_smoke_profile_shrinks_the_model_and_keeps_the_grid() {
    let p = committed("losses.yaml", Some("smoke"));
    let r = &p.grid()[0].config.pretrain;
    assert_eq!(r.encoder.arch, crate::ml::config::Arch::Convnet);
    assert_eq!(r.dataset.train_subset, Some(2000));
    assert_eq!(p.grid()[0].config.evals.len(), 1);
}

/// The five paper specs' GPU profiles: ResNet-18 (cifar stem) over three seeds (`gpu`)
/// or one (`gpu_smoke`), in float32 with host augmentation (the measured path), and
/// `gpu_smoke` a fraction of `gpu`'s pretraining (pairs summed over the grid).
#[test]
fn every_paper_spec_has_gpu_profiles_on_resnet18() {
    use crate::ml::config::{Arch, AugmentOn, Precision, Stem};
    let pairs = |p: &Plan| -> usize {
        p.grid()
            .iter()
            .map(|r| {
                r.config.pretrain.dataset.train_subset.unwrap_or(50_000) * r.config.pretrain.epochs
            })
            .sum()
    };
    for spec in [
        "augment_pairs.yaml",
        "head_dims.yaml",
        "losses.yaml",
        "temperature.yaml",
        "batch_epochs.yaml",
    ] {
        let (gpu, smoke) = (
            committed(spec, Some("gpu")),
            committed(spec, Some("gpu_smoke")),
        );
        for (p, seeds) in [(&gpu, vec![0, 1, 2]), (&smoke, vec![0])] {
            let mut got: Vec<u64> = p.grid().iter().map(|r| r.config.pretrain.seed).collect();
            got.sort();
            got.dedup();
            assert_eq!(got, seeds, "{spec}");
            for r in p.grid() {
                let c = &r.config.pretrain;
                assert_eq!(
                    (c.encoder.arch, c.encoder.stem),
                    (Arch::Resnet18, Stem::Cifar),
                    "{spec}"
                );
                assert_eq!(
                    (c.precision, c.augment.on),
                    (Precision::F32, AugmentOn::Host),
                    "{spec}"
                );
            }
        }
        assert!(
            pairs(&smoke) * 10 <= pairs(&gpu),
            "{spec}: smoke {} gpu {}",
            pairs(&smoke),
            pairs(&gpu)
        );
    }
}

#[test]
fn base_lists_only_what_differs_and_defaults_fill_the_rest() {
    let p = plan("name: t\nbase: {batch_size: 64}\n", &LoadOptions::default()).unwrap();
    let r = &p.grid()[0].config;
    assert_eq!(r.pretrain.batch_size, 64);
    assert_eq!(r.pretrain.loss.temperature, 0.5);
    assert_eq!(r.evals, default_evals());
}

#[test]
fn set_overrides_any_field_and_fixes_an_axis() {
    let text = "name: t\ngrid:\n  batch_size: [64, 128]\n  loss.temperature: [0.1, 0.5]\n";
    let opts = LoadOptions {
        profile: None,
        overrides: vec![
            "batch_size=32".into(),
            "optimizer.lr=0.25".into(),
            "seeds=[1,2]".into(),
        ],
    };
    let p = plan(text, &opts).unwrap();
    assert_eq!(p.grid().len(), 4, "2 temperatures x 2 seeds");
    assert!(p
        .grid()
        .iter()
        .all(|r| r.config.pretrain.batch_size == 32 && r.config.pretrain.optimizer.lr == 0.25));
}

#[test]
fn exclude_drops_matching_points_and_seeds_repeat_the_grid() {
    let text = "name: t\ngrid:\n  batch_size: [64, 128]\n  epochs: [1, 2]\nexclude:\n  - {batch_size: 128, epochs: 2}\nseeds: [0, 1]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    assert_eq!(p.grid().len(), 6);
    assert_eq!(p.excluded, 2);
    assert_eq!(p.grid()[0].config.pretrain.seed, 0);
    assert_eq!(p.grid()[5].config.pretrain.seed, 1);
}

/// The controls of a plan: (cell without the seed, seed, evaluation count).
fn control_cells(p: &Plan) -> Vec<(Vec<String>, u64, usize)> {
    p.control_runs()
        .iter()
        .map(|r| {
            let cell = r
                .cell
                .iter()
                .filter(|(k, _)| k != "seed")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (cell, r.config.pretrain.seed, r.config.evals.len())
        })
        .collect()
}

#[test]
fn every_sweep_gets_one_untrained_control_per_seed_that_training_fields_do_not_split() {
    // Loss, batch size and epochs only matter to training: one control per seed.
    let text = "name: t\ndataset: {train_subset: 256}\nbase: {init: kaiming_normal}\ngrid:\n  batch_size: [64, 128]\n  loss.temperature: [0.1, 0.5]\nseeds: [0, 1]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    assert_eq!(p.grid().len(), 8);
    let controls = control_cells(&p);
    let marked = vec![r#"control="random weights""#.to_string()];
    assert_eq!(controls, vec![(marked.clone(), 0, 2), (marked, 1, 2)]);
    for c in p.control_runs() {
        let c = &c.config;
        assert_eq!(c.pretrain.epochs, 0, "the control trains nothing");
        assert_eq!(
            c.pretrain.batch_size, 256,
            "the default, capped by the subset"
        );
        assert_eq!(c.evals, p.grid()[0].config.evals, "the same evaluations");
        assert_eq!(c.pretrain.dataset, p.grid()[0].config.pretrain.dataset);
        assert_eq!(c.pretrain.encoder, p.grid()[0].config.pretrain.encoder);
        assert_eq!(
            c.pretrain.init,
            p.grid()[0].config.pretrain.init,
            "init draws the weights"
        );
    }
}

#[test]
fn the_encoder_and_the_head_of_z_evaluations_do_split_controls() {
    // The width changes the untrained encoder: one control per width, named by it. The
    // head changes only z: h gets one control per width, z one per width and head.
    let text = "name: t\nbase:\n  evals: [{kind: linear, on: h}, {kind: linear, on: z}]\ngrid:\n  encoder.width: [8, 16]\n  head.out_dim: [32, 64]\n  epochs: [1, 2]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    let got: Vec<(Vec<String>, usize)> = control_cells(&p)
        .into_iter()
        .map(|(cell, _, n)| (cell[1..].to_vec(), n))
        .collect();
    let cell = |w: u64, d: Option<u64>| {
        let mut c = vec![format!("encoder.width={w}")];
        c.extend(d.map(|d| format!("head.out_dim={d}")));
        c
    };
    assert_eq!(
        got,
        vec![
            (cell(8, None), 1),
            (cell(8, Some(32)), 1),
            (cell(8, Some(64)), 1),
            (cell(16, None), 1),
            (cell(16, Some(32)), 1),
            (cell(16, Some(64)), 1),
        ]
    );
}

#[test]
fn a_head_grid_through_the_default_head_gets_one_control_stage_per_encoder_and_head() {
    // Figure 8's grid crosses the default head (nonlinear, 128): its z control and the h
    // control (which keeps the default head) are one untrained pretrain, so one stage
    // carries both evaluations. Two stages with one id made registration fail.
    let text = "name: t\nbase:\n  evals: [{kind: linear, on: h}, {kind: linear, on: z}]\ngrid:\n  head:\n    head_dims:\n      kinds: [none, linear, nonlinear]\n      out_dims: [32, 128]\nseeds: [0, 1]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    let controls = p.control_runs();
    let ids: std::collections::BTreeSet<String> = controls
        .iter()
        .map(|c| {
            super::identity::pretrain_stage(&c.config.pretrain, "fp")
                .id
                .0
                .clone()
        })
        .collect();
    assert_eq!(ids.len(), controls.len(), "one stage per control pretrain");
    // Per seed: none, linear/32, linear/128, nonlinear/32, and the default head, which
    // serves nonlinear/128's z and every cell's h.
    assert_eq!(controls.len(), 2 * 5);
    let default_head = controls
        .iter()
        .filter(|c| c.config.pretrain.head == crate::ml::config::HeadConfig::default())
        .collect::<Vec<_>>();
    assert_eq!(default_head.len(), 2);
    assert!(
        default_head.iter().all(|c| c.config.evals.len() == 2),
        "h and z"
    );
}

#[test]
fn control_false_leaves_the_grid_alone() {
    let text = "name: t\ncontrol: false\ngrid:\n  epochs: [1, 2]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    assert_eq!((p.runs.len(), p.controls), (2, 0));
    // A grid that already holds the untrained run needs no second one.
    let text = "name: t\nbase: {batch_size: 512}\ngrid:\n  epochs: [0, 2]\n";
    let p = plan(text, &LoadOptions::default()).unwrap();
    assert_eq!((p.runs.len(), p.controls), (2, 0));
}

#[test]
fn set_control_overrides_the_spec_and_the_profile_and_rejects_anything_but_a_bool() {
    let set = |o: &[&str]| LoadOptions {
        profile: None,
        overrides: o.iter().map(|s| s.to_string()).collect(),
    };
    let on = "name: t\ngrid:\n  epochs: [1, 2]\n";
    assert_eq!(plan(on, &set(&[])).unwrap().controls, 1);
    let p = plan(on, &set(&["control=false"])).unwrap();
    assert_eq!((p.runs.len(), p.controls), (2, 0));
    // It wins over the spec's `control: false` and over a profile's.
    let off =
        "name: t\ncontrol: false\ngrid:\n  epochs: [1, 2]\nprofiles:\n  p: {control: false}\n";
    assert_eq!(plan(off, &set(&["control=true"])).unwrap().controls, 1);
    let opts = LoadOptions {
        profile: Some("p".into()),
        ..set(&["control=true"])
    };
    assert_eq!(plan(off, &opts).unwrap().controls, 1);
    // A profile's `control` wins over the spec's.
    let profiled = "name: t\ngrid:\n  epochs: [1, 2]\nprofiles:\n  p: {control: false}\n";
    let opts = LoadOptions {
        profile: Some("p".into()),
        overrides: vec![],
    };
    assert_eq!(plan(profiled, &opts).unwrap().controls, 0);
    for bad in ["control=no_thanks", "control=0", "control=[false]"] {
        let e = plan(on, &set(&[bad])).unwrap_err();
        assert_eq!(e.path, format!("--set {bad}"));
        assert!(e.message.contains("true or false"), "{e}");
        assert!(e.to_string().contains("--set control=false"), "{e}");
    }
}

#[test]
fn lint_warns_on_known_pitfalls() {
    let p = plan(
        "name: t\nbase:\n  encoder: {stem: imagenet}\n  augment: {ops: [crop, blur]}\n  loss: {l2_norm: false, temperature: 0.1}\ngrid:\n  batch_size: [64, 128]\n  optimizer.lr_scaling: [none]\n",
        &LoadOptions::default(),
    )
    .unwrap();
    let all = p.warnings.join("\n");
    for needle in ["imagenet stem", "blur", "without l2", "does not scale"] {
        assert!(
            all.contains(needle),
            "missing warning about {needle}: {all}"
        );
    }
    let flips = |text: &str| {
        plan(text, &LoadOptions::default())
            .unwrap()
            .warnings
            .join("\n")
            .contains("two independent coin flips")
    };
    assert!(flips("name: t\nbase:\n  augment: {ops: [crop, flip]}\n"));
    assert!(!flips(
        "name: t\nbase:\n  augment: {ops: [crop, flip], crop_flip: false}\n"
    ));
}

// ---- bad input: one test per class; each names the file, the place and the field ----

#[test]
fn malformed_yaml_names_line_and_column() {
    let e = err("name: t\nbase:\n  batch_size: [64\n");
    assert_eq!(e.file, Path::new("test.yaml"));
    assert!(e.location.is_some(), "{e}");
    assert!(e.to_string().starts_with("test.yaml:"), "{e}");
}

#[test]
fn names_must_fit_a_path_component() {
    let longest = "n".repeat(MAX_NAME_LEN);
    assert_eq!(
        plan(&format!("name: {longest}\n"), &LoadOptions::default())
            .unwrap()
            .name,
        longest
    );
    let e = err(&format!("name: {}\n", "n".repeat(100_000)));
    assert_eq!(
        (e.path.as_str(), e.location.map(|l| l.line)),
        ("name", Some(1))
    );
    assert!(e.message.contains("at most 64"), "{e}");
    assert!(e.to_string().len() < 300, "{e}");
    for bad in ["..", ".hidden", "-rf", "a/b", "\"a b\""] {
        let e = err(&format!("name: {bad}\n"));
        assert_eq!(e.path, "name", "{bad}: {e}");
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing_with_a_short_error() {
    let depth = 100_000;
    let text = format!(
        "name: t\nbase: {}1{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let started = std::time::Instant::now();
    let e = err(&text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.to_string(), "test.yaml:2:70: nesting deeper than 64 levels\n  hint: a sweep spec needs a few levels; check for unbalanced brackets");
}

#[test]
fn unknown_key_names_the_nearest_valid_key() {
    let e = err("name: t\nbase:\n  optimizer:\n    momentun: 0.9\n");
    assert_eq!(e.path, "base.optimizer.momentun");
    assert_eq!(e.location.map(|l| l.line), Some(4), "{e}");
    assert!(
        e.hint
            .as_deref()
            .unwrap_or("")
            .contains("did you mean `momentum`"),
        "{e}"
    );
    let top = err("name: t\ngird: {}\n");
    assert!(
        top.hint.as_deref().unwrap_or("").contains("`grid`"),
        "{top}"
    );
}

#[test]
fn wrong_type_names_the_field() {
    let e = err("name: t\nbase:\n  batch_size: lots\n");
    assert_eq!(e.path, "base.batch_size");
    assert_eq!(e.location.map(|l| l.line), Some(3), "{e}");
}

#[test]
fn out_of_range_values_are_rejected_with_their_field() {
    for (text, field, line) in [
        ("name: t\nbase:\n  batch_size: 0\n", "base.batch_size", 3),
        (
            "name: t\nbase:\n  optimizer: {lr: -0.1}\n",
            "base.optimizer.lr",
            3,
        ),
        (
            "name: t\nbase:\n  augment: {ops: [crop, sharpen]}\n",
            "base.augment.ops.1",
            3,
        ),
        (
            "name: t\ngrid:\n  batch_size: [64, 0]\n",
            "grid.batch_size",
            3,
        ),
        (
            "name: t\ndataset: {name: cifar10, split_seed: 3}\n",
            "dataset.split_seed",
            2,
        ),
        (
            "name: t\ndataset: {name: image_folder, path: x, test_fraction: 1.0}\n",
            "dataset.test_fraction",
            2,
        ),
        (
            "name: t\ndataset: {name: image_folder, path: x, image_size: 4}\n",
            "dataset.image_size",
            2,
        ),
    ] {
        let e = err(text);
        assert_eq!(e.path, field, "{e}");
        assert_eq!(e.location.map(|l| l.line), Some(line), "{e}");
    }
    let knn = err("name: t\nbase:\n  evals: [{kind: knn, protocol: augmented}]\n");
    assert_eq!(knn.path, "base.evals.0.protocol", "{knn}");
    assert!(knn.message.contains("linear evaluation"), "{knn}");
    let proto = err("name: t\nbase:\n  evals: [{kind: linear, protocol: augmentd}]\n");
    assert!(
        proto.hint.as_deref().unwrap_or("").contains("`augmented`"),
        "{proto}"
    );
    let op = err("name: t\ngrid:\n  augment.ops: {pairs_of: [crop, colour]}\n");
    assert!(op.hint.as_deref().unwrap_or("").contains("`color`"), "{op}");
}

#[test]
fn an_image_folder_states_its_resolution_and_cifar_refuses_the_folder_fields() {
    let run = |text: &str| plan(text, &LoadOptions::default()).unwrap().runs[0].clone();
    let implicit = run("name: t\ndataset: {name: image_folder, path: imgs}\n");
    assert_eq!(implicit.config.pretrain.dataset.image_size, Some(64));
    let explicit = run("name: t\ndataset: {name: image_folder, path: imgs, image_size: 64}\n");
    assert_eq!(implicit.config, explicit.config, "one run, one id");
    assert_eq!(
        run("name: t\n").config.pretrain.dataset.image_size,
        None,
        "CIFAR has no resolution to choose"
    );
    assert!(err("name: t\ndataset: {image_size: 64}\n")
        .message
        .contains("image_folder only"));
}

#[test]
fn unknown_profile_is_rejected_with_the_profiles_that_exist() {
    let e = plan(
        "name: t\nprofiles:\n  smoke: {seeds: [0]}\n",
        &LoadOptions {
            profile: Some("smok".into()),
            overrides: vec![],
        },
    )
    .unwrap_err();
    assert!(e.message.contains("no profile `smok`"), "{e}");
    assert!(e.hint.as_deref().unwrap_or("").contains("`smoke`"), "{e}");
}

#[test]
fn empty_grids_are_rejected() {
    assert!(err("name: t\ngrid:\n  batch_size: []\n")
        .message
        .contains("no values"));
    assert!(err("name: t\nseeds: []\n").message.contains("empty"));
    let all_out = err("name: t\ngrid:\n  batch_size: [64]\nexclude:\n  - {batch_size: 64}\n");
    assert!(all_out.message.contains("empty"), "{all_out}");
}

#[test]
fn the_same_axis_twice_is_rejected() {
    let dup = err("name: t\ngrid:\n  batch_size: [64]\n  batch_size: [128]\n");
    assert!(dup.to_string().contains("duplicate"), "{dup}");
    let overlap = err("name: t\ngrid:\n  head: [{kind: linear}]\n  head.out_dim: [64]\n");
    assert!(overlap.message.contains("overlaps"), "{overlap}");
    let zipped =
        err("name: t\ngrid:\n  batch_size: [64]\nzip:\n  - {batch_size: [64], epochs: [1]}\n");
    assert!(zipped.message.contains("overlaps"), "{zipped}");
}

#[test]
fn bad_overrides_name_the_flag() {
    let e = plan(
        "name: t\n",
        &LoadOptions {
            profile: None,
            overrides: vec!["optimizer.lrr=1".into()],
        },
    )
    .unwrap_err();
    assert!(e.path.starts_with("--set"), "{e}");
    assert!(e.hint.as_deref().unwrap_or("").contains("`lr`"), "{e}");
    let e = plan(
        "name: t\n",
        &LoadOptions {
            profile: None,
            overrides: vec!["nonsense".into()],
        },
    )
    .unwrap_err();
    assert!(e.message.contains("key=value"), "{e}");
}
