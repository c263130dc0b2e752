//! Class-balanced, seeded subsets (the paper's smaller-data runs and evaluation subsets).

use rand::seq::SliceRandom;

use crate::ml::error::MlError;
use crate::ml::rng::{self, Domain};

/// `n / num_classes` indices of each class, chosen by a seeded shuffle of that class's
/// indices, returned sorted. Errors if `n` is not a multiple of `num_classes`, a class has
/// too few images, or a label is out of range.
///
/// Class `c` is shuffled by `rng::stream(seed, Domain::Subset, &[key_of("balanced_subset"),
/// c])` (independent of `n`), and the first `n / num_classes` are kept, so for one seed a
/// smaller subset is contained in a larger one.
pub fn balanced_subset(
    labels: &[u16],
    num_classes: usize,
    n: usize,
    seed: u64,
) -> Result<Vec<usize>, MlError> {
    if num_classes == 0 || n == 0 || n % num_classes != 0 {
        return Err(MlError::Config(format!(
            "a class-balanced subset of {n} images needs a positive multiple of the {num_classes} classes"
        )));
    }
    let k = n / num_classes;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        let Some(v) = by_class.get_mut(l as usize) else {
            return Err(MlError::Config(format!(
                "image {i} has label {l}, outside 0..{num_classes}"
            )));
        };
        v.push(i);
    }
    let mut out = Vec::with_capacity(n);
    for (c, mut idx) in by_class.into_iter().enumerate() {
        if idx.len() < k {
            return Err(MlError::Config(format!(
                "a class-balanced subset of {n} images needs {k} images of class {c}, which has only {}",
                idx.len()
            )));
        }
        let mut r = rng::stream(
            seed,
            Domain::Subset,
            &[rng::key_of("balanced_subset"), c as u64],
        );
        idx.shuffle(&mut r);
        out.extend_from_slice(&idx[..k]);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_is_balanced_seeded_sorted_and_nested() {
        let labels: Vec<u16> = (0..300).map(|i| (i * 7 % 3) as u16).collect();
        let a = balanced_subset(&labels, 3, 30, 5).unwrap();
        assert_eq!(a.len(), 30);
        for c in 0..3 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 10);
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, balanced_subset(&labels, 3, 30, 5).unwrap());
        assert_ne!(a, balanced_subset(&labels, 3, 30, 6).unwrap());
        let big = balanced_subset(&labels, 3, 90, 5).unwrap();
        assert!(a.iter().all(|i| big.contains(i)));
    }

    #[test]
    fn subset_errors_on_indivisible_or_too_large() {
        let labels: Vec<u16> = (0..30).map(|i| (i % 3) as u16).collect();
        assert!(balanced_subset(&labels, 3, 31, 0).is_err());
        let e = balanced_subset(&labels, 3, 33, 0).unwrap_err().to_string();
        assert!(e.contains("only 10"), "{e}");
        assert!(
            balanced_subset(&labels, 2, 2, 0).is_err(),
            "label 2 out of range"
        );
    }
}
