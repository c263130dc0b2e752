//! Tables and their three renderings: Markdown (README), LaTeX in booktabs style, CSV.
//! Values are percentages with one decimal; a cell with several seeds shows mean ± std
//! and n; a cell without a finished run says why (failed, pending, running, missing).

use std::fmt::Write as _;

use super::aggregate::{CellValue, Mark, Stat};

/// One table cell.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Text(String),
    /// Ours, over seeds (percent).
    Ours(CellValue),
    /// The paper's number (percent); `None`: the paper has none for this row.
    Paper(Option<f64>),
}

impl Val {
    pub fn text(s: impl Into<String>) -> Val {
        Val::Text(s.into())
    }
}

/// The header of a table's column of evaluation `label`'s top-1.
pub(crate) fn label_header(label: &str) -> String {
    format!("top-1 {label}")
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

/// A table with a caption, a LaTeX label and notes printed under it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    /// File stem and LaTeX label (`table4_losses`).
    pub id: String,
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<Val>>,
    pub notes: Vec<String>,
}

/// Mean, then the 95% interval and n when there are several seeds: `61.0 [48.3, 73.7] (n=2)`.
fn md_stat(stat: &Stat, expected: usize) -> String {
    let mut s = match stat.ci {
        Some((lo, hi)) => format!("{:.1} [{lo:.1}, {hi:.1}] (n={})", stat.mean, stat.n),
        None => format!("{:.1}", stat.mean),
    };
    if stat.n < expected {
        let _ = write!(s, " ({} of {} seeds)", stat.n, expected);
    }
    s
}

/// The mark's sign in Markdown and plain text: `best`, `≈` (tied), nothing otherwise.
fn mark_text(mark: &Mark, value: String) -> String {
    match mark {
        Mark::Best => format!("{value} best"),
        Mark::Tied(_) => format!("≈ {value}"),
        Mark::None | Mark::Below(_) => value,
    }
}

/// The notes that explain intervals and marks, when the table has them.
fn stat_notes(rows: &[Vec<Val>]) -> Vec<String> {
    let vals = || rows.iter().flatten();
    let mut out = Vec::new();
    if vals().any(|v| matches!(v, Val::Ours(CellValue::Value { stat, .. }) if stat.ci.is_some())) {
        out.push(
            "[lo, hi]: 95% confidence interval of the mean over seeds (Student t, n-1 dof).".into(),
        );
    }
    if vals().any(|v| {
        matches!(
            v,
            Val::Ours(CellValue::Value {
                mark: Mark::Best,
                ..
            })
        )
    }) {
        out.push("best: the highest mean of its column (of the whole grid in a matrix of cells); ≈: not distinguishable from it (paired t-test on shared seeds, p ≥ 0.05, or overlapping 95% intervals when seeds are not shared); single-seed values are never marked ≈ or below, as nothing tests them.".into());
    }
    out
}

fn md_val(v: &Val) -> String {
    match v {
        Val::Text(t) => t.replace('|', "\\|"),
        other => plain_val(other),
    }
}

/// A cell as text: mean ± std (n), "— (why)" when missing.
fn plain_val(v: &Val) -> String {
    match v {
        Val::Text(t) => t.clone(),
        Val::Ours(CellValue::Value {
            stat,
            expected,
            mark,
            ..
        }) => mark_text(mark, md_stat(stat, *expected)),
        Val::Ours(CellValue::Missing(why)) => format!("— ({why})"),
        Val::Paper(Some(x)) => format!("{x:.1}"),
        Val::Paper(None) => "—".to_string(),
    }
}

fn tex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '≈' => out.push_str("$\\approx$"),
            '≥' => out.push_str("$\\geq$"),
            '—' => out.push_str("---"),
            '→' => out.push_str("$\\to$"),
            _ => out.push(c),
        }
    }
    out
}

