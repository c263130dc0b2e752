//! Figure 7, model size (the encoder's depth or width): the primary evaluation's top-1
//! against the encoder's parameter count, a series per method (SimCLR, the supervised
//! baseline) and each encoder's random-weights control, the paper's ImageNet numbers
//! (Table 6's) in a panel beside, the same as a table; and the paper's claims: a bigger
//! encoder helps SimCLR, and the supervised baseline's lead shrinks as the encoder grows.

use crate::ml::config::Arch;
use crate::ml::config::{EncoderConfig, Method, PretrainConfig, Stem};
use crate::ml::model::encoder::{param_count, IN_CHANNELS};
use crate::report::aggregate::{CellData, CellValue, Stat, SweepData};
use crate::report::control;
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, gap_shrinks, judge, Finding};
use crate::report::paper::{self, encoder_config_name, method_name, PaperSetting};
use crate::report::plots::{Plot, ScatterPanel, Series};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::Val;

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "model_size",
    chosen_by: ChosenBy::Axes {
        axes: &["encoder", "encoder.arch", "encoder.width"],
        // Its two series.
        takes_over: &["method"],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 8,
    claims,
};

/// Figure 7 / Table 6: the paper's points that have a number in its text, all ImageNet:
/// SimCLR's ResNet-50 at widths 1x, 2x, 4x trained 1000 epochs at batch 4096 (Table 6's
/// linear evaluation; Figure 7's red stars) and the supervised ResNet-50 (the abstract's
/// and Figure 1's 76.5, trained 90 epochs). Figure 7's other points (ResNet-18 to -152,
/// SimCLR at 100 epochs, the other supervised ResNets) are drawn, not written.
const FIGURE_7: PaperSetting = PaperSetting {
    source: "Figure 7 / Table 6",
    dataset: "ImageNet",
    encoder: "ResNet-50, ResNet-50 (2x), ResNet-50 (4x)",
    epochs: Some(1000),
    batch_size: Some(4096),
};

/// Figure 7's qualitative finding.
const FIGURE_7_FINDING: &str = "increasing depth and width both improve linear \
     evaluation, and the gap between supervised models and linear classifiers on \
     unsupervised (SimCLR) ones shrinks as the model grows: unsupervised learning benefits \
     more from bigger models";

/// Figure 7 / Table 6 top-1 (%) of `method` with encoder `arch` at width multiplier
/// `width` on ImageNet, where the paper's text gives it ([`FIGURE_7`]): SimCLR linear
/// evaluation of ResNet-50 1x / 2x / 4x 69.3 / 74.2 / 76.5; the supervised ResNet-50 76.5
/// (its own top-1). `None` elsewhere.
fn paper_top1(method: Method, arch: Arch, width: usize) -> Option<f64> {
    match (method, arch, width) {
        (Method::Simclr, Arch::Resnet50, 1) => Some(69.3),
        (Method::Simclr, Arch::Resnet50, 2) => Some(74.2),
        (Method::Simclr, Arch::Resnet50, 4) => Some(76.5),
        (Method::Supervised, Arch::Resnet50, 1) => Some(76.5),
        _ => None,
    }
}

/// An encoder's trainable parameters (what Figure 7's x axis counts).
fn encoder_params(e: &EncoderConfig) -> usize {
    param_count(e, IN_CHANNELS)
}

/// The distinct encoders of `configs`, fewest parameters first.
fn encoders_by_size<'a>(configs: impl Iterator<Item = &'a PretrainConfig>) -> Vec<EncoderConfig> {
    let mut out: Vec<EncoderConfig> = Vec::new();
    for c in configs {
        if !out.contains(&c.encoder) {
            out.push(c.encoder.clone());
        }
    }
    out.sort_by_key(|e| (encoder_params(e), e.width));
    out
}

/// A parameter count in millions: `23.5M`.
fn millions(n: usize) -> String {
    format!("{:.1}M", n as f64 / 1e6)
}

