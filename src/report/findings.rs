//! The Findings section and how a claim of the paper is tested: each claim held, not
//! held or inconclusive, with the numbers compared and the test behind the verdict
//! ([`compare::against`]: a paired t-test over shared seeds, else 95% interval overlap;
//! one seed tests nothing). Claims about a difference (a gap that closes or shrinks) test
//! the per-seed differences the same way. Every sweep with a random-weights control first
//! tests that pretraining beats it ([`control_claim`]); the paper's claims are the
//! experiments' own (`experiments/`), each on the primary evaluation's top-1 unless it
//! says otherwise.

use crate::ml::config::PretrainConfig;

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

/// A top-1 as the findings print it.
pub(crate) fn percent(x: f64) -> String {
    format!("{x:.1}%")
}

/// A difference of top-1s as the findings print it.
fn points(x: f64) -> String {
    format!("{x:+.1} points")
}

/// Whether `a` (claimed higher) is above `b`: the verdict, and the two values shown by
/// `show` with the test behind it (`an x vs bn y (test)`).
pub(crate) fn versus(
    (an, a): (&str, &CellValue),
    (bn, b): (&str, &CellValue),
    show: fn(f64) -> String,
) -> (Verdict, String) {
    let (Some(sa), Some(sb)) = (a.stat(), b.stat()) else {
        return (
            Verdict::Inconclusive,
            format!("{an} or {bn} has no value yet"),
        );
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
    (
        verdict,
        format!("{an} {} vs {bn} {} ({test})", show(sa.mean), show(sb.mean)),
    )
}

/// A finding's line: the claim, the verdict in bold, the evidence.
pub(crate) fn finding(claim: &str, verdict: Verdict, evidence: &str) -> Finding {
    Finding {
        verdict,
        line: format!("{claim}: **{}** — {evidence}.", verdict.word()),
    }
}

/// Whether `a` (claimed better) beats `b`, with the numbers and the test.
pub(crate) fn judge(claim: &str, a: (&str, &CellValue), b: (&str, &CellValue)) -> Finding {
    let (verdict, evidence) = versus(a, b, percent);
    finding(claim, verdict, &evidence)
}

/// The cell with the highest mean among `cells` passing `keep`, and its value.
pub(crate) fn best<'a>(
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

/// The per-seed advantage of `large` over `small` on the seeds both finished.
fn gap(large: &CellValue, small: &CellValue) -> CellValue {
    let (CellValue::Value { seeds: ls, .. }, CellValue::Value { seeds: ss, .. }) = (large, small)
    else {
        return CellValue::Missing("missing");
    };
    let seeds: Vec<(i64, f64)> = ls
        .iter()
        .filter_map(|(s, l)| ss.iter().find(|(t, _)| t == s).map(|(_, x)| (*s, l - x)))
        .collect();
    let n = seeds.len();
    CellValue::of_seeds(seeds, n).unwrap_or(CellValue::Missing("no shared seed"))
}

/// Whether the gap `a - b` at a first setting is larger than at a second (the gap
/// shrinks), tested on the per-seed gaps (a paired t-test of the gap differences over the
/// seeds all four values share): `(name, [a, b])` per setting; `unshared` says why there
/// is nothing to test when no seed has all four.
pub(crate) fn gap_shrinks(
    claim: &str,
    (n0, [a0, b0]): (&str, [&CellValue; 2]),
    (n1, [a1, b1]): (&str, [&CellValue; 2]),
    unshared: &str,
) -> Finding {
    let (g0, g1) = (gap(a0, b0), gap(a1, b1));
    if g0.stat().is_none() || g1.stat().is_none() {
        return finding(claim, Verdict::Inconclusive, unshared);
    }
    let (verdict, evidence) = versus((n0, &g0), (n1, &g1), points);
    finding(claim, verdict, &evidence)
}

/// The Findings section of `claims` tested on the primary evaluation `label`, or `None`
/// when the sweep tests none.
pub(crate) fn section(label: &str, claims: Vec<Finding>) -> Option<Section> {
    if claims.is_empty() {
        return None;
    }
    let mut s = Section::new("Findings");
    s.text.push(format!(
        "Each line tests one claim of the paper on this sweep's top-1 ({label}), at this sweep's scale (see Settings); held / not held need a significant difference (paired t-test over shared seeds, p < 0.05, or disjoint 95% intervals); anything else is inconclusive."
    ));
    let lines: Vec<String> = claims
        .into_iter()
        .map(|f| format!("- {}", f.line))
        .collect();
    s.text.push(lines.join("\n"));
    Some(s)
}

/// The claim every sweep with a control tests first.
pub(crate) const CONTROL_CLAIM: &str =
    "Pretraining beats untrained weights (best cell vs the random-weights control)";

/// [`CONTROL_CLAIM`]: the best cell against its control (the sweep's one, or where each
/// encoder has its own, as Figure 7's grid of encoders, the cell's), with how many cells
/// score at or below theirs; `None` without a control.
pub(crate) fn control_claim(data: &SweepData, label: &str) -> Option<Finding> {
    let all: Vec<&CellData> = data.cells.iter().collect();
    let shared = data.control_of(&all, label);
    let control_of = |c: &CellData| shared.or_else(|| data.control_of(&[c], label));
    let (c, v) = best(data, label, |_| true)?;
    let k = control_of(c)?;
    let control = data.top1(k, label);
    let below = all
        .iter()
        .filter(|c| {
            let own = control_of(c).and_then(|k| data.top1(k, label).stat());
            match (data.top1(c, label).stat(), own) {
                (Some(s), Some(ks)) => s.mean <= ks.mean,
                _ => false,
            }
        })
        .count();
    let (name, theirs) = match shared {
        Some(_) => ("the control", "the control"),
        None => ("its control", "their own control"),
    };
    let mut f = judge(CONTROL_CLAIM, (&data.cell_name(c), &v), (name, &control));
    f.line.push_str(&format!(
        " {below} of {} cells score at or below {theirs}.",
        all.len()
    ));
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::test_value as v;

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
