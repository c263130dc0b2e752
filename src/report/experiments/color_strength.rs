//! Table 1, colour distortion strength (`augment.color_strength`): the primary
//! evaluation's top-1 per strength (and strength 1 with blur), a row of ours and a row of
//! the paper's per method (SimCLR, then the supervised baseline), the same as grouped
//! bars, and the paper's claims: stronger distortion helps SimCLR, weaker does better for
//! the supervised baseline.

use crate::ml::config::{AugOp, Method, PretrainConfig};
use crate::report::aggregate::{CellValue, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, judge, Finding};
use crate::report::paper::{self, method_name, PaperSetting};
use crate::report::plots::Plot;
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::Val;

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "color_strength",
    chosen_by: ChosenBy::Axes {
        axes: &["augment.color_strength"],
        // Its rows (the method) and the ops that add blur to its last column.
        takes_over: &["method", "augment.ops"],
    },
    supersedes: &["augment_pairs"],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 1,
    claims,
};

/// Table 1: ImageNet, ResNet-50, the default setting of section 2.3 (batch 4096, 100
/// epochs), which section 3 does not override.
const TABLE_1: PaperSetting = PaperSetting {
    source: "Table 1",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 1's qualitative finding.
const TABLE_1_FINDING: &str = "stronger colour distortion improves the linear \
     evaluation of unsupervised (SimCLR) models and does not help, or hurts, supervised ones";

/// Table 1's colour strengths, the columns left to right before `1 (+Blur)`.
const TABLE_1_STRENGTHS: [f64; 4] = [0.125, 0.25, 0.5, 1.0];

/// Table 1 top-1 (%) of `method` at colour strength `strength`, with Gaussian blur added
/// (`blur`: the last column, only at strength 1). SimCLR: linear evaluation of the
/// unsupervised ResNet-50; supervised: the supervised ResNet-50 trained under the same
/// augmentation (its own top-1). `None` where the paper has no such column (and for the
/// AutoAugment column, which this crate does not implement).
fn paper_top1(method: Method, strength: f64, blur: bool) -> Option<f64> {
    const SIMCLR: [f64; 5] = [59.6, 61.0, 62.6, 63.2, 64.5];
    const SUPERVISED: [f64; 5] = [77.0, 76.7, 76.5, 75.7, 75.4];
    let col = match TABLE_1_STRENGTHS
        .iter()
        .position(|&x| (x - strength).abs() < 1e-9)?
    {
        3 if blur => 4,
        _ if blur => return None,
        i => i,
    };
    Some(match method {
        Method::Simclr => SIMCLR[col],
        Method::Supervised => SUPERVISED[col],
    })
}

/// A Table 1 column: the colour strength and whether blur was added.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ColorColumn {
    strength: f64,
    blur: bool,
}

impl ColorColumn {
    fn of(c: &PretrainConfig) -> ColorColumn {
        ColorColumn {
            strength: c.augment.color_strength,
            blur: c.augment.ops.contains(&AugOp::Blur),
        }
    }

    /// "1/8", "1/2", "1 (+Blur)" as Table 1 heads its columns; other strengths in decimal.
    fn name(self) -> String {
        let s = match self.strength {
            0.125 => "1/8".to_string(),
            0.25 => "1/4".to_string(),
            0.5 => "1/2".to_string(),
            x => format!("{x}"),
        };
        if self.blur {
            format!("{s} (+Blur)")
        } else {
            s
        }
    }
}

