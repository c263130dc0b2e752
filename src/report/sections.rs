//! Which figures and tables a sweep gets, decided from its grid axes, and how each is
//! built from the cells: Table 1 (`augment.color_strength`, SimCLR and the supervised
//! baseline as rows), Table 3 (any sweep with probes: h and g(h) per task), Figure 5 (`augment.ops`), Figure 8 (`head`), Table 4 (`loss`,
//! each loss at its best cell over the tuning axes `optimizer.lr`, `loss.margin`),
//! Table 5 (`loss.l2_norm`, `loss.temperature`), Figure 9 (`batch_size`, `epochs`),
//! Table 7 (chosen by its evaluations, not an axis: any `kind: fine_tune`),
//! training curves per group of cells, and a table of every cell for any sweep.
//! A sweep whose grid also varies other axes gets one figure/table per value of them.

use serde_json::Value;

use crate::ml::config::{
    AugOp, AugProtocol, EncoderConfig, EvalKind, HeadKind, LossKind, LrScaling, Method,
    PretrainConfig, ProbeTask, Stem,
};
use crate::ml::model::encoder::{param_count, IN_CHANNELS};
use crate::store::MetricRecord;
use crate::vocab::metric;

use super::aggregate::{compact, CellData, CellValue, Stat, SweepData};
use super::paper::{self, PaperSetting};
use super::plots::{Curve, Figure, Plot, ScatterPanel, Series};
use super::protocols;
use super::tables::{Table, Val};
use super::tuning::{best_per_group, SELECTION_SPLIT};
use super::{compare, control, findings};

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
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Experiment {
    ColorStrength,
    AugPairs,
    ModelSize,
    HeadDims,
    Losses,
    Temperature,
    BatchEpochs,
}

impl Experiment {
    const ALL: [Experiment; 7] = [
        Experiment::ColorStrength,
        Experiment::AugPairs,
        Experiment::ModelSize,
        Experiment::HeadDims,
        Experiment::Losses,
        Experiment::Temperature,
        Experiment::BatchEpochs,
    ];

    /// The grid axes that make a sweep this experiment.
    fn axes(self) -> &'static [&'static str] {
        match self {
            Experiment::ColorStrength => &["augment.color_strength"],
            Experiment::AugPairs => &["augment.ops"],
            Experiment::ModelSize => MODEL_SIZE_AXES,
            Experiment::HeadDims => &["head", "head.kind", "head.out_dim"],
            Experiment::Losses => &["loss", "loss.kind", "loss.semi_hard"],
            Experiment::Temperature => &["loss.l2_norm", "loss.temperature"],
            Experiment::BatchEpochs => &["batch_size", "epochs"],
        }
    }

    /// Axes the experiment takes over when it is chosen (they do not choose it): the
    /// hyper-parameters its table tunes over and reports at their best; for Table 1 its
    /// rows (the method) and the ops that add blur to its last column; for Figure 7 its
    /// two series (the method).
    fn tuning_axes(self) -> &'static [&'static str] {
        match self {
            Experiment::Losses => &["optimizer.lr", "loss.margin", "loss.temperature"],
            Experiment::ColorStrength => &["method", "augment.ops"],
            Experiment::ModelSize => &["method"],
            _ => &[],
        }
    }

    /// Experiments this one replaces when both are chosen: Table 1's blur column varies
    /// `augment.ops`, but not as Figure 5's grid of pairs.
    fn supersedes(self) -> &'static [Experiment] {
        match self {
            Experiment::ColorStrength => &[Experiment::AugPairs],
            _ => &[],
        }
    }
}

