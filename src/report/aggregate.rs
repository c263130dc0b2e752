//! What the store holds for one sweep, gathered for reporting: each pretrain run with its
//! evaluations and curves, and the grid cells (coordinates without the seed) with mean,
//! standard deviation and count over the seeds that finished.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use serde_json::Value;

use crate::ml::config::{EvalConfig, PretrainConfig};
use crate::store::{MetricRecord, RunRecord, RunState, Store, SweepRecord};
use crate::vocab::{metric, short_id, StageKind};

use super::labels;

/// Mean, sample standard deviation and 95% confidence interval (n > 1), and count of one
/// quantity over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stat {
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); `None` for a single value.
    pub std: Option<f64>,
    /// 95% confidence interval of the mean (Student t, n - 1 dof); `None` for one value.
    pub ci: Option<(f64, f64)>,
    pub n: usize,
}

impl Stat {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        let ci = super::stats::ci95(values);
        Some(Stat { mean, std, ci, n })
    }
}

/// One evaluation stage of a pretrain run.
#[derive(Clone, Debug)]
pub(crate) struct EvalOutcome {
    pub id: String,
    pub label: String,
    pub state: RunState,
    pub failure: Option<String>,
    pub config: Arc<Value>,
    /// Percent.
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub compute_seconds: f64,
}

/// One pretrain run (one seed of one cell) and its evaluations.
#[derive(Clone, Debug)]
pub(crate) struct RunData {
    pub id: String,
    pub seed: i64,
    pub state: RunState,
    pub failure: Option<String>,
    pub config: Arc<PretrainConfig>,
    /// The stored canonical config (for the CSV: [`ParsedConfig::json`]).
    pub stored_config: Arc<ParsedConfig>,
    pub fingerprint: String,
    pub compute_seconds: f64,
    pub evals: Vec<EvalOutcome>,
    /// Last finished epoch's mean loss and strict contrastive accuracy (percent).
    pub final_loss: Option<f64>,
    pub final_contrastive_acc: Option<f64>,
    /// The paper's (cross-view) contrastive accuracy (percent), mean over the steps of the
    /// last finished epoch; `None` for runs recorded before it was measured.
    pub final_contrastive_acc_cross_view: Option<f64>,
    /// Training curves per step, x in epochs: (epoch, value); accuracy in percent.
    pub curve_loss: Vec<(f64, f64)>,
    pub curve_acc: Vec<(f64, f64)>,
}

impl RunData {
    pub fn eval(&self, label: &str) -> Option<&EvalOutcome> {
        self.evals.iter().find(|e| e.label == label)
    }
}

/// A stage's stored config, parsed. A stage's config never changes (its id is the hash
/// of it), so a long-lived reader (the dashboard) parses each one once and keeps it.
#[derive(Debug)]
pub(crate) struct ParsedConfig {
    /// The stored text, for [`ParsedConfig::json`].
    text: Box<str>,
    /// The text as JSON (key order kept), made on first use: only the CSV needs a
    /// pretrain's, and making it costs more than the config itself.
    json: OnceLock<Arc<Value>>,
    /// The pretrain config, for a pretrain stage whose config parses.
    pretrain: Option<Arc<PretrainConfig>>,
    /// Why it does not parse as its stage kind's config.
    error: Option<String>,
}

impl ParsedConfig {
    pub fn parse(stage: StageKind, text: &str) -> ParsedConfig {
        let mut parsed = ParsedConfig {
            text: text.into(),
            json: OnceLock::new(),
            pretrain: None,
            error: None,
        };
        // A pretrain config that parses straight from the text (the common case) needs no
        // JSON tree; anything else goes through one, for the same error as before.
        if stage == StageKind::Pretrain {
            if let Ok(c) = serde_json::from_str::<PretrainConfig>(text) {
                parsed.pretrain = Some(Arc::new(c));
                return parsed;
            }
        }
        let json = match serde_json::from_str::<Value>(text) {
            Ok(j) => j,
            Err(e) => {
                parsed.error = Some(e.to_string());
                parsed.json.get_or_init(|| Arc::new(Value::Null));
                return parsed;
            }
        };
        match stage {
            StageKind::Pretrain => match PretrainConfig::deserialize(&json) {
                Ok(c) => parsed.pretrain = Some(Arc::new(c)),
                Err(e) => parsed.error = Some(e.to_string()),
            },
            StageKind::Eval => {
                parsed.error = EvalConfig::deserialize(&json).err().map(|e| e.to_string())
            }
        }
        parsed.json.get_or_init(|| Arc::new(json));
        parsed
    }

