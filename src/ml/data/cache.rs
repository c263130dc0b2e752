//! A process-wide cache of decoded splits: a worker that runs a pretrain and then its
//! evaluations decodes CIFAR once, not once per stage (about 0.9 s per split from the
//! archive). Entries are keyed by the dataset config (what is read and how: an image
//! folder's resolution and held-out split), path, split and the files' size and mtime, so
//! a changed file is read again; the few most recent splits are kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{load_split, ImageSet, Split};
use crate::ml::config::DatasetConfig;
use crate::ml::MlError;

/// Splits kept at once (CIFAR train + test of one dataset, with room for a second).
const CAPACITY: usize = 4;

type Key = (DatasetConfig, PathBuf, Split, u64, Option<SystemTime>);

/// Total size and newest mtime of `path` (a file, or the files up to three levels below a
/// directory: the extracted CIFAR directory or its parent, an image folder's
/// `train/<class>/` files).
fn stamp(path: &Path) -> (u64, Option<SystemTime>) {
    fn walk(p: &Path, depth: usize, acc: &mut (u64, Option<SystemTime>)) {
        let Ok(m) = std::fs::metadata(p) else { return };
        if m.is_file() {
            acc.0 += m.len();
            acc.1 = acc.1.max(m.modified().ok());
        } else if m.is_dir() && depth > 0 {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), depth - 1, acc);
            }
        }
    }
    let mut acc = (0, None);
    walk(path, 3, &mut acc);
    acc
}

static CACHE: Mutex<Vec<(Key, Arc<ImageSet>)>> = Mutex::new(Vec::new());

/// [`load_split`] through the cache.
pub fn load_split_shared(
    cfg: &DatasetConfig,
    path: &Path,
    split: Split,
) -> Result<Arc<ImageSet>, MlError> {
    let (len, modified) = stamp(path);
    // What `load_split` reads of the config: all of it but where the path came from and
    // the pretraining subset.
    let read = DatasetConfig {
        path: None,
        train_subset: None,
        ..cfg.clone()
    };
    let key: Key = (read, path.to_path_buf(), split, len, modified);
    if let Some(hit) = lock()
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| Arc::clone(v))
    {
        return Ok(hit);
    }
    let set = Arc::new(load_split(cfg, path, split)?);
    let mut cache = lock();
    cache.retain(|(k, _)| *k != key);
    if cache.len() >= CAPACITY {
        cache.remove(0);
    }
    cache.push((key, Arc::clone(&set)));
    Ok(set)
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(Key, Arc<ImageSet>)>> {
    // A panic while holding the lock leaves a consistent Vec: keep using it.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::cifar::write_cifar10_dir;

    #[test]
    fn a_split_is_decoded_once_and_read_again_when_its_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_cifar10_dir(tmp.path(), 2);
        let cfg = DatasetConfig::default();
        let a = load_split_shared(&cfg, &dir, Split::Test).unwrap();
        let b = load_split_shared(&cfg, &dir, Split::Test).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second load comes from the cache");
        assert_eq!(*a, load_split(&cfg, &dir, Split::Test).unwrap());
        assert_eq!(a.len(), 2);
        // A different fixture at the same path (more records): read again.
        assert_eq!(write_cifar10_dir(tmp.path(), 3), dir);
        assert_eq!(load_split_shared(&cfg, &dir, Split::Test).unwrap().len(), 3);
    }
}
