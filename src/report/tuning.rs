//! Best-cell selection for experiments the paper reports "at their best" (Table 4: every
//! loss tuned over its own hyper-parameters): cells grouped by what is compared, and in
//! each group the cell with the highest mean top-1 of the selecting evaluation.
//!
//! Only the test split is scored (evaluations hold out no validation split), so a cell
//! chosen this way is chosen on the images that score it: the pick is optimistic, and the
//! report says so next to it ([`SELECTION_SPLIT`]).

use super::aggregate::{CellData, CellValue, Stat, SweepData};

/// The split the best cell is selected on, as the report names it.
pub(crate) const SELECTION_SPLIT: &str = "test split";

/// The cells of one compared variant and the best of them.
pub(crate) struct Group<'a, K> {
    pub key: K,
    /// In grid order.
    pub cells: Vec<&'a CellData>,
    /// The best cell and its top-1; `None` while no cell of the group has a value.
    pub best: Option<(&'a CellData, Stat)>,
}

impl<K> Group<'_, K> {
    /// How many of the group's cells have a value.
    pub fn finished(&self, data: &SweepData, label: &str) -> usize {
        self.cells
            .iter()
            .filter(|c| data.top1(c, label).stat().is_some())
            .count()
    }

    /// How many other cells of the group have the best cell's mean top-1 exactly.
    pub fn ties(&self, data: &SweepData, label: &str) -> usize {
        let Some((best, stat)) = self.best else {
            return 0;
        };
        self.cells
            .iter()
            .filter(|c| !std::ptr::eq(**c, best))
            .filter(|c| {
                data.top1(c, label)
                    .stat()
                    .is_some_and(|s| s.mean == stat.mean)
            })
            .count()
    }

    /// The value to show for the group: the best cell's, else why none has one (the
    /// first cell's reason).
    pub fn value(&self, data: &SweepData, label: &str) -> CellValue {
        match self.best {
            Some((c, _)) => data.top1(c, label),
            None => data.top1(self.cells[0], label),
        }
    }
}

/// `cells` grouped by `key` (groups in order of first appearance), each with its best cell
/// by mean top-1 of `label` over seeds.
pub(crate) fn best_per_group<'a, K: PartialEq>(
    data: &SweepData,
    cells: &[&'a CellData],
    label: &str,
    key: impl Fn(&CellData) -> K,
) -> Vec<Group<'a, K>> {
    let mut groups: Vec<Group<'a, K>> = Vec::new();
    for &c in cells {
        let k = key(c);
        match groups.iter_mut().find(|g| g.key == k) {
            Some(g) => g.cells.push(c),
            None => groups.push(Group {
                key: k,
                cells: vec![c],
                best: None,
            }),
        }
    }
    for g in &mut groups {
        let values: Vec<Option<Stat>> =
            g.cells.iter().map(|c| data.top1(c, label).stat()).collect();
        g.best = best_index(&values).map(|i| (g.cells[i], values[i].expect("best has a value")));
    }
    groups
}

/// The index of the highest mean (the first of equal ones, in grid order); `None` when no
/// entry has a value.
pub(crate) fn best_index(values: &[Option<Stat>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.iter().enumerate() {
        if let Some(s) = v {
            if best.is_none_or(|(_, m)| s.mean > m) {
                best = Some((i, s.mean));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mean: f64) -> Option<Stat> {
        Some(Stat {
            mean,
            std: None,
            ci: None,
            n: 1,
        })
    }

    #[test]
    fn the_highest_mean_wins_the_first_of_a_tie_and_missing_cells_never() {
        assert_eq!(best_index(&[s(40.0), None, s(45.5), s(41.0)]), Some(2));
        assert_eq!(
            best_index(&[None, s(45.5), s(45.5)]),
            Some(1),
            "first of a tie"
        );
        assert_eq!(best_index(&[None, None]), None);
        assert_eq!(best_index(&[]), None);
    }
}
