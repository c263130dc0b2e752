//! CIFAR-10 fixtures in the official binary layout (tiny, made on the fly).

use std::path::{Path, PathBuf};

use crate::ml::data::{CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES};

pub const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// `n` CIFAR-10 records; record i has label i % 10 and pixels derived from (salt, i).
pub fn cifar10_records(n: usize, salt: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3073);
    for i in 0..n {
        out.push((i % 10) as u8);
        for j in 0..3072 {
            out.push(((i * 31 + j * 7 + salt * 101 + (j / 32) * 3) % 256) as u8);
        }
    }
    out
}

/// Writes `cifar-10-batches-bin/` under `root` with `per_file` records per batch file.
pub fn write_cifar10_dir(root: &Path, per_file: usize) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let files = CIFAR10_TRAIN_FILES.iter().chain(&CIFAR10_TEST_FILES);
    for (k, f) in files.enumerate() {
        std::fs::write(dir.join(f), cifar10_records(per_file, k)).unwrap();
    }
    std::fs::write(
        dir.join("batches.meta.txt"),
        CIFAR10_NAMES.join("\n") + "\n\n",
    )
    .unwrap();
    dir
}

/// The bytes of a `.tar.gz` of [`write_cifar10_dir`]'s directory.
pub fn cifar10_targz(per_file: usize) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_cifar10_dir(tmp.path(), per_file);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    b.append_dir_all("cifar-10-batches-bin", &dir).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}
