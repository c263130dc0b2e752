//! ImageFolder: one sub-directory per class of PNG/JPEG files (torchvision's layout).
//!
//! `path/train/<class>/*` and `path/test/<class>/*` when `path/train` exists; otherwise
//! `path/<class>/*` is the training split and there is no test split. Classes are the
//! sorted sub-directory names (label = rank), files are read in sorted order. Every image
//! is converted to RGB and, if its size differs from the first image's, resized to it
//! (bilinear), so the set has one `height x width`.

use std::path::{Path, PathBuf};

use super::{data_err, io_err, ImageSet, Split};
use crate::ml::error::MlError;

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

pub(super) fn load(path: &Path, split: Split) -> Result<ImageSet, MlError> {
    if !path.is_dir() {
        return Err(data_err(
            path,
            "image_folder: not a directory (expected one sub-directory per class)",
        ));
    }
    let root = if path.join("train").is_dir() {
        path.join(split.name())
    } else if split == Split::Train {
        path.to_path_buf()
    } else {
        return Err(data_err(
            path,
            "image_folder has no test split: put the classes under train/ and test/",
        ));
    };
    if !root.is_dir() {
        return Err(data_err(&root, "missing split directory"));
    }
    let classes: Vec<PathBuf> = sorted_entries(&root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(data_err(&root, "no class sub-directories"));
    }
    if classes.len() > u16::MAX as usize {
        return Err(data_err(&root, "too many classes"));
    }
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: 0,
        width: 0,
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
            if set.height == 0 {
                set.height = img.height() as usize;
                set.width = img.width() as usize;
            }
            let img = if img.height() as usize != set.height || img.width() as usize != set.width {
                image::imageops::resize(
                    &img,
                    set.width as u32,
                    set.height as u32,
                    image::imageops::FilterType::Triangle,
                )
            } else {
                img
            };
            set.images.extend_from_slice(img.as_raw());
            set.labels.push(label as u16);
        }
    }
    if set.is_empty() {
        return Err(data_err(
            &root,
            "no PNG/JPEG images in the class directories",
        ));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{DatasetConfig, DatasetName};
    use crate::ml::data::load_split;

    #[test]
    fn image_folder_reads_classes_in_sorted_order_and_resizes_to_the_first_size() {
        let tmp = tempfile::tempdir().unwrap();
        for (split, n) in [("train", 3u8), ("test", 1)] {
            for (ci, class) in ["cat", "ant"].iter().enumerate() {
                let d = tmp.path().join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                for i in 0..n {
                    let side = if i == 2 { 16 } else { 8 };
                    let img =
                        image::RgbImage::from_pixel(side, side, image::Rgb([ci as u8 * 100, i, 7]));
                    img.save(d.join(format!("{i}.png"))).unwrap();
                }
            }
        }
        std::fs::write(tmp.path().join("train/cat/notes.txt"), "x").unwrap();
        let cfg = DatasetConfig {
            name: DatasetName::ImageFolder,
            ..DatasetConfig::default()
        };
        let tr = load_split(&cfg, tmp.path(), Split::Train).unwrap();
        assert_eq!(tr.class_names, vec!["ant", "cat"]);
        assert_eq!((tr.len(), tr.height, tr.width), (6, 8, 8));
        assert_eq!(tr.labels, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(&tr.image(3)[..3], &[0, 0, 7]); // cat (ci 0) is label 1
        assert_eq!(&tr.image(0)[..3], &[100, 0, 7]);
        assert_eq!(load_split(&cfg, tmp.path(), Split::Test).unwrap().len(), 2);

        std::fs::write(tmp.path().join("train/ant/bad.png"), b"not a png").unwrap();
        let e = load_split(&cfg, tmp.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.png"), "{e}");
    }
}