    /// The stored config as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Arc<Value> {
        self.json
            .get_or_init(|| Arc::new(serde_json::from_str(&self.text).unwrap_or(Value::Null)))
            .clone()
    }
}

/// A grid cell: coordinates without the seed, and the runs (seeds) it holds.
#[derive(Clone, Debug)]
pub(crate) struct CellData {
    pub coords: Vec<(String, Value)>,
    /// Indices into [`SweepData::runs`], in grid order.
    pub runs: Vec<usize>,
}

/// Why a cell has no value.
pub(crate) fn missing_reason<'a>(states: impl Iterator<Item = &'a RunState>) -> &'static str {
    let mut failed = false;
    let mut running = false;
    let mut any = false;
    for s in states {
        any = true;
        match s {
            RunState::Failed => failed = true,
            RunState::Running => running = true,
            _ => {}
        }
    }
    if !any {
        "missing"
    } else if failed {
        "failed"
    } else if running {
        "running"
    } else {
        "pending"
    }
}

/// A value of a cell: the statistic over its finished seeds, how many seeds it has in
/// all, and why it has none.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CellValue {
    Value {
        stat: Stat,
        expected: usize,
        /// (seed, value) of each finished seed, for paired comparisons.
        seeds: Vec<(i64, f64)>,
        /// How it compares with the best cell of its table column or matrix.
        mark: Mark,
    },
    Missing(&'static str),
}

/// A value's standing against the best of the values it is compared with.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) enum Mark {
    /// Not compared (alone, or a reference row).
    #[default]
    None,
    /// The highest mean.
    Best,
    /// Not distinguishable from the best: the test that says so.
    Tied(String),
    /// Below the best: the test that says so.
    Below(String),
}

impl CellValue {
    /// The unmarked value of `seeds` ((seed, value) each) out of `expected`; `None` for
    /// no seed.
    pub fn of_seeds(seeds: Vec<(i64, f64)>, expected: usize) -> Option<CellValue> {
        let values: Vec<f64> = seeds.iter().map(|s| s.1).collect();
        Some(CellValue::Value {
            stat: Stat::of(&values)?,
            expected,
            seeds,
            mark: Mark::None,
        })
    }

    pub fn stat(&self) -> Option<Stat> {
        match self {
            CellValue::Value { stat, .. } => Some(*stat),
            CellValue::Missing(_) => None,
        }
    }
}

/// Everything the report needs from the store.
#[derive(Clone, Debug)]
pub(crate) struct SweepData {
    pub sweep: SweepRecord,
    /// Grid axes in spec order, without `seed`.
    pub axes: Vec<String>,
    pub runs: Vec<RunData>,
    pub cells: Vec<CellData>,
    /// The random-weights controls (untrained encoders, `epochs: 0`): coordinates without
    /// the control mark and the seed; kept apart from `cells`.
    pub controls: Vec<CellData>,
    /// Evaluation labels in grid order of first appearance ("linear@h", "knn@h").
    pub labels: Vec<String>,
    /// Stages whose stored config did not parse (reported, not fatal).
    pub warnings: Vec<String>,
}

impl SweepData {
    /// Reads the sweep from the store: three queries (the sweep, its stages, their
    /// metrics: all of them, or only those named in `names`).
    pub async fn load(
        store: &Store,
        sweep: &str,
        names: Option<&[&str]>,
    ) -> anyhow::Result<SweepData> {
        let record = store.sweep(sweep).await?;
        let stages = store.sweep_runs(sweep).await?;
        let metrics = store.sweep_metrics(sweep, names).await?;
        Ok(SweepData::assemble(record, &stages, &metrics))
    }

    /// Gathers the sweep from its stored parts (no I/O).
    pub fn assemble(
        record: SweepRecord,
        stages: &[RunRecord],
        metrics_by_run: &HashMap<String, Vec<MetricRecord>>,
    ) -> SweepData {
        let parse = |s: &RunRecord| Arc::new(ParsedConfig::parse(s.stage, &s.config));
        SweepData::assemble_parsed(record, stages, metrics_by_run, &parse)
    }

