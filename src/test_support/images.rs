//! Tiny in-memory image sets for the data loader's, the trainer's and the evaluation's
//! tests: 8x8 RGB images of 4 classes.

use std::sync::Arc;

use rand::Rng;

use crate::ml::data::ImageSet;
use crate::ml::rng::{self, Domain};

/// `n` 8x8 RGB images, image i of class i % 4; byte j of the pixels is `pixel(j)`.
pub(crate) fn tiny_images(n: usize, pixel: impl FnMut(usize) -> u8) -> Arc<ImageSet> {
    let (h, w) = (8, 8);
    Arc::new(ImageSet {
        images: (0..n * h * w * 3).map(pixel).collect(),
        labels: (0..n).map(|i| (i % 4) as u16).collect(),
        height: h,
        width: w,
        num_classes: 4,
        class_names: (0..4).map(|i| i.to_string()).collect(),
    })
}

/// [`tiny_images`] with random pixels from the evaluation stream `(seed, [tag])`.
pub(crate) fn random_images(n: usize, seed: u64, tag: u64) -> Arc<ImageSet> {
    let mut r = rng::stream(seed, Domain::Eval, &[tag]);
    tiny_images(n, |_| r.gen::<u8>())
}