/// Figure 7: top-1 of the primary evaluation against the encoder's parameter count, a
/// series per method (SimCLR, the supervised baseline) and each encoder's random-weights
/// control, with the paper's ImageNet numbers in a panel beside; and the same as a table,
/// one row per encoder, fewest parameters first.
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    let label = data.primary();
    let encoders = encoders_by_size(cells.iter().map(|c| &*data.first(c).config));
    let mut methods: Vec<Method> = Vec::new();
    for c in cells {
        let m = data.first(c).config.method;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    methods.sort_by_key(|m| *m != Method::Simclr);
    let cells_of = |e: &EncoderConfig| -> Vec<&CellData> {
        cells
            .iter()
            .copied()
            .filter(|c| data.first(c).config.encoder == *e)
            .collect()
    };
    let value = |m: Method, e: &EncoderConfig| -> CellValue {
        cells_of(e)
            .into_iter()
            .find(|c| data.first(c).config.method == m)
            .map(|c| data.top1(c, &label))
            .unwrap_or(CellValue::Missing("missing"))
    };
    let control = |e: &EncoderConfig| -> Option<CellValue> {
        data.control_of(&cells_of(e), &label)
            .map(|k| data.top1(k, &label))
    };
    let has_control = encoders.iter().any(|e| control(e).is_some());
    let paper_at = |m: Method, e: &EncoderConfig| paper_top1(m, e.arch, e.width);
    let has_paper = encoders
        .iter()
        .any(|e| methods.iter().any(|&m| paper_at(m, e).is_some()));
    let both = methods.len() == 2;

    let mut header = vec!["encoder".to_string(), "parameters".to_string()];
    header.extend(
        methods
            .iter()
            .map(|&m| format!("{} (ours)", method_name(m))),
    );
    if both {
        header.push("supervised - SimCLR".into());
    }
    if has_control {
        header.push(control::COLUMN.into());
    }
    if has_paper {
        header.extend(
            methods
                .iter()
                .map(|&m| format!("{} (paper, ImageNet)", method_name(m))),
        );
    }
    let rows = encoders
        .iter()
        .map(|e| {
            let mut r = vec![
                Val::text(encoder_config_name(e)),
                Val::text(millions(encoder_params(e))),
            ];
            r.extend(methods.iter().map(|&m| Val::Ours(value(m, e))));
            if both {
                let (sim, sup) = (value(Method::Simclr, e), value(Method::Supervised, e));
                r.push(Val::text(match (sim.stat(), sup.stat()) {
                    (Some(a), Some(b)) => format!("{:+.1}", b.mean - a.mean),
                    _ => "—".to_string(),
                }));
            }
            if has_control {
                r.push(match control(e) {
                    Some(v) => Val::Ours(v),
                    None => Val::text("—"),
                });
            }
            if has_paper {
                r.extend(methods.iter().map(|&m| Val::Paper(paper_at(m, e))));
            }
            r
        })
        .collect();
    let stems: Vec<&str> = {
        let mut v: Vec<&str> = encoders
            .iter()
            .map(|e| match e.stem {
                Stem::Cifar => "the CIFAR stem (3x3 stride-1 conv)",
                Stem::Imagenet => "the ImageNet stem (7x7 stride-2 conv)",
            })
            .collect();
        v.dedup();
        v
    };
    let mut notes = vec![
        format!(
            "Top-1 (%) of {label} on the frozen h of each encoder: SimCLR's, and the supervised \
             baseline's (the same encoder trained with cross-entropy on the labels, one view \
             per image under the same augmentation)."
        ),
        format!(
            "Parameters: the encoder's own, counted from its config (convolution kernels and \
             BatchNorm scales and shifts; no projection head or classifier), with {}; the \
             width multiplier scales every block's channels and the stem's, as the official \
             code's.",
            stems.join(" and ")
        ),
    ];
    if both {
        notes.push(
            "supervised - SimCLR: the difference of the two means (points); the paper finds \
             it shrinks as the model grows."
                .into(),
        );
    }
    if has_control {
        notes.push(format!(
            "{}: each encoder untrained (epochs 0, its random-weights control), under the same \
             evaluation and seeds; a reference, never marked.",
            control::COLUMN
        ));
    }
    if has_paper {
        notes.push(
            "Paper columns: ImageNet (Chen et al. 2020): SimCLR's ResNet-50 at 1x, 2x and 4x \
             trained 1000 epochs (Table 6, linear evaluation; Figure 7's red stars), and the \
             supervised ResNet-50 (abstract and Figure 1; its own top-1, not a linear \
             evaluation of its h as ours is). Figure 7's other points are drawn, not given as \
             numbers."
                .into(),
        );
    }
    notes.extend(protocols::notes(data, std::slice::from_ref(&label)));

    let points = |f: &dyn Fn(&EncoderConfig) -> Option<Stat>| -> Vec<(f64, Stat)> {
        encoders
            .iter()
            .filter_map(|e| f(e).map(|s| (encoder_params(e) as f64, s)))
            .collect()
    };
    let mut ours: Vec<Series> = methods
        .iter()
        .enumerate()
        .map(|(i, &m)| Series {
            name: format!("{} (ours)", method_name(m)),
            color: i,
            dashed: false,
            points: points(&|e| value(m, e).stat()),
        })
        .collect();
    if has_control {
        ours.push(Series {
            name: format!("{} (ours)", control::ROW),
            color: 7,
            dashed: true,
            points: points(&|e| control(e).and_then(|v| v.stat())),
        });
    }
    let dataset = cells
        .first()
        .map(|c| paper::dataset_name(&data.first(c).config))
        .unwrap_or_default();
    let mut panels = vec![ScatterPanel {
        title: format!("ours ({dataset})"),
        series: ours,
        guides: encoders
            .iter()
            .map(|e| (encoder_params(e) as f64, encoder_config_name(e)))
            .collect(),
    }];
    if has_paper {
        // The paper's points sit at its own encoders' counts (ImageNet stem).
        let theirs: Vec<(EncoderConfig, f64, Method)> = encoders
            .iter()
            .flat_map(|e| methods.iter().map(move |&m| (e, m)))
            .filter_map(|(e, m)| {
                let imagenet = EncoderConfig {
                    stem: Stem::Imagenet,
                    ..e.clone()
                };
                paper_at(m, e).map(|v| (imagenet, v, m))
            })
            .collect();
        let series = methods
            .iter()
            .enumerate()
            .map(|(i, &m)| Series {
                name: format!("{} (paper, ImageNet)", method_name(m)),
                color: i,
                dashed: true,
                points: theirs
                    .iter()
                    .filter(|t| t.2 == m)
                    .filter_map(|(e, v, _)| Stat::of(&[*v]).map(|s| (encoder_params(e) as f64, s)))
                    .collect(),
            })
            .collect();
        let mut paper_guides: Vec<(f64, String)> = Vec::new();
        for (e, _, _) in &theirs {
            let g = (encoder_params(e) as f64, encoder_config_name(e));
            if !paper_guides.contains(&g) {
                paper_guides.push(g);
            }
        }
        panels.push(ScatterPanel {
            title: "paper (ImageNet)".into(),
            series,
            guides: paper_guides,
        });
    }
    let mut caption = format!(
        "Figure 7{suffix}: top-1 (%) of {label} against the encoder's parameters (log scale), \
         SimCLR and supervised. Filled: ours, the mean over seeds with its 95% interval."
    );
    if has_control {
        caption.push_str(" Hollow grey: each encoder untrained (its random-weights control).");
    }
    if has_paper {
        caption.push_str(
            " Right, hollow: the paper's ImageNet numbers (SimCLR 1000 epochs, Table 6; the \
             supervised ResNet-50).",
        );
    }
    let mut s = Section::table_and_figure(
        format!("Figure 7: model size, SimCLR and supervised{suffix}"),
        format!("fig7_model_size{id}"),
        caption,
        (header, rows, notes),
        format!("Figure 7{suffix}: top-1 (%) of {label} by encoder size"),
        Plot::Scatter {
            x_label: "encoder parameters".into(),
            y_label: "top-1 (%)".into(),
            panels,
        },
    );
    s.paper = paper::finding_lines(data, &label, FIGURE_7_FINDING, &FIGURE_7, cells);
    s
}

