//! `sweep data fetch cifar10|cifar100`: download the official archive into the data
//! directory with a progress bar, resume a partial download (HTTP Range on the `.part`
//! file), and verify a checksum before the archive is moved into place
//! (docs/ARCHITECTURE.md#ml-core). The loader reads the `.tar.gz` directly, so nothing is
//! extracted.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::ml::config::DatasetName;
use crate::ml::data::archive_name;

/// An expected digest (lowercase or uppercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// What the official CIFAR page publishes.
    Md5(String),
    /// For a mirror or a user's own archive (`--sha256`).
    Sha256(String),
}

impl Checksum {
    fn kind(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    fn expected(&self) -> String {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h.trim().to_ascii_lowercase(),
        }
    }

    /// The digest of `path` (hex) of this checksum's kind.
    pub fn compute(&self, path: &Path) -> anyhow::Result<String> {
        let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut md5 = <Md5 as md5::Digest>::new();
        let mut sha = Sha256::new();
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("read {}", path.display()))?;
            if n == 0 {
                break;
            }
            match self {
                Checksum::Md5(_) => md5::Digest::update(&mut md5, &buf[..n]),
                Checksum::Sha256(_) => sha.update(&buf[..n]),
            }
        }
        Ok(match self {
            Checksum::Md5(_) => hex::encode(md5::Digest::finalize(md5)),
            Checksum::Sha256(_) => hex::encode(sha.finalize()),
        })
    }

    /// Ok if `path` has this digest; the error says expected and actual.
    pub fn verify(&self, path: &Path) -> anyhow::Result<()> {
        let got = self.compute(path)?;
        if got != self.expected() {
            bail!(
                "checksum mismatch for {}: expected {} {}, got {}",
                path.display(),
                self.kind(),
                self.expected(),
                got
            );
        }
        Ok(())
    }
}

/// The official archive's address (Krizhevsky's CIFAR page).
pub fn official_url(name: DatasetName) -> Option<&'static str> {
    match name {
        DatasetName::Cifar10 => Some("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
        DatasetName::Cifar100 => Some("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"),
        DatasetName::ImageFolder => None,
    }
}

/// The md5 the official page publishes for the archive.
pub fn official_checksum(name: DatasetName) -> Option<Checksum> {
    match name {
        DatasetName::Cifar10 => Some(Checksum::Md5("c32a1d4ab5d03f1284b67883e8d87530".into())),
        DatasetName::Cifar100 => Some(Checksum::Md5("03b5dce01913d631647c71ecec9e9cb8".into())),
        DatasetName::ImageFolder => None,
    }
}

/// Downloads `name`'s archive into `data_dir` (created if missing) under its official file
/// name, so `ml::data::default_path` finds it, and returns its path.
///
/// `url`: a mirror instead of the official address. `sha256`: verify that digest instead of
/// the official md5 (for an archive that is not byte-identical to the official one). An
/// archive already in place is verified and kept; a partial `<name>.part` from an
/// interrupted run is resumed.
pub fn fetch(
    name: DatasetName,
    url: Option<&str>,
    sha256: Option<&str>,
    data_dir: &Path,
    quiet: bool,
) -> anyhow::Result<PathBuf> {
    let (Some(file), Some(official)) = (archive_name(name), official_url(name)) else {
        bail!("image_folder has nothing to fetch: point `dataset.path` at your folder");
    };
    let expected = match sha256 {
        Some(h) => Checksum::Sha256(h.to_string()),
        None => official_checksum(name).context("no published checksum")?,
    };
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let dest = data_dir.join(file);
    if dest.is_file() {
        expected.verify(&dest).with_context(|| {
            format!(
                "{} is already there but is not the expected archive; remove it and fetch again",
                dest.display()
            )
        })?;
        if !quiet {
            eprintln!("{} already present and verified", dest.display());
        }
        return Ok(dest);
    }
    download(url.unwrap_or(official), &dest, &expected, quiet)?;
    Ok(dest)
}

/// `dest` with `.part` appended: where a download in progress is written.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Downloads `url` to `dest` through `dest.part`, resuming an existing `.part` with an HTTP
/// Range request, verifies `expected` and renames into place. On a mismatch the `.part`
/// is deleted; on an interrupted transfer it is kept for the next call to resume.
pub fn download(url: &str, dest: &Path, expected: &Checksum, quiet: bool) -> anyhow::Result<()> {
    let part = part_path(dest);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.set("Range", &format!("bytes={have}-"));
    }
    let resp = match req.call() {
        Ok(r) => Some(r),
        // The .part already holds the whole file: only the checksum is left to do.
        Err(ureq::Error::Status(416, _)) if have > 0 => None,
        Err(ureq::Error::Status(code, r)) => {
            bail!("download of {url} failed: HTTP {code} {}", r.status_text())
        }
        Err(e) => bail!(
            "cannot download {url}: {e}{}",
            if have > 0 {
                format!(
                    " ({have} bytes kept in {}; run again to resume)",
                    part.display()
                )
            } else {
                String::new()
            }
        ),
    };
    if let Some(resp) = resp {
        // 206 continues at `have` (checked against Content-Range); anything else restarts.
        let resumed = resp.status() == 206
            && resp
                .header("Content-Range")
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.trim().parse::<u64>().ok())
                == Some(have);
        if !resumed {
            have = 0;
        }
        let len: Option<u64> = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok());
        let total = len.map(|l| l + have);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&part)
            .with_context(|| format!("open {}", part.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let pb = progress_bar(total, have, quiet, dest);
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let mut got = have;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().ok();
                    pb.abandon();
                    bail!(
                        "download of {url} interrupted after {got} bytes ({e}); they are kept in \
                         {}: run the same command again to resume",
                        part.display()
                    );
                }
            };
            out.write_all(&buf[..n])
                .with_context(|| format!("write {}", part.display()))?;
            got += n as u64;
            pb.set_position(got);
        }
        out.flush()
            .with_context(|| format!("write {}", part.display()))?;
        pb.finish_and_clear();
        if let Some(t) = total {
            if got < t {
                bail!(
                    "download of {url} ended after {got} of {t} bytes; they are kept in {}: run \
                     the same command again to resume",
                    part.display()
                );
            }
        }
    }
    if let Err(e) = expected.verify(&part) {
        std::fs::remove_file(&part).ok();
        bail!("{e:#} (downloaded from {url}); the partial file was deleted, fetch again or check --url/--sha256");
    }
    std::fs::rename(&part, dest)
        .with_context(|| format!("move {} to {}", part.display(), dest.display()))?;
    if !quiet {
        eprintln!(
            "{} downloaded and verified ({})",
            dest.display(),
            expected.kind()
        );
    }
    Ok(())
}

