//! Figure 9 and Table B.1, batch size and training epochs (`batch_size`, `epochs`): the
//! primary evaluation's top-1 per batch size and epochs as grouped bars and a table, the
//! paper's Table B.1 value beside a cell only under the learning-rate scaling rule the cell
//! was trained with (else Table B.1 whole, as a reference of trends), and the paper's
//! claims: a larger batch helps at few epochs, and the gap closes with training.

use crate::ml::config::LrScaling;
use crate::report::aggregate::{CellValue, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, gap_shrinks, judge, Finding};
use crate::report::paper::{self, PaperSetting};
use crate::report::plots::{Figure, Plot};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{Table, Val};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "batch_epochs",
    chosen_by: ChosenBy::Axes {
        axes: &["batch_size", "epochs"],
        takes_over: &[],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 7,
    claims,
};

/// Table B.1 / Figure 9: batch size and epochs are the axes themselves (LARS; Figure 9 is
/// B.1's linear-scaling column, 0.3 x B/256; B.1 adds square-root scaling, 0.075 x sqrt(B)).
const TABLE_B1: PaperSetting = PaperSetting {
    source: "Table B.1",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: None,
    batch_size: None,
};

/// Batch sizes and epochs of Table B.1.
const B1_BATCHES: [usize; 6] = [256, 512, 1024, 2048, 4096, 8192];
const B1_EPOCHS: [usize; 4] = [100, 200, 400, 800];
/// Table B.1, left of the slash: linear LR scaling (these are Figure 9's bars).
const B1_LINEAR: [[f64; 4]; 6] = [
    [57.5, 61.9, 64.7, 66.6],
    [60.7, 64.0, 66.2, 67.8],
    [62.8, 65.3, 67.2, 68.5],
    [64.0, 66.1, 68.1, 68.9],
    [64.6, 66.5, 68.2, 68.9],
    [64.8, 66.6, 67.8, 69.0],
];
/// Table B.1, right of the slash: square-root LR scaling.
const B1_SQRT: [[f64; 4]; 6] = [
    [62.8, 64.3, 65.7, 66.5],
    [63.8, 65.6, 66.7, 67.4],
    [64.3, 66.1, 67.2, 68.3],
    [64.7, 66.8, 67.9, 68.8],
    [64.5, 66.8, 68.0, 69.1],
    [64.8, 67.0, 68.3, 69.1],
];

/// Table B.1 top-1 (%) at a batch size and epochs under LR scaling rule `scaling`; `None`
/// where the paper has no such cell (and for no scaling, which it did not run).
fn paper_top1(batch_size: usize, epochs: usize, scaling: LrScaling) -> Option<f64> {
    let b = B1_BATCHES.iter().position(|&x| x == batch_size)?;
    let e = B1_EPOCHS.iter().position(|&x| x == epochs)?;
    match scaling {
        LrScaling::Linear => Some(B1_LINEAR[b][e]),
        LrScaling::Sqrt => Some(B1_SQRT[b][e]),
        LrScaling::None => None,
    }
}

/// A scaling rule as Table B.1's caption names it.
fn scaling_name(s: LrScaling) -> &'static str {
    match s {
        LrScaling::Linear => "linear",
        LrScaling::Sqrt => "square root",
        LrScaling::None => "none",
    }
}