    /// [`SweepData::assemble`] with each stage's config from `config_of` (a cache).
    pub fn assemble_parsed<M: Borrow<[MetricRecord]>>(
        record: SweepRecord,
        stages: &[RunRecord],
        metrics_by_run: &HashMap<String, M>,
        config_of: &dyn Fn(&RunRecord) -> Arc<ParsedConfig>,
    ) -> SweepData {
        let mut warnings = Vec::new();
        let mut runs: Vec<RunData> = Vec::new();
        // Per pretrain stage: whether it is a control, and its coordinates.
        let mut cell_of_run: Vec<(bool, Vec<(String, Value)>)> = Vec::new();
        let mut axes: Vec<String> = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        for s in stages.iter().filter(|s| s.stage == StageKind::Pretrain) {
            let cell = parse_cell(s);
            let control = crate::spec::is_control_cell(cell.iter().map(|(k, _)| k.as_str()));
            for (k, _) in &cell {
                if k != "seed" && !control && !axes.contains(k) {
                    axes.push(k.clone());
                }
            }
            let parsed = config_of(s);
            if let Some(e) = &parsed.error {
                warnings.push(format!("run {}: config: {e}", short_id(&s.id)));
            }
            let config = parsed.pretrain.clone().unwrap_or_default();
            let seed = cell
                .iter()
                .find(|(k, _)| k == "seed")
                .and_then(|(_, v)| v.as_i64())
                .unwrap_or(config.seed as i64);
            let metrics = metrics_by_run.get(&s.id).map_or(&[][..], |m| m.borrow());
            let series = |name: &str| -> Vec<(i64, f64)> {
                metrics
                    .iter()
                    .filter(|m| m.name == name)
                    .map(|m| (m.step, m.value))
                    .collect()
            };
            let epoch_loss = series(metric::EPOCH_LOSS);
            let epoch_acc = series(metric::EPOCH_CONTRASTIVE_ACC);
            let train_loss = series(metric::TRAIN_LOSS);
            let train_acc = series(metric::TRAIN_CONTRASTIVE_ACC);
            let train_acc_cross_view = series(metric::TRAIN_CONTRASTIVE_ACC_CROSS_VIEW);
            // Steps per epoch: measured from finished epochs, else from the dataset size.
            let steps_per_epoch = if !epoch_loss.is_empty() && !train_loss.is_empty() {
                let finished_steps = train_loss.len() as f64;
                let epochs = epoch_loss.len() as f64;
                (finished_steps / epochs).floor().max(1.0)
            } else {
                let n = config.dataset.train_subset.unwrap_or(50_000) as f64;
                (n / config.batch_size.max(1) as f64).floor().max(1.0)
            };
            let to_epochs = |v: &[(i64, f64)], scale: f64| -> Vec<(f64, f64)> {
                v.iter()
                    .map(|(s, y)| ((*s + 1) as f64 / steps_per_epoch, y * scale))
                    .collect()
            };
            runs.push(RunData {
                id: s.id.clone(),
                seed,
                state: s.state,
                failure: s.failure.clone(),
                config,
                stored_config: parsed,
                fingerprint: s.dataset_fingerprint.clone(),
                compute_seconds: s.compute_seconds,
                evals: Vec::new(),
                final_loss: epoch_loss.last().map(|x| x.1),
                final_contrastive_acc: epoch_acc.last().map(|x| x.1 * 100.0),
                final_contrastive_acc_cross_view: last_epoch_mean(
                    &train_acc_cross_view,
                    epoch_loss.len(),
                    steps_per_epoch as i64,
                )
                .map(|a| a * 100.0),
                curve_loss: to_epochs(&train_loss, 1.0),
                curve_acc: to_epochs(&train_acc, 100.0),
            });
            let coords = cell
                .into_iter()
                .filter(|(k, _)| k != "seed" && k != crate::spec::CONTROL_KEY)
                .collect();
            cell_of_run.push((control, coords));
        }
        let index: HashMap<String, usize> = runs
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for s in stages.iter().filter(|s| s.stage == StageKind::Eval) {
            let Some(run) = s
                .parent_id
                .as_ref()
                .and_then(|p| index.get(p))
                .map(|&i| &mut runs[i])
            else {
                warnings.push(format!(
                    "evaluation {} has no pretrain in this sweep",
                    short_id(&s.id)
                ));
                continue;
            };
            let parsed = config_of(s);
            let config = parsed.json();
            if parsed.error.is_some() {
                warnings.push(format!(
                    "evaluation {}: config does not parse",
                    short_id(&s.id)
                ));
            }
            let metrics = metrics_by_run.get(&s.id).map_or(&[][..], |m| m.borrow());
            let value = |name: &str| {
                metrics
                    .iter()
                    .filter(|m| m.name == name)
                    .map(|m| m.value * 100.0)
                    .next_back()
            };
            let done = s.state == RunState::Done;
            if !labels.contains(&s.label) {
                labels.push(s.label.clone());
            }
            run.evals.push(EvalOutcome {
                id: s.id.clone(),
                label: s.label.clone(),
                state: s.state,
                failure: s.failure.clone(),
                config,
                top1: value(metric::EVAL_TOP1).filter(|_| done),
                top5: value(metric::EVAL_TOP5).filter(|_| done),
                compute_seconds: s.compute_seconds,
            });
        }
        // Cells in grid order of first appearance.
        let mut cells: Vec<CellData> = Vec::new();
        let mut controls: Vec<CellData> = Vec::new();
        let mut cell_index: HashMap<(bool, String), usize> = HashMap::new();
        for (i, (control, coords)) in cell_of_run.into_iter().enumerate() {
            let key = serde_json::to_string(&coords).expect("JSON values serialise");
            let list = if control { &mut controls } else { &mut cells };
            match cell_index.get(&(control, key.clone())) {
                Some(&c) => list[c].runs.push(i),
                None => {
                    cell_index.insert((control, key), list.len());
                    list.push(CellData {
                        coords,
                        runs: vec![i],
                    });
                }
            }
        }
        SweepData {
            sweep: record,
            axes,
            runs,
            cells,
            controls,
            labels,
            warnings,
        }
    }

