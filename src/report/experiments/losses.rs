//! Table 4, contrastive losses (`loss`, `loss.kind`, `loss.semi_hard`): each loss, with
//! and without semi-hard negative mining, at its best cell over the hyper-parameters the
//! sweep tunes (learning rate, temperature or margin), with the setting that won and the
//! split it was selected on, beside the paper's top-1; and the paper's claim that NT-Xent
//! at its best beats the other losses at theirs.

use crate::ml::config::{
    LossConfig, LossKind, NegativeWeighting, Negatives, PretrainConfig, SemiHardFallback,
    SemiHardPick,
};
use crate::report::aggregate::SweepData;
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, judge, Finding};
use crate::report::paper::{self, PaperSetting};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{label_header, Table, Val};
use crate::report::tuning::{best_per_group, SELECTION_SPLIT};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "losses",
    chosen_by: ChosenBy::Axes {
        axes: &["loss", "loss.kind", "loss.semi_hard"],
        // The hyper-parameters its table tunes over and reports at their best.
        takes_over: &["optimizer.lr", "loss.margin", "loss.temperature"],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 5,
    claims,
};

/// Table 4: ImageNet linear evaluation, ResNet-50, 100 epochs (default batch 4096).
const TABLE_4: PaperSetting = PaperSetting {
    source: "Table 4",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 4 top-1 (%) for a loss and semi-hard mining.
fn paper_top1(kind: LossKind, semi_hard: bool) -> Option<f64> {
    match (kind, semi_hard) {
        (LossKind::Margin, false) => Some(50.9),
        (LossKind::NtLogistic, false) => Some(51.6),
        (LossKind::Margin, true) => Some(57.5),
        (LossKind::NtLogistic, true) => Some(57.9),
        (LossKind::NtXent, false) => Some(63.9),
        (LossKind::NtXent, true) => None,
    }
}

fn loss_name(k: LossKind) -> &'static str {
    match k {
        LossKind::NtXent => "NT-Xent",
        LossKind::NtLogistic => "NT-Logistic",
        LossKind::Margin => "Margin triplet",
    }
}

/// What Table 4 compares: a loss with its options, without the hyper-parameters it is
/// tuned over (learning rate, temperature, margin).
fn loss_variant(c: &PretrainConfig) -> LossConfig {
    let d = LossConfig::default();
    LossConfig {
        temperature: d.temperature,
        margin: d.margin,
        ..c.loss.clone()
    }
}

/// A loss variant's options that differ from the defaults, in words ("" for none).
fn loss_options(l: &LossConfig) -> String {
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
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
    let label = data.primary();
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
        r.push(Val::Paper(paper_top1(l.kind, l.semi_hard)));
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
            .chain(protocols::notes(data, &data.labels))
            .collect(),
    });
    s.paper = paper::table_lines(data, &TABLE_4, cells);
    s
}

/// Table 4's claim: NT-Xent at its best cell beats the best cell of every other loss.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let nt = best(data, label, |c| c.loss.kind == LossKind::NtXent);
    let other = best(data, label, |c| c.loss.kind != LossKind::NtXent);
    let (Some((_, a)), Some((c, b))) = (&nt, &other) else {
        return Vec::new();
    };
    let loss = &data.first(c).config.loss;
    let semi_hard = if loss.semi_hard { " (semi-hard)" } else { "" };
    let other_name = format!("{}{semi_hard} at its best", loss_name(loss.kind));
    vec![judge(
        "Table 4: NT-Xent at its best beats the other losses at theirs",
        ("NT-Xent at its best", a),
        (&other_name, b),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_4_has_each_losss_top1_and_none_for_semi_hard_nt_xent() {
        assert_eq!(paper_top1(LossKind::NtXent, false), Some(63.9));
        assert_eq!(paper_top1(LossKind::Margin, true), Some(57.5));
        assert_eq!(paper_top1(LossKind::NtLogistic, false), Some(51.6));
        assert_eq!(paper_top1(LossKind::NtXent, true), None);
    }
}
