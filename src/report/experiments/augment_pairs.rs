//! Figure 5, the composition of augmentations (`augment.ops`): a heatmap of the primary
//! evaluation's top-1 with the first transformation as rows and the second as columns
//! (the diagonal a transformation alone), the same as a table with row averages, and the
//! paper's two claims about it: composing beats any single transformation, and crop with
//! colour is the strongest pair. The paper publishes no cell values in text.

use crate::ml::config::{AugOp, AugProtocol, PretrainConfig};

use crate::report::aggregate::{CellValue, Stat, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, judge, Finding};
use crate::report::paper::{self, PaperSetting};
use crate::report::plots::{Figure, Plot};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{Table, Val};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "augment_pairs",
    chosen_by: ChosenBy::Axes {
        axes: &["augment.ops"],
        takes_over: &[],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 3,
    claims,
};

/// Figure 5: ImageNet, ResNet-50, trained in the default setting of section 2.3 ("unless
/// otherwise specified": batch 4096, 100 epochs), which section 3 does not override; its
/// cell values are not published in text.
pub(crate) const FIGURE_5: PaperSetting = PaperSetting {
    source: "Figure 5",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Figure 5's qualitative finding, as the paper's text states it.
const FIGURE_5_FINDING: &str = "crop + color stands out; no single transformation \
     suffices (the paper's cell values are not published in text)";

/// Figure 5: the augmentation heatmap (rows first op, columns second, diagonal single).
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    let label = data.primary();
    let ops_of = |c: &crate::report::aggregate::CellData| data.first(c).config.augment.ops.clone();
    let ops: Vec<AugOp> = AugOp::ALL
        .into_iter()
        .filter(|op| cells.iter().any(|c| ops_of(c).contains(op)))
        .collect();
    let names: Vec<String> = ops.iter().map(|o| o.name().to_string()).collect();
    let n = ops.len();
    let mut values = vec![vec![CellValue::Missing("missing"); n]; n];
    for c in cells {
        let o = ops_of(c);
        let (a, b) = match o.as_slice() {
            [a] => (*a, *a),
            [a, b] => (*a, *b),
            _ => continue,
        };
        let (Some(i), Some(j)) = (
            ops.iter().position(|x| *x == a),
            ops.iter().position(|x| *x == b),
        ) else {
            continue;
        };
        values[i][j] = data.top1(c, &label);
    }
    let row_avg: Vec<Option<(f64, bool)>> = values
        .iter()
        .map(|row| {
            let v: Vec<f64> = row
                .iter()
                .filter_map(|x| x.stat().map(|s| s.mean))
                .collect();
            Stat::of(&v).map(|s| (s.mean, v.len() < row.len()))
        })
        .collect();
    let mut header = vec!["1st \\ 2nd".to_string()];
    header.extend(names.iter().cloned());
    header.push("row avg".into());
    let rows = values
        .iter()
        .zip(&names)
        .zip(&row_avg)
        .map(|((row, name), avg)| {
            let mut r = vec![Val::text(name.clone())];
            r.extend(row.iter().cloned().map(Val::Ours));
            r.push(Val::text(match avg {
                Some((v, false)) => format!("{v:.1}"),
                Some((v, true)) => format!("{v:.1} (partial)"),
                None => "—".into(),
            }));
            r
        })
        .collect();
    let mut notes = vec![format!(
        "Top-1 (%) of {label}; diagonal: the transformation alone; off-diagonal: row, then column, on one branch."
    )];
    if row_avg.iter().flatten().any(|a| a.1) {
        notes.push("A partial row average is over the cells of the row that have a value.".into());
    }
    let mut protocols: Vec<AugProtocol> = Vec::new();
    for c in cells {
        let p = data.first(c).config.augment.protocol;
        if !protocols.contains(&p) {
            protocols.push(p);
        }
    }
    for p in protocols {
        notes.push(match p {
            AugProtocol::OneBranch => "Protocol one_branch (the paper's): a random crop, drawn each step, shared by both branches; the ops on one branch, the other is that crop.",
            AugProtocol::OneBranchRaw => "Protocol one_branch_raw (not the paper's): the ops on the raw image, the other view the raw image.",
            AugProtocol::Symmetric => "Protocol symmetric (not Figure 5's): the ops on both views.",
        }.into());
    }
    notes.extend(protocols::notes(data, std::slice::from_ref(&label)));
    let caption = format!(
        "Figure 5{suffix}: linear evaluation under single or composed augmentations (one-branch protocol)"
    );
    let mut s = Section::new(format!("Figure 5: composition of augmentations{suffix}"));
    s.tables.push(Table {
        id: format!("fig5_augment_pairs{id}"),
        caption: caption.clone(),
        header,
        rows,
        notes,
    });
    s.figures.push(Figure {
        id: format!("fig5_augment_heatmap{id}"),
        title: format!("Figure 5{suffix}: top-1 (%) of {label}"),
        caption,
        plot: Plot::Heatmap {
            ops: names,
            values,
            row_avg,
            scale_label: "top-1 (%)".into(),
            floor: None,
        },
    });
    s.paper = paper::finding_lines(data, &label, FIGURE_5_FINDING, &FIGURE_5, cells);
    s
}