/// The sections of a sweep's report, in order.
pub(crate) fn build(data: &SweepData) -> Vec<Section> {
    let mut out = Vec::new();
    let chosen: Vec<Experiment> = Experiment::ALL
        .into_iter()
        .filter(|e| data.axes.iter().any(|a| e.axes().contains(&a.as_str())))
        .collect();
    for &e in &chosen {
        if chosen.iter().any(|c| c.supersedes().contains(&e)) {
            continue;
        }
        let claimed: Vec<&str> = e.axes().iter().chain(e.tuning_axes()).copied().collect();
        for (k, (suffix, cells)) in slices(data, &claimed).into_iter().enumerate() {
            let id_suffix = if k == 0 {
                String::new()
            } else {
                format!("_{}", k + 1)
            };
            let mut s = match e {
                Experiment::ColorStrength => table1(data, &cells, &suffix, &id_suffix),
                Experiment::AugPairs => figure5(data, &cells, &suffix, &id_suffix),
                Experiment::ModelSize => figure7(data, &cells, &suffix, &id_suffix),
                Experiment::HeadDims => figure8(data, &cells, &suffix, &id_suffix),
                Experiment::Losses => table4(data, &cells, &suffix, &id_suffix),
                Experiment::Temperature => table5(data, &cells, &suffix, &id_suffix),
                Experiment::BatchEpochs => figure9(data, &cells, &suffix, &id_suffix),
            };
            compare::mark(data, &mut s);
            control::add(data, &mut s, &cells);
            compare::mark_figures(&mut s);
            out.push(s);
        }
    }
    let fine = fine_tune_labels(data);
    if !fine.is_empty() {
        let cells: Vec<&CellData> = data.cells.iter().collect();
        let mut s = table7(data, &cells, &fine);
        compare::mark(data, &mut s);
        control::add(data, &mut s, &cells);
        out.push(s);
    }
    out.extend(table3(data));
    out.extend(findings::section(data));
    out.push(curves(data));
    let mut all = all_cells(data);
    compare::mark(data, &mut all);
    control::add(data, &mut all, &data.cells.iter().collect::<Vec<_>>());
    out.push(all);
    out
}

/// The grid axes that make a sweep Figure 7's: the encoder's depth or width (or the whole
/// encoder).
pub(crate) const MODEL_SIZE_AXES: &[&str] = &["encoder", "encoder.arch", "encoder.width"];

/// Cell coordinates: (axis path, value).
type Coords = Vec<(String, Value)>;

/// Cells partitioned by the values of the axes an experiment does not claim, each with a
/// title suffix (empty when the sweep varies nothing else).
fn slices<'a>(data: &'a SweepData, claimed: &[&str]) -> Vec<(String, Vec<&'a CellData>)> {
    let mut out: Vec<(Coords, Vec<&CellData>)> = Vec::new();
    for c in &data.cells {
        let key: Vec<(String, Value)> = c
            .coords
            .iter()
            .filter(|(k, _)| !claimed.contains(&k.as_str()))
            .cloned()
            .collect();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(c),
            None => out.push((key, vec![c])),
        }
    }
    out.into_iter()
        .map(|(key, cells)| {
            let suffix = if key.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = key
                    .iter()
                    .map(|(k, v)| format!("{k}={}", compact(v)))
                    .collect();
                format!(" ({})", parts.join(", "))
            };
            (suffix, cells)
        })
        .collect()
}

fn configs<'a>(data: &'a SweepData, cells: &[&CellData]) -> Vec<&'a PretrainConfig> {
    cells
        .iter()
        .flat_map(|c| c.runs.iter().map(|&i| &*data.runs[i].config))
        .collect()
}

/// The paper's finding and the settings in which ours differ, the linear evaluation
/// protocol of `label` (the evaluation set beside the paper's numbers) among them.
fn paper_lines(
    data: &SweepData,
    label: &str,
    finding: Option<&str>,
    setting: &PaperSetting,
    ours: &[&PretrainConfig],
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(f) = finding {
        out.push(format!("The paper's {} finds: {f}.", setting.source));
    }
    let mut diffs = paper::differences(setting, ours);
    if let Some(d) = data
        .eval_config(label)
        .and_then(|c| paper::protocol_difference(label, &c))
    {
        diffs.push(d);
    }
    if !diffs.is_empty() {
        out.push(format!(
            "Settings that differ from the paper's {} ({} {}):",
            setting.source, setting.dataset, setting.encoder
        ));
        out.extend(diffs.into_iter().map(|d| format!("  - {d}")));
    }
    out
}

