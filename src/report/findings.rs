//! The Findings section: one line per claim of the paper that the sweep's cells can test
//! (Table 1, Table 3, Figure 5, Figure 7, Figure 8, Table 4, Table 5, Figure 9, Table 7),
//! each held, not held or inconclusive, with the numbers compared and the test behind the
//! verdict ([`compare::against`]: a paired t-test over shared seeds, else 95% interval
//! overlap; one seed tests nothing). All on the primary evaluation's top-1 but Table 3's,
//! on its probes, and Table 7's, on each fine-tuning's own. Claims about a difference
//! (Figure 9's gap that closes, Figure 7's supervised lead that shrinks) test the per-seed
//! differences the same way; claims with two comparisons (Table 5's moderate temperature
//! against both ends) hold only when both do.

use crate::ml::config::{AugOp, EncoderConfig, HeadKind, LossKind, Method, PretrainConfig};

use super::aggregate::{CellData, CellValue, Mark, SweepData};
use super::compare::against;
use super::paper::encoder_config_name;
use super::sections::{encoder_params, encoders_by_size, probe_label, Section, MODEL_SIZE_AXES};

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
fn percent(x: f64) -> String {
    format!("{x:.1}%")
}

/// A difference of top-1s as the findings print it.
fn points(x: f64) -> String {
    format!("{x:+.1} points")
}