    /// The controls that stand beside `cells` for evaluation `label`: those whose
    /// coordinates all appear in one of the cells and that have that evaluation, in order.
    pub fn controls_for(&self, cells: &[&CellData], label: &str) -> Vec<&CellData> {
        self.controls
            .iter()
            .filter(|k| {
                self.first(k).eval(label).is_some()
                    && cells
                        .iter()
                        .any(|c| k.coords.iter().all(|kc| c.coords.contains(kc)))
            })
            .collect()
    }

    /// The one control of `cells` for `label`, when exactly one stands beside all of them.
    pub fn control_of(&self, cells: &[&CellData], label: &str) -> Option<&CellData> {
        match self.controls_for(cells, label).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The cell's top-1 (percent) of evaluation `label` over its seeds.
    pub fn top1(&self, cell: &CellData, label: &str) -> CellValue {
        self.over_seeds(
            cell,
            |r| r.eval(label).and_then(|e| e.top1),
            |r| match r.eval(label) {
                Some(e) => e.state,
                None => r.state,
            },
        )
    }

    /// The cell's final-epoch strict contrastive accuracy (percent) over its seeds.
    pub fn contrastive_acc(&self, cell: &CellData) -> CellValue {
        self.over_seeds(
            cell,
            |r| {
                r.final_contrastive_acc
                    .filter(|_| r.state == RunState::Done)
            },
            |r| r.state,
        )
    }

    /// The cell's final-epoch contrastive accuracy by the paper's definition (percent).
    pub fn contrastive_acc_cross_view(&self, cell: &CellData) -> CellValue {
        self.over_seeds(
            cell,
            |r| {
                r.final_contrastive_acc_cross_view
                    .filter(|_| r.state == RunState::Done)
            },
            |r| r.state,
        )
    }

    fn over_seeds(
        &self,
        cell: &CellData,
        value: impl Fn(&RunData) -> Option<f64>,
        state: impl Fn(&RunData) -> RunState,
    ) -> CellValue {
        let runs: Vec<&RunData> = cell.runs.iter().map(|&i| &self.runs[i]).collect();
        let seeds: Vec<(i64, f64)> = runs
            .iter()
            .filter_map(|r| value(r).map(|v| (r.seed, v)))
            .collect();
        CellValue::of_seeds(seeds, runs.len()).unwrap_or_else(|| {
            let states: Vec<RunState> = runs.iter().map(|r| state(r)).collect();
            CellValue::Missing(missing_reason(states.iter()))
        })
    }

    /// The evaluation config behind `label` (its first stage's), when it parses.
    pub fn eval_config(&self, label: &str) -> Option<EvalConfig> {
        self.runs
            .iter()
            .filter_map(|r| r.eval(label))
            .find_map(|e| EvalConfig::deserialize(&*e.config).ok())
    }

    /// The evaluation the figures plot ([`labels::primary`]); `None` before any.
    pub fn primary_label(&self) -> Option<&str> {
        let configs: Vec<Option<EvalConfig>> =
            self.labels.iter().map(|l| self.eval_config(l)).collect();
        labels::primary(&configs).map(|i| self.labels[i].as_str())
    }

    /// The evaluation the figures plot, [`labels::fallback_primary`] before any.
    pub fn primary(&self) -> String {
        self.primary_label()
            .map(str::to_string)
            .unwrap_or_else(labels::fallback_primary)
    }

    /// Whether the grid varies one of `axes`.
    pub fn varies(&self, axes: &[&str]) -> bool {
        self.axes.iter().any(|a| axes.contains(&a.as_str()))
    }

    /// The resolved configs of every run of `cells`.
    pub fn configs(&self, cells: &[&CellData]) -> Vec<&PretrainConfig> {
        cells
            .iter()
            .flat_map(|c| c.runs.iter().map(|&i| &*self.runs[i].config))
            .collect()
    }

    /// A cell's name for legends: its coordinates, compact (the sweep's name for a sweep
    /// without axes).
    pub fn cell_name(&self, c: &CellData) -> String {
        if c.coords.is_empty() {
            return self.sweep.name.clone();
        }
        c.coords
            .iter()
            .map(|(k, v)| {
                if k == "augment.ops" {
                    compact(v)
                } else {
                    format!("{k}={}", compact(v))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The first run of a cell (its resolved config stands for the cell's settings).
    pub fn first(&self, cell: &CellData) -> &RunData {
        &self.runs[cell.runs[0]]
    }
}

fn parse_cell(r: &RunRecord) -> Vec<(String, Value)> {
    match serde_json::from_str::<Value>(&r.cell) {
        Ok(Value::Object(m)) => m.into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Mean of a per-step series over the last of `epochs` finished epochs of `steps_per_epoch`
/// steps each (`None` when it holds no such step).
fn last_epoch_mean(series: &[(i64, f64)], epochs: usize, steps_per_epoch: i64) -> Option<f64> {
    let last = epochs.checked_sub(1)? as i64;
    let steps = last * steps_per_epoch..(last + 1) * steps_per_epoch;
    let values: Vec<f64> = series
        .iter()
        .filter(|(s, _)| steps.contains(s))
        .map(|(_, v)| *v)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A cell coordinate for a report table or legend: lists as `a, b`.
pub(crate) fn compact(v: &Value) -> String {
    crate::spec::value_text(v, crate::spec::Lists::CommaSpaced)
}

/// Counts of pretrain and evaluation stages per state.
pub(crate) fn state_counts(data: &SweepData) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for r in &data.runs {
        *out.entry(r.state.as_str()).or_insert(0) += 1;
        for e in &r.evals {
            *out.entry(e.state.as_str()).or_insert(0) += 1;
        }
    }
    out
}

/// A value of `seeds` (seed i the i-th), unmarked: what tests compare.
#[cfg(test)]
pub(crate) fn test_value(seeds: &[f64]) -> CellValue {
    CellValue::Value {
        stat: Stat::of(seeds).unwrap(),
        expected: seeds.len(),
        seeds: seeds
            .iter()
            .enumerate()
            .map(|(i, x)| (i as i64, *x))
            .collect(),
        mark: Mark::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_uses_the_sample_standard_deviation() {
        let s = Stat::of(&[60.0, 62.0]).unwrap();
        assert_eq!((s.mean, s.n), (61.0, 2));
        assert!((s.std.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[5.0]).unwrap().std, None);
        assert!(Stat::of(&[]).is_none());
    }

    #[test]
    fn a_failed_seed_marks_the_cell_failed_and_pending_ones_pending() {
        assert_eq!(
            missing_reason([RunState::Done, RunState::Failed].iter()),
            "failed"
        );
        assert_eq!(missing_reason([RunState::Queued].iter()), "pending");
        assert_eq!(missing_reason([].iter()), "missing");
    }
}
