//! Dataset fingerprints: a run records which bytes it trained on.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{data_err, extracted_dir_name, io_err};
use crate::ml::config::DatasetName;
use crate::ml::error::MlError;

/// sha256 (hex) of a dataset's content, the same whether it is the official `.tar.gz` or
/// its extracted directory, so that extracting the archive does not change any RunId. The
/// digest is over the data files in sorted relative-path order, each as
/// `path \0 len_le_u64 sha256(bytes)`; paths are relative to the extracted directory
/// (`cifar-10-batches-bin/`, `cifar-100-binary/`, or an ImageFolder root); hidden names are
/// skipped. A parent holding the extracted directory fingerprints as that directory, as
/// [`super::load_split`] reads it. Any other single file: sha256 of its bytes.
pub fn fingerprint(path: &Path) -> Result<String, MlError> {
    if path.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            return archive_fingerprint(path);
        }
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
    let mut entries = Vec::with_capacity(files.len());
    for (rel, p) in files {
        let mut h = Sha256::new();
        let len = hash_file(&p, &mut h)?;
        entries.push((rel, len, h.finalize().into()));
    }
    Ok(combine(entries))
}

/// The digest of (relative path, length, sha256) entries in path order.
fn combine(mut entries: Vec<(String, u64, [u8; 32])>) -> String {
    entries.sort();
    let mut h = Sha256::new();
    for (rel, len, digest) in &entries {
        h.update(rel.as_bytes());
        h.update([0u8]);
        h.update(len.to_le_bytes());
        h.update(digest);
    }
    hex::encode(h.finalize())
}

/// The fingerprint of the directory the archive extracts to, read by streaming.
fn archive_fingerprint(path: &Path) -> Result<String, MlError> {
    let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, f));
    let mut ar = tar::Archive::new(gz);
    let corrupt = |e: std::io::Error| data_err(path, format!("corrupt or truncated archive: {e}"));
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let full = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        let mut parts: Vec<&str> = full
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if parts.iter().any(|c| c.starts_with('.')) {
            continue;
        }
        // Relative to the extracted directory: drop the archive's top-level folder.
        if parts.len() > 1 {
            parts.remove(0);
        }
        let mut h = Sha256::new();
        let mut len = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            h.update(&buf[..n]);
        }
        entries.push((parts.join("/"), len, h.finalize().into()));
    }
    Ok(combine(entries))
}

/// Feeds the file's bytes to `h`; returns its length.
fn hash_file(p: &Path, h: &mut Sha256) -> Result<u64, MlError> {
    let mut f = std::fs::File::open(p).map_err(|e| io_err(p, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(p, e))?;
        if n == 0 {
            return Ok(len);
        }
        len += n as u64;
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
    use crate::test_support::cifar::*;

    #[test]
    fn archive_and_extracted_directory_share_a_fingerprint_that_tracks_content() {
        let tmp = tempfile::tempdir().unwrap();
        let gz = cifar10_targz(4);
        let archive = tmp.path().join("a.tar.gz");
        std::fs::write(&archive, &gz).unwrap();

        let dir = write_cifar10_dir(tmp.path(), 4);
        let a = fingerprint(&dir).unwrap();
        assert_eq!(
            fingerprint(&archive).unwrap(),
            a,
            "extracting changes nothing"
        );
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
