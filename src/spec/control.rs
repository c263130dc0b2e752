//! The random-weights control of a sweep: for every distinct untrained encoder the grid
//! evaluates, one pretrain stage with `epochs: 0` per seed, under the same evaluations.
//!
//! What the untrained encoder's evaluation depends on, and so what a control shares with
//! the runs it stands beside: the dataset, the encoder config, the init scheme, the seed (parameters are
//! drawn from per-name streams of the seed, so the head never changes the encoder's
//! weights) and the evaluations; evaluations of z also read the random head, so they get
//! controls of their own, one per head, and those of h one that ignores the head. Everything
//! that only matters to training (loss, augmentation, optimizer, batch size, epochs) is
//! reset to its default, so a grid that varies those gets one control per seed, and the
//! same control is one run id across sweeps. A control is marked by the cell coordinate
//! [`CONTROL_KEY`]; its other coordinates are the grid axes that are constant over the
//! runs it stands for (e.g. `encoder.width` when the grid varies the width).

use serde_json::Value;

use super::run::RunConfig;
use super::PlannedRun;
use crate::ml::config::{FeatureSource, HeadConfig, PretrainConfig};

/// The cell coordinate that marks a control run; its value is [`CONTROL_VALUE`].
pub const CONTROL_KEY: &str = "control";
/// The value of [`CONTROL_KEY`] in a control's cell.
pub const CONTROL_VALUE: &str = "random weights";

/// True when a cell (as stored: axis -> value) is a control's.
pub fn is_control_cell<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| k == CONTROL_KEY)
}

/// The untrained counterparts of `run`: one for its evaluations of h (the head does not
/// change them, so it is left at its default) and, when it has any, one for those of z
/// (they read the random head, so it is kept).
fn untrained(run: &RunConfig) -> Vec<RunConfig> {
    let p = &run.pretrain;
    let defaults = PretrainConfig::default();
    // Training-only, but validated against the subset: the default, or the subset size.
    let batch_size = p
        .dataset
        .train_subset
        .map_or(defaults.batch_size, |n| n.min(defaults.batch_size));
    let mut out = Vec::new();
    for on in [FeatureSource::H, FeatureSource::Z] {
        let evals: Vec<_> = run.evals.iter().filter(|e| e.on == on).cloned().collect();
        if evals.is_empty() {
            continue;
        }
        let mut c = RunConfig {
            pretrain: PretrainConfig {
                dataset: p.dataset.clone(),
                encoder: p.encoder.clone(),
                head: match on {
                    FeatureSource::Z => p.head.clone(),
                    FeatureSource::H => HeadConfig::default(),
                },
                init: p.init,
                seed: p.seed,
                epochs: 0,
                batch_size,
                ..defaults.clone()
            },
            evals,
        };
        c.canonicalize();
        out.push(c);
    }
    out
}

/// The control runs for `runs` (the expanded grid): one per distinct untrained encoder
/// and head, in order of first appearance, carrying every evaluation asked of it (the h
/// control of the default head is also the z control of a grid cell with the default
/// head: one pretrain stage, both evaluations), skipping any the grid already holds.
pub(crate) fn controls(runs: &[PlannedRun]) -> Vec<PlannedRun> {
    let mut groups: Vec<(RunConfig, Vec<&PlannedRun>)> = Vec::new();
    for r in runs {
        for c in untrained(&r.config) {
            match groups.iter_mut().find(|(k, _)| k.pretrain == c.pretrain) {
                Some((k, members)) => {
                    for e in c.evals {
                        if !k.evals.contains(&e) {
                            k.evals.push(e);
                        }
                    }
                    k.canonicalize();
                    members.push(r);
                }
                None => groups.push((c, vec![r])),
            }
        }
    }
    groups
        .into_iter()
        .filter(|(c, _)| {
            !runs.iter().any(|r| {
                r.config.pretrain == c.pretrain
                    && c.evals.iter().all(|e| r.config.evals.contains(e))
            })
        })
        .map(|(config, members)| {
            let first = &members[0].cell;
            let mut cell = vec![(CONTROL_KEY.to_string(), Value::from(CONTROL_VALUE))];
            for (k, v) in first {
                let shared = members
                    .iter()
                    .all(|m| m.cell.iter().any(|(k2, v2)| k2 == k && v2 == v));
                if k != "seed" && shared {
                    cell.push((k.clone(), v.clone()));
                }
            }
            cell.push(("seed".into(), Value::from(config.pretrain.seed)));
            PlannedRun { config, cell }
        })
        .collect()
}
