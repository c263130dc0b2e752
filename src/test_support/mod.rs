//! Helpers shared by unit tests across modules (compiled for tests only): snapshot
//! comparison, CIFAR-10 fixture files, tiny in-memory image sets, the smallest model
//! config, and deterministic tensors for the kernels.

pub(crate) mod cifar;
pub(crate) mod images;
pub(crate) mod tensors;

use std::path::Path;

use crate::ml::config::{Arch, EncoderConfig, HeadConfig, PretrainConfig, Stem};

/// The smallest model a test trains: a width-1 ConvNet with the CIFAR stem and a
/// 16-dimensional projection; everything else default.
pub(crate) fn tiny_convnet() -> PretrainConfig {
    PretrainConfig {
        encoder: EncoderConfig {
            arch: Arch::Convnet,
            stem: Stem::Cifar,
            width: 1,
        },
        head: HeadConfig {
            out_dim: Some(16),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Compares `actual` with the committed snapshot `dir/name` (relative to the crate root);
/// `UPDATE_SNAPSHOTS=1` rewrites it instead.
pub(crate) fn snapshot(dir: &str, name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("snapshot dir")).expect("create dir");
        std::fs::write(&path, actual).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, expected,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept)"
    );
}
