//! Tiny in-memory image sets for the data loader's, the trainer's and the evaluation's
//! tests (8x8 RGB images of 4 classes), and image folders of PNG files on disk.

use std::path::Path;
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

/// Writes `root/<class>/<i>.png` for each class and each (width, height) of its list; image
/// i of class c is the uniform colour [`folder_colour`]`(c, i)`. Returns nothing: the
/// files are the fixture.
pub(crate) fn write_png_folder(root: &Path, classes: &[(&str, &[(u32, u32)])]) {
    for (c, (name, sizes)) in classes.iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, &(w, h)) in sizes.iter().enumerate() {
            image::RgbImage::from_pixel(w, h, image::Rgb(folder_colour(c, i)))
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
    }
}

/// The colour of image `i` of class `c` in [`write_png_folder`]'s folders.
pub(crate) fn folder_colour(c: usize, i: usize) -> [u8; 3] {
    [(c * 50) as u8, (i * 7) as u8, 200]
}