/// [`paper_lines`] for a figure or table with the paper's `finding`, over `cells`.
fn finding_paper_lines(
    data: &SweepData,
    label: &str,
    finding: &str,
    setting: &PaperSetting,
    cells: &[&CellData],
) -> Vec<String> {
    paper_lines(data, label, Some(finding), setting, &configs(data, cells))
}

/// [`paper_lines`] for a table without a finding, against the primary evaluation.
fn table_paper_lines(data: &SweepData, setting: &PaperSetting, cells: &[&CellData]) -> Vec<String> {
    paper_lines(data, &primary(data), None, setting, &configs(data, cells))
}

pub(crate) fn label_header(label: &str) -> String {
    format!("top-1 {label}")
}

/// One note per evaluation label shown: which protocol produced its numbers.
fn protocol_notes(data: &SweepData, labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|l| data.eval_config(l).map(|c| protocols::describe(l, &c)))
        .collect()
}

/// What the values of column `i` of a table with `header` are: `Some(label)` of a column
/// per evaluation; `Some(primary)` for every column of a table that has none (a matrix of
/// cells under the primary evaluation); `None` for the other columns of a table that has.
pub(crate) fn column_label<'a>(
    labels: &'a [String],
    header: &[String],
    i: usize,
    primary: &'a str,
) -> Option<&'a str> {
    let per_label = header
        .iter()
        .any(|h| labels.iter().any(|l| label_header(l) == *h));
    match labels.iter().find(|l| label_header(l) == header[i]) {
        Some(l) => Some(l.as_str()),
        None if per_label => None,
        None => Some(primary),
    }
}

fn primary(data: &SweepData) -> String {
    data.primary_label().unwrap_or("linear@h").to_string()
}

/// A section of one table (header, rows, notes) and the figure drawn from the same cells,
/// both under `id` and `caption`.
fn table_and_figure(
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

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Simclr => "SimCLR",
        Method::Supervised => "Supervised",
    }
}

/// Table 1: top-1 of the primary evaluation against colour distortion strength, a row of
/// ours and a row of the paper's per method (SimCLR, then the supervised baseline), and the
/// same as grouped bars.
fn table1(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let label = primary(data);
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
                .map(|col| Val::Paper(paper::table1(m, col.strength, col.blur))),
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
    notes.extend(protocol_notes(data, std::slice::from_ref(&label)));
    let caption = format!(
        "Table 1{suffix}: top-1 (%) of {label} against colour distortion strength, SimCLR and \
         supervised"
    );
    let mut s = table_and_figure(
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
    s.paper = finding_paper_lines(data, &label, paper::TABLE_1_FINDING, &paper::TABLE_1, cells);
    s
}

/// The sweep's fine-tuning evaluations (`kind: fine_tune`) with their label fractions,
/// smallest fraction first.
pub(crate) fn fine_tune_labels(data: &SweepData) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = data
        .labels
        .iter()
        .filter_map(|l| {
            let c = data.eval_config(l)?;
            (c.kind == EvalKind::FineTune).then(|| (l.clone(), c.label_fraction))
        })
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// Table 7: top-1 after fine-tuning on few labels, a column per label fraction (and the
/// linear evaluation of the same encoders for reference), a row of ours per cell, the
/// paper's rows beside; the random-weights control's row (`control::add`) is training from
/// scratch on the same labels.
fn table7(data: &SweepData, cells: &[&CellData], fine: &[(String, f64)]) -> Section {
    let primary = primary(data);
    let reference = data
        .eval_config(&primary)
        .filter(|c| c.kind == EvalKind::Linear)
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
            format!("{method}, fine-tuned (ours; {})", cell_name(data, c))
        };
        let mut row = vec![Val::text(name)];
        row.extend(labels.iter().map(|l| Val::Ours(data.top1(c, l))));
        rows.push(row);
    }
    for (i, (name, _)) in paper::TABLE_7_ROWS.iter().enumerate() {
        let mut row = vec![Val::text(format!("{name} (paper, ImageNet)"))];
        row.extend(fine.iter().map(|(_, f)| Val::Paper(paper::table7(i, *f))));
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
    notes.extend(protocol_notes(data, &labels));
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
    s.paper = paper_lines(
        data,
        first,
        Some(paper::TABLE_7_FINDING),
        &paper::TABLE_7,
        &configs(data, cells),
    );
    let more = fine[1..].iter().filter_map(|(l, _)| {
        let c = data.eval_config(l)?;
        paper::protocol_difference(l, &c).map(|d| format!("  - {d}"))
    });
    s.paper.extend(more);
    s
}

