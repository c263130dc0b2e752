//! Figure 8, projection heads (`head`, `head.kind`, `head.out_dim`): linear evaluation
//! against the projection's output dimension per head kind, on h and on z = g(h), the
//! same as a table, and the paper's claims: a nonlinear head beats a linear one, a linear
//! head beats none, and h is better than z.

use crate::ml::config::{EvalConfig, FeatureSource, HeadKind};
use crate::report::aggregate::{CellData, Stat, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, judge, Finding};
use crate::report::labels;
use crate::report::paper::{self, PaperSetting};
use crate::report::plots::{Plot, Series};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{label_header, Val};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "head_dims",
    chosen_by: ChosenBy::Axes {
        axes: &["head", "head.kind", "head.out_dim"],
        takes_over: &[],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 4,
    claims,
};

/// Figure 8: the default setting of section 2.3 (batch 4096, 100 epochs).
const FIGURE_8: PaperSetting = PaperSetting {
    source: "Figure 8",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Figure 8's qualitative finding.
const FIGURE_8_FINDING: &str = "a nonlinear head beats a linear one by about 3% and \
     no head by more than 10%; the output dimension matters little; h beats z = g(h) by more \
     than 10%";

fn head_kind_name(k: HeadKind) -> &'static str {
    match k {
        HeadKind::None => "none",
        HeadKind::Linear => "linear",
        HeadKind::Nonlinear => "nonlinear",
    }
}

/// Figure 8: top-1 against the projection output dimension per head kind, h and z.
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    // The linear columns with their typed configs (the default evaluation before any).
    let mut linear_labels: Vec<(String, EvalConfig)> = data
        .labels
        .iter()
        .filter_map(|l| Some((l.clone(), data.eval_config(l)?)))
        .filter(|(_, c)| labels::is_linear(c))
        .collect();
    if linear_labels.is_empty() {
        linear_labels.push((data.primary(), EvalConfig::default()));
    }
    let mut series = Vec::new();
    let mut flat = Vec::new();
    for (ki, kind) in [HeadKind::None, HeadKind::Linear, HeadKind::Nonlinear]
        .into_iter()
        .enumerate()
    {
        for (label, eval) in &linear_labels {
            let on = eval.on.name();
            // Two linear protocols on the same representation stay apart in the legend.
            let proto = if labels::is_augmented_linear(eval) {
                " (augmented)"
            } else {
                ""
            };
            let mut points: Vec<(f64, Stat)> = cells
                .iter()
                .filter(|c| data.first(c).config.head.kind == kind)
                .filter_map(|c| {
                    let dim = data.first(c).config.head.out_dim.unwrap_or(0) as f64;
                    data.top1(c, label).stat().map(|s| (dim, s))
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let sr = Series {
                name: format!("{} head, {on}{proto}", head_kind_name(kind)),
                color: ki,
                dashed: eval.on == FeatureSource::Z,
                points,
            };
            if kind == HeadKind::None {
                flat.push(sr);
            } else {
                series.push(sr);
            }
        }
    }
    let mut header = vec!["head".to_string(), "output dim".to_string()];
    header.extend(data.labels.iter().map(|l| label_header(l)));
    let rows = cells
        .iter()
        .map(|c| {
            let h = &data.first(c).config.head;
            let mut r = vec![
                Val::text(head_kind_name(h.kind)),
                Val::text(
                    h.out_dim
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "—".into()),
                ),
            ];
            r.extend(data.labels.iter().map(|l| Val::Ours(data.top1(c, l))));
            r
        })
        .collect();
    let mut notes = Vec::new();
    // Our h-versus-z gap where both were evaluated.
    let on = |side: FeatureSource| {
        linear_labels
            .iter()
            .find(|(_, c)| c.on == side)
            .map(|(l, _)| l)
    };
    let (h, z) = (on(FeatureSource::H), on(FeatureSource::Z));
    if let (Some(h), Some(z)) = (h, z) {
        let gaps: Vec<f64> = cells
            .iter()
            .filter(|c| data.first(c).config.head.kind != HeadKind::None)
            .filter_map(|c| Some(data.top1(c, h).stat()?.mean - data.top1(c, z).stat()?.mean))
            .collect();
        if let Some(g) = Stat::of(&gaps) {
            notes.push(format!(
                "Ours: h minus z = {:+.1} points on average over the {} heads evaluated on both.",
                g.mean, g.n
            ));
        }
    }
    notes.extend(protocols::notes(data, &data.labels));
    let caption =
        format!("Figure 8{suffix}: linear evaluation against projection head and output dimension");
    let mut s = Section::table_and_figure(
        format!("Figure 8: projection heads{suffix}"),
        format!("fig8_head_dims{id}"),
        caption,
        (header, rows, notes),
        format!("Figure 8{suffix}: top-1 against output dimension (solid h, dashed z)"),
        Plot::Lines {
            x_label: "projection output dimensionality".into(),
            y_label: "top-1 (%)".into(),
            series,
            flat,
        },
    );
    s.paper = paper::finding_lines(data, &data.primary(), FIGURE_8_FINDING, &FIGURE_8, cells);
    s
}

/// Figure 8's claims, each between the best cells of the head kinds compared: nonlinear
/// beats linear, linear beats none, and the best nonlinear head's h beats its z.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let kind = |k: HeadKind| best(data, label, move |c| c.head.kind == k);
    let name = |k: &str, c: &CellData| match data.first(c).config.head.out_dim {
        Some(d) => format!("{k} head (out dim {d})"),
        None => format!("{k} head"),
    };
    let (nl, li, no) = (
        kind(HeadKind::Nonlinear),
        kind(HeadKind::Linear),
        kind(HeadKind::None),
    );
    if let (Some((cn, vn)), Some((cl, vl))) = (&nl, &li) {
        out.push(judge(
            "Figure 8: a nonlinear head beats a linear one",
            (&name("nonlinear", cn), vn),
            (&name("linear", cl), vl),
        ));
    }
    if let (Some((cl, vl)), Some((_, v0))) = (&li, &no) {
        out.push(judge(
            "Figure 8: a linear head beats no head",
            (&name("linear", cl), vl),
            ("no head", v0),
        ));
    }
    let z_label = data.eval_config(label).map(|c| labels::on_z(&c));
    let z_label = z_label.filter(|z| data.labels.contains(z));
    if let (Some((cn, vh)), Some(z_label)) = (&nl, z_label) {
        out.push(judge(
            "Figure 8: h is better than z (best nonlinear head)",
            (label, vh),
            (&z_label, &data.top1(cn, &z_label)),
        ));
    }
    out
}
