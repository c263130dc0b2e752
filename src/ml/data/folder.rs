//! ImageFolder: one sub-directory per class of PNG/JPEG files (torchvision's layout), at a
//! fixed training resolution, with a seeded, class-stratified held-out split when the
//! folder has none of its own.
//!
//! `path/train/<class>/*` and `path/test/<class>/*` when `path/train` exists; otherwise
//! `path/<class>/*` holds every image and [`holdout`] draws the test split from it
//! (`dataset.test_fraction` of each class, seeded by `dataset.split_seed`). Classes are the
//! sorted sub-directory names (label = rank), files are read in sorted order. Every image
//! is converted to RGB, resized so that its shorter side is `dataset.image_size` and
//! centre-cropped to a square of that side (torchvision `Resize` + `CenterCrop`).

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::RgbImage;
use rand::seq::SliceRandom;

use super::{data_err, io_err, ImageSet, Split};
use crate::ml::config::{DatasetConfig, DEFAULT_FOLDER_IMAGE_SIZE};
use crate::ml::error::MlError;
use crate::ml::rng::{self, Domain};

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, MlError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        if !e.file_name().to_string_lossy().starts_with('.') {
            v.push(e.path());
        }
    }
    v.sort();
    Ok(v)
}

pub(super) fn load(cfg: &DatasetConfig, path: &Path, split: Split) -> Result<ImageSet, MlError> {
    if !path.is_dir() {
        return Err(data_err(
            path,
            "image_folder: not a directory (expected one sub-directory per class)",
        ));
    }
    let size = cfg.image_size.unwrap_or(DEFAULT_FOLDER_IMAGE_SIZE);
    if size == 0 {
        return Err(data_err(path, "dataset.image_size must be at least 1"));
    }
    if path.join("train").is_dir() {
        let root = path.join(split.name());
        if !root.is_dir() {
            return Err(data_err(
                &root,
                "missing split directory: a folder with train/ needs test/ beside it",
            ));
        }
        return read_classes(&root, size);
    }
    let all = read_classes(path, size)?;
    let is_test = holdout(
        &all.labels,
        &all.class_names,
        cfg.test_fraction,
        cfg.split_seed,
    )
    .map_err(|m| data_err(path, m))?;
    Ok(select(all, |i| is_test[i] == (split == Split::Test)))
}

/// Every image of the class sub-directories of `root`, at `size x size`.
fn read_classes(root: &Path, size: usize) -> Result<ImageSet, MlError> {
    let classes: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(data_err(root, "no class sub-directories"));
    }
    if classes.len() > u16::MAX as usize {
        return Err(data_err(root, "too many classes"));
    }
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: size,
        width: size,
        num_classes: classes.len(),
        class_names: classes
            .iter()
            .map(|c| {
                c.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
    };
    for (label, cdir) in classes.iter().enumerate() {
        for f in sorted_entries(cdir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
        {
            let img = image::open(&f)
                .map_err(|e| data_err(&f, format!("cannot decode image: {e}")))?
                .to_rgb8();
            set.images
                .extend_from_slice(resize_center_crop(&img, size as u32).as_raw());
            set.labels.push(label as u16);
        }
    }
    if set.is_empty() {
        return Err(data_err(
            root,
            "no PNG/JPEG images in the class directories",
        ));
    }
    Ok(set)
}

/// torchvision `Resize(size)` + `CenterCrop(size)`: the shorter side to `size` (the longer
/// one scaled alike, truncated), bilinear with antialiasing when shrinking, then the
/// centred `size x size` square (offsets rounded down).
pub fn resize_center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (rw, rh) = if w <= h {
        (
            size,
            ((size as u64 * h as u64) / w.max(1) as u64).max(size as u64) as u32,
        )
    } else {
        (
            ((size as u64 * w as u64) / h.max(1) as u64).max(size as u64) as u32,
            size,
        )
    };
    let resized = if (rw, rh) == (w, h) {
        img.clone()
    } else {
        imageops::resize(img, rw, rh, FilterType::Triangle)
    };
    imageops::crop_imm(&resized, (rw - size) / 2, (rh - size) / 2, size, size).to_image()
}

