//! Evaluation labels as the report reads them: every place in `report` that looks inside a
//! label (`linear@h`, `linear-aug@z`, `knn@h`, `probe-rotation@h`, `fine_tune-10%@h`) or
//! writes one does it here, so the report depends on how labels are spelled in this one
//! module. A label is `NAME@ON`: the evaluation's name, then the representation it reads
//! (`h`, or `z` = g(h)).

use crate::ml::config::ProbeTask;

/// The evaluation the report plots when a sweep has none of its own yet.
pub(crate) const FALLBACK_PRIMARY: &str = "linear@h";

/// The evaluation the figures plot among `labels`: linear on h by the paper's augmented
/// protocol if the sweep has it, else the features probe on h, else the first linear
/// evaluation, else the first one.
pub(crate) fn primary(labels: &[String]) -> Option<&str> {
    labels
        .iter()
        .find(|l| l.as_str() == "linear-aug@h")
        .or_else(|| labels.iter().find(|l| l.as_str() == "linear@h"))
        .or_else(|| labels.iter().find(|l| is_linear(l)))
        .or_else(|| labels.first())
        .map(|s| s.as_str())
}

/// Whether `label` is a linear evaluation (the features probe or the augmented protocol).
pub(crate) fn is_linear(label: &str) -> bool {
    label.starts_with("linear")
}

/// Whether `label` is the paper's augmented linear protocol.
pub(crate) fn is_augmented_linear(label: &str) -> bool {
    label.starts_with("linear-aug")
}

/// The representation `label` reads, `h` or `z` (the whole label when it names none).
pub(crate) fn representation(label: &str) -> &str {
    label.split('@').nth(1).unwrap_or(label)
}

/// Whether `label` reads h.
pub(crate) fn is_on_h(label: &str) -> bool {
    label.ends_with("@h")
}

/// Whether `label` reads z = g(h).
pub(crate) fn is_on_z(label: &str) -> bool {
    label.ends_with("@z")
}

/// The same evaluation on z as `label` is on h: `linear@h` -> `linear@z`.
pub(crate) fn on_z(label: &str) -> String {
    label.replace("@h", "@z")
}

/// Table 3's label of the probe of `task` on `on` (`h` or `z`): "probe-rotation@h".
pub(crate) fn probe(task: ProbeTask, on: &str) -> String {
    format!("probe-{}@{on}", task.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_protocol_on_h_is_plotted_before_the_fast_probe_and_any_other() {
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let both = labels(&["knn@h", "linear@h", "linear-aug@h"]);
        assert_eq!(primary(&both), Some("linear-aug@h"));
        assert_eq!(primary(&labels(&["knn@h", "linear@h"])), Some("linear@h"));
        assert_eq!(primary(&labels(&["knn@h", "linear@z"])), Some("linear@z"));
        assert_eq!(primary(&labels(&["knn@h"])), Some("knn@h"));
        assert_eq!(primary(&[]), None);
    }

    #[test]
    fn a_label_names_its_representation_and_its_counterpart_on_z() {
        assert_eq!(representation("linear-aug@z"), "z");
        assert!(is_on_h("probe-sobel@h") && !is_on_z("probe-sobel@h"));
        assert_eq!(on_z("linear-aug@h"), "linear-aug@z");
        assert_eq!(probe(ProbeTask::Rotation, "z"), "probe-rotation@z");
        assert!(is_augmented_linear("linear-aug@h") && is_linear("linear-aug@h"));
        assert!(!is_linear("knn@h"));
    }
}
