//! Which values of a table or figure are not distinguishable from the best: within each
//! column of an evaluation (or the whole matrix of a table without such columns, of
//! Figure 5's heatmap and of Figure 9's bars), the highest mean is marked best, and every
//! other value with an interval is compared with it: paired t-test on the seeds they share
//! when they share at least two, else whether their 95% intervals overlap. p ≥ 0.05 (or
//! overlap) marks it tied; single seeds stay unmarked.

use super::aggregate::{CellValue, Mark, SweepData};
use super::plots::Plot;
use super::sections::Section;
use super::stats::paired_t;
use super::tables::{column_label, Table, Val};

/// The significance level of the comparisons.
pub(crate) const ALPHA: f64 = 0.05;

/// Marks every table of `sec` (before the control's rows join them: a reference is never
/// marked).
pub(crate) fn mark(data: &SweepData, sec: &mut Section) {
    let primary = data.primary();
    for t in &mut sec.tables {
        mark_table(data, t, &primary);
    }
}

/// Marks the values of every heatmap and bar chart of `sec` (one matrix each, as the
/// table beside it), and says in its caption what the marks mean.
pub(crate) fn mark_figures(sec: &mut Section) {
    for f in &mut sec.figures {
        let (values, what) = match &mut f.plot {
            Plot::Heatmap { values, .. } => (values, "cell"),
            Plot::Bars { values, .. } => (values, "bar"),
            _ => continue,
        };
        if mark_values(values.iter_mut().flatten().collect()) {
            f.caption.push_str(&format!(
                " Thick red outline: the best {what}; ≈ and a thin red outline: not distinguishable from it (paired t-test on shared seeds, p ≥ 0.05, or overlapping 95% intervals when seeds are not shared); unmarked {what}s are below it, or have one seed and nothing tests them."
            ));
        }
    }
}

fn mark_table(data: &SweepData, t: &mut Table, primary: &str) {
    // Column sets: each evaluation column alone, or every column of a matrix together. A
    // table with a column of controls (each row's own) compares each of its other columns
    // alone (Figure 7: the best SimCLR encoder, the best supervised one); the controls are
    // a reference, never compared.
    let controls = t.header.iter().any(|h| h == super::control::COLUMN);
    let labelled: Vec<usize> = (0..t.header.len())
        .filter(|&i| column_label(&data.labels, &t.header, i, primary).is_some())
        .filter(|&i| t.header[i] != super::control::COLUMN)
        .collect();
    let sets: Vec<Vec<usize>> = if labelled.len() == t.header.len() && !controls {
        vec![labelled]
    } else {
        labelled.into_iter().map(|i| vec![i]).collect()
    };
    for cols in sets {
        let values: Vec<&mut CellValue> = t
            .rows
            .iter_mut()
            .flat_map(|row| {
                row.iter_mut()
                    .enumerate()
                    .filter(|(c, _)| cols.contains(c))
                    .filter_map(|(_, v)| match v {
                        Val::Ours(v @ CellValue::Value { .. }) => Some(v),
                        _ => None,
                    })
            })
            .collect();
        mark_values(values);
    }
}

/// Marks `values` (in reading order) against the highest mean among them, the first on a
/// tie; true when it marked them. Nothing is marked when fewer than two have a value or
/// when no comparison could be tested (single seeds): not even the best.
pub(crate) fn mark_values(mut values: Vec<&mut CellValue>) -> bool {
    values.retain(|v| v.stat().is_some());
    let mean = |v: &CellValue| v.stat().map_or(f64::NEG_INFINITY, |s| s.mean);
    let Some(best) = (0..values.len())
        .max_by(|&a, &b| mean(values[a]).total_cmp(&mean(values[b])).then(b.cmp(&a)))
    else {
        return false;
    };
    if values.len() < 2 {
        return false;
    }
    let best_v = values[best].clone();
    let marks: Vec<Mark> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i == best {
                Mark::Best
            } else {
                against(&best_v, v)
            }
        })
        .collect();
    if marks.iter().all(|m| matches!(m, Mark::Best | Mark::None)) {
        return false;
    }
    for (v, m) in values.into_iter().zip(marks) {
        if let CellValue::Value { mark, .. } = v {
            *mark = m;
        }
    }
    true
}

/// How `v` stands against `best`.
pub(crate) fn against(best: &CellValue, v: &CellValue) -> Mark {
    let (
        CellValue::Value {
            stat: bs,
            seeds: bseeds,
            ..
        },
        CellValue::Value {
            stat: vs,
            seeds: vseeds,
            ..
        },
    ) = (best, v)
    else {
        return Mark::None;
    };
    let pairs: Vec<(f64, f64)> = bseeds
        .iter()
        .filter_map(|(s, b)| vseeds.iter().find(|(t, _)| t == s).map(|(_, x)| (*b, *x)))
        .collect();
    if let Some(p) = paired_t(&pairs) {
        let t = if p.t.is_finite() {
            format!("{:.2}", p.t)
        } else {
            "∞ (the same difference on every seed)".into()
        };
        let why = format!(
            "paired t({}) = {t}, p = {:.3} over {} shared seeds, difference {:.1}",
            p.dof,
            p.p,
            pairs.len(),
            p.mean_diff
        );
        return if p.p >= ALPHA {
            Mark::Tied(why)
        } else {
            Mark::Below(why)
        };
    }
    match (bs.ci, vs.ci) {
        (Some((blo, _)), Some((_, vhi))) if vhi >= blo => {
            Mark::Tied("95% intervals overlap (no shared seeds)".into())
        }
        (Some(_), Some(_)) => Mark::Below("95% intervals disjoint (no shared seeds)".into()),
        _ => Mark::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::Stat;

    fn v(seeds: &[(i64, f64)]) -> CellValue {
        let values: Vec<f64> = seeds.iter().map(|s| s.1).collect();
        CellValue::Value {
            stat: Stat::of(&values).unwrap(),
            expected: seeds.len(),
            seeds: seeds.to_vec(),
            mark: Mark::None,
        }
    }

    #[test]
    fn a_consistent_gap_over_shared_seeds_is_below_and_a_noisy_one_is_tied() {
        // scipy.stats.ttest_rel([42.3, 41.0, 43.1], [40.3, 39.2, 41.5]): p = 0.00409.
        let best = v(&[(0, 42.3), (1, 41.0), (2, 43.1)]);
        let m = against(&best, &v(&[(0, 40.3), (1, 39.2), (2, 41.5)]));
        assert!(
            matches!(&m, Mark::Below(w) if w.contains("p = 0.004")),
            "{m:?}"
        );
        // The same means, but the seeds disagree on the sign: within noise.
        let m = against(&best, &v(&[(0, 43.3), (1, 37.0), (2, 41.7)]));
        assert!(matches!(m, Mark::Tied(_)), "{m:?}");
    }

    #[test]
    fn without_shared_seeds_the_intervals_decide_and_one_seed_is_never_marked() {
        let best = v(&[(0, 42.0), (1, 43.0), (2, 42.5)]);
        assert!(matches!(
            against(&best, &v(&[(5, 41.0), (6, 43.0)])),
            Mark::Tied(_)
        ));
        assert!(matches!(
            against(&best, &v(&[(5, 30.0), (6, 30.5), (7, 30.2)])),
            Mark::Below(_)
        ));
        assert_eq!(against(&best, &v(&[(0, 41.0)])), Mark::None);
    }
}