/// Which images are held out as the test split: of each class, `round(n * fraction)`
/// images (at least one, and at least one left to train on), chosen by a shuffle of the
/// class's images with `rng::stream(seed, Domain::Subset, &[key_of("image_folder_split"),
/// class])`. Errors name a class with fewer than 2 images or a fraction outside (0, 1).
pub fn holdout(
    labels: &[u16],
    class_names: &[String],
    fraction: f64,
    seed: u64,
) -> Result<Vec<bool>, String> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(format!(
            "dataset.test_fraction must be in (0, 1) to hold out a test split from a folder \
             without train/ and test/, got {fraction}"
        ));
    }
    let mut is_test = vec![false; labels.len()];
    for (c, name) in class_names.iter().enumerate() {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        if idx.len() < 2 {
            return Err(format!(
                "class {name:?} has {} image(s): a held-out split needs at least 2 per class \
                 (add images, or give train/ and test/ directories)",
                idx.len()
            ));
        }
        let n_test = ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1);
        idx.shuffle(&mut rng::stream(
            seed,
            Domain::Subset,
            &[rng::key_of("image_folder_split"), c as u64],
        ));
        for &i in &idx[..n_test] {
            is_test[i] = true;
        }
    }
    Ok(is_test)
}

/// The images `i` of `set` for which `keep(i)`, in their order.
fn select(set: ImageSet, keep: impl Fn(usize) -> bool) -> ImageSet {
    let kept: Vec<usize> = (0..set.len()).filter(|&i| keep(i)).collect();
    ImageSet {
        images: kept.iter().flat_map(|&i| set.image(i).to_vec()).collect(),
        labels: kept.iter().map(|&i| set.labels[i]).collect(),
        ..set
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::DatasetName;
    use crate::ml::data::load_split;
    use crate::test_support::images::{folder_colour, write_png_folder};

    fn folder(image_size: Option<usize>) -> DatasetConfig {
        DatasetConfig {
            name: DatasetName::ImageFolder,
            image_size,
            ..DatasetConfig::default()
        }
    }

    #[test]
    fn a_folder_with_train_and_test_reads_classes_in_sorted_order_at_the_fixed_size() {
        let tmp = tempfile::tempdir().unwrap();
        let sizes: &[(u32, u32)] = &[(8, 8), (8, 8), (16, 12)];
        write_png_folder(&tmp.path().join("train"), &[("cat", sizes), ("ant", sizes)]);
        write_png_folder(
            &tmp.path().join("test"),
            &[("cat", &[(9, 9)]), ("ant", &[(5, 7)])],
        );
        std::fs::write(tmp.path().join("train/cat/notes.txt"), "x").unwrap();
        let cfg = folder(Some(8));
        let tr = load_split(&cfg, tmp.path(), Split::Train).unwrap();
        assert_eq!(tr.class_names, vec!["ant", "cat"]);
        assert_eq!((tr.len(), tr.height, tr.width), (6, 8, 8));
        assert_eq!(tr.labels, vec![0, 0, 0, 1, 1, 1]);
        // "cat" is class 0 of write_png_folder but label 1 (sorted names).
        assert_eq!(&tr.image(3)[..3], &folder_colour(0, 0));
        assert_eq!(&tr.image(2)[..3], &folder_colour(1, 2), "16x12 resized");
        let te = load_split(&cfg, tmp.path(), Split::Test).unwrap();
        assert_eq!((te.len(), te.height, te.width), (2, 8, 8));
        // No size given: the default resolution, whatever the first image's size.
        let d = load_split(&folder(None), tmp.path(), Split::Test).unwrap();
        assert_eq!(
            (d.height, d.width),
            (DEFAULT_FOLDER_IMAGE_SIZE, DEFAULT_FOLDER_IMAGE_SIZE)
        );

        std::fs::write(tmp.path().join("train/ant/bad.png"), b"not a png").unwrap();
        let e = load_split(&cfg, tmp.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.png"), "{e}");
    }

    #[test]
    fn a_folder_of_mixed_sizes_without_a_split_gets_a_seeded_stratified_disjoint_one() {
        let tmp = tempfile::tempdir().unwrap();
        let sizes: &[(u32, u32)] = &[(40, 30), (30, 50), (64, 64), (17, 23), (100, 20)];
        write_png_folder(tmp.path(), &[("a", sizes), ("b", sizes), ("c", sizes)]);
        let cfg = DatasetConfig {
            test_fraction: 0.4,
            ..folder(Some(16))
        };
        let load = |cfg: &DatasetConfig, split| load_split(cfg, tmp.path(), split).unwrap();
        let (tr, te) = (load(&cfg, Split::Train), load(&cfg, Split::Test));
        for s in [&tr, &te] {
            assert_eq!((s.height, s.width, s.num_classes), (16, 16, 3));
            assert_eq!(s.images.len(), s.len() * 16 * 16 * 3);
        }
        // 40% of each class of 5: 2 held out, 3 to train on.
        assert_eq!(tr.labels, vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(te.labels, vec![0, 0, 1, 1, 2, 2]);
        // Disjoint, and together every image once (a uniform image stays uniform).
        let ids = |s: &ImageSet| -> Vec<[u8; 3]> {
            (0..s.len())
                .map(|i| {
                    let px = s.image(i);
                    assert!(px.chunks_exact(3).all(|p| p == &px[..3]), "uniform");
                    [px[0], px[1], px[2]]
                })
                .collect()
        };
        let mut all: Vec<[u8; 3]> = ids(&tr).into_iter().chain(ids(&te)).collect();
        all.sort();
        let mut want: Vec<[u8; 3]> = (0..3)
            .flat_map(|c| (0..5).map(move |i| folder_colour(c, i)))
            .collect();
        want.sort();
        assert_eq!(all, want);
        // Seeded: the same seed gives the same split, another seed another one.
        assert_eq!(load(&cfg, Split::Test), te);
        let other = DatasetConfig {
            split_seed: 1,
            ..cfg.clone()
        };
        assert_ne!(ids(&load(&other, Split::Test)), ids(&te));
    }

    #[test]
    fn a_split_needs_two_images_per_class_and_a_fraction_inside_zero_one() {
        let tmp = tempfile::tempdir().unwrap();
        write_png_folder(
            tmp.path(),
            &[("a", &[(4, 4), (4, 4)]), ("lonely", &[(4, 4)])],
        );
        let e = load_split(&folder(Some(8)), tmp.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"lonely\" has 1 image"), "{e}");
        let labels = [0u16, 0, 0, 0];
        let names = ["a".to_string()];
        assert!(holdout(&labels, &names, 1.0, 0).is_err());
        assert!(holdout(&labels, &names, 0.0, 0).is_err());
        // Rounding keeps at least one image on each side.
        for f in [0.01, 0.99] {
            let t = holdout(&labels, &names, f, 0).unwrap();
            assert!((1..=3).contains(&t.iter().filter(|&&x| x).count()), "{f}");
        }
    }

    #[test]
    fn resize_then_centre_crop_keeps_the_middle_of_a_tall_image() {
        // 16 wide, 48 tall: red, green, blue bands of 16 rows.
        let img = image::RgbImage::from_fn(16, 48, |_, y| {
            image::Rgb(match y / 16 {
                0 => [255, 0, 0],
                1 => [0, 255, 0],
                _ => [0, 0, 255],
            })
        });
        let out = resize_center_crop(&img, 8);
        assert_eq!(out.dimensions(), (8, 8));
        // Shorter side 16 -> 8, so 48 -> 24 rows; the centred 8 are the green band.
        for y in 1..7 {
            assert_eq!(out.get_pixel(3, y).0, [0, 255, 0], "row {y}");
        }
        let wide = image::RgbImage::from_pixel(30, 10, image::Rgb([1, 2, 3]));
        assert_eq!(resize_center_crop(&wide, 10).dimensions(), (10, 10));
        assert_eq!(
            resize_center_crop(&wide, 20).dimensions(),
            (20, 20),
            "upscaled"
        );
    }
}