/// The transformations of a cell joined as the claims name it: `crop+color`.
fn ops_name(c: &PretrainConfig) -> String {
    let names: Vec<&str> = c.augment.ops.iter().map(|o| o.name()).collect();
    names.join("+")
}

/// Figure 5's claims: the best pair beats the best single transformation, and crop with
/// colour beats the best other pair.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let pair = |keep: &dyn Fn(&PretrainConfig) -> bool| {
        best(data, label, keep).map(|(c, v)| (ops_name(&data.first(c).config), v))
    };
    let composed = pair(&|c| c.augment.ops.len() == 2);
    let single = pair(&|c| c.augment.ops.len() == 1);
    if let (Some((an, a)), Some((bn, b))) = (&composed, &single) {
        out.push(judge(
            "Figure 5: composition beats single transformations (best pair vs best single)",
            (an, a),
            (bn, b),
        ));
    }
    let is_cc = |c: &PretrainConfig| {
        let o = &c.augment.ops;
        o.len() == 2 && o.contains(&AugOp::Crop) && o.contains(&AugOp::Color)
    };
    let cc = pair(&|c| is_cc(c));
    let other = pair(&|c| c.augment.ops.len() == 2 && !is_cc(c));
    if let (Some((an, a)), Some((bn, b))) = (&cc, &other) {
        out.push(judge(
            "Figure 5: crop with colour is the strongest pair (vs the best other pair)",
            (an, a),
            (bn, b),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{Arch, EvalConfig};

    #[test]
    fn figure_5s_default_setting_and_the_linear_protocol_are_listed_as_differences() {
        let mut c = PretrainConfig::default();
        c.encoder.arch = Arch::Convnet;
        c.epochs = 3;
        c.batch_size = 512;
        assert_eq!(
            paper::differences(&FIGURE_5, &[&c]),
            [
                "dataset: paper ImageNet, ours CIFAR-10",
                "encoder: paper ResNet-50, ours ConvNet",
                "epochs: paper 100, ours 3",
                "batch size: paper 4096, ours 512"
            ]
        );
        let fast = protocols::protocol_difference("linear@h", &EvalConfig::default()).unwrap();
        assert!(
            fast.contains("ours linear@h, features extracted once"),
            "{fast}"
        );
        let augmented =
            protocols::protocol_difference("linear-aug@h", &EvalConfig::augmented()).unwrap();
        assert!(
            augmented.contains("same protocol at batch 512, 100 epochs"),
            "{augmented}"
        );
        let mut exact = EvalConfig::augmented();
        let t = exact.training_mut().unwrap();
        t.batch_size = 4096;
        t.epochs = 90;
        assert_eq!(protocols::protocol_difference("linear-aug@h", &exact), None);
    }
}