fn progress_bar(total: Option<u64>, pos: u64, quiet: bool, dest: &Path) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(
        dest.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    pb.set_position(pos);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::DatasetConfig;
    use crate::ml::data::{default_path, load_split, Split};
    use crate::test_support::cifar;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// What the server saw: (Range header, bytes of body sent) per request.
    type Log = Arc<Mutex<Vec<(Option<String>, usize)>>>;

    /// A minimal HTTP/1.1 server on 127.0.0.1 serving `body` at any path, with Range
    /// (`bytes=N-`) support: 206 + Content-Range, 416 past the end.
    fn serve(body: Vec<u8>) -> (String, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/cifar.tar.gz", listener.local_addr().unwrap());
        let log: Log = Arc::default();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("range") {
                            range = Some(v.trim().to_string());
                        }
                    }
                }
                let start = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                let resp = match start {
                    Some(s) if s >= body.len() => {
                        log2.lock().unwrap().push((range, 0));
                        format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len()).into_bytes()
                    }
                    Some(s) => {
                        log2.lock().unwrap().push((range, body.len() - s));
                        let mut r = format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len() - 1, body.len(), body.len() - s).into_bytes();
                        r.extend_from_slice(&body[s..]);
                        r
                    }
                    None => {
                        log2.lock().unwrap().push((range, body.len()));
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                };
                conn.write_all(&resp).ok();
            }
        });
        (url, log)
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    #[test]
    fn full_download_is_verified_and_loadable() {
        let body = cifar::cifar10_targz(10);
        let (url, log) = serve(body.clone());
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let p = fetch(
            DatasetName::Cifar10,
            Some(&url),
            Some(&sha(&body)),
            &dir,
            true,
        )
        .unwrap();
        assert_eq!(p, dir.join("cifar-10-binary.tar.gz"));
        assert_eq!(std::fs::read(&p).unwrap(), body);
        assert!(!part_path(&p).exists());
        assert_eq!(default_path(DatasetName::Cifar10, &dir), Some(p.clone()));
        let set = load_split(&DatasetConfig::default(), &p, Split::Train).unwrap();
        assert_eq!(set.len(), 50);
        // Already there and verified: no second request.
        fetch(
            DatasetName::Cifar10,
            Some(&url),
            Some(&sha(&body)),
            &dir,
            true,
        )
        .unwrap();
        assert_eq!(log.lock().unwrap().len(), 1);
        // md5 works too (the official checksum kind).
        let md5 = Checksum::Md5(hex::encode(<Md5 as md5::Digest>::digest(&body)));
        md5.verify(&p).unwrap();
    }

    #[test]
    fn resumed_download_asks_only_for_the_rest() {
        let body = cifar::cifar10_targz(10);
        let half = body.len() / 2;
        let (url, log) = serve(body.clone());
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("cifar-10-binary.tar.gz");
        std::fs::write(part_path(&dest), &body[..half]).unwrap();
        fetch(
            DatasetName::Cifar10,
            Some(&url),
            Some(&sha(&body)),
            tmp.path(),
            true,
        )
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0.as_deref(), Some(format!("bytes={half}-").as_str()));
        assert_eq!(log[0].1, body.len() - half);
        // A complete .part (server answers 416) is verified and moved into place.
        drop(log);
        let dest2 = tmp.path().join("again.tar.gz");
        std::fs::write(part_path(&dest2), &body).unwrap();
        download(&url, &dest2, &Checksum::Sha256(sha(&body)), true).unwrap();
        assert_eq!(std::fs::read(&dest2).unwrap(), body);
    }

    #[test]
    fn checksum_mismatch_deletes_the_part_and_says_so() {
        let body = cifar::cifar10_targz(10);
        let (url, _log) = serve(body.clone());
        let tmp = tempfile::tempdir().unwrap();
        let wrong = sha(b"something else");
        let err = fetch(
            DatasetName::Cifar10,
            Some(&url),
            Some(&wrong),
            tmp.path(),
            true,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("checksum mismatch") && msg.contains(&wrong),
            "{msg}"
        );
        let dest = tmp.path().join("cifar-10-binary.tar.gz");
        assert!(!dest.exists() && !part_path(&dest).exists());
        // The official md5 is checked when no --sha256 is given.
        let err = fetch(DatasetName::Cifar10, Some(&url), None, tmp.path(), true).unwrap_err();
        assert!(format!("{err:#}").contains("c32a1d4ab5d03f1284b67883e8d87530"));
        // A server that is not there: a clear error, no panic.
        let err = download(
            "http://127.0.0.1:1/x.tar.gz",
            &dest,
            &Checksum::Sha256(wrong),
            true,
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("cannot download"));
    }
}
