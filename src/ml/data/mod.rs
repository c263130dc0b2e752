//! Datasets of the SimCLR core (docs/ARCHITECTURE.md#ml-core): CIFAR-10/100 in the official binary
//! layout (extracted directory or straight from the `.tar.gz`), ImageFolder directories,
//! class-balanced seeded subsets, dataset fingerprints, and the background loader that
//! turns images into batches of augmented views.
//!
//! Images are held in memory as u8 HWC (`N x H x W x 3`); the loader converts to f32 NCHW
//! in [0, 1] (no mean/std normalisation: the official SimCLR feeds [0, 1]).

mod cache;
mod cifar;
mod fingerprint;
mod folder;
mod loader;
mod subset;

use std::path::{Path, PathBuf};

use super::config::{DatasetConfig, DatasetName};
use super::error::MlError;

pub use cache::load_split_shared;
pub use fingerprint::fingerprint;
pub use loader::{
    epoch_order, plain_batches, pretrain_order_stream, steps_per_epoch, view_batches, EpochViews,
    PlainBatches, ViewBatch, ViewBatches, Views,
};
pub use subset::balanced_subset;

pub(crate) use loader::to_chw;

#[cfg(test)]
pub(crate) use cifar::{CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES};

/// An in-memory image set: `images` is `N x height x width x 3` u8 (HWC, RGB).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub images: Vec<u8>,
    pub labels: Vec<u16>,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.height * self.width * 3
    }

    /// Image `i` as `height x width x 3` u8 (HWC). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.images[i * n..(i + 1) * n]
    }
}

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The directory the official archive extracts to.
pub fn extracted_dir_name(name: DatasetName) -> Option<&'static str> {
    match name {
        DatasetName::Cifar10 => Some("cifar-10-batches-bin"),
        DatasetName::Cifar100 => Some("cifar-100-binary"),
        DatasetName::ImageFolder => None,
    }
}

/// The official archive's file name.
pub fn archive_name(name: DatasetName) -> Option<&'static str> {
    match name {
        DatasetName::Cifar10 => Some("cifar-10-binary.tar.gz"),
        DatasetName::Cifar100 => Some("cifar-100-binary.tar.gz"),
        DatasetName::ImageFolder => None,
    }
}

/// The name `sweep data fetch` takes.
pub fn fetch_name(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Cifar10 => "cifar10",
        DatasetName::Cifar100 => "cifar100",
        DatasetName::ImageFolder => "image_folder",
    }
}

/// What exists for `name` in `data_dir`: the extracted directory first, then the official
/// archive. `None` if neither (ImageFolder has no default location: give its path).
pub fn default_path(name: DatasetName, data_dir: &Path) -> Option<PathBuf> {
    let dir = data_dir.join(extracted_dir_name(name)?);
    if dir.is_dir() {
        return Some(dir);
    }
    let archive = data_dir.join(archive_name(name)?);
    if archive.is_file() {
        return Some(archive);
    }
    None
}

/// The dataset location of `cfg`: its `path` if set (relative paths against `data_dir`),
/// else [`default_path`]. The error names the command that fetches the data.
pub fn resolve_path(cfg: &DatasetConfig, data_dir: &Path) -> Result<PathBuf, MlError> {
    if let Some(p) = &cfg.path {
        let p = data_dir.join(p);
        if !p.exists() {
            return Err(MlError::Data {
                path: p,
                message: missing_hint(cfg.name, data_dir),
            });
        }
        return Ok(p);
    }
    default_path(cfg.name, data_dir).ok_or_else(|| MlError::Data {
        path: data_dir.to_path_buf(),
        message: missing_hint(cfg.name, data_dir),
    })
}

/// "not found; fetch it with `sweep data fetch cifar10 --data-dir DIR`".
pub fn missing_hint(name: DatasetName, data_dir: &Path) -> String {
    match (extracted_dir_name(name), archive_name(name)) {
        (Some(dir), Some(archive)) => format!(
            "{} not found (looked for {dir}/ and {archive} in {}); fetch it with \
             `sweep data fetch {} --data-dir {}`",
            fetch_name(name),
            data_dir.display(),
            fetch_name(name),
            data_dir.display()
        ),
        _ => "image_folder needs `dataset.path`: a directory with one sub-directory per class \
              (or train/ and test/ directories holding those)"
            .to_string(),
    }
}

/// Loads one split. `path` is, for CIFAR, the extracted directory (`cifar-10-batches-bin`,
/// `cifar-100-binary`), its parent, or the official `.tar.gz` (read by streaming, nothing
/// extracted); for ImageFolder, the folder, read at `cfg.image_size` and split by
/// `cfg.test_fraction` / `cfg.split_seed` when it has no train/ and test/. `cfg.path` and
/// `cfg.train_subset` are not looked at here (see [`resolve_path`] and [`balanced_subset`]).
pub fn load_split(cfg: &DatasetConfig, path: &Path, split: Split) -> Result<ImageSet, MlError> {
    match cfg.name {
        DatasetName::Cifar10 | DatasetName::Cifar100 => cifar::load(cfg.name, path, split),
        DatasetName::ImageFolder => folder::load(cfg, path, split),
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> MlError {
    MlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn data_err(path: &Path, message: impl Into<String>) -> MlError {
    MlError::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_prefers_the_extracted_dir_and_missing_data_names_the_fetch_command() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(default_path(DatasetName::Cifar10, tmp.path()), None);
        let cfg = DatasetConfig::default();
        let err = resolve_path(&cfg, tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "sweep data fetch cifar10 --data-dir {}",
                tmp.path().display()
            )),
            "{err}"
        );
        std::fs::write(tmp.path().join("cifar-10-binary.tar.gz"), b"x").unwrap();
        assert_eq!(
            default_path(DatasetName::Cifar10, tmp.path()),
            Some(tmp.path().join("cifar-10-binary.tar.gz"))
        );
        std::fs::create_dir(tmp.path().join("cifar-10-batches-bin")).unwrap();
        assert_eq!(
            default_path(DatasetName::Cifar10, tmp.path()),
            Some(tmp.path().join("cifar-10-batches-bin"))
        );
        assert_eq!(default_path(DatasetName::Cifar100, tmp.path()), None);
    }
}
