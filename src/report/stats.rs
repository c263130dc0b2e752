//! The statistics a report's claims rest on: Student t quantiles, 95% confidence
//! intervals of a mean over seeds (t with n - 1 degrees of freedom), and the paired t-test
//! on per-seed differences of two cells that share seeds. Pure functions; checked against
//! scipy in the tests.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; about 15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction
/// (modified Lentz).
fn inc_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - inc_beta(1.0 - x, b, a);
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < tiny { tiny } else { d };
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < tiny { tiny } else { d };
            c = 1.0 + num / c;
            c = if c.abs() < tiny { tiny } else { c };
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// Two-sided tail probability P(|T| >= |t|) of Student's t with `dof` degrees of freedom.
pub(crate) fn t_two_sided_p(t: f64, dof: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    inc_beta(dof / (dof + t * t), dof / 2.0, 0.5)
}

/// The quantile of Student's t: the value below which a fraction `p` (in (0.5, 1)) lies.
pub(crate) fn t_quantile(p: f64, dof: f64) -> f64 {
    let tail = 2.0 * (1.0 - p);
    let (mut lo, mut hi) = (0.0, 1e6);
    for _ in 0..200 {
        // Converged: every further step would leave both ends where they are.
        if lo == hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if t_two_sided_p(mid, dof) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The 95% confidence interval of the mean of `values` (t, n - 1 dof); `None` for fewer
/// than two values.
pub(crate) fn ci95(values: &[f64]) -> Option<(f64, f64)> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Some((mean - half, mean + half))
}

/// `t_quantile(0.975, dof)`, computed once per `dof` in a process: a report takes it for
/// every cell of every table (a bisection of 70-odd incomplete beta functions each time).
fn t975(dof: usize) -> f64 {
    static KNOWN: std::sync::Mutex<Vec<(usize, f64)>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, t)) = known.iter().find(|(d, _)| *d == dof) {
        return t;
    }
    let t = t_quantile(0.975, dof as f64);
    known.push((dof, t));
    t
}

/// A paired t-test of a - b over shared seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Paired {
    pub mean_diff: f64,
    pub t: f64,
    pub dof: usize,
    /// Two-sided p-value.
    pub p: f64,
}

/// The paired t-test on `pairs` (a, b) of the same seeds; `None` for fewer than two pairs.
/// Identical differences (no spread) give t = ±∞ and p = 0, or p = 1 when all are zero.
pub(crate) fn paired_t(pairs: &[(f64, f64)]) -> Option<Paired> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let d: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let se = sd / (n as f64).sqrt();
    // Differences equal up to rounding have no spread.
    let (t, p) = if se > 1e-9 * mean.abs().max(1.0) {
        let t = mean / se;
        (t, t_two_sided_p(t, (n - 1) as f64))
    } else if mean == 0.0 {
        (0.0, 1.0)
    } else {
        (mean.signum() * f64::INFINITY, 0.0)
    };
    Some(Paired {
        mean_diff: mean,
        t,
        dof: n - 1,
        p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scipy 1.x:
    //   stats.t.ppf(0.975, d); stats.t.interval(0.95, 2, loc=m, scale=sd/sqrt(3));
    //   stats.ttest_rel(a, b)
    #[test]
    fn t_quantiles_match_scipy() {
        for (dof, want) in [
            (1.0, 12.706204736174694),
            (2.0, 4.302652729749462),
            (4.0, 2.7764451051977934),
            (9.0, 2.262157162798205),
            (29.0, 2.045229642132703),
        ] {
            let got = t_quantile(0.975, dof);
            assert!((got - want).abs() < 1e-9, "dof {dof}: {got} vs {want}");
        }
    }

    #[test]
    fn the_interval_of_three_seeds_matches_scipy() {
        let (lo, hi) = ci95(&[60.1, 61.3, 59.8]).unwrap();
        assert!((lo - 58.42827681768147).abs() < 1e-9, "{lo}");
        assert!((hi - 62.371723182318526).abs() < 1e-9, "{hi}");
        assert_eq!(ci95(&[60.0]), None, "one seed has no interval");
    }

    #[test]
    fn paired_t_matches_scipy_ttest_rel() {
        let a = [42.3, 41.0, 43.1, 42.0];
        let b = [41.8, 40.2, 42.9, 41.1];
        let pairs: Vec<(f64, f64)> = a.into_iter().zip(b).collect();
        let r = paired_t(&pairs).unwrap();
        assert!((r.t - 3.7947331922020804).abs() < 1e-9, "{r:?}");
        assert!((r.p - 0.032119416050416245).abs() < 1e-9, "{r:?}");
        assert_eq!(r.dof, 3);
        let pairs = [(42.3, 40.3), (41.0, 39.2), (43.1, 41.5)];
        let r = paired_t(&pairs).unwrap();
        assert!((r.t - 15.588457268119948).abs() < 1e-8, "{r:?}");
        assert!((r.p - 0.004089996689521346).abs() < 1e-9, "{r:?}");
        assert_eq!(paired_t(&[(1.0, 0.0)]), None, "one pair: no test");
        assert_eq!(paired_t(&[(1.0, 1.0), (2.0, 2.0)]).unwrap().p, 1.0);
    }
}
