//! CIFAR-10 and CIFAR-100 in the official binary layout, from the extracted directory or
//! streamed straight out of the official `.tar.gz` (nothing is written to disk).
//!
//! CIFAR-10: `data_batch_1..5.bin`, `test_batch.bin`, records of 3,073 bytes (label, then
//! 1,024 R, 1,024 G, 1,024 B bytes, planes row-major 32x32); class names in
//! `batches.meta.txt`. CIFAR-100: `train.bin`, `test.bin`, records of 3,074 bytes (coarse
//! label, fine label, planes); the fine label (100 classes) is used, names in
//! `fine_label_names.txt`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{data_err, extracted_dir_name, io_err, missing_hint, ImageSet, Split};
use crate::ml::config::DatasetName;
use crate::ml::error::MlError;

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

/// What distinguishes the two CIFARs.
struct Layout {
    train: &'static [&'static str],
    test: &'static [&'static str],
    meta: &'static str,
    /// Label bytes before the pixels; the label used is the last of them.
    label_bytes: usize,
    num_classes: usize,
}

/// CIFAR-10's training files, in order.
pub(crate) const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// CIFAR-10's test file.
pub(crate) const CIFAR10_TEST_FILES: [&str; 1] = ["test_batch.bin"];

impl Layout {
    fn of(name: DatasetName) -> Layout {
        match name {
            DatasetName::Cifar100 => Layout {
                train: &["train.bin"],
                test: &["test.bin"],
                meta: "fine_label_names.txt",
                label_bytes: 2,
                num_classes: 100,
            },
            _ => Layout {
                train: &CIFAR10_TRAIN_FILES,
                test: &CIFAR10_TEST_FILES,
                meta: "batches.meta.txt",
                label_bytes: 1,
                num_classes: 10,
            },
        }
    }

    fn record(&self) -> usize {
        self.label_bytes + 3 * PLANE
    }

    fn files(&self, split: Split) -> &'static [&'static str] {
        match split {
            Split::Train => self.train,
            Split::Test => self.test,
        }
    }
}

fn is_archive(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.ends_with(".tar.gz") || s.ends_with(".tgz")
}

/// Loads one split of CIFAR-10/100 from a directory or the official archive.
pub(super) fn load(name: DatasetName, path: &Path, split: Split) -> Result<ImageSet, MlError> {
    let layout = Layout::of(name);
    let files = layout.files(split);
    if path.is_file() {
        if !is_archive(path) {
            return Err(data_err(
                path,
                format!(
                    "not a .tar.gz archive nor a directory of the {} binary layout",
                    super::fetch_name(name)
                ),
            ));
        }
        return load_archive(&layout, name, path, files);
    }
    if !path.exists() {
        let parent = path.parent().unwrap_or(Path::new("."));
        return Err(data_err(path, missing_hint(name, parent)));
    }
    // The extracted directory itself, or its parent.
    let dir = if path.join(files[0]).exists() {
        path.to_path_buf()
    } else {
        let sub = path.join(extracted_dir_name(name).unwrap_or_default());
        if sub.is_dir() {
            sub
        } else {
            return Err(data_err(
                path,
                format!(
                    "no {} here nor in {}/; {}",
                    files[0],
                    sub.display(),
                    missing_hint(name, path)
                ),
            ));
        }
    };
    let mut set = empty_set(&layout, &dir);
    for f in files {
        let p = dir.join(f);
        let bytes = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                data_err(
                    &p,
                    format!(
                        "missing file of the {} layout (expected {}); {}",
                        super::fetch_name(name),
                        files.join(", "),
                        missing_hint(name, dir.parent().unwrap_or(&dir))
                    ),
                )
            } else {
                io_err(&p, e)
            }
        })?;
        parse_records(&bytes, &layout, &p, &mut set)?;
    }
    Ok(set)
}

fn empty_set(layout: &Layout, dir: &Path) -> ImageSet {
    let names = std::fs::read_to_string(dir.join(layout.meta)).ok();
    ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: SIDE,
        width: SIDE,
        num_classes: layout.num_classes,
        class_names: class_names(names.as_deref(), layout.num_classes),
    }
}

/// Non-empty lines of the meta file if there are exactly `n`, else "0".."n-1".
fn class_names(meta: Option<&str>, n: usize) -> Vec<String> {
    let lines: Vec<String> = meta
        .map(|m| {
            m.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if lines.len() == n {
        lines
    } else {
        (0..n).map(|i| i.to_string()).collect()
    }
}

/// Streams the archive once, keeping only the split's files and the meta file.
fn load_archive(
    layout: &Layout,
    name: DatasetName,
    path: &Path,
    files: &[&str],
) -> Result<ImageSet, MlError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, f));
    let mut ar = tar::Archive::new(gz);
    let corrupt = |e: std::io::Error| {
        data_err(
            path,
            format!("corrupt or truncated archive ({e}); delete it and fetch it again"),
        )
    };
    let mut found: HashMap<String, (PathBuf, Vec<u8>)> = HashMap::new();
    let mut meta: Option<String> = None;
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let inner = entry.path().map_err(corrupt)?.into_owned();
        let Some(fname) = inner.file_name().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let shown = path.join(&inner);
        if files.contains(&fname.as_str()) {
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut buf).map_err(|e| {
                data_err(
                    &shown,
                    format!("corrupt or truncated archive member ({e}); delete the archive and fetch it again"),
                )
            })?;
            found.insert(fname, (shown, buf));
        } else if fname == layout.meta {
            let mut s = String::new();
            if entry.read_to_string(&mut s).is_ok() {
                meta = Some(s);
            }
        }
    }
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: SIDE,
        width: SIDE,
        num_classes: layout.num_classes,
        class_names: class_names(meta.as_deref(), layout.num_classes),
    };
    for f in files {
        let Some((shown, bytes)) = found.get(*f) else {
            return Err(data_err(
                path,
                format!(
                    "archive has no {f} (the {} layout has {}); is it the official binary archive?",
                    super::fetch_name(name),
                    files.join(", ")
                ),
            ));
        };
        parse_records(bytes, layout, shown, &mut set)?;
    }
    Ok(set)
}