/// Figure 9: batch size x epochs as grouped bars, with Table B.1 beside: the paper's value
/// of a cell only under the learning-rate scaling rule the cell was trained with (Figure 9
/// itself is Table B.1's linear-scaling column; B.1 adds square-root scaling).
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    let label = data.primary();
    let mut batches: Vec<usize> = cells
        .iter()
        .map(|c| data.first(c).config.batch_size)
        .collect();
    batches.sort_unstable();
    batches.dedup();
    let mut epochs: Vec<usize> = cells.iter().map(|c| data.first(c).config.epochs).collect();
    epochs.sort_unstable();
    epochs.dedup();
    let cell_at = |b: usize, e: usize| {
        cells.iter().find(|c| {
            let k = &data.first(c).config;
            k.batch_size == b && k.epochs == e
        })
    };
    let value = |b: usize, e: usize| -> CellValue {
        cell_at(b, e)
            .map(|c| data.top1(c, &label))
            .unwrap_or(CellValue::Missing("missing"))
    };
    let paper_at = |b: usize, e: usize| -> Option<f64> {
        let c = cell_at(b, e)?;
        paper_top1(b, e, data.first(c).config.optimizer.lr_scaling)
    };
    let with_paper: Vec<usize> = epochs
        .iter()
        .copied()
        .filter(|&e| batches.iter().any(|&b| paper_at(b, e).is_some()))
        .collect();
    let mut header = vec!["batch size".to_string()];
    for e in &epochs {
        header.push(format!("{e} epochs"));
        if with_paper.contains(e) {
            header.push(format!("paper {e} epochs"));
        }
    }
    let rows = batches
        .iter()
        .map(|&b| {
            let mut r = vec![Val::text(b.to_string())];
            for &e in &epochs {
                r.push(Val::Ours(value(b, e)));
                if with_paper.contains(&e) {
                    r.push(Val::Paper(paper_at(b, e)));
                }
            }
            r
        })
        .collect();
    let mut rules: Vec<LrScaling> = Vec::new();
    for c in cells {
        let r = data.first(c).config.optimizer.lr_scaling;
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    let mut notes = Vec::new();
    if !with_paper.is_empty() {
        let names: Vec<&str> = rules.iter().map(|&r| scaling_name(r)).collect();
        notes.push(format!(
            "Paper columns: Table B.1 (ImageNet, ResNet-50, LARS) under the learning-rate \
             scaling rule each cell was trained with ({}); the paper's Figure 9 is its \
             linear-scaling column.",
            names.join(", ")
        ));
    }
    notes.extend(protocols::notes(data, std::slice::from_ref(&label)));
    let caption =
        format!("Figure 9{suffix}: top-1 (%) of {label} against batch size and training epochs");
    let mut s = Section::new(format!("Figure 9: batch size and epochs{suffix}"));
    s.tables.push(Table {
        id: format!("fig9_batch_epochs{id}"),
        caption: caption.clone(),
        header,
        rows,
        notes,
    });
    if with_paper.is_empty() {
        // None of our cells is one of the paper's: its Table B.1 as a reference of trends.
        let scalings = [LrScaling::Linear, LrScaling::Sqrt];
        let mut header = vec!["batch size".to_string()];
        for e in B1_EPOCHS {
            for r in scalings {
                header.push(format!("{e} epochs, {}", scaling_name(r)));
            }
        }
        s.tables.push(Table {
            id: format!("table_b1_paper{id}"),
            caption: "The paper's Table B.1 (ImageNet, ResNet-50, LARS): top-1 (%) with linear \
                      (0.3 x B/256) and square-root (0.075 x sqrt(B)) LR scaling"
                .into(),
            header,
            rows: B1_BATCHES
                .iter()
                .map(|&b| {
                    let mut r = vec![Val::text(b.to_string())];
                    for e in B1_EPOCHS {
                        r.extend(scalings.iter().map(|&sc| Val::Paper(paper_top1(b, e, sc))));
                    }
                    r
                })
                .collect(),
            notes: vec![
                "None of this sweep's cells has one of the paper's batch sizes and epochs under \
                 its LR scaling rule; compare trends."
                    .into(),
            ],
        });
    }
    s.figures.push(Figure {
        id: format!("fig9_batch_epochs{id}"),
        title: format!("Figure 9{suffix}: top-1 (%) by batch size and epochs"),
        caption,
        plot: Plot::Bars {
            x_label: "batch size".into(),
            y_label: "top-1 (%)".into(),
            groups: batches.iter().map(|b| b.to_string()).collect(),
            bars: epochs.iter().map(|e| format!("{e} epochs")).collect(),
            values: batches
                .iter()
                .map(|&b| epochs.iter().map(|&e| value(b, e)).collect())
                .collect(),
            reference: None,
        },
    });
    s.paper = paper::table_lines(data, &TABLE_B1, cells);
    s
}

/// Figure 9: the largest batch's advantage over the smallest at the fewest epochs is
/// larger than at the most (the gap closes with training). `cells`: [fewest, most
/// epochs] x [largest, smallest batch].
fn gap_closes(
    (b_large, b_small): (usize, usize),
    (e_few, e_many): (usize, usize),
    [[l0, s0], [l1, s1]]: [[&CellValue; 2]; 2],
) -> Finding {
    gap_shrinks(
        &format!(
            "Figure 9: the gap closes with training (batch {b_large} minus batch {b_small}, at {e_few} vs {e_many} epochs)"
        ),
        (&format!("gap at {e_few} epochs"), [l0, s0]),
        (&format!("gap at {e_many} epochs"), [l1, s1]),
        "the two batch sizes share no finished seed at both epoch counts",
    )
}

