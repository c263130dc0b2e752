//! Evaluation columns as the report reads them. A column is keyed by its stages' label, but
//! what it evaluates (which method, h or z, which probe task) is read from the stages' typed
//! config (`EvalConfig`, `EvalMethod`), never from how the label is spelled; every label
//! the report writes itself is the type's own ([`EvalConfig::label`]).

use crate::ml::config::{EvalConfig, EvalMethod, FeatureSource, ProbeTask};

/// The evaluation the report plots when a sweep has none of its own yet: the default
/// evaluation (the features probe on h).
pub(crate) fn fallback_primary() -> String {
    EvalConfig::default().label()
}

/// Which of a sweep's columns the figures plot, given each column's typed config (`None`
/// where it does not parse): linear on h by the paper's augmented protocol if the sweep has
/// it, else the features probe on h, else the first linear evaluation, else the first one.
pub(crate) fn primary(columns: &[Option<EvalConfig>]) -> Option<usize> {
    let first_where = |want: &dyn Fn(&EvalConfig) -> bool| {
        columns.iter().position(|c| c.as_ref().is_some_and(want))
    };
    first_where(&|c| is_augmented_linear(c) && c.on == FeatureSource::H)
        .or_else(|| {
            first_where(&|c| {
                matches!(c.method, EvalMethod::LinearFeatures(_)) && c.on == FeatureSource::H
            })
        })
        .or_else(|| first_where(&is_linear))
        .or_else(|| (!columns.is_empty()).then_some(0))
}

/// Whether `c` is a linear evaluation (the features probe or the augmented protocol).
pub(crate) fn is_linear(c: &EvalConfig) -> bool {
    matches!(
        c.method,
        EvalMethod::LinearFeatures(_) | EvalMethod::LinearAugmented(_)
    )
}

/// Whether `c` is the paper's augmented linear protocol.
pub(crate) fn is_augmented_linear(c: &EvalConfig) -> bool {
    matches!(c.method, EvalMethod::LinearAugmented(_))
}

/// The label of the same evaluation as `c`, on z = g(h).
pub(crate) fn on_z(c: &EvalConfig) -> String {
    EvalConfig {
        on: FeatureSource::Z,
        ..c.clone()
    }
    .label()
}

/// The label of Table 3's probe of `task` on `on`.
pub(crate) fn probe(task: ProbeTask, on: FeatureSource) -> String {
    EvalConfig {
        on,
        ..EvalConfig::probe(task)
    }
    .label()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_the_report_writes_are_the_types_own() {
        assert_eq!(fallback_primary(), "linear@h");
        assert_eq!(
            probe(ProbeTask::Rotation, FeatureSource::Z),
            "probe-rotation@z"
        );
        assert_eq!(on_z(&EvalConfig::augmented()), "linear-aug@z");
        assert!(is_augmented_linear(&EvalConfig::augmented()));
        assert!(is_linear(&EvalConfig::augmented()) && is_linear(&EvalConfig::default()));
        assert!(!is_linear(&EvalConfig::knn()));
        assert!(!is_linear(&EvalConfig::probe(ProbeTask::Sobel)));
    }

    #[test]
    fn the_papers_protocol_on_h_is_plotted_before_the_fast_probe_and_any_other() {
        let z = |c: EvalConfig| EvalConfig {
            on: FeatureSource::Z,
            ..c
        };
        let (knn, fast, paper) = (
            Some(EvalConfig::knn()),
            Some(EvalConfig::default()),
            Some(EvalConfig::augmented()),
        );
        assert_eq!(primary(&[knn.clone(), fast.clone(), paper]), Some(2));
        assert_eq!(primary(&[knn.clone(), fast]), Some(1));
        assert_eq!(
            primary(&[knn.clone(), Some(z(EvalConfig::default()))]),
            Some(1)
        );
        assert_eq!(primary(&[None, knn]), Some(0));
        assert_eq!(primary(&[]), None);
    }
}
