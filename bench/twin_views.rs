//! Dumps our augmentation pipeline's views for the PyTorch twin (bench/twin.sh with
//! `OUR_VIEWS=1`), so that `bench/twin_torch.py --views-from DIR` can train on our views
//! instead of torchvision's, everything else equal. Bench-only: not a `sweep` command.
//!
//! For each epoch e in 0..epochs it writes `DIR/views_e{e}.npy`: uint8, shape
//! `(2, N, 3, H, W)` (view, image, CHW), image k being CIFAR-10 training image `subset[k]`,
//! views drawn exactly as our trainer draws them: `augment_pair(image, aug, seed, e,
//! subset[k])` with `aug` the `base.augment` of the spec (bench/twin.yaml). It copies the
//! subset file to `DIR/subset.txt` so the twin can check it trains on the same images.
//!
//!     cargo run --release --example twin_views -- --data-dir DATA --subset FILE \
//!         --seed 0 --epochs 8 --out DIR [--spec bench/twin.yaml]

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use simclr_sweep::ml::augment::augment_pair;
use simclr_sweep::ml::config::{AugmentConfig, DatasetConfig};
use simclr_sweep::ml::data::{self, Split};

#[derive(Parser)]
struct Args {
    /// Holds cifar-10-batches-bin/ or cifar-10-binary.tar.gz.
    #[arg(long)]
    data_dir: PathBuf,
    /// Training-split indices of the pretraining subset, one per line (bench/twin_torch.py
    /// --write-subset).
    #[arg(long)]
    subset: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    epochs: usize,
    /// The twin's spec; its `base.augment` sets the pipeline.
    #[arg(long, default_value = "bench/twin.yaml")]
    spec: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

fn read_augment(spec: &Path) -> Result<AugmentConfig> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", spec.display()))?;
    let aug = doc
        .get("base")
        .and_then(|b| b.get("augment"))
        .cloned()
        .with_context(|| format!("{}: no base.augment", spec.display()))?;
    serde_yaml::from_value(aug).with_context(|| format!("{}: base.augment", spec.display()))
}

fn read_subset(path: &Path, n_images: usize) -> Result<Vec<usize>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let idx = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: one training-image index per line", path.display()))?;
    if let Some(bad) = idx.iter().find(|&&i| i >= n_images) {
        bail!(
            "{}: index {bad} outside the {n_images} training images",
            path.display()
        );
    }
    Ok(idx)
}

/// A numpy v1.0 header for a C-order uint8 array of `shape`.
fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut dict = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

fn main() -> Result<()> {
    let a = Args::parse();
    let aug = read_augment(&a.spec)?;
    let cfg = DatasetConfig::default(); // CIFAR-10
    let path = data::resolve_path(&cfg, &a.data_dir)?;
    let set = data::load_split(&cfg, &path, Split::Train)?;
    let subset = read_subset(&a.subset, set.len())?;
    let (h, w) = (set.height, set.width);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    std::fs::copy(&a.subset, a.out.join("subset.txt"))?;
    for epoch in 0..a.epochs {
        let mut views = vec![vec![0u8; subset.len() * 3 * h * w]; 2];
        for (k, &idx) in subset.iter().enumerate() {
            let (v0, v1) = augment_pair(set.image(idx), h, w, &aug, a.seed, epoch, idx);
            for (dst, v) in views.iter_mut().zip([v0, v1]) {
                let img = &mut dst[k * 3 * h * w..(k + 1) * 3 * h * w];
                for (p, px) in v.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        img[c * h * w + p] = px[c];
                    }
                }
            }
        }
        let file = a.out.join(format!("views_e{epoch}.npy"));
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?,
        );
        f.write_all(&npy_header(&[2, subset.len(), 3, h, w]))?;
        for v in &views {
            f.write_all(v)?;
        }
        f.flush()?;
    }
    eprintln!(
        "wrote {} epochs of {} x 2 views to {}",
        a.epochs,
        subset.len(),
        a.out.display()
    );
    Ok(())
}
