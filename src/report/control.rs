//! The random-weights control in a report, and the setting sentence of every caption:
//! every table of a section gets a row per control that stands beside its cells (unless
//! it shows each row's control in a column of its own, [`COLUMN`]), and every figure a reference (a dashed line on
//! line and bar charts, the colour floor on the heatmap), with a caption that says so. A
//! sweep without a control says that instead.

use super::aggregate::{compact, CellData, CellValue, SweepData};
use super::plots::{heatmap_scale_note, Plot, Series};
use super::sections::Section;
use super::tables::{column_label, Table, Val};

/// The row label of a control in every table.
pub(crate) const ROW: &str = "random-weights control";

/// The header of a column that shows, in each row, the control of that row's own cells
/// (Figure 7: each encoder untrained). A table with it gets no control rows, and the
/// column is a reference: never marked against the best.
pub(crate) const COLUMN: &str = "random weights";

/// What the control is, for notes and captions.
const WHAT: &str = "Random-weights control: the same encoder untrained (epochs 0), under the same evaluations and seeds.";

/// Adds the controls of `cells` to the section's tables and figures.
pub(crate) fn add(data: &SweepData, sec: &mut Section, cells: &[&CellData]) {
    let Some(primary) = data.primary_label().map(str::to_string) else {
        return;
    };
    let setting = super::setting::sentence(data, cells, &primary);
    for f in &mut sec.figures {
        f.caption.push(' ');
        f.caption.push_str(&setting);
    }
    for t in &mut sec.tables {
        t.notes.insert(0, setting.clone());
    }
    let controls: Vec<&CellData> = data
        .controls
        .iter()
        .filter(|k| {
            data.labels.iter().any(|l| {
                data.controls_for(cells, l)
                    .iter()
                    .any(|c| std::ptr::eq(*c, *k))
            })
        })
        .collect();
    if controls.is_empty() {
        let none = "This sweep has no random-weights control (run before controls existed, or with `control: false`): nothing here shows that training beat untrained weights.";
        for t in &mut sec.tables {
            t.notes.push(none.into());
        }
        for f in &mut sec.figures {
            f.caption.push(' ');
            f.caption.push_str(none);
            if let Plot::Heatmap { .. } = f.plot {
                f.caption.push(' ');
                f.caption.push_str(&heatmap_scale_note(None));
            }
        }
        return;
    }
    for t in sec
        .tables
        .iter_mut()
        .filter(|t| !t.header.iter().any(|h| h == COLUMN))
    {
        for k in &controls {
            let row = (0..t.header.len())
                .map(|i| cell(data, t, i, k, &primary))
                .collect();
            t.rows.push(row);
        }
        t.notes.push(WHAT.into());
    }
    let reference = data
        .control_of(cells, &primary)
        .and_then(|k| data.top1(k, &primary).stat());
    for f in &mut sec.figures {
        let Some(r) = reference else {
            f.caption
                .push_str(" The random-weights control differs between cells here: see the table.");
            if let Plot::Heatmap { .. } = f.plot {
                f.caption.push(' ');
                f.caption.push_str(&heatmap_scale_note(None));
            }
            continue;
        };
        match &mut f.plot {
            Plot::Heatmap { floor, .. } => {
                *floor = Some(r.mean);
                f.caption.push(' ');
                f.caption.push_str(&heatmap_scale_note(*floor));
            }
            Plot::Bars { reference, .. } => {
                *reference = Some((ROW.into(), r.mean));
                f.caption.push_str(&format!(
                    " Dashed line: the random-weights control ({:.1}%).",
                    r.mean
                ));
            }
            Plot::Lines { flat, .. } => {
                for label in &data.labels {
                    if let Some(s) = data
                        .control_of(cells, label)
                        .and_then(|k| data.top1(k, label).stat())
                    {
                        flat.push(Series {
                            name: format!("{ROW} ({label})"),
                            color: 7,
                            dashed: true,
                            points: vec![(1.0, s)],
                        });
                    }
                }
                f.caption.push_str(&format!(
                    " Grey dashed: the random-weights control ({:.1}% on {primary}).",
                    r.mean
                ));
            }
            // Figure 7 draws each encoder's own control beside it.
            Plot::Scatter { .. } | Plot::Curves { .. } | Plot::Panels { .. } => {}
        }
    }
}

/// Column `i` of control `k`'s row in `t`: its name in the first column, its top-1 under a
/// column's evaluation where the header names one, under the primary evaluation in every
/// column of ours of a table that names none (a matrix of cells), and blank elsewhere.
fn cell(data: &SweepData, t: &Table, i: usize, k: &CellData, primary: &str) -> Val {
    if i == 0 {
        return Val::text(name(k));
    }
    let ours = t
        .rows
        .iter()
        .any(|r| matches!(r.get(i), Some(Val::Ours(_))));
    let label = column_label(&data.labels, &t.header, i, primary);
    let Some(label) = label.filter(|_| ours) else {
        return Val::text("");
    };
    match data.top1(k, label) {
        CellValue::Missing(_) if data.first(k).eval(label).is_none() => Val::text(""),
        v => Val::Ours(v),
    }
}

/// `random-weights control` with the coordinates that tell controls apart.
fn name(k: &CellData) -> String {
    if k.coords.is_empty() {
        return ROW.into();
    }
    let parts: Vec<String> = k
        .coords
        .iter()
        .map(|(a, v)| format!("{a}={}", compact(v)))
        .collect();
    format!("{ROW} ({})", parts.join(", "))
}