fn tex_val(v: &Val) -> String {
    match v {
        Val::Text(t) => tex_escape(t),
        Val::Ours(CellValue::Value {
            stat,
            expected,
            mark,
            ..
        }) => {
            let mut s = match stat.ci {
                Some((lo, hi)) => format!("{:.1} [{lo:.1}, {hi:.1}]", stat.mean),
                None => format!("{:.1}", stat.mean),
            };
            if stat.n < *expected {
                let _ = write!(s, "$^{{{}/{}}}$", stat.n, expected);
            }
            match mark {
                Mark::Best => format!("\\textbf{{{s}}}"),
                Mark::Tied(_) => format!("$\\approx$ {s}"),
                _ => s,
            }
        }
        Val::Ours(CellValue::Missing(why)) => format!("--- ({why})"),
        Val::Paper(Some(x)) => format!("{x:.1}"),
        Val::Paper(None) => "---".to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line from fields.
pub(crate) fn csv_line(fields: &[String]) -> String {
    let mut s = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    s
}

impl Table {
    /// The rows as plain text (the dashboard's HTML tables; escaping is the caller's).
    pub fn plain_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| r.iter().map(plain_val).collect())
            .collect()
    }

    /// GitHub Markdown: caption in bold, the table, notes as a list.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "**{}**\n", self.caption);
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let aligns: Vec<&str> = (0..self.header.len())
            .map(|i| {
                if self.numeric_column(i) {
                    "---:"
                } else {
                    "---"
                }
            })
            .collect();
        let _ = writeln!(s, "|{}|", aligns.join("|"));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(md_val).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        let notes: Vec<String> = self
            .notes
            .iter()
            .cloned()
            .chain(stat_notes(&self.rows))
            .collect();
        if !notes.is_empty() {
            s.push('\n');
            for n in &notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    fn numeric_column(&self, i: usize) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.get(i), Some(Val::Ours(_) | Val::Paper(_))))
    }

    /// A booktabs `table` environment.
    pub fn latex(&self) -> String {
        let mut s = String::new();
        let spec: String = (0..self.header.len())
            .map(|i| if self.numeric_column(i) { 'r' } else { 'l' })
            .collect();
        s.push_str("% Generated by `sweep report`; needs \\usepackage{booktabs}.\n");
        s.push_str("\\begin{table}[t]\n  \\centering\n");
        let _ = writeln!(s, "  \\caption{{{}}}", tex_escape(&self.caption));
        let _ = writeln!(s, "  \\label{{tab:{}}}", self.id);
        let _ = writeln!(s, "  \\begin{{tabular}}{{{spec}}}");
        s.push_str("    \\toprule\n");
        let head: Vec<String> = self.header.iter().map(|h| tex_escape(h)).collect();
        let _ = writeln!(s, "    {} \\\\", head.join(" & "));
        s.push_str("    \\midrule\n");
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(tex_val).collect();
            let _ = writeln!(s, "    {} \\\\", cells.join(" & "));
        }
        s.push_str("    \\bottomrule\n  \\end{tabular}\n");
        let mut notes = self
            .notes
            .iter()
            .cloned()
            .chain(stat_notes(&self.rows))
            .map(|n| tex_escape(&n))
            .collect::<Vec<_>>();
        let partial = self.rows.iter().flatten().any(
            |v| matches!(v, Val::Ours(CellValue::Value { stat, expected, .. }) if stat.n < *expected),
        );
        if partial {
            notes.push("$^{k/n}$: mean of the $k$ of $n$ seeds that finished.".into());
        }
        if !notes.is_empty() {
            s.push_str("  \\par\\smallskip\\footnotesize\n");
            for n in &notes {
                let _ = writeln!(s, "  {n}\\par");
            }
        }
        s.push_str("\\end{table}\n");
        s
    }

    /// CSV: ours as `mean`, `std`, `n`, `ci95 lo`, `ci95 hi`, `vs best` columns; paper
    /// values as numbers.
    pub fn csv(&self) -> String {
        let mut header = Vec::new();
        for (i, h) in self.header.iter().enumerate() {
            if self
                .rows
                .iter()
                .any(|r| matches!(r.get(i), Some(Val::Ours(_))))
            {
                header.push(format!("{h} mean"));
                header.push(format!("{h} std"));
                header.push(format!("{h} n"));
                header.push(format!("{h} ci95 lo"));
                header.push(format!("{h} ci95 hi"));
                header.push(format!("{h} vs best"));
            } else {
                header.push(h.clone());
            }
        }
        let mut s = csv_line(&header);
        for row in &self.rows {
            let mut f = Vec::new();
            for (i, v) in row.iter().enumerate() {
                let ours_col = self
                    .rows
                    .iter()
                    .any(|r| matches!(r.get(i), Some(Val::Ours(_))));
                match v {
                    Val::Ours(CellValue::Value { stat, mark, .. }) => {
                        let num = |x: Option<f64>| x.map(|x| format!("{x:.4}")).unwrap_or_default();
                        f.push(format!("{:.4}", stat.mean));
                        f.push(num(stat.std));
                        f.push(stat.n.to_string());
                        f.push(num(stat.ci.map(|c| c.0)));
                        f.push(num(stat.ci.map(|c| c.1)));
                        f.push(match mark {
                            Mark::None => String::new(),
                            Mark::Best => "best".into(),
                            Mark::Tied(why) => format!("tied: {why}"),
                            Mark::Below(why) => format!("below: {why}"),
                        });
                    }
                    Val::Ours(CellValue::Missing(why)) => {
                        f.push(why.to_string());
                        f.extend([String::new(), "0".into()]);
                        f.extend([String::new(), String::new(), String::new()]);
                    }
                    other if ours_col => {
                        f.push(md_val(other));
                        f.extend(std::iter::repeat_n(String::new(), 5));
                    }
                    Val::Paper(Some(x)) => f.push(format!("{x:.1}")),
                    Val::Paper(None) => f.push(String::new()),
                    Val::Text(t) => f.push(t.clone()),
                }
            }
            s.push_str(&csv_line(&f));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            id: "t".into(),
            caption: "Loss & temperature_1".into(),
            header: vec!["loss".into(), "top-1".into(), "paper".into()],
            rows: vec![
                vec![
                    Val::text("nt_xent"),
                    Val::Ours(CellValue::Value {
                        stat: Stat::of(&[60.0, 62.0]).unwrap(),
                        expected: 2,
                        seeds: vec![(0, 60.0), (1, 62.0)],
                        mark: Mark::None,
                    }),
                    Val::Paper(Some(63.9)),
                ],
                vec![
                    Val::text("margin"),
                    Val::Ours(CellValue::Missing("failed")),
                    Val::Paper(None),
                ],
            ],
            notes: vec!["50% of runs".into()],
        }
    }

    #[test]
    fn markdown_shows_mean_std_n_and_why_a_cell_is_empty() {
        let md = table().markdown();
        // scipy.stats.t.interval(0.95, 1, loc=61, scale=1) = (48.29, 73.71)
        assert!(
            md.contains("| nt_xent | 61.0 [48.3, 73.7] (n=2) | 63.9 |"),
            "{md}"
        );
        assert!(md.contains("95% confidence interval"), "{md}");
        assert!(md.contains("| margin | — (failed) | — |"), "{md}");
        assert!(md.contains("|---|---:|---:|"), "{md}");
    }

    #[test]
    fn latex_is_booktabs_and_escaped() {
        let tex = table().latex();
        assert!(
            tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule")
        );
        assert!(tex.contains("Loss \\& temperature\\_1"), "{tex}");
        assert!(tex.contains("61.0 [48.3, 73.7]"), "{tex}");
        assert!(tex.contains("50\\% of runs"), "{tex}");
        assert!(!tex.contains("\\hline"));
    }

    #[test]
    fn csv_splits_mean_std_and_n() {
        let csv = table().csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "loss,top-1 mean,top-1 std,top-1 n,top-1 ci95 lo,top-1 ci95 hi,top-1 vs best,paper"
        );
        assert_eq!(lines[1], "nt_xent,61.0000,1.4142,2,48.2938,73.7062,,63.9");
        assert_eq!(lines[2], "margin,failed,,0,,,,");
    }
}
