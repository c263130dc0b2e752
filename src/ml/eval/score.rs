//! Scoring class scores against labels: the rank of the true class (ties rank the lower
//! class index first), top-1 and top-5, and what an evaluation scored.

use crate::ml::EvalResult;

/// What a method scored: test top-1 and top-5, and for a trained classifier its top-1 on
/// the train images it was fit on (the gap to test top-1 shows over-fitting).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scores {
    pub top1: f64,
    pub top5: f64,
    pub train_top1: Option<f64>,
}

impl Scores {
    /// The evaluation's result, `n_test` test images scored.
    pub fn result(self, n_test: usize) -> EvalResult {
        EvalResult {
            top1: self.top1,
            top5: self.top5,
            train_top1: self.train_top1,
            n_test,
        }
    }

    /// (top-1, top-5) on the test split.
    #[cfg(test)]
    pub fn test(&self) -> (f64, f64) {
        (self.top1, self.top5)
    }
}

/// Rank of `label` in `scores` (0 = best): classes scoring higher, or equal with a lower
/// index, come first.
pub(crate) fn rank_of(scores: &[f32], label: usize) -> usize {
    let s = scores[label];
    scores
        .iter()
        .enumerate()
        .filter(|&(c, &v)| v > s || (v == s && c < label))
        .count()
}

/// (top-1, top-5) of score rows `[n, C]` against `labels`.
pub(crate) fn top_k(scores: &[f32], num_classes: usize, labels: &[u16]) -> (f64, f64) {
    let mut hit1 = 0usize;
    let mut hit5 = 0usize;
    for (row, &y) in scores.chunks_exact(num_classes).zip(labels) {
        let r = rank_of(row, y as usize);
        hit1 += (r < 1) as usize;
        hit5 += (r < 5) as usize;
    }
    let n = labels.len().max(1) as f64;
    (hit1 as f64 / n, hit5 as f64 / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ranks_ties_by_class_index() {
        let scores = [1.0f32, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(rank_of(&scores, 0), 0);
        assert_eq!(rank_of(&scores, 1), 1);
        assert_eq!(rank_of(&scores, 6), 6);
        let (t1, t5) = top_k(&scores, 7, &[1]);
        assert_eq!((t1, t5), (0.0, 1.0));
    }
}