/// Figure 7's two claims, each between the smallest and the largest encoder (by
/// parameters) that has the values compared: a bigger encoder helps SimCLR; the
/// supervised baseline's lead over SimCLR shrinks as the encoder grows.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let encoders = encoders_by_size(data.cells.iter().map(|c| &*data.first(c).config));
    let at = |m: Method, e: &EncoderConfig| {
        best(data, label, |c| c.method == m && c.encoder == *e).map(|x| x.1)
    };
    let name = |e: &EncoderConfig| {
        format!(
            "{} ({:.1}M)",
            encoder_config_name(e),
            encoder_params(e) as f64 / 1e6
        )
    };
    let mut out = Vec::new();
    let simclr: Vec<(&EncoderConfig, CellValue)> = encoders
        .iter()
        .filter_map(|e| at(Method::Simclr, e).map(|v| (e, v)))
        .collect();
    if let [(e0, v0), .., (e1, v1)] = simclr.as_slice() {
        out.push(judge(
            "Figure 7: a bigger encoder helps SimCLR (the largest vs the smallest)",
            (&name(e1), v1),
            (&name(e0), v0),
        ));
    }
    let both: Vec<(&EncoderConfig, [CellValue; 2])> = encoders
        .iter()
        .filter_map(|e| Some((e, [at(Method::Supervised, e)?, at(Method::Simclr, e)?])))
        .collect();
    if let [(e0, [sup0, sim0]), .., (e1, [sup1, sim1])] = both.as_slice() {
        out.push(gap_shrinks(
            &format!(
                "Figure 7: the supervised baseline's lead over SimCLR shrinks as the encoder grows (supervised minus SimCLR, {} vs {})",
                encoder_config_name(e0),
                encoder_config_name(e1)
            ),
            (&format!("gap at {}", name(e0)), [sup0, sim0]),
            (&format!("gap at {}", name(e1)), [sup1, sim1]),
            "the two methods share no finished seed at both encoders",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_7_has_table_6s_resnet_50s_and_the_supervised_resnet_50_only() {
        let simclr = |w| paper_top1(Method::Simclr, Arch::Resnet50, w);
        assert_eq!(
            [simclr(1), simclr(2), simclr(4)],
            [Some(69.3), Some(74.2), Some(76.5)]
        );
        assert_eq!(
            paper_top1(Method::Supervised, Arch::Resnet50, 1),
            Some(76.5)
        );
        // Drawn in Figure 7 but not written in the text: no number.
        assert_eq!(paper_top1(Method::Supervised, Arch::Resnet50, 4), None);
        assert_eq!(paper_top1(Method::Simclr, Arch::Resnet18, 1), None);
        assert_eq!(paper_top1(Method::Simclr, Arch::Resnet50, 3), None);
    }
}
