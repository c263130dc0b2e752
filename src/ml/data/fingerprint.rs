//! Dataset fingerprints: a run records which bytes it trained on.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{data_err, extracted_dir_name, io_err};
use crate::ml::config::DatasetName;
use crate::ml::error::MlError;

/// sha256 (hex) of a dataset. An archive (any file): sha256 of its bytes, so it equals the
/// published checksum of the archive. A directory: over its data files (recursively,
/// hidden names skipped) in sorted relative-path order, each as `path \0 len_le_u64 bytes`.
/// A parent holding `cifar-10-batches-bin/` or `cifar-100-binary/` is fingerprinted as that
/// directory, so it agrees with [`super::load_split`]'s view of it.
pub fn fingerprint(path: &Path) -> Result<String, MlError> {
    if path.is_file() {
        let mut h = Sha256::new();
        hash_file(path, &mut h)?;
        return Ok(hex::encode(h.finalize()));
    }
    if !path.is_dir() {
        return Err(data_err(path, "dataset not found (nothing to fingerprint)"));
    }
    let mut dir = path.to_path_buf();
    for name in [DatasetName::Cifar10, DatasetName::Cifar100] {
        let sub = path.join(extracted_dir_name(name).unwrap_or_default());
        if sub.is_dir()
            && !path.join("data_batch_1.bin").exists()
            && !path.join("train.bin").exists()
        {
            dir = sub;
            break;
        }
    }
    let mut files = Vec::new();
    walk(&dir, &dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for (rel, p) in &files {
        let len = std::fs::metadata(p).map_err(|e| io_err(p, e))?.len();
        h.update(rel.as_bytes());
        h.update([0u8]);
        h.update(len.to_le_bytes());
        hash_file(p, &mut h)?;
    }
    Ok(hex::encode(h.finalize()))
}

fn hash_file(p: &Path, h: &mut Sha256) -> Result<(), MlError> {
    let mut f = std::fs::File::open(p).map_err(|e| io_err(p, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(p, e))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// Regular files under `dir` as ("a/b.png" relative to `root`, full path).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), MlError> {
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else if p.is_file() {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), p));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::data::testutil::*;

    #[test]
    fn fingerprint_is_archive_sha256_and_tracks_directory_content() {
        let tmp = tempfile::tempdir().unwrap();
        let gz = cifar10_targz(4);
        let archive = tmp.path().join("a.tar.gz");
        std::fs::write(&archive, &gz).unwrap();
        assert_eq!(
            fingerprint(&archive).unwrap(),
            hex::encode(Sha256::digest(&gz))
        );

        let dir = write_cifar10_dir(tmp.path(), 4);
        let a = fingerprint(&dir).unwrap();
        // The parent (which also holds the archive) fingerprints as the extracted dir.
        assert_eq!(fingerprint(tmp.path()).unwrap(), a);
        let f = dir.join("data_batch_2.bin");
        let mut b = std::fs::read(&f).unwrap();
        b[100] ^= 1;
        std::fs::write(&f, &b).unwrap();
        assert_ne!(fingerprint(&dir).unwrap(), a, "one flipped bit changes it");
        assert!(fingerprint(&tmp.path().join("nope")).is_err());
    }
}
