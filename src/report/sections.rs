//! A report's sections ([`Section`]: a part of the README with its tables, figures and
//! comparison with the paper) and the ones every sweep gets whatever it is: training curves
//! per group of cells, and a table of every cell. The paper's experiments build theirs in
//! `experiments/`; `contents` puts them in order.

use serde_json::Value;

use crate::ml::config::Method;
use crate::store::MetricRecord;
use crate::vocab::metric;

use super::aggregate::{compact, CellData, SweepData};
use super::plots::{Curve, Figure, Plot};
use super::protocols;
use super::tables::{label_header, Table, Val};

/// A part of the README: tables, figures, and how our setting differs from the paper's.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub title: String,
    pub text: Vec<String>,
    pub tables: Vec<Table>,
    pub figures: Vec<Figure>,
    /// "The paper ..." lines: its finding and one line per differing setting.
    pub paper: Vec<String>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            text: Vec::new(),
            tables: Vec::new(),
            figures: Vec::new(),
            paper: Vec::new(),
        }
    }

    /// A section of one table (header, rows, notes) and the figure drawn from the same cells,
    /// both under `id` and `caption`.
    pub(crate) fn table_and_figure(
        title: String,
        id: String,
        caption: String,
        (header, rows, notes): (Vec<String>, Vec<Vec<Val>>, Vec<String>),
        figure_title: String,
        plot: Plot,
    ) -> Section {
        let mut s = Section::new(title);
        s.tables.push(Table {
            id: id.clone(),
            caption: caption.clone(),
            header,
            rows,
            notes,
        });
        s.figures.push(Figure {
            id,
            title: figure_title,
            caption,
            plot,
        });
        s
    }
}

/// Mean of the runs' curves point by point, over the points all of them have.
fn mean_curve(curves: &[&Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = curves.iter().map(|c| c.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let x = curves[0][i].0;
            let y = curves.iter().map(|c| c[i].1).sum::<f64>() / curves.len() as f64;
            (x, y)
        })
        .collect()
}

/// Training curves (loss, contrastive accuracy), one figure per group of cells: all cells
/// when there are few, else one per first op / first axis value, else chunks of 8.
pub(crate) fn curves(data: &SweepData) -> Section {
    let mut s = Section::new("Training curves");
    s.text.push(
        "Per-step training loss and contrastive accuracy against epochs, mean over seeds.".into(),
    );
    let cells: Vec<&CellData> = data
        .cells
        .iter()
        .filter(|c| c.runs.iter().any(|&i| !data.runs[i].curve_loss.is_empty()))
        .collect();
    if cells.is_empty() {
        s.text
            .push("No run has recorded training metrics yet.".into());
        return s;
    }
    let mut groups: Vec<(String, Vec<&CellData>)> = Vec::new();
    if cells.len() <= 10 {
        groups.push((String::new(), cells));
    } else if data.axes.len() > 1 || data.axes.first().is_some_and(|a| a == "augment.ops") {
        for c in cells {
            let key = match c.coords.first().map(|x| &x.1) {
                Some(Value::Array(a)) => a.first().map(compact).unwrap_or_default(),
                Some(v) => format!("{}={}", c.coords[0].0, compact(v)),
                None => String::new(),
            };
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1.push(c),
                None => groups.push((key, vec![c])),
            }
        }
    } else {
        for (k, chunk) in cells.chunks(8).enumerate() {
            groups.push((format!("part {}", k + 1), chunk.to_vec()));
        }
    }
    for (k, (name, cells)) in groups.iter().enumerate() {
        let curves: Vec<Curve> = cells
            .iter()
            .map(|c| {
                let runs: Vec<_> = c
                    .runs
                    .iter()
                    .map(|&i| &data.runs[i])
                    .filter(|r| !r.curve_loss.is_empty())
                    .collect();
                Curve {
                    name: data.cell_name(c),
                    loss: mean_curve(&runs.iter().map(|r| &r.curve_loss).collect::<Vec<_>>()),
                    acc: mean_curve(&runs.iter().map(|r| &r.curve_acc).collect::<Vec<_>>()),
                }
            })
            .collect();
        let (id, title) = if groups.len() == 1 {
            (
                "curves".to_string(),
                format!("Training curves: {}", data.sweep.name),
            )
        } else {
            (
                format!("curves_{}", k + 1),
                format!("Training curves: {} ({name})", data.sweep.name),
            )
        };
        s.figures.push(Figure {
            id,
            caption: title.clone(),
            title,
            plot: Plot::Curves { curves },
        });
    }
    s
}

/// One run's training curves against steps: loss, learning rate, contrastive accuracy and
/// throughput, from its stored per-step metrics (a panel per quantity it has).
pub(crate) fn run_curves(id: &str, title: &str, metrics: &[MetricRecord]) -> Figure {
    let panel = |name: &str, metric: &str, scale: f64| {
        let points: Vec<(f64, f64)> = metrics
            .iter()
            .filter(|m| m.name == metric)
            .map(|m| (m.step as f64, m.value * scale))
            .collect();
        (name.to_string(), points)
    };
    let panels = [
        panel("training loss", metric::TRAIN_LOSS, 1.0),
        panel("learning rate", metric::TRAIN_LR, 1.0),
        panel(
            "contrastive accuracy (%)",
            metric::TRAIN_CONTRASTIVE_ACC,
            100.0,
        ),
        panel("throughput (images/s)", metric::TRAIN_IMAGES_PER_SEC, 1.0),
    ]
    .into_iter()
    .filter(|(_, p)| !p.is_empty())
    .collect();
    Figure {
        id: id.to_string(),
        title: title.to_string(),
        caption: title.to_string(),
        plot: Plot::Panels {
            x_label: "step".into(),
            panels,
        },
    }
}

/// Every cell, whatever the axes: coordinates, seeds, contrastive accuracy, each evaluation.
pub(crate) fn all_cells(data: &SweepData) -> Section {
    let mut header: Vec<String> = data.axes.clone();
    header.push("seeds done".into());
    header.push("contrastive acc.".into());
    header.extend(data.labels.iter().map(|l| label_header(l)));
    let rows = data
        .cells
        .iter()
        .map(|c| {
            let mut r: Vec<Val> = data
                .axes
                .iter()
                .map(|a| {
                    Val::text(
                        c.coords
                            .iter()
                            .find(|(k, _)| k == a)
                            .map(|(_, v)| compact(v))
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let done = c
                .runs
                .iter()
                .filter(|&&i| data.runs[i].state == crate::store::RunState::Done)
                .count();
            r.push(Val::text(format!("{done}/{}", c.runs.len())));
            r.push(if data.first(c).config.method == Method::Supervised {
                // Not pending: a supervised run has no contrastive task to score.
                Val::text("— (supervised)")
            } else {
                Val::Ours(data.contrastive_acc(c))
            });
            r.extend(data.labels.iter().map(|l| Val::Ours(data.top1(c, l))));
            r
        })
        .collect();
    let mut s = Section::new("All cells");
    s.tables.push(Table {
        id: "cells".into(),
        caption: format!("Every cell of {}: mean over seeds", data.sweep.name),
        header,
        rows,
        notes: protocols::notes(data, &data.labels),
    });
    s
}
