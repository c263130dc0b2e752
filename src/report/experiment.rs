//! What a paper experiment gives the report ([`Experiment`]): when a sweep is one, its
//! section (figures, tables, the paper's values beside ours) drawn over a [`Slice`] of the
//! sweep's cells, and the paper's claims it tests for the Findings. The experiments
//! themselves are in `experiments/`; this module knows none of them.

use super::aggregate::{CellData, SweepData};
use super::findings::Finding;
use super::sections::Section;

/// A paper experiment, as one constant in its own file under `experiments/`.
pub(crate) struct Experiment {
    /// The experiment's name, as its sweep and report are named (`augment_pairs`).
    pub name: &'static str,
    /// Which sweeps it is drawn for.
    pub chosen_by: ChosenBy,
    /// The names of the experiments it replaces when both are chosen (Table 1's blur
    /// column varies `augment.ops`, but not as Figure 5's grid of pairs).
    pub supersedes: &'static [&'static str],
    /// Whether the report marks its values against the best and adds the random-weights
    /// control to its tables and figures (`false`: the section marks and controls its own
    /// values, as Table 3 compares h with g(h) within a row).
    pub shared_marks: bool,
    /// Its section over `slice`; `None` when the sweep has nothing for it.
    pub section: fn(&SweepData, &Slice) -> Option<Section>,
    /// Where its claims stand among the Findings: smaller first.
    pub claims_rank: u8,
    /// The paper's claims it tests on the sweep's cells, on the primary evaluation `label`
    /// unless the claim says otherwise.
    pub claims: fn(&SweepData, &str) -> Vec<Finding>,
}

/// How the report decides that a sweep is an experiment.
pub(crate) enum ChosenBy {
    /// When its grid varies one of `axes`. The experiment claims those and `takes_over`
    /// (the hyper-parameters its table tunes over, or its rows and series); its section is
    /// drawn once per combination of the values of the axes it does not claim. Its claims
    /// are tested whenever `axes` vary, even when another experiment supersedes it.
    Axes {
        axes: &'static [&'static str],
        takes_over: &'static [&'static str],
    },
    /// By its evaluations, whatever the axes: its section is drawn over every cell, and it
    /// says itself when it has nothing (`None`).
    Evaluations,
}

impl ChosenBy {
    /// Whether `data`'s grid chooses the experiment.
    pub(crate) fn chooses(&self, data: &SweepData) -> bool {
        match self {
            ChosenBy::Axes { axes, .. } => data.varies(axes),
            ChosenBy::Evaluations => true,
        }
    }
}

/// The cells of one section of an experiment.
pub(crate) struct Slice<'a> {
    pub cells: Vec<&'a CellData>,
    /// The values of the axes the experiment does not claim, for titles and captions
    /// (" (optimizer.lr=0.1)"); empty when the sweep varies nothing else.
    pub title: String,
    /// What tells the section's files apart from the other slices' ("_2"; empty for the
    /// first).
    pub id: String,
}

impl<'a> Slice<'a> {
    /// Every cell of the sweep, as one slice.
    pub(crate) fn all(data: &'a SweepData) -> Slice<'a> {
        Slice {
            cells: data.cells.iter().collect(),
            title: String::new(),
            id: String::new(),
        }
    }
}