/// An encoder's trainable parameters (what Figure 7's x axis counts).
pub(crate) fn encoder_params(e: &EncoderConfig) -> usize {
    param_count(e, IN_CHANNELS)
}

/// The distinct encoders of `configs`, fewest parameters first.
pub(crate) fn encoders_by_size<'a>(
    configs: impl Iterator<Item = &'a PretrainConfig>,
) -> Vec<EncoderConfig> {
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
fn figure7(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let label = primary(data);
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
    let paper_at = |m: Method, e: &EncoderConfig| paper::figure7(m, e.arch, e.width);
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
                Val::text(paper::encoder_config_name(e)),
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
    notes.extend(protocol_notes(data, std::slice::from_ref(&label)));

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
            .map(|e| (encoder_params(e) as f64, paper::encoder_config_name(e)))
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
            let g = (encoder_params(e) as f64, paper::encoder_config_name(e));
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
    let mut s = table_and_figure(
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
    s.paper = finding_paper_lines(
        data,
        &label,
        paper::FIGURE_7_FINDING,
        &paper::FIGURE_7,
        cells,
    );
    s
}

/// Table 3's label of the probe of `task` on `on` (`h` or `z`): "probe-rotation@h".
pub(crate) fn probe_label(task: ProbeTask, on: &str) -> String {
    format!("probe-{}@{on}", task.name())
}

/// Table 3's rows: each task the sweep probes, with the cell it is read from: the paper
/// reads colour vs grayscale from SimCLR's own pretraining and the other rows from one
/// that also applied rotation, noise and Sobel, so the first cell without extras
/// (colour) or with the task's op among its extras, else the first cell probed.
pub(crate) fn table3_rows(data: &SweepData) -> Vec<(ProbeTask, &CellData)> {
    let extras = |c: &CellData| -> Vec<AugOp> {
        data.first(c)
            .config
            .augment
            .extra
            .iter()
            .map(|e| e.op)
            .collect()
    };
    ProbeTask::ALL
        .into_iter()
        .filter_map(|t| {
            let probed: Vec<&CellData> = data
                .cells
                .iter()
                .filter(|c| {
                    ["h", "z"]
                        .iter()
                        .any(|on| data.first(c).eval(&probe_label(t, on)).is_some())
                })
                .collect();
            let fits = |c: &&&CellData| match t.op() {
                None => extras(c).is_empty(),
                Some(op) => extras(c).contains(&op),
            };
            let cell = probed.iter().find(fits).or(probed.first())?;
            Some((t, *cell))
        })
        .collect()
}

/// "crop, color" and the extras with their probabilities: "crop, color + rotate (p 0.75)".
fn pretraining_name(c: &PretrainConfig) -> String {
    let ops: Vec<&str> = c.augment.ops.iter().map(|o| o.name()).collect();
    let mut s = ops.join(", ");
    let extra: Vec<String> = c
        .augment
        .extra
        .iter()
        .map(|e| format!("{} (p {})", e.op.name(), e.p))
        .collect();
    if !extra.is_empty() {
        s.push_str(" + ");
        s.push_str(&extra.join(", "));
    }
    s
}

/// Table 3: the top-1 of an MLP predicting the transformation applied, from h and from
/// g(h), beside the random guess, the paper's values and the random-weights control; h and
/// g(h) of a row are compared with each other (not the rows with one another, which ask
/// different questions). `None` when the sweep has no probe.
fn table3(data: &SweepData) -> Option<Section> {
    let rows_of = table3_rows(data);
    let (first_task, _) = *rows_of.first()?;
    let cells: Vec<&CellData> = rows_of.iter().map(|(_, c)| *c).collect();
    let header: Vec<String> = [
        "what to predict",
        "pretraining",
        "random guess",
        "h (ours)",
        "g(h) (ours)",
        "h (paper)",
        "g(h) (paper)",
        "h (random weights)",
        "g(h) (random weights)",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for &(t, cell) in &rows_of {
        let (lh, lz) = (probe_label(t, "h"), probe_label(t, "z"));
        let (mut h, mut z) = (data.top1(cell, &lh), data.top1(cell, &lz));
        compare::mark_values(vec![&mut h, &mut z]);
        let control = |label: &str| match data.control_of(&[cell], label) {
            Some(k) => Val::Ours(data.top1(k, label)),
            None => Val::text(""),
        };
        let (ph, pz) = paper::table3(t);
        bars.push(vec![h.clone(), z.clone()]);
        rows.push(vec![
            Val::text(t.name()),
            Val::text(pretraining_name(&data.first(cell).config)),
            Val::text(format!("{}", t.random_guess())),
            Val::Ours(h),
            Val::Ours(z),
            Val::Paper(Some(ph)),
            Val::Paper(Some(pz)),
            control(&lh),
            control(&lz),
        ]);
    }
    let first = probe_label(first_task, "h");
    let mut notes = vec![
        super::setting::sentence(data, &cells, &first),
        "Top-1 (%) of an MLP trained on the frozen h, or on z = g(h), of un-augmented train \
         images to predict which transformation each was given, scored on test images. \
         Random guess: the share of the largest class (1 in 5 images is made grayscale, the \
         colour augmentation's rate, as the paper's 80%; a quarter per rotation; half \
         transformed for noise and Sobel)."
            .into(),
        "Pretraining: each row is read from the cell the paper's row corresponds to: colour \
         from SimCLR's crop and colour alone, the other rows from the pretraining that also \
         applied rotation, Gaussian noise and Sobel filtering, independently, with the \
         probabilities shown. The table of all cells has every probe of every pretraining."
            .into(),
        "In this table best / ≈ compare h with g(h) within a row, not a column (paired t-test on shared seeds, p ≥ 0.05, \
         or overlapping 95% intervals when seeds are not shared). Random weights: the same \
         encoder and head untrained (epochs 0), under the same probes and seeds."
            .into(),
        "Paper columns: ImageNet, ResNet-50 (Chen et al. 2020, Table 3).".into(),
    ];
    notes.extend(protocol_notes(data, std::slice::from_ref(&first)));
    let caption = "Table 3: top-1 (%) of an MLP predicting the transformation applied, from h \
                   and from g(h)"
        .to_string();
    let mut s = table_and_figure(
        "Table 3: what h and g(h) keep about the transformation".into(),
        "table3_what_to_predict".into(),
        caption,
        (header, rows, notes),
        "Table 3: top-1 (%) of the transformation probe, h and g(h)".into(),
        Plot::Bars {
            x_label: "what to predict".into(),
            y_label: "top-1 (%)".into(),
            groups: rows_of.iter().map(|(t, _)| t.name().to_string()).collect(),
            bars: vec!["h".into(), "g(h)".into()],
            values: bars,
            reference: None,
        },
    );
    s.paper = paper_lines(
        data,
        "",
        Some(paper::TABLE_3_FINDING),
        &paper::TABLE_3,
        &configs(data, &cells),
    );
    Some(s)
}

/// Figure 5: the augmentation heatmap (rows first op, columns second, diagonal single).
fn figure5(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let label = primary(data);
    let ops_of = |c: &CellData| data.first(c).config.augment.ops.clone();
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
    notes.extend(protocol_notes(data, std::slice::from_ref(&label)));
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
    s.paper = finding_paper_lines(
        data,
        &label,
        paper::FIGURE_5_FINDING,
        &paper::FIGURE_5,
        cells,
    );
    s
}

fn head_kind_name(k: HeadKind) -> &'static str {
    match k {
        HeadKind::None => "none",
        HeadKind::Linear => "linear",
        HeadKind::Nonlinear => "nonlinear",
    }
}

/// Figure 8: top-1 against the projection output dimension per head kind, h and z.
fn figure8(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let mut linear_labels: Vec<String> = data
        .labels
        .iter()
        .filter(|l| l.starts_with("linear"))
        .cloned()
        .collect();
    if linear_labels.is_empty() {
        linear_labels.push(primary(data));
    }
    let mut series = Vec::new();
    let mut flat = Vec::new();
    for (ki, kind) in [HeadKind::None, HeadKind::Linear, HeadKind::Nonlinear]
        .into_iter()
        .enumerate()
    {
        for label in &linear_labels {
            let on = label.split('@').nth(1).unwrap_or(label);
            // Two linear protocols on the same representation stay apart in the legend.
            let proto = if label.starts_with("linear-aug") {
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
                dashed: on == "z",
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
    let (h, z) = (
        linear_labels.iter().find(|l| l.ends_with("@h")),
        linear_labels.iter().find(|l| l.ends_with("@z")),
    );
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
    notes.extend(protocol_notes(data, &data.labels));
    let caption =
        format!("Figure 8{suffix}: linear evaluation against projection head and output dimension");
    let mut s = table_and_figure(
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
    s.paper = finding_paper_lines(
        data,
        &primary(data),
        paper::FIGURE_8_FINDING,
        &paper::FIGURE_8,
        cells,
    );
    s
}

pub(crate) fn loss_name(k: LossKind) -> &'static str {
    match k {
        LossKind::NtXent => "NT-Xent",
        LossKind::NtLogistic => "NT-Logistic",
        LossKind::Margin => "Margin triplet",
    }
}

/// What Table 4 compares: a loss with its options, without the hyper-parameters it is
/// tuned over (learning rate, temperature, margin).
fn loss_variant(c: &PretrainConfig) -> crate::ml::config::LossConfig {
    let d = crate::ml::config::LossConfig::default();
    crate::ml::config::LossConfig {
        temperature: d.temperature,
        margin: d.margin,
        ..c.loss.clone()
    }
}

/// A loss variant's options that differ from the defaults, in words ("" for none).
fn loss_options(l: &crate::ml::config::LossConfig) -> String {
    use crate::ml::config::{NegativeWeighting, Negatives, SemiHardFallback, SemiHardPick};
    let mut o = Vec::new();
    if !l.l2_norm {
        o.push("no l2 norm");
    }
    if l.negatives == Negatives::OneView {
        o.push("one view's negatives");
    }
    if l.negative_weighting == NegativeWeighting::Sum {
        o.push("summed negatives");
    }
    if l.semi_hard && l.semi_hard_pick == SemiHardPick::Band {
        o.push("whole semi-hard band");
    }
    if l.semi_hard && l.semi_hard_fallback == SemiHardFallback::None {
        o.push("no fallback negative");
    }
    o.join(", ")
}

/// The hyper-parameters a cell was trained with, as Table 4 tunes them.
fn tuned_setting(c: &PretrainConfig) -> String {
    match c.loss.kind {
        LossKind::Margin => format!("lr {}, margin {}", c.optimizer.lr, c.loss.margin),
        _ => format!("lr {}, temperature {}", c.optimizer.lr, c.loss.temperature),
    }
}

/// Table 4 as the paper ran it: each loss (with and without semi-hard negative mining) at
/// its best cell over the hyper-parameters the sweep tunes, with the setting that won and
/// the split it was selected on.
fn table4(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let label = primary(data);
    let groups = best_per_group(data, cells, &label, |c| loss_variant(&data.first(c).config));
    let options: Vec<String> = groups.iter().map(|g| loss_options(&g.key)).collect();
    // Options every row shares go to a note; a column only when rows differ.
    let shared = options.iter().all(|o| *o == options[0]);
    let mut header = vec!["loss".to_string(), "semi-hard".to_string()];
    if !shared {
        header.push("options".into());
    }
    header.push(format!("best setting (by {label})"));
    header.push("settings with a value".into());
    header.extend(data.labels.iter().map(|l| label_header(l)));
    header.push("paper top-1".into());
    let mut rows = Vec::new();
    let mut text = Vec::new();
    for (g, opts) in groups.iter().zip(&options) {
        let l = &g.key;
        let mut r = vec![
            Val::text(loss_name(l.kind)),
            Val::text(if l.semi_hard { "yes" } else { "no" }),
        ];
        if !shared {
            r.push(Val::text(if opts.is_empty() { "—" } else { opts }));
        }
        let setting = g.best.map(|(c, _)| tuned_setting(&data.first(c).config));
        r.push(Val::text(setting.clone().unwrap_or_else(|| "—".into())));
        r.push(Val::text(format!(
            "{} of {}",
            g.finished(data, &label),
            g.cells.len()
        )));
        r.extend(data.labels.iter().map(|lab| Val::Ours(g.value(data, lab))));
        r.push(Val::Paper(paper::table4(l.kind, l.semi_hard)));
        rows.push(r);
        let name = format!(
            "{}{}{}",
            loss_name(l.kind),
            if l.semi_hard { " (semi-hard)" } else { "" },
            if shared || opts.is_empty() {
                String::new()
            } else {
                format!(" [{opts}]")
            }
        );
        let ties = match g.ties(data, &label) {
            0 => String::new(),
            1 => " (tied with another setting; the first in grid order is shown)".to_string(),
            k => format!(" (tied with {k} other settings; the first in grid order is shown)"),
        };
        text.push(match (g.best, setting) {
            (Some((_, stat)), Some(setting)) => format!(
                "{name}: best of {} settings at {setting}, {:.1}% top-1 ({label}), selected on \
                 the {SELECTION_SPLIT}{ties}.",
                g.cells.len(),
                stat.mean
            ),
            _ => format!(
                "{name}: none of its {} settings has a {label} value yet.",
                g.cells.len()
            ),
        });
    }
    let mut notes = vec![
        format!(
            "Each row is the loss at its best setting: the cell with the highest mean top-1 of \
             {label} among those the sweep trained it with (lr: the base learning rate before \
             batch scaling; temperature for NT-Xent and NT-Logistic, margin for the margin \
             loss), its other evaluations taken from the same cell."
        ),
        format!(
            "Selected on the {SELECTION_SPLIT}, the split that also scores it: no validation \
             split is held out, so each row is optimistic by the spread of its settings; the \
             paper does not say which split it tuned on."
        ),
    ];
    if shared && !options[0].is_empty() {
        notes.push(format!("Every row: {}.", options[0]));
    }
    notes.push(
        "Paper column: ImageNet, ResNet-50, each loss tuned over learning rate and \
         temperature or margin (Chen et al. 2020, Table 4 and appendix B.10)."
            .into(),
    );
    let mut s = Section::new(format!("Table 4: contrastive losses{suffix}"));
    s.text = text;
    s.tables.push(Table {
        id: format!("table4_losses{id}"),
        caption: format!(
            "Table 4{suffix}: linear evaluation top-1 (%) of each loss at its best setting, \
             selected on the {SELECTION_SPLIT}"
        ),
        header,
        rows,
        notes: notes
            .into_iter()
            .chain(protocol_notes(data, &data.labels))
            .collect(),
    });
    s.paper = table_paper_lines(data, &paper::TABLE_4, cells);
    s
}

/// Table 5: l2 normalisation x temperature, contrastive accuracy and top-1.
fn table5(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let mut header = vec![
        "l2 norm".to_string(),
        "temperature".to_string(),
        "contrastive acc.".to_string(),
        "strict contrastive acc.".to_string(),
    ];
    header.extend(data.labels.iter().map(|l| label_header(l)));
    header.push("paper contrastive acc.".into());
    header.push("paper top-1".into());
    let rows = cells
        .iter()
        .map(|c| {
            let l = &data.first(c).config.loss;
            let p = paper::table5(l.l2_norm, l.temperature);
            let mut r = vec![
                Val::text(if l.l2_norm { "yes" } else { "no" }),
                Val::text(format!("{}", l.temperature)),
                Val::Ours(data.contrastive_acc_cross_view(c)),
                Val::Ours(data.contrastive_acc(c)),
            ];
            r.extend(data.labels.iter().map(|lab| Val::Ours(data.top1(c, lab))));
            r.push(Val::Paper(p.map(|x| x.0)));
            r.push(Val::Paper(p.map(|x| x.1)));
            r
        })
        .collect();
    let mut s = Section::new(format!("Table 5: l2 normalisation and temperature{suffix}"));
    s.tables.push(Table {
        id: format!("table5_temperature{id}"),
        caption: format!(
            "Table 5{suffix}: NT-Xent with and without l2 normalisation at several temperatures"
        ),
        header,
        rows,
        notes: vec![
            "Contrastive acc.: training contrastive accuracy (%) over the last epoch, as the \
             paper measures it (the official code's argmax over the N cross-view candidates); \
             the paper's column is set beside this one only."
                .into(),
            "Strict contrastive acc.: the positive must beat all 2N-2 negatives, same-view ones \
             included (2N-1 candidates); lower than the paper's definition, no paper value."
                .into(),
            "Paper columns: ImageNet, ResNet-50 (Chen et al. 2020, Table 5).".into(),
        ]
        .into_iter()
        .chain(protocol_notes(data, &data.labels))
        .collect(),
    });
    s.paper = table_paper_lines(data, &paper::TABLE_5, cells);
    s
}

/// Figure 9: batch size x epochs as grouped bars, with Table B.1 beside: the paper's value
/// of a cell only under the learning-rate scaling rule the cell was trained with (Figure 9
/// itself is Table B.1's linear-scaling column; B.1 adds square-root scaling).
fn figure9(data: &SweepData, cells: &[&CellData], suffix: &str, id: &str) -> Section {
    let label = primary(data);
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
        paper::table_b1(b, e, data.first(c).config.optimizer.lr_scaling)
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
        let names: Vec<&str> = rules.iter().map(|&r| paper::scaling_name(r)).collect();
        notes.push(format!(
            "Paper columns: Table B.1 (ImageNet, ResNet-50, LARS) under the learning-rate \
             scaling rule each cell was trained with ({}); the paper's Figure 9 is its \
             linear-scaling column.",
            names.join(", ")
        ));
    }
    notes.extend(protocol_notes(data, std::slice::from_ref(&label)));
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
        for e in paper::B1_EPOCHS {
            for r in scalings {
                header.push(format!("{e} epochs, {}", paper::scaling_name(r)));
            }
        }
        s.tables.push(Table {
            id: format!("table_b1_paper{id}"),
            caption: "The paper's Table B.1 (ImageNet, ResNet-50, LARS): top-1 (%) with linear \
                      (0.3 x B/256) and square-root (0.075 x sqrt(B)) LR scaling"
                .into(),
            header,
            rows: paper::B1_BATCHES
                .iter()
                .map(|&b| {
                    let mut r = vec![Val::text(b.to_string())];
                    for e in paper::B1_EPOCHS {
                        r.extend(
                            scalings
                                .iter()
                                .map(|&sc| Val::Paper(paper::table_b1(b, e, sc))),
                        );
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
    s.paper = table_paper_lines(data, &paper::TABLE_B1, cells);
    s
}

/// A cell's name for legends: its coordinates, compact.
pub(crate) fn cell_name(data: &SweepData, c: &CellData) -> String {
    if c.coords.is_empty() {
        return data.sweep.name.clone();
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
fn curves(data: &SweepData) -> Section {
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
                    name: cell_name(data, c),
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
fn all_cells(data: &SweepData) -> Section {
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
        notes: protocol_notes(data, &data.labels),
    });
    s
}
