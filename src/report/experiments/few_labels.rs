//! Table 7, fine-tuning with few labels: chosen by the sweep's evaluations (any
//! `kind: fine_tune`), not an axis. Top-1 after fine-tuning on each label fraction (and the
//! linear evaluation of the same encoders for reference), a row of ours per cell beside
//! the paper's rows; the random-weights control's row is training from scratch on the
//! same labels, and the claim tested is that fine-tuning a SimCLR encoder beats it.

use crate::ml::config::{EvalKind, Method};
use crate::report::aggregate::{CellData, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, judge, Finding};
use crate::report::paper::{self, method_name, PaperSetting};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{label_header, Table, Val};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "few_labels",
    chosen_by: ChosenBy::Evaluations,
    supersedes: &[],
    shared_marks: true,
    section,
    claims_rank: 0,
    claims,
};

/// Table 7: ImageNet, ResNet-50 (1x, 2x, 4x) pretrained for 1000 epochs at batch 4096
/// (section 6: "our models here are trained for 1000 epochs"), fine-tuned by B.5.
const TABLE_7: PaperSetting = PaperSetting {
    source: "Table 7",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(1000),
    batch_size: Some(4096),
};

/// Table 7's qualitative finding.
const TABLE_7_FINDING: &str = "fine-tuning a SimCLR encoder on 1% or 10% of the \
     labels beats a supervised network trained on those labels alone, by far the most at 1%";

/// Table 7's rows: the name and the top-1 (%) at 1% and 10% of ImageNet's labels.
const TABLE_7_ROWS: [(&str, [f64; 2]); 4] = [
    ("Supervised baseline, ResNet-50", [25.4, 56.4]),
    ("SimCLR fine-tuned, ResNet-50", [48.3, 65.6]),
    ("SimCLR fine-tuned, ResNet-50 (2x)", [58.5, 71.7]),
    ("SimCLR fine-tuned, ResNet-50 (4x)", [63.0, 74.4]),
];

/// Table 7's top-1 of row `row` (an index into [`TABLE_7_ROWS`]) at `label_fraction`;
/// `None` for fractions other than 1% and 10%.
fn paper_top1(row: usize, label_fraction: f64) -> Option<f64> {
    let col = [0.01, 0.1]
        .iter()
        .position(|&f| (f - label_fraction).abs() < 1e-9)?;
    TABLE_7_ROWS.get(row).map(|(_, v)| v[col])
}

