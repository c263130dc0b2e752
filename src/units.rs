//! How quantities are written for people, spelled once for every layer: a duration in the
//! largest unit that keeps it readable. `sweep plan`'s estimate, the dashboard's time left
//! and compute, and a report's compute time all read alike. Like `vocab`, it sits below
//! everything and imports nothing of the crate.

/// A duration in seconds with one decimal in the largest fitting unit: `45.0 s` under two
/// minutes, `12.5 min` under two hours, `3.2 h` under two days, then `2.5 days`. Negative
/// or non-finite input reads as `0.0 s`.
pub(crate) fn human_duration(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else if secs < 7200.0 {
        format!("{:.1} min", secs / 60.0)
    } else if secs < 48.0 * 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_in_the_largest_unit_that_keeps_them_readable() {
        for (secs, shown) in [
            (0.0, "0.0 s"),
            (12.34, "12.3 s"),
            (60.0, "60.0 s"),
            (101.9, "101.9 s"),
            (120.0, "2.0 min"),
            (3636.0, "60.6 min"),
            (7200.0, "2.0 h"),
            (11_520.0, "3.2 h"),
            (48.0 * 3600.0, "2.0 days"),
            (60.0 * 3600.0, "2.5 days"),
            (-5.0, "0.0 s"),
            (f64::NAN, "0.0 s"),
        ] {
            assert_eq!(human_duration(secs), shown, "{secs} s");
        }
    }
}
