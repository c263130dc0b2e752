//! The Findings section: one line per claim of the paper that the sweep's cells can test
//! (Figure 5, Figure 8, Table 4, Table 5, Figure 9), each held, not held or inconclusive,
//! with the two numbers compared and the test behind the verdict ([`compare::against`]:
//! a paired t-test over shared seeds, else 95% interval overlap; one seed tests nothing).
//! All on the primary evaluation's top-1.

use crate::ml::config::{AugOp, HeadKind, LossKind, PretrainConfig};

use super::aggregate::{CellData, CellValue, Mark, SweepData};
use super::compare::against;
use super::sections::Section;

/// A claim's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Held,
    NotHeld,
    Inconclusive,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::NotHeld => "not held",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One tested claim.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub verdict: Verdict,
    pub line: String,
}

/// Whether `a` (claimed better) beats `b`, with the numbers and the test.
pub(crate) fn judge(
    claim: &str,
    (an, a): (&str, &CellValue),
    (bn, b): (&str, &CellValue),
) -> Finding {
    let (Some(sa), Some(sb)) = (a.stat(), b.stat()) else {
        return Finding {
            verdict: Verdict::Inconclusive,
            line: format!("{claim}: inconclusive — {an} or {bn} has no value yet."),
        };
    };
    let (verdict, test) = match (against(a, b), against(b, a)) {
        (Mark::Below(t), _) if sa.mean > sb.mean => (Verdict::Held, t),
        (_, Mark::Below(t)) if sb.mean > sa.mean => (Verdict::NotHeld, t),
        (Mark::Tied(t), _) => (Verdict::Inconclusive, format!("{t}: within noise")),
        _ => (
            Verdict::Inconclusive,
            "single seed: no test can tell the difference from noise".to_string(),
        ),
    };
    Finding {
        verdict,
        line: format!(
            "{claim}: **{}** — {an} {:.1}% vs {bn} {:.1}% ({test}).",
            verdict.word(),
            sa.mean,
            sb.mean
        ),
    }
}

/// The cell with the highest mean among `cells` passing `keep`, and its value.
fn best<'a>(
    data: &'a SweepData,
    label: &str,
    keep: impl Fn(&PretrainConfig) -> bool,
) -> Option<(&'a CellData, CellValue)> {
    data.cells
        .iter()
        .filter(|c| keep(&data.first(c).config))
        .map(|c| (c, data.top1(c, label)))
        .filter(|(_, v)| v.stat().is_some())
        .max_by(|a, b| {
            let m = |v: &CellValue| v.stat().map_or(f64::NEG_INFINITY, |s| s.mean);
            m(&a.1).total_cmp(&m(&b.1))
        })
}

fn ops_name(c: &PretrainConfig) -> String {
    let names: Vec<&str> = c.augment.ops.iter().map(|o| o.name()).collect();
    names.join("+")
}

/// The Findings section, or `None` when the sweep tests none of the claims.
pub(crate) fn section(data: &SweepData) -> Option<Section> {
    let label = data.primary_label()?.to_string();
    let out = findings(data, &label);
    if out.is_empty() {
        return None;
    }
    let mut s = Section::new("Findings");
    s.text.push(format!(
        "Each line tests one claim of the paper on this sweep's top-1 ({label}), at this sweep's scale (see Settings); held / not held need a significant difference (paired t-test over shared seeds, p < 0.05, or disjoint 95% intervals); anything else is inconclusive."
    ));
    let lines: Vec<String> = out.into_iter().map(|f| format!("- {}", f.line)).collect();
    s.text.push(lines.join("\n"));
    Some(s)
}