/// Whether `a` (claimed higher) is above `b`: the verdict, and the two values shown by
/// `show` with the test behind it (`an x vs bn y (test)`).
fn versus(
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
fn finding(claim: &str, verdict: Verdict, evidence: &str) -> Finding {
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
    // A cell's control: the sweep's one, or where each encoder has its own (Figure 7's
    // grid of encoders), the cell's.
    let shared = data.control_of(&all, &label);
    let control_of = |c: &CellData| shared.or_else(|| data.control_of(&[c], &label));
    let best_cell = best(data, &label, |_| true);
    if let Some(((c, v), k)) = best_cell.and_then(|(c, v)| Some(((c, v), control_of(c)?))) {
        let control = data.top1(k, &label);
        let below = all
            .iter()
            .filter(|c| {
                let own = control_of(c).and_then(|k| data.top1(k, &label).stat());
                match (data.top1(c, &label).stat(), own) {
                    (Some(s), Some(ks)) => s.mean <= ks.mean,
                    _ => false,
                }
            })
            .count();
        let (name, theirs) = match shared {
            Some(_) => ("the control", "the control"),
            None => ("its control", "their own control"),
        };
        let mut f = judge(
            CONTROL_CLAIM,
            (&super::sections::cell_name(data, c), &v),
            (name, &control),
        );
        f.line.push_str(&format!(
            " {below} of {} cells score at or below {theirs}.",
            all.len()
        ));
        out.push(f);
    }
    out.extend(table7(data));
    if axes(&["augment.color_strength"]) {
        out.extend(table1(data, &label));
    }
    out.extend(table3(data));
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
        let name = |k: &str, c: &CellData| match data.first(c).config.head.out_dim {
            Some(d) => format!("{k} head (out dim {d})"),
            None => format!("{k} head"),
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
            let loss = &data.first(c).config.loss;
            let semi_hard = if loss.semi_hard { " (semi-hard)" } else { "" };
            let other_name = format!(
                "{}{semi_hard} at its best",
                super::sections::loss_name(loss.kind)
            );
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
                best(data, &label, |c| c.loss.l2_norm && c.loss.temperature == t)
                    .map(|(_, v)| (t, v))
            })
            .collect();
        out.extend(moderate_temperature(&by_temp));
    }
    if axes(&["batch_size", "epochs"]) {
        out.extend(figure9(data, &label));
    }
    if axes(MODEL_SIZE_AXES) {
        out.extend(figure7(data, &label));
    }
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
fn gap_shrinks(
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

/// Figure 9: the largest batch's advantage over the smallest at the fewest epochs is
/// larger than at the most (the gap closes with training). `cells`: [fewest, most
/// epochs] x [largest, smallest batch].
fn gap_closes(
    (b_large, b_small): (usize, usize),
    (e_few, e_many): (usize, usize),
    [[l0, s0], [l1, s1]]: [[&CellValue; 2]; 2],
) -> Finding {
    gap_shrinks(
        &format!(
            "Figure 9: the gap closes with training (batch {b_large} minus batch {b_small}, at {e_few} vs {e_many} epochs)"
        ),
        (&format!("gap at {e_few} epochs"), [l0, s0]),
        (&format!("gap at {e_many} epochs"), [l1, s1]),
        "the two batch sizes share no finished seed at both epoch counts",
    )
}

/// Figure 7's two claims, each between the smallest and the largest encoder (by
/// parameters) that has the values compared: a bigger encoder helps SimCLR; the
/// supervised baseline's lead over SimCLR shrinks as the encoder grows.
fn figure7(data: &SweepData, label: &str) -> Vec<Finding> {
    let encoders = encoders_by_size(data.cells.iter().map(|c| &*data.first(c).config));
    let at = |m: Method, e: &EncoderConfig| {
        best(data, label, |c| c.method == m && c.encoder == *e).map(|x| x.1)
    };
    let name = |e: &EncoderConfig| {
        format!(
            "{} ({:.1}M)",
            encoder_config_name(e),
            encoder_params(e) as f64 / 1e6
        )
    };
    let mut out = Vec::new();
    let simclr: Vec<(&EncoderConfig, CellValue)> = encoders
        .iter()
        .filter_map(|e| at(Method::Simclr, e).map(|v| (e, v)))
        .collect();
    if let [(e0, v0), .., (e1, v1)] = simclr.as_slice() {
        out.push(judge(
            "Figure 7: a bigger encoder helps SimCLR (the largest vs the smallest)",
            (&name(e1), v1),
            (&name(e0), v0),
        ));
    }
    let both: Vec<(&EncoderConfig, [CellValue; 2])> = encoders
        .iter()
        .filter_map(|e| Some((e, [at(Method::Supervised, e)?, at(Method::Simclr, e)?])))
        .collect();
    if let [(e0, [sup0, sim0]), .., (e1, [sup1, sim1])] = both.as_slice() {
        out.push(gap_shrinks(
            &format!(
                "Figure 7: the supervised baseline's lead over SimCLR shrinks as the encoder grows (supervised minus SimCLR, {} vs {})",
                encoder_config_name(e0),
                encoder_config_name(e1)
            ),
            (&format!("gap at {}", name(e0)), [sup0, sim0]),
            (&format!("gap at {}", name(e1)), [sup1, sim1]),
            "the two methods share no finished seed at both encoders",
        ));
    }
    out
}

/// Table 1's two claims, each between the weakest and the strongest colour distortion
/// without blur: stronger helps SimCLR; weaker does better for the supervised baseline.
fn table1(data: &SweepData, label: &str) -> Vec<Finding> {
    let plain = |c: &PretrainConfig| !c.augment.ops.contains(&AugOp::Blur);
    let mut strengths: Vec<f64> = data
        .cells
        .iter()
        .map(|c| &data.first(c).config)
        .filter(|c| plain(c))
        .map(|c| c.augment.color_strength)
        .collect();
    strengths.sort_by(f64::total_cmp);
    let (Some(&weak), Some(&strong)) = (strengths.first(), strengths.last()) else {
        return vec![];
    };
    if weak == strong {
        return vec![];
    }
    let at = |m: Method, s: f64| {
        best(data, label, move |c| {
            c.method == m && plain(c) && c.augment.color_strength == s
        })
    };
    let mut out = Vec::new();
    for (m, claim, first, second) in [
        (
            Method::Simclr,
            "Table 1: stronger colour distortion helps SimCLR",
            strong,
            weak,
        ),
        (
            Method::Supervised,
            "Table 1: weaker colour distortion does better for the supervised baseline",
            weak,
            strong,
        ),
    ] {
        if let (Some((_, a)), Some((_, b))) = (at(m, first), at(m, second)) {
            let name = |s: f64| format!("strength {s}");
            out.push(judge(
                &format!("{claim} (strength {first} vs {second})"),
                (&name(first), &a),
                (&name(second), &b),
            ));
        }
    }
    out
}

/// Table 7's claim at each label fraction, on that fine-tuning's own top-1: the best
/// SimCLR cell fine-tuned beats the random-weights control fine-tuned, i.e. training from
/// scratch on the same labels (paired over the seeds, which draw the same label subsets).
fn table7(data: &SweepData) -> Vec<Finding> {
    let all: Vec<&CellData> = data.cells.iter().collect();
    let mut out = Vec::new();
    for (label, fraction) in super::sections::fine_tune_labels(data) {
        let simclr = best(data, &label, |c| c.method == Method::Simclr);
        if let (Some((c, v)), Some(k)) = (simclr, data.control_of(&all, &label)) {
            out.push(judge(
                &format!(
                    "Table 7: fine-tuning a SimCLR encoder beats training from scratch on the \
                     same labels ({}% of the labels, {label})",
                    crate::spec::percent(fraction)
                ),
                (&super::sections::cell_name(data, c), &v),
                ("from scratch", &data.top1(k, &label)),
            ));
        }
    }
    out
}

/// Table 3's claims, per task probed: h keeps more about the transformation than g(h),
/// and training removes it from g(h) (the trained g(h) predicts it worse than the same
/// encoder and head untrained). On each task's own probes, not the primary evaluation.
fn table3(data: &SweepData) -> Vec<Finding> {
    let mut out = Vec::new();
    for (t, cell) in super::sections::table3_rows(data) {
        let (lh, lz) = (probe_label(t, "h"), probe_label(t, "z"));
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

/// Figure 9: the largest batch beats the smallest at the fewest epochs, and the gap
/// closes with training.
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
    let (Some(l0), Some(s0)) = (at(b1, e0), at(b0, e0)) else {
        return out;
    };
    out.push(judge(
        &format!("Figure 9: a larger batch helps at the fewest epochs ({e0} epochs)"),
        (&format!("batch {b1}"), &l0),
        (&format!("batch {b0}"), &s0),
    ));
    if let (true, Some(l1), Some(s1)) = (e0 != e1, at(b1, e1), at(b0, e1)) {
        out.push(gap_closes((b1, b0), (e0, e1), [[&l0, &s0], [&l1, &s1]]));
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

    #[test]
    fn the_batch_gap_closes_only_when_its_per_seed_shrinkage_is_beyond_noise() {
        let (l0, s0) = (v(&[60.0, 61.2, 59.5]), v(&[55.0, 56.5, 54.8]));
        let s1 = v(&[69.0, 70.2, 68.5]);
        // Gaps 5.0, 4.7, 4.7 then 1.1, 0.7, 1.3: scipy.stats.ttest_rel p = 0.00242.
        let l1 = v(&[70.1, 70.9, 69.8]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Held, "{}", f.line);
        for part in [
            "batch 1024 minus batch 256, at 100 vs 800 epochs",
            "gap at 100 epochs +4.8 points vs gap at 800 epochs +1.0 points",
            "paired t(2) = 20.30, p = 0.002",
        ] {
            assert!(f.line.contains(part), "{part}: {}", f.line);
        }
        // The same mean gap at 800 epochs, but its sign changes across seeds (p = 0.301).
        let l1 = v(&[74.0, 66.0, 71.0]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        assert!(f.line.contains("p = 0.301"), "{}", f.line);
        // The gap widens with training, consistently: not held.
        let l1 = v(&[79.0, 80.5, 78.8]);
        let f = gap_closes((1024, 256), (100, 800), [[&l0, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::NotHeld, "{}", f.line);
        // No seed shared by both batch sizes: nothing to pair.
        let lone = CellValue::Value {
            stat: Stat::of(&[60.0]).unwrap(),
            expected: 1,
            seeds: vec![(7, 60.0)],
            mark: Mark::None,
        };
        let f = gap_closes((1024, 256), (100, 800), [[&lone, &s0], [&l1, &s1]]);
        assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.line);
        assert!(f.line.contains("share no finished seed"), "{}", f.line);
    }
}
