//! The paper's experiments, one file each: which sweeps it is drawn for, its section (its
//! figures and tables, the paper's values with the setting they were measured in), and
//! the paper's claims it tests for the Findings. Everything shared (aggregation,
//! statistics, plots, table formats, the comparison with the best and the control, the
//! README) is in `report/`, which never names an experiment: only [`ALL`] does.
//!
//! To add an experiment:
//! 1. Write `experiments/NAME.rs` with `pub(crate) const EXPERIMENT: Experiment`
//!    (`report/experiment.rs` says what each field means): how it is chosen (the grid axes
//!    that make a sweep it, or its evaluations), the function that builds its section over
//!    a slice of cells, and the function that tests its claims. Keep its paper values,
//!    their `PaperSetting` and its tests in the same file.
//! 2. Declare the module below and add `&NAME::EXPERIMENT` to [`ALL`], where its section
//!    should stand in a report.

mod augment_pairs;
mod batch_epochs;
mod color_strength;
mod few_labels;
mod head_dims;
mod losses;
mod model_size;
mod temperature;
mod what_to_predict;

use super::experiment::Experiment;

/// Every experiment, in the order their sections appear in a report.
pub(crate) const ALL: &[&Experiment] = &[
    &color_strength::EXPERIMENT,
    &augment_pairs::EXPERIMENT,
    &model_size::EXPERIMENT,
    &head_dims::EXPERIMENT,
    &losses::EXPERIMENT,
    &temperature::EXPERIMENT,
    &batch_epochs::EXPERIMENT,
    &few_labels::EXPERIMENT,
    &what_to_predict::EXPERIMENT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_experiment_has_its_own_name_and_place_among_the_findings() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.claims_rank, b.claims_rank, "{} and {}", a.name, b.name);
            }
            for s in a.supersedes {
                assert!(
                    ALL.iter().any(|e| e.name == *s),
                    "{} supersedes {s}",
                    a.name
                );
            }
        }
    }
}
