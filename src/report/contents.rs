//! What a sweep's report contains, in order: the section of each paper experiment the
//! sweep is (chosen by its grid axes or its evaluations, in the order of the list it is
//! given; a sweep whose grid also varies other axes gets one section per value of them),
//! then the Findings (every claim its cells can test), the training curves and the table
//! of every cell.

use serde_json::Value;

use super::aggregate::{compact, CellData, SweepData};
use super::experiment::{ChosenBy, Experiment, Slice};
use super::findings::{self, Finding, Verdict};
use super::sections::{self, Section};
use super::{compare, control};

/// The sections of a sweep's report, in order.
pub(crate) fn build(data: &SweepData, experiments: &[&Experiment]) -> Vec<Section> {
    let chosen: Vec<&Experiment> = experiments
        .iter()
        .copied()
        .filter(|e| e.chosen_by.chooses(data))
        .collect();
    let mut out = Vec::new();
    for e in &chosen {
        if chosen.iter().any(|c| c.supersedes.contains(&e.name)) {
            continue;
        }
        let slices = match &e.chosen_by {
            ChosenBy::Axes { axes, takes_over } => {
                let claimed: Vec<&str> = axes.iter().chain(*takes_over).copied().collect();
                slices(data, &claimed)
            }
            ChosenBy::Evaluations => vec![Slice::all(data)],
        };
        for slice in &slices {
            let Some(mut s) = (e.section)(data, slice) else {
                continue;
            };
            if e.shared_marks {
                compare::mark(data, &mut s);
                control::add(data, &mut s, &slice.cells);
                compare::mark_figures(&mut s);
            }
            out.push(s);
        }
    }
    out.extend(findings_section(data, experiments));
    out.push(sections::curves(data));
    let mut all = sections::all_cells(data);
    compare::mark(data, &mut all);
    control::add(data, &mut all, &data.cells.iter().collect::<Vec<_>>());
    out.push(all);
    out
}

/// Cell coordinates: (axis path, value).
type Coords = Vec<(String, Value)>;

/// Cells partitioned by the values of the axes an experiment does not claim, each slice
/// titled by them (no title when the sweep varies nothing else).
fn slices<'a>(data: &'a SweepData, claimed: &[&str]) -> Vec<Slice<'a>> {
    let mut out: Vec<(Coords, Vec<&CellData>)> = Vec::new();
    for c in &data.cells {
        let key: Coords = c
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
        .enumerate()
        .map(|(k, (key, cells))| {
            let title = if key.is_empty() {
                String::new()
            } else {
                let parts: Vec<String> = key
                    .iter()
                    .map(|(k, v)| format!("{k}={}", compact(v)))
                    .collect();
                format!(" ({})", parts.join(", "))
            };
            let id = if k == 0 {
                String::new()
            } else {
                format!("_{}", k + 1)
            };
            Slice { cells, title, id }
        })
        .collect()
}

/// Every claim the sweep's cells can test: the control's first, then each experiment's
/// (those its grid axes choose, superseded or not, and those chosen by evaluations) in
/// the order of their `claims_rank`.
fn claims(data: &SweepData, label: &str, experiments: &[&Experiment]) -> Vec<Finding> {
    let mut testing: Vec<&Experiment> = experiments
        .iter()
        .copied()
        .filter(|e| e.chosen_by.chooses(data))
        .collect();
    testing.sort_by_key(|e| e.claims_rank);
    let mut out: Vec<Finding> = findings::control_claim(data, label).into_iter().collect();
    for e in testing {
        out.extend((e.claims)(data, label));
    }
    out
}

/// The Findings section, or `None` when the sweep tests none of the claims.
fn findings_section(data: &SweepData, experiments: &[&Experiment]) -> Option<Section> {
    let label = data.primary_label()?;
    findings::section(label, claims(data, label, experiments))
}

/// The sweep's headline for the reports index: that training did not beat the control
/// when it did not, else the first of the paper's claims it tests.
pub(crate) fn headline(data: &SweepData, experiments: &[&Experiment]) -> String {
    let Some(label) = data.primary_label() else {
        return "no evaluation yet".into();
    };
    let out = claims(data, label, experiments);
    let control = out
        .first()
        .filter(|f| f.line.starts_with(findings::CONTROL_CLAIM));
    match control {
        Some(c) if c.verdict != Verdict::Held => c.line.clone(),
        Some(_) => out
            .get(1)
            .map_or_else(|| out[0].line.clone(), |f| f.line.clone()),
        None => out.first().map_or_else(
            || "no claim of the paper testable with this sweep's cells".into(),
            |f| f.line.clone(),
        ),
    }
}