/// Table 1: top-1 of the primary evaluation against colour distortion strength, a row of
/// ours and a row of the paper's per method (SimCLR, then the supervised baseline), and the
/// same as grouped bars.
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    let label = data.primary();
    let mut columns: Vec<ColorColumn> = Vec::new();
    let mut methods: Vec<Method> = Vec::new();
    for c in cells {
        let k = &data.first(c).config;
        if !columns.contains(&ColorColumn::of(k)) {
            columns.push(ColorColumn::of(k));
        }
        if !methods.contains(&k.method) {
            methods.push(k.method);
        }
    }
    columns.sort_by(|a, b| a.strength.total_cmp(&b.strength).then(a.blur.cmp(&b.blur)));
    methods.sort_by_key(|m| *m != Method::Simclr);
    let value = |m: Method, col: ColorColumn| -> CellValue {
        cells
            .iter()
            .find(|c| {
                let k = &data.first(c).config;
                k.method == m && ColorColumn::of(k) == col
            })
            .map(|c| data.top1(c, &label))
            .unwrap_or(CellValue::Missing("missing"))
    };
    let mut header = vec!["method".to_string()];
    header.extend(columns.iter().map(|c| c.name()));
    let mut rows = Vec::new();
    for &m in &methods {
        let mut ours = vec![Val::text(format!("{} (ours)", method_name(m)))];
        ours.extend(columns.iter().map(|&col| Val::Ours(value(m, col))));
        rows.push(ours);
        let mut paper_row = vec![Val::text(format!("{} (paper)", method_name(m)))];
        paper_row.extend(
            columns
                .iter()
                .map(|col| Val::Paper(paper_top1(m, col.strength, col.blur))),
        );
        rows.push(paper_row);
    }
    let mut notes = vec![
        format!(
            "Top-1 (%) of {label} on the frozen h of each encoder: SimCLR's, and the supervised \
             baseline's (the same encoder trained with cross-entropy on the labels, one view \
             per image under the same augmentation)."
        ),
        "Paper rows: ImageNet, ResNet-50 (Chen et al. 2020, Table 1). Its SimCLR row is \
         linear evaluation; its supervised row is the supervised network's own top-1, not a \
         linear evaluation of its h as ours is."
            .into(),
        "Colour strength s: jitter of brightness, contrast, saturation 0.8s and hue 0.2s with \
         p = 0.8, then grayscale with p = 0.2 (appendix A); +Blur adds Gaussian blur (p = 0.5), \
         the paper's ImageNet default."
            .into(),
    ];
    notes.extend(protocols::notes(data, std::slice::from_ref(&label)));
    let caption = format!(
        "Table 1{suffix}: top-1 (%) of {label} against colour distortion strength, SimCLR and \
         supervised"
    );
    let mut s = Section::table_and_figure(
        format!("Table 1: colour distortion strength, SimCLR and supervised{suffix}"),
        format!("table1_color_strength{id}"),
        caption,
        (header, rows, notes),
        format!("Table 1{suffix}: top-1 (%) of {label} by colour strength"),
        Plot::Bars {
            x_label: "colour distortion strength".into(),
            y_label: "top-1 (%)".into(),
            groups: columns.iter().map(|c| c.name()).collect(),
            bars: methods
                .iter()
                .map(|&m| method_name(m).to_string())
                .collect(),
            values: columns
                .iter()
                .map(|&col| methods.iter().map(|&m| value(m, col)).collect())
                .collect(),
            reference: None,
        },
    );
    s.paper = paper::finding_lines(data, &label, TABLE_1_FINDING, &TABLE_1, cells);
    s
}

/// Table 1's two claims, each between the weakest and the strongest colour distortion
/// without blur: stronger helps SimCLR; weaker does better for the supervised baseline.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let plain = |c: &PretrainConfig| !c.augment.ops.contains(&AugOp::Blur);
    let mut strengths: Vec<f64> = data
        .cells
        .iter()
        .map(|c| &data.first(c).config)
        .filter(|c| plain(c))
        .map(|c| c.augment.color_strength)
        .collect();
    strengths.sort_by(f64::total_cmp);
    let (Some(&weak), Some(&strong)) = (strengths.first(), strengths.last()) else {
        return vec![];
    };
    if weak == strong {
        return vec![];
    }
    let at = |m: Method, s: f64| {
        best(data, label, move |c| {
            c.method == m && plain(c) && c.augment.color_strength == s
        })
    };
    let mut out = Vec::new();
    for (m, claim, first, second) in [
        (
            Method::Simclr,
            "Table 1: stronger colour distortion helps SimCLR",
            strong,
            weak,
        ),
        (
            Method::Supervised,
            "Table 1: weaker colour distortion does better for the supervised baseline",
            weak,
            strong,
        ),
    ] {
        if let (Some((_, a)), Some((_, b))) = (at(m, first), at(m, second)) {
            let name = |s: f64| format!("strength {s}");
            out.push(judge(
                &format!("{claim} (strength {first} vs {second})"),
                (&name(first), &a),
                (&name(second), &b),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_1_has_both_rows_and_blur_only_at_strength_1() {
        let row = |m| {
            let mut r: Vec<Option<f64>> = TABLE_1_STRENGTHS
                .iter()
                .map(|&s| paper_top1(m, s, false))
                .collect();
            r.push(paper_top1(m, 1.0, true));
            r
        };
        let some = |v: [f64; 5]| v.map(Some).to_vec();
        assert_eq!(row(Method::Simclr), some([59.6, 61.0, 62.6, 63.2, 64.5]));
        assert_eq!(
            row(Method::Supervised),
            some([77.0, 76.7, 76.5, 75.7, 75.4])
        );
        assert_eq!(paper_top1(Method::Simclr, 0.5, true), None);
        assert_eq!(paper_top1(Method::Supervised, 0.3, false), None);
    }
}