/// Appends the records of one batch file to `set` (planes to HWC).
fn parse_records(
    bytes: &[u8],
    layout: &Layout,
    shown: &Path,
    set: &mut ImageSet,
) -> Result<(), MlError> {
    let rec = layout.record();
    if bytes.is_empty() {
        return Err(data_err(shown, "empty file (no records)"));
    }
    let full = bytes.len() / rec;
    let rem = bytes.len() % rec;
    if rem != 0 {
        return Err(data_err(
            shown,
            format!(
                "truncated: {} bytes is not a whole number of {rec}-byte records; record {full} \
                 (0-based) has only {rem} of its {rec} bytes",
                bytes.len()
            ),
        ));
    }
    set.images.reserve(full * 3 * PLANE);
    set.labels.reserve(full);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[layout.label_bytes - 1] as usize;
        if label >= layout.num_classes {
            return Err(data_err(
                shown,
                format!(
                    "corrupt: record {i} (0-based) has label {label}, outside 0..{}",
                    layout.num_classes
                ),
            ));
        }
        set.labels.push(label as u16);
        let px = &r[layout.label_bytes..];
        let (rp, rest) = px.split_at(PLANE);
        let (gp, bp) = rest.split_at(PLANE);
        set.images.extend(
            rp.iter()
                .zip(gp)
                .zip(bp)
                .flat_map(|((&r, &g), &b)| [r, g, b]),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::{load_split, DatasetConfig};
    use crate::test_support::cifar::*;

    fn cfg10() -> DatasetConfig {
        DatasetConfig::default()
    }

    #[test]
    fn loads_directory_parent_and_targz_identically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10_dir(tmp.path(), 20);
        let train = load_split(&cfg10(), &dir, Split::Train).unwrap();
        assert_eq!(train.len(), 100);
        assert_eq!((train.height, train.width, train.num_classes), (32, 32, 10));
        assert_eq!(train.class_names[0], "airplane");
        assert_eq!(train.class_names[9], "truck");
        // Record 3 of data_batch_1: label 3; pixel (row 1, col 2) red/green/blue planes.
        let rec = &cifar10_records(20, 0)[3 * 3073..4 * 3073];
        assert_eq!(train.labels[3], 3);
        let p = 32 + 2;
        assert_eq!(
            &train.image(3)[p * 3..p * 3 + 3],
            &[rec[1 + p], rec[1 + 1024 + p], rec[1 + 2048 + p]]
        );
        let test = load_split(&cfg10(), &dir, Split::Test).unwrap();
        assert_eq!(test.len(), 20);
        assert_ne!(test.image(0), train.image(0));

        let from_parent = load_split(&cfg10(), tmp.path(), Split::Train).unwrap();
        assert_eq!(from_parent, train);
        let archive = tmp.path().join("cifar-10-binary.tar.gz");
        std::fs::write(&archive, cifar10_targz(20)).unwrap();
        assert_eq!(load_split(&cfg10(), &archive, Split::Train).unwrap(), train);
        assert_eq!(load_split(&cfg10(), &archive, Split::Test).unwrap(), test);
    }

    #[test]
    fn truncated_file_error_names_file_and_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10_dir(tmp.path(), 20);
        let f = dir.join("data_batch_3.bin");
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..7 * 3073 + 100]).unwrap();
        let err = load_split(&cfg10(), &dir, Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_batch_3.bin"), "{err}");
        assert!(err.contains("record 7"), "{err}");
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn corrupt_label_missing_file_and_truncated_archive_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10_dir(tmp.path(), 20);
        let f = dir.join("test_batch.bin");
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[5 * 3073] = 17;
        std::fs::write(&f, &bytes).unwrap();
        let err = load_split(&cfg10(), &dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("record 5"),
            "{err}"
        );

        std::fs::remove_file(dir.join("data_batch_2.bin")).unwrap();
        let err = load_split(&cfg10(), &dir, Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data_batch_2.bin") && err.contains("sweep data fetch cifar10"),
            "{err}"
        );

        let gz = cifar10_targz(20);
        let archive = tmp.path().join("cut.tar.gz");
        std::fs::write(&archive, &gz[..gz.len() / 2]).unwrap();
        let err = load_split(&cfg10(), &archive, Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.tar.gz") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn cifar100_uses_the_fine_label() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cifar-100-binary");
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs = Vec::new();
        for i in 0..12u8 {
            recs.push(i % 20); // coarse
            recs.push(i * 8); // fine
            recs.extend(std::iter::repeat_n(i, 3072));
        }
        std::fs::write(dir.join("train.bin"), &recs).unwrap();
        std::fs::write(dir.join("test.bin"), &recs[..3074 * 2]).unwrap();
        let cfg = DatasetConfig {
            name: DatasetName::Cifar100,
            ..DatasetConfig::default()
        };
        let set = load_split(&cfg, tmp.path(), Split::Train).unwrap();
        assert_eq!(set.num_classes, 100);
        assert_eq!(set.labels, (0..12u16).map(|i| i * 8).collect::<Vec<_>>());
        assert_eq!(set.class_names[99], "99");
        assert_eq!(load_split(&cfg, &dir, Split::Test).unwrap().len(), 2);
    }
}