/// Figure 9: the largest batch beats the smallest at the fewest epochs, and the gap
/// closes with training.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let mut epochs: Vec<usize> = data
        .cells
        .iter()
        .map(|c| data.first(c).config.epochs)
        .collect();
    let mut batches: Vec<usize> = data
        .cells
        .iter()
        .map(|c| data.first(c).config.batch_size)
        .collect();
    for v in [&mut epochs, &mut batches] {
        v.sort_unstable();
        v.dedup();
    }
    let (Some(&e0), Some(&e1), Some(&b0), Some(&b1)) = (
        epochs.first(),
        epochs.last(),
        batches.first(),
        batches.last(),
    ) else {
        return Vec::new();
    };
    if b0 == b1 {
        return Vec::new();
    }
    let at = |b: usize, e: usize| {
        best(data, label, move |c| c.batch_size == b && c.epochs == e).map(|x| x.1)
    };
    let mut out = Vec::new();
    let (Some(l0), Some(s0)) = (at(b1, e0), at(b0, e0)) else {
        return out;
    };
    out.push(judge(
        &format!("Figure 9: a larger batch helps at the fewest epochs ({e0} epochs)"),
        (&format!("batch {b1}"), &l0),
        (&format!("batch {b0}"), &s0),
    ));
    if let (true, Some(l1), Some(s1)) = (e0 != e1, at(b1, e1), at(b0, e1)) {
        out.push(gap_closes((b1, b0), (e0, e1), [[&l0, &s0], [&l1, &s1]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::{test_value as v, Mark, Stat};
    use crate::report::findings::Verdict;

    #[test]
    fn table_b1_has_the_linear_scaling_column_figure_9_plots() {
        assert_eq!(paper_top1(1024, 400, LrScaling::Linear), Some(67.2));
        assert_eq!(paper_top1(8192, 800, LrScaling::Linear), Some(69.0));
        assert_eq!(paper_top1(100, 2, LrScaling::Linear), None);
    }

    #[test]
    fn table_b1_has_both_scaling_rules_and_none_for_unscaled_runs() {
        // The corners and a middle cell of each side of the slash (arXiv v3, Table B.1).
        assert_eq!(paper_top1(256, 100, LrScaling::Linear), Some(57.5));
        assert_eq!(paper_top1(256, 100, LrScaling::Sqrt), Some(62.8));
        assert_eq!(paper_top1(2048, 400, LrScaling::Sqrt), Some(67.9));
        assert_eq!(paper_top1(8192, 800, LrScaling::Sqrt), Some(69.1));
        assert_eq!(paper_top1(4096, 100, LrScaling::Sqrt), Some(64.5));
        // At batch 4096 the two rules give the same learning rate (4.8): close values.
        for e in B1_EPOCHS {
            let (l, q) = (
                paper_top1(4096, e, LrScaling::Linear).unwrap(),
                paper_top1(4096, e, LrScaling::Sqrt).unwrap(),
            );
            assert!((l - q).abs() <= 0.3, "{e}: {l} vs {q}");
        }
        // Square root wins at small batches and few epochs, as the caption says.
        assert!(paper_top1(256, 100, LrScaling::Sqrt) > paper_top1(256, 100, LrScaling::Linear));
        assert_eq!(paper_top1(256, 100, LrScaling::None), None);
    }

    #[test]
    fn the_batch_gap_closes_only_when_its_per_seed_shrinkage_is_beyond_noise() {
        let (l0, s0) = (v(&[60.0, 61.2, 59.5]), v(&[55.0, 56.5, 54.8]));
        let s1 = v(&[69.0, 70.2, 68.5]);
        // Gaps 5.0, 4.7, 4.7 then 1.1, 0.7, 1.3: scipy.stats.ttest_rel p = 0.00242.
        let l1 = v(&[70.1, 70.9, 69.8]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Held, "{}", f.line);
        for part in [
            "batch 1024 minus batch 256, at 100 vs 800 epochs",
            "gap at 100 epochs +4.8 points vs gap at 800 epochs +1.0 points",
            "paired t(2) = 20.30, p = 0.002",
        ] {
            assert!(f.line.contains(part), "{part}: {}", f.line);
        }
        // The same mean gap at 800 epochs, but its sign changes across seeds (p = 0.301).
        let l1 = v(&[74.0, 66.0, 71.0]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        assert!(f.line.contains("p = 0.301"), "{}", f.line);
        // The gap widens with training, consistently: not held.
        let l1 = v(&[79.0, 80.5, 78.8]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::NotHeld, "{}", f.line);
        // No seed shared by both batch sizes: nothing to pair.
        let lone = CellValue::Value {
            stat: Stat::of(&[60.0]).unwrap(),
            expected: 1,
            seeds: vec![(7, 60.0)],
            mark: Mark::None,
        };
        let f = gap_closes((1024, 256), (100, 800), [[&lone, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        assert!(f.line.contains("share no finished seed"), "{}", f.line);
    }
}