/// The sweep's headline for the reports index: that training did not beat the control
/// when it did not, else the first of the paper's claims it tests.
pub(crate) fn headline(data: &SweepData) -> String {
    let Some(label) = data.primary_label() else {
        return "no evaluation yet".into();
    };
    let out = findings(data, label);
    let control = out.first().filter(|f| f.line.starts_with(CONTROL_CLAIM));
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

/// The claim every sweep with a control tests first.
const CONTROL_CLAIM: &str =
    "Pretraining beats untrained weights (best cell vs the random-weights control)";

/// Every claim the sweep's cells can test, the control's first.
fn findings(data: &SweepData, label: &str) -> Vec<Finding> {
    let label = label.to_string();
    let mut out: Vec<Finding> = Vec::new();
    let axes = |names: &[&str]| data.axes.iter().any(|a| names.contains(&a.as_str()));
    let pair = |data: &SweepData, keep: &dyn Fn(&PretrainConfig) -> bool| {
        best(data, &label, keep).map(|(c, v)| (ops_name(&data.first(c).config), v))
    };
    let all: Vec<&CellData> = data.cells.iter().collect();
    if let (Some(k), Some((c, v))) = (data.control_of(&all, &label), best(data, &label, |_| true)) {
        let control = data.top1(k, &label);
        let below = control.stat().map_or(0, |ks| {
            all.iter()
                .filter(|c| {
                    data.top1(c, &label)
                        .stat()
                        .is_some_and(|s| s.mean <= ks.mean)
                })
                .count()
        });
        let mut f = judge(
            CONTROL_CLAIM,
            (&super::sections::cell_name(data, c), &v),
            ("the control", &control),
        );
        f.line.push_str(&format!(
            " {below} of {} cells score at or below the control.",
            all.len()
        ));
        out.push(f);
    }
    if axes(&["augment.ops"]) {
        let composed = pair(data, &|c| c.augment.ops.len() == 2);
        let single = pair(data, &|c| c.augment.ops.len() == 1);
        if let (Some((an, a)), Some((bn, b))) = (&composed, &single) {
            out.push(judge(
                "Figure 5: composition beats single transformations (best pair vs best single)",
                (an, a),
                (bn, b),
            ));
        }
        let is_cc = |c: &PretrainConfig| {
            let o = &c.augment.ops;
            o.len() == 2 && o.contains(&AugOp::Crop) && o.contains(&AugOp::Color)
        };
        let cc = pair(data, &|c| is_cc(c));
        let other = pair(data, &|c| c.augment.ops.len() == 2 && !is_cc(c));
        if let (Some((an, a)), Some((bn, b))) = (&cc, &other) {
            out.push(judge(
                "Figure 5: crop with colour is the strongest pair (vs the best other pair)",
                (an, a),
                (bn, b),
            ));
        }
    }
    if axes(&["head", "head.kind", "head.out_dim"]) {
        let kind = |k: HeadKind| best(data, &label, move |c| c.head.kind == k);
        let name = |k: &str, c: &CellData| {
            format!("{k} head (out dim {:?})", data.first(c).config.head.out_dim)
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
        let z_label = label.replace("@h", "@z");
        if let (Some((cn, vh)), true) = (&nl, data.labels.contains(&z_label)) {
            out.push(judge(
                "Figure 8: h is better than z (best nonlinear head)",
                (&label, vh),
                (&z_label, &data.top1(cn, &z_label)),
            ));
        }
    }
    if axes(&["loss", "loss.kind"]) {
        let nt = best(data, &label, |c| c.loss.kind == LossKind::NtXent);
        let other = best(data, &label, |c| c.loss.kind != LossKind::NtXent);
        if let (Some((_, a)), Some((c, b))) = (&nt, &other) {
            let other_name = format!("{:?} at its best", data.first(c).config.loss.kind);
            out.push(judge(
                "Table 4: NT-Xent at its best beats the other losses at theirs",
                ("NT-Xent at its best", a),
                (&other_name, b),
            ));
        }
    }
    if axes(&["loss.l2_norm", "loss.temperature"]) {
        let l2 = best(data, &label, |c| c.loss.l2_norm);
        let raw = best(data, &label, |c| !c.loss.l2_norm);
        if let (Some((c, a)), Some((_, b))) = (&l2, &raw) {
            let t = data.first(c).config.loss.temperature;
            out.push(judge(
                &format!("Table 5: l2 normalisation (best at temperature {t}) beats none"),
                ("l2-normalised", a),
                ("unnormalised", b),
            ));
        }
    }
    if axes(&["batch_size", "epochs"]) {
        out.extend(figure9(data, &label));
    }
    out
}

/// Figure 9: the largest batch beats the smallest at the fewest epochs, and not (or by
/// less) at the most.
fn figure9(data: &SweepData, label: &str) -> Vec<Finding> {
    let mut epochs: Vec<usize> = data
        .cells
        .iter()
        .map(|c| data.first(c).config.epochs)
        .collect();
    let mut batches: Vec<usize> = data
        .cells
        .iter()
        .map(|c| data.first(c).config.batch_size)
        .collect();
    for v in [&mut epochs, &mut batches] {
        v.sort_unstable();
        v.dedup();
    }
    let (Some(&e0), Some(&e1), Some(&b0), Some(&b1)) = (
        epochs.first(),
        epochs.last(),
        batches.first(),
        batches.last(),
    ) else {
        return Vec::new();
    };
    if b0 == b1 {
        return Vec::new();
    }
    let at = |b: usize, e: usize| {
        best(data, label, move |c| c.batch_size == b && c.epochs == e).map(|x| x.1)
    };
    let mut out = Vec::new();
    for (e, what) in [
        (e0, "helps at the fewest epochs"),
        (
            e1,
            "still helps at the most epochs (the paper: the gap closes)",
        ),
    ] {
        if let (Some(a), Some(b)) = (at(b1, e), at(b0, e)) {
            out.push(judge(
                &format!("Figure 9: a larger batch {what} ({e} epochs)"),
                (&format!("batch {b1}"), &a),
                (&format!("batch {b0}"), &b),
            ));
        }
        if e0 == e1 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::Stat;

    fn v(seeds: &[f64]) -> CellValue {
        CellValue::Value {
            stat: Stat::of(seeds).unwrap(),
            expected: seeds.len(),
            seeds: seeds
                .iter()
                .enumerate()
                .map(|(i, x)| (i as i64, *x))
                .collect(),
            mark: Mark::None,
        }
    }

    #[test]
    fn a_claim_flips_from_held_to_inconclusive_when_its_gap_shrinks_within_noise() {
        let other = v(&[40.3, 39.2, 41.5]);
        // A 1.8-point gap, the same sign on every seed: paired t, p = 0.004.
        let f = judge("claim", ("a", &v(&[42.3, 41.0, 43.1])), ("b", &other));
        assert_eq!(f.verdict, Verdict::Held, "{}", f.line);
        assert!(
            f.line.contains("a 42.1% vs b 40.3%") && f.line.contains("p = 0.004"),
            "{}",
            f.line
        );
        // A 0.3-point gap that changes sign across seeds: within noise.
        let f = judge("claim", ("a", &v(&[41.3, 38.7, 41.8])), ("b", &other));
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        // The other way round, significantly: not held.
        let f = judge("claim", ("b", &other), ("a", &v(&[42.3, 41.0, 43.1])));
        assert_eq!(f.verdict, Verdict::NotHeld, "{}", f.line);
        // One seed each: nothing tests it.
        let f = judge("claim", ("a", &v(&[45.0])), ("b", &v(&[40.0])));
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
    }
}
