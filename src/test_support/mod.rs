//! Helpers shared by unit tests across modules (compiled for tests only): snapshot
//! comparison, CIFAR-10 fixture files, tiny in-memory image sets, and deterministic
//! tensors for the kernels.

pub(crate) mod cifar;
pub(crate) mod images;
pub(crate) mod tensors;

use std::path::Path;

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