/// The sweep's fine-tuning evaluations (`kind: fine_tune`) with their label fractions,
/// smallest fraction first.
fn fine_tune_labels(data: &SweepData) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = data
        .labels
        .iter()
        .filter_map(|l| {
            let c = data.eval_config(l)?;
            (c.kind() == EvalKind::FineTune).then(|| (l.clone(), c.flat().label_fraction))
        })
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// Table 7: top-1 after fine-tuning on few labels, a column per label fraction (and the
/// linear evaluation of the same encoders for reference), a row of ours per cell, the
/// paper's rows beside; the random-weights control's row (`control::add`) is training from
/// scratch on the same labels. `None` when the sweep fine-tunes nothing.
fn section(data: &SweepData, slice: &Slice) -> Option<Section> {
    let fine = fine_tune_labels(data);
    if fine.is_empty() {
        return None;
    }
    let cells = &slice.cells;
    let primary = data.primary();
    let reference = data
        .eval_config(&primary)
        .filter(|c| c.kind() == EvalKind::Linear)
        .map(|_| primary.clone());
    let mut labels: Vec<String> = fine.iter().map(|(l, _)| l.clone()).collect();
    labels.extend(reference.clone());
    let mut header = vec!["encoder".to_string()];
    header.extend(labels.iter().map(|l| label_header(l)));
    let mut rows = Vec::new();
    for c in cells {
        let method = method_name(data.first(c).config.method);
        let name = if c.coords.is_empty() {
            format!("{method}, fine-tuned (ours)")
        } else {
            format!("{method}, fine-tuned (ours; {})", data.cell_name(c))
        };
        let mut row = vec![Val::text(name)];
        row.extend(labels.iter().map(|l| Val::Ours(data.top1(c, l))));
        rows.push(row);
    }
    for (i, (name, _)) in TABLE_7_ROWS.iter().enumerate() {
        let mut row = vec![Val::text(format!("{name} (paper, ImageNet)"))];
        row.extend(fine.iter().map(|(_, f)| Val::Paper(paper_top1(i, *f))));
        row.extend(reference.iter().map(|_| Val::Paper(None)));
        rows.push(row);
    }
    let fractions: Vec<String> = fine
        .iter()
        .map(|(_, f)| format!("{}%", crate::spec::percent(*f)))
        .collect();
    let mut notes = vec![
        format!(
            "Top-1 (%) on the test split after fine-tuning the whole encoder (BatchNorm in \
             training mode) with a new linear head on h, the projection head discarded, on a \
             class-balanced {} of the training labels. The random-weights control's row is \
             training from scratch: the same network from random weights, on the same \
             labelled images (drawn from the seed), by the same recipe.",
            fractions.join(" / ")
        ),
        "Paper rows: ImageNet, ResNet-50 at widths 1x, 2x, 4x pretrained 1000 epochs (Chen \
         et al. 2020, Table 7), fine-tuned by appendix B.5. Its supervised baseline is a \
         ResNet-50 trained on those labels alone with its own recipe (from Zhai et al. 2019); \
         ours from scratch uses the fine-tuning recipe."
            .into(),
    ];
    if let Some(r) = &reference {
        notes.push(format!(
            "{r}: linear evaluation of the same frozen encoders, for reference (Table 7 has \
             no such column)."
        ));
    }
    notes.extend(protocols::notes(data, &labels));
    let mut s = Section::new("Table 7: fine-tuning with few labels");
    s.tables.push(Table {
        id: "table7_few_labels".into(),
        caption: format!(
            "Table 7: top-1 (%) after fine-tuning on {} of the labels, SimCLR and from scratch",
            fractions.join(" and ")
        ),
        header,
        rows,
        notes,
    });
    let (first, _) = &fine[0];
    s.paper = paper::lines(
        data,
        first,
        Some(TABLE_7_FINDING),
        &TABLE_7,
        &data.configs(cells),
    );
    let more = fine[1..].iter().filter_map(|(l, _)| {
        let c = data.eval_config(l)?;
        protocols::protocol_difference(l, &c).map(|d| format!("  - {d}"))
    });
    s.paper.extend(more);
    Some(s)
}

/// Table 7's claim at each label fraction, on that fine-tuning's own top-1: the best
/// SimCLR cell fine-tuned beats the random-weights control fine-tuned, i.e. training from
/// scratch on the same labels (paired over the seeds, which draw the same label subsets).
fn claims(data: &SweepData, _primary: &str) -> Vec<Finding> {
    let all: Vec<&CellData> = data.cells.iter().collect();
    let mut out = Vec::new();
    for (label, fraction) in fine_tune_labels(data) {
        let simclr = best(data, &label, |c| c.method == Method::Simclr);
        if let (Some((c, v)), Some(k)) = (simclr, data.control_of(&all, &label)) {
            out.push(judge(
                &format!(
                    "Table 7: fine-tuning a SimCLR encoder beats training from scratch on the \
                     same labels ({}% of the labels, {label})",
                    crate::spec::percent(fraction)
                ),
                (&data.cell_name(c), &v),
                ("from scratch", &data.top1(k, &label)),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_7_has_four_rows_at_one_and_ten_percent() {
        let col = |f: f64| (0..4).map(|r| paper_top1(r, f)).collect::<Vec<_>>();
        assert_eq!(col(0.01), [25.4, 48.3, 58.5, 63.0].map(Some).to_vec());
        assert_eq!(col(0.1), [56.4, 65.6, 71.7, 74.4].map(Some).to_vec());
        assert_eq!(paper_top1(1, 0.5), None);
        assert_eq!(paper_top1(4, 0.01), None);
    }
}
