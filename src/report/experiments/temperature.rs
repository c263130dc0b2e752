//! Table 5, l2 normalisation and temperature (`loss.l2_norm`, `loss.temperature`): the
//! training contrastive accuracy (as the paper measures it, and strictly) and each
//! evaluation's top-1 per cell beside the paper's, and the paper's claims: l2
//! normalisation beats none, and with it a moderate temperature is best.

use crate::report::aggregate::{CellValue, SweepData};
use crate::report::experiment::{ChosenBy, Experiment, Slice};
use crate::report::findings::{best, finding, judge, percent, versus, Finding, Verdict};
use crate::report::paper::{self, PaperSetting};
use crate::report::protocols;
use crate::report::sections::Section;
use crate::report::tables::{label_header, Table, Val};

pub(crate) const EXPERIMENT: Experiment = Experiment {
    name: "temperature",
    chosen_by: ChosenBy::Axes {
        axes: &["loss.l2_norm", "loss.temperature"],
        takes_over: &[],
    },
    supersedes: &[],
    shared_marks: true,
    section: |data, slice| Some(section(data, slice)),
    claims_rank: 6,
    claims,
};

/// Table 5: contrastive distribution over 4096 examples, 100 epochs.
const TABLE_5: PaperSetting = PaperSetting {
    source: "Table 5",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 5 (contrastive accuracy %, top-1 %) for l2 norm and temperature.
fn paper_values(l2_norm: bool, temperature: f64) -> Option<(f64, f64)> {
    const ROWS: [(bool, f64, f64, f64); 6] = [
        (true, 0.05, 90.5, 59.7),
        (true, 0.1, 87.8, 64.4),
        (true, 0.5, 68.2, 60.7),
        (true, 1.0, 59.1, 58.0),
        (false, 10.0, 91.7, 57.2),
        (false, 100.0, 92.1, 57.0),
    ];
    ROWS.iter()
        .find(|r| r.0 == l2_norm && (r.1 - temperature).abs() < 1e-9)
        .map(|r| (r.2, r.3))
}

/// Table 5: l2 normalisation x temperature, contrastive accuracy and top-1.
fn section(data: &SweepData, slice: &Slice) -> Section {
    let (cells, suffix, id) = (&slice.cells, &slice.title, &slice.id);
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
            let p = paper_values(l.l2_norm, l.temperature);
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
        .chain(protocols::notes(data, &data.labels))
        .collect(),
    });
    s.paper = paper::table_lines(data, &TABLE_5, cells);
    s
}

/// Table 5's claims: the best l2-normalised cell beats the best unnormalised one, and
/// [`moderate_temperature`] over each temperature's best l2-normalised cell.
fn claims(data: &SweepData, label: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let l2 = best(data, label, |c| c.loss.l2_norm);
    let raw = best(data, label, |c| !c.loss.l2_norm);
    if let (Some((c, a)), Some((_, b))) = (&l2, &raw) {
        let t = data.first(c).config.loss.temperature;
        out.push(judge(
            &format!("Table 5: l2 normalisation (best at temperature {t}) beats none"),
            ("l2-normalised", a),
            ("unnormalised", b),
        ));
    }
    let mut temps: Vec<f64> = data
        .cells
        .iter()
        .map(|c| &data.first(c).config.loss)
        .filter(|l| l.l2_norm)
        .map(|l| l.temperature)
        .collect();
    temps.sort_by(f64::total_cmp);
    temps.dedup();
    let by_temp: Vec<(f64, CellValue)> = temps
        .into_iter()
        .filter_map(|t| {
            best(data, label, |c| c.loss.l2_norm && c.loss.temperature == t).map(|(_, v)| (t, v))
        })
        .collect();
    out.extend(moderate_temperature(&by_temp));
    out
}

/// Table 5: with l2 normalisation, the best of the inner temperatures (neither the
/// smallest nor the largest swept) beats both ends: held when it beats each significantly,
/// not held when an end beats it significantly, else inconclusive. `by_temp`: each
/// temperature's best l2-normalised value, in increasing temperature; `None` for fewer
/// than three temperatures (no inner one).
fn moderate_temperature(by_temp: &[(f64, CellValue)]) -> Option<Finding> {
    let [(t_lo, lo), inner @ .., (t_hi, hi)] = by_temp else {
        return None;
    };
    let mean = |v: &CellValue| v.stat().map_or(f64::NEG_INFINITY, |s| s.mean);
    let (t_mid, mid) = inner
        .iter()
        .max_by(|a, b| mean(&a.1).total_cmp(&mean(&b.1)))?;
    let name = |t: &f64| format!("temperature {t}");
    let (v_lo, e_lo) = versus((&name(t_mid), mid), (&name(t_lo), lo), percent);
    let (v_hi, e_hi) = versus((&name(t_mid), mid), (&name(t_hi), hi), percent);
    let verdict = match (v_lo, v_hi) {
        (Verdict::Held, Verdict::Held) => Verdict::Held,
        (Verdict::NotHeld, _) | (_, Verdict::NotHeld) => Verdict::NotHeld,
        _ => Verdict::Inconclusive,
    };
    Some(finding(
        "Table 5: with l2 normalisation a moderate temperature is best (the best inner temperature vs the smallest and the largest swept)",
        verdict,
        &format!("{e_lo}; {e_hi}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::test_value as v;

    #[test]
    fn table_5_has_both_normalisations_rows_and_no_others() {
        assert_eq!(paper_values(true, 0.1), Some((87.8, 64.4)));
        assert_eq!(paper_values(false, 100.0), Some((92.1, 57.0)));
        assert_eq!(paper_values(true, 0.2), None);
        assert_eq!(paper_values(false, 0.1), None);
    }

    #[test]
    fn a_moderate_temperature_is_best_only_when_it_beats_both_ends_beyond_noise() {
        let (t01, t05) = (v(&[55.0, 56.1, 54.2]), v(&[60.2, 61.0, 59.5]));
        // scipy.stats.ttest_rel: 0.5 vs 0.1 p = 0.00055, 0.5 vs 1.0 p = 0.00201.
        let t10 = v(&[57.1, 58.3, 56.4]);
        let f =
            moderate_temperature(&[(0.1, t01.clone()), (0.5, t05.clone()), (1.0, t10)]).unwrap();
        assert_eq!(f.verdict, Verdict::Held, "{}", f.line);
        for part in [
            "temperature 0.5 60.2% vs temperature 0.1 55.1%",
            "p = 0.001",
            "temperature 0.5 60.2% vs temperature 1 57.3%",
            "p = 0.002",
        ] {
            assert!(f.line.contains(part), "{part}: {}", f.line);
        }
        // The edge over the largest temperature shrinks within noise (p = 0.533).
        let t10 = v(&[61.5, 56.0, 59.0]);
        let f =
            moderate_temperature(&[(0.1, t01.clone()), (0.5, t05.clone()), (1.0, t10)]).unwrap();
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        assert!(f.line.contains("p = 0.533"), "{}", f.line);
        // The largest temperature beats every inner one on every seed: not held.
        let t10 = v(&[63.0, 64.1, 62.2]);
        let f =
            moderate_temperature(&[(0.1, t01.clone()), (0.5, t05.clone()), (1.0, t10)]).unwrap();
        assert_eq!(f.verdict, Verdict::NotHeld, "{}", f.line);
        // Two temperatures have no inner one: the claim is not testable.
        assert_eq!(moderate_temperature(&[(0.1, t01), (0.5, t05)]), None);
    }
}
