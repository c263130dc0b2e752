//! Table 3, what h and g(h) keep about the transformation: chosen by the sweep's
//! transformation probes (`kind: probe`), not an axis. The top-1 of an MLP predicting the
//! transformation applied, from h and from g(h), each task read from the pretraining the
//! paper's row corresponds to, beside the random guess, the paper's values and the
//! random-weights control; h and g(h) are compared within a row, so the section marks and
//! controls its own values. The claims: h keeps more than g(h), and training removes the
//! transformation from g(h).

use crate::ml::config::{AugOp, FeatureSource, PretrainConfig, ProbeTask};
use crate::report::aggregate::{CellData, SweepData};
use crate::report::compare;
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{judge, Finding};
use crate::report::labels;
use crate::report::paper::{self, PaperSetting};
use crate::report::plots::Plot;
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::setting;
use crate::report::tables::Val;

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "what_to_predict",
    chosen_by: ChosenBy::Evaluations,
    supersedes: &[],
    shared_marks: false,
    section,
    claims_rank: 2,
    claims,
};

/// Table 3: ImageNet, ResNet-50, the section 4.2 setting (default training, 100 epochs);
/// MLP probes on its h and g(h).
const TABLE_3: PaperSetting = PaperSetting {
    source: "Table 3",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 3's finding.
const TABLE_3_FINDING: &str = "an MLP predicts the transformation applied far \
     better from h than from g(h): the projection head removes information (colour, \
     rotation, noise, Sobel) that may be useful downstream";

/// Table 3 top-1 (%) of the MLP predicting `task` from h and from g(h); the last three rows
/// from a pretraining that also applied rotation, noise and Sobel.
fn paper_top1(task: ProbeTask) -> (f64, f64) {
    match task {
        ProbeTask::ColorVsGrayscale => (99.3, 97.4),
        ProbeTask::Rotation => (67.6, 25.6),
        ProbeTask::Corrupted => (99.5, 59.6),
        ProbeTask::Sobel => (96.6, 56.3),
    }
}

/// Table 3's rows: each task the sweep probes, with the cell it is read from: the paper
/// reads colour vs grayscale from SimCLR's own pretraining and the other rows from one
/// that also applied rotation, noise and Sobel, so the first cell without extras
/// (colour) or with the task's op among its extras, else the first cell probed.
fn table3_rows(data: &SweepData) -> Vec<(ProbeTask, &CellData)> {
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
                    [FeatureSource::H, FeatureSource::Z]
                        .into_iter()
                        .any(|on| data.first(c).eval(&labels::probe(t, on)).is_some())
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
fn section(data: &SweepData, _every_cell: &Slice) -> Option<Section> {
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
        let (lh, lz) = (
            labels::probe(t, FeatureSource::H),
            labels::probe(t, FeatureSource::Z),
        );
        let (mut h, mut z) = (data.top1(cell, &lh), data.top1(cell, &lz));
        compare::mark_values(vec![&mut h, &mut z]);
        let control = |label: &str| match data.control_of(&[cell], label) {
            Some(k) => Val::Ours(data.top1(k, label)),
            None => Val::text(""),
        };
        let (ph, pz) = paper_top1(t);
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
    let first = labels::probe(first_task, FeatureSource::H);
    let mut notes = vec![
        setting::sentence(data, &cells, &first),
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
    notes.extend(protocols::notes(data, std::slice::from_ref(&first)));
    let caption = "Table 3: top-1 (%) of an MLP predicting the transformation applied, from h \
                   and from g(h)"
        .to_string();
    let mut s = Section::table_and_figure(
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
    s.paper = paper::lines(
        data,
        "",
        Some(TABLE_3_FINDING),
        &TABLE_3,
        &data.configs(&cells),
    );
    Some(s)
}

/// Table 3's claims, per task probed: h keeps more about the transformation than g(h),
/// and training removes it from g(h) (the trained g(h) predicts it worse than the same
/// encoder and head untrained). On each task's own probes, not the primary evaluation.
fn claims(data: &SweepData, _primary: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, cell) in table3_rows(data) {
        let (lh, lz) = (
            labels::probe(t, FeatureSource::H),
            labels::probe(t, FeatureSource::Z),
        );
        let (h, z) = (data.top1(cell, &lh), data.top1(cell, &lz));
        out.push(judge(
            &format!("Table 3: h keeps more about {} than g(h)", t.name()),
            ("h", &h),
            ("g(h)", &z),
        ));
        if let Some(k) = data.control_of(&[cell], &lz) {
            out.push(judge(
                &format!("Table 3: training removes {} from g(h)", t.name()),
                ("untrained g(h)", &data.top1(k, &lz)),
                ("trained g(h)", &z),
            ));
        }
    }
    out
}
