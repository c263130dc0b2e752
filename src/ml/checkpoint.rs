//! Checkpoints of a pretraining run (docs/ARCHITECTURE.md#resume): one safetensors file
//! holding the model variables (`model/<name>`, BatchNorm running statistics included since
//! they live in the `VarMap`), the optimizer state (`optim/<name>`) and, as string
//! metadata, a JSON [`CheckpointMeta`] (epochs completed, next global step, position in the
//! epoch, the whole `PretrainConfig`, format version) under the metadata key
//! `simclr-sweep-checkpoint`. Identical states give byte-identical files (and sha256). The
//! evaluations that train for long (`eval::checkpointed`) write their checkpoints with the
//! same layout and code ([`encode`], [`save_bytes`], [`decode`]) under their own metadata
//! keys.
//!
//! There is no RNG state to store: every random decision is drawn from `rng::stream` keyed by
//! (seed, epoch, image index, view), so seed + epoch + step_in_epoch *is* the RNG and
//! data-order state.
//!
//! Writes are atomic: the bytes are serialised in memory, hashed (sha256), written to
//! `NAME.tmp`, fsynced, renamed to `NAME`, and the directory is fsynced. Loads verify the
//! sha256 the caller recorded before parsing anything.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::PretrainConfig;
use super::{Checkpoint, MlError};

/// Version of the checkpoint layout; bumped when the meaning of a field changes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_TAG: &str = "simclr-sweep-checkpoint";
const MODEL_PREFIX: &str = "model/";
const OPTIM_PREFIX: &str = "optim/";

/// Where a run stands at a checkpoint, and what produced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    pub version: u32,
    /// Epochs fully completed.
    pub epoch: usize,
    /// Global step of the next step to run.
    pub step: usize,
    /// Steps already done in epoch `epoch` (0 at an epoch boundary; > 0 for a checkpoint
    /// written when the observer asked to stop mid-epoch).
    pub step_in_epoch: usize,
    pub steps_per_epoch: usize,
    /// Sums over the steps already done in the current epoch, so a resumed epoch reports the
    /// same means as an uninterrupted one.
    pub epoch_loss_sum: f64,
    pub epoch_acc_sum: f64,
    pub config: PretrainConfig,
}

/// A checkpoint read back and verified.
pub struct LoadedCheckpoint {
    pub meta: CheckpointMeta,
    /// Model variables by `VarMap` name (on the requested device).
    pub model: HashMap<String, Tensor>,
    /// Optimizer state as written by `Optimizer::state`.
    pub optim: HashMap<String, Tensor>,
    pub info: Checkpoint,
}

/// The part of a config that must match for a checkpoint to continue this run: everything
/// but the checkpoint cadence and the dataset location.
pub(crate) fn resume_key(cfg: &PretrainConfig) -> PretrainConfig {
    let mut c = cfg.clone();
    c.checkpoint_every = 1;
    c.dataset.path = None;
    c
}

/// The file name of the checkpoint at (epoch, step) (sortable by step).
pub fn file_name(epoch: usize, step: usize) -> String {
    format!("ckpt-e{epoch:05}-s{step:010}.safetensors")
}

/// The global step encoded in a checkpoint file name, `None` for other files.
fn step_of_file(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("ckpt-e")?.strip_suffix(".safetensors")?;
    let (_, step) = rest.split_once("-s")?;
    step.parse().ok()
}

fn ck_err(path: &Path, message: impl Into<String>) -> MlError {
    MlError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> MlError {
    MlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Serialise the checkpoint to bytes (model vars and optimizer state moved to the CPU).
pub fn to_bytes(
    meta: &CheckpointMeta,
    model: &VarMap,
    optim: &[(String, Tensor)],
) -> Result<Vec<u8>, MlError> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    {
        let data = model
            .data()
            .lock()
            .map_err(|_| MlError::Config("model variables are poisoned".into()))?;
        for (name, var) in data.iter() {
            tensors.push((format!("{MODEL_PREFIX}{name}"), var.as_tensor().clone()));
        }
    }
    for (name, t) in optim {
        tensors.push((format!("{OPTIM_PREFIX}{name}"), t.clone()));
    }
    let meta_json = serde_json::to_string(meta)
        .map_err(|e| MlError::Config(format!("checkpoint metadata: {e}")))?;
    encode(FORMAT_TAG, meta_json, tensors)
}

/// Safetensors bytes of `tensors` (moved to the CPU, sorted by name) with `meta_json` as the
/// one metadata entry `tag`: the layout of every checkpoint this crate writes (a pretrain's
/// here, an evaluation's in `eval::checkpointed`).
pub(crate) fn encode(
    tag: &str,
    meta_json: String,
    tensors: Vec<(String, Tensor)>,
) -> Result<Vec<u8>, MlError> {
    let mut cpu = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        cpu.push((name, t.to_device(&Device::Cpu)?.contiguous()?));
    }
    cpu.sort_by(|a, b| a.0.cmp(&b.0));
    // One metadata entry: safetensors writes its metadata map in HashMap order, so a single
    // key keeps the bytes (and the sha256) of identical states identical.
    let metadata: HashMap<String, String> = [(tag.to_string(), meta_json)].into_iter().collect();
    safetensors::serialize(cpu, Some(metadata))
        .map_err(|e| MlError::Config(format!("checkpoint serialisation: {e}")))
}

/// Write `bytes` to `path` atomically: `path.tmp`, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MlError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    super::fault::point("checkpoint_write");
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Some(dir) = path.parent() {
        // Make the rename durable. Opening a directory fails on some platforms: ignore that.
        if let Ok(d) = fs::File::open(dir) {
            d.sync_all().map_err(|e| io_err(dir, e))?;
        }
    }
    Ok(())
}

/// Save a checkpoint into `dir` (created if missing), durably. Returns what was written.
/// Nothing is deleted here: older files go only once a newer one is recorded
/// ([`prune_recorded`]), since a file may be the one the store points to.
pub fn save(
    dir: &Path,
    meta: &CheckpointMeta,
    model: &VarMap,
    optim: &[(String, Tensor)],
) -> Result<Checkpoint, MlError> {
    let bytes = to_bytes(meta, model, optim)?;
    save_bytes(dir, meta.epoch, meta.step, &bytes)
}

/// Writes checkpoint `bytes` of (epoch, step) into `dir` (created if missing) atomically
/// under [`file_name`]'s name.
pub(crate) fn save_bytes(
    dir: &Path,
    epoch: usize,
    step: usize,
    bytes: &[u8],
) -> Result<Checkpoint, MlError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let sha256 = sha256_hex(bytes);
    let path = dir.join(file_name(epoch, step));
    write_atomic(&path, bytes)?;
    Ok(Checkpoint {
        path,
        epoch,
        step,
        sha256,
    })
}

/// How many recorded checkpoints of a run keep their files: the newest, and one to fall back
/// to should the newest turn out corrupt.
pub const KEEP_RECORDED: usize = 2;

/// Deletes the checkpoint files in `dir` that are older than the `keep`-th newest of the
/// `recorded` steps (the steps the store holds for this run, in any order). What it never
/// deletes:
/// - the `keep` newest recorded checkpoints, so the file a store row points to goes only
///   after a newer one is recorded;
/// - any file newer than those, recorded or not: another worker that still holds (or held)
///   the lease may be about to record it, and a reclaimed worker that resumed from an older
///   checkpoint writes older steps than a newer recorded one.
///
/// Fewer than `keep` recorded checkpoints delete nothing. Returns the deleted paths.
pub fn prune_recorded(
    dir: &Path,
    recorded: &[usize],
    keep: usize,
) -> Result<Vec<PathBuf>, MlError> {
    let mut steps = recorded.to_vec();
    steps.sort_unstable_by(|a, b| b.cmp(a));
    steps.dedup();
    let Some(&oldest_kept) = steps.get(keep.saturating_sub(1)).filter(|_| keep > 0) else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(step_of_file) else {
            continue;
        };
        if step < oldest_kept {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            deleted.push(path);
        }
    }
    deleted.sort();
    Ok(deleted)
}

/// Read a checkpoint, verify its sha256 against `r.sha256`, and parse it. Tensors are placed
/// on `device`. Any mismatch or corruption is `MlError::Checkpoint`.
pub fn load(r: &Checkpoint, device: &Device) -> Result<LoadedCheckpoint, MlError> {
    let path = &r.path;
    let (meta_json, all) = decode(r, FORMAT_TAG, device)?;
    let meta: CheckpointMeta =
        serde_json::from_str(&meta_json).map_err(|e| ck_err(path, format!("bad metadata: {e}")))?;
    if meta.version != FORMAT_VERSION {
        return Err(ck_err(
            path,
            format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                meta.version
            ),
        ));
    }
    let mut model = HashMap::new();
    let mut optim = HashMap::new();
    for (name, t) in all {
        if let Some(n) = name.strip_prefix(MODEL_PREFIX) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM_PREFIX) {
            optim.insert(n.to_string(), t);
        } else {
            return Err(ck_err(path, format!("unexpected tensor {name}")));
        }
    }
    let info = Checkpoint {
        path: path.clone(),
        epoch: meta.epoch,
        step: meta.step,
        sha256: r.sha256.trim().to_ascii_lowercase(),
    };
    Ok(LoadedCheckpoint {
        meta,
        model,
        optim,
        info,
    })
}

/// Reads checkpoint `r`, verifies its sha256, and returns the metadata entry `tag` and the
/// tensors (on `device`); a file without that entry is refused as not of this kind.
pub(crate) fn decode(
    r: &Checkpoint,
    tag: &str,
    device: &Device,
) -> Result<(String, HashMap<String, Tensor>), MlError> {
    let path = &r.path;
    let bytes = fs::read(path).map_err(|e| ck_err(path, format!("cannot read: {e}")))?;
    let sha = sha256_hex(&bytes);
    if !sha.eq_ignore_ascii_case(r.sha256.trim()) {
        return Err(ck_err(
            path,
            format!("sha256 mismatch: file has {sha}, expected {}", r.sha256),
        ));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| ck_err(path, format!("bad header: {e}")))?;
    let md = header
        .metadata()
        .as_ref()
        .ok_or_else(|| ck_err(path, "no metadata"))?;
    let meta_json = md
        .get(tag)
        .ok_or_else(|| ck_err(path, format!("not a {tag}")))?
        .clone();
    let all = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| ck_err(path, format!("bad tensors: {e}")))?;
    Ok((meta_json, all))
}

/// Set every variable of `varmap` to the checkpoint's tensor of the same name. Every variable
/// must be present with its shape and dtype; extra tensors are an error too (a different
/// model). Nothing is changed unless every check passes.
pub fn restore_varmap(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<(), MlError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| MlError::Config("model variables are poisoned".into()))?;
    if data.len() != tensors.len() {
        return Err(ck_err(
            path,
            format!(
                "checkpoint has {} model tensors, the model has {} variables",
                tensors.len(),
                data.len()
            ),
        ));
    }
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| ck_err(path, format!("missing variable {name}")))?;
        if t.dims() != var.dims() || t.dtype() != var.dtype() {
            return Err(ck_err(
                path,
                format!(
                    "variable {name}: checkpoint {:?} {:?}, model {:?} {:?}",
                    t.dims(),
                    t.dtype(),
                    var.dims(),
                    var.dtype()
                ),
            ));
        }
    }
    // Every check passed: only now change the model.
    for (name, var) in data.iter() {
        var.set(&tensors[name].to_device(var.device())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::Init;

    fn meta(epoch: usize, step: usize) -> CheckpointMeta {
        CheckpointMeta {
            version: FORMAT_VERSION,
            epoch,
            step,
            step_in_epoch: 0,
            steps_per_epoch: 4,
            epoch_loss_sum: 0.0,
            epoch_acc_sum: 0.0,
            config: PretrainConfig::default(),
        }
    }

    fn varmap(v: f64) -> VarMap {
        let vm = VarMap::new();
        vm.get(
            (2, 3),
            "enc.conv.weight",
            Init::Const(v),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        vm.get(
            3,
            "enc.bn.running_var",
            Init::Const(v + 1.0),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        vm
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn save_load_round_trip_is_exact_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let vm = varmap(0.25);
        let optim = vec![(
            "enc.conv.weight/momentum".to_string(),
            Tensor::new(&[[1e-7f32, 2.0, 3.0], [4.0, 5.0, 6.5]], &Device::Cpu).unwrap(),
        )];
        let m = CheckpointMeta {
            step_in_epoch: 3,
            epoch_loss_sum: 1.0 / 3.0,
            ..meta(1, 7)
        };
        let info = save(dir.path(), &m, &vm, &optim).unwrap();
        assert!(info.path.exists());
        assert!(!dir
            .path()
            .join(format!("{}.tmp", file_name(m.epoch, m.step)))
            .exists());
        let bytes = fs::read(&info.path).unwrap();
        assert_eq!(sha256_hex(&bytes), info.sha256);

        let r = info.clone();
        let loaded = load(&r, &Device::Cpu).unwrap();
        assert_eq!(loaded.meta, m);
        assert_eq!(loaded.info, info);
        assert_eq!(
            to_vec(&loaded.optim["enc.conv.weight/momentum"]),
            to_vec(&optim[0].1)
        );
        let vm2 = varmap(9.0);
        restore_varmap(&vm2, &loaded.model, &info.path).unwrap();
        for (name, var) in vm.data().lock().unwrap().iter() {
            let other = vm2.data().lock().unwrap()[name].clone();
            assert_eq!(to_vec(var.as_tensor()), to_vec(other.as_tensor()), "{name}");
        }
    }

    #[test]
    fn corrupt_or_mismatched_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let info = save(dir.path(), &meta(1, 4), &varmap(0.5), &[]).unwrap();
        // Wrong recorded hash.
        let r = Checkpoint {
            sha256: "00".repeat(32),
            ..info.clone()
        };
        assert!(matches!(
            load(&r, &Device::Cpu),
            Err(MlError::Checkpoint { .. })
        ));
        // One flipped byte.
        let mut bytes = fs::read(&info.path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0x40;
        fs::write(&info.path, &bytes).unwrap();
        let r = info.clone();
        let err = load(&r, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        // Missing file.
        let r = Checkpoint {
            path: dir.path().join("nope.safetensors"),
            ..info
        };
        assert!(matches!(
            load(&r, &Device::Cpu),
            Err(MlError::Checkpoint { .. })
        ));
    }

    #[test]
    fn restore_rejects_a_different_model() {
        let dir = tempfile::tempdir().unwrap();
        let info = save(dir.path(), &meta(1, 4), &varmap(0.5), &[]).unwrap();
        let loaded = load(&info, &Device::Cpu).unwrap();
        let other = VarMap::new();
        other
            .get(
                (3, 3),
                "enc.conv.weight",
                Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        other
            .get(
                3,
                "enc.bn.running_var",
                Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        assert!(restore_varmap(&other, &loaded.model, &info.path).is_err());
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn pruning_keeps_the_two_newest_recorded_and_everything_newer() {
        let dir = tempfile::tempdir().unwrap();
        let vm = varmap(0.5);
        for e in 1..=5 {
            save(dir.path(), &meta(e, 4 * e), &vm, &[]).unwrap();
        }
        // Saving deletes nothing.
        assert_eq!(names_in(dir.path()).len(), 5);
        // Steps 4..12 recorded, 16 and 20 written but not (yet) recorded.
        let deleted = prune_recorded(dir.path(), &[12, 4, 8], KEEP_RECORDED).unwrap();
        assert_eq!(deleted, vec![dir.path().join(file_name(1, 4))]);
        assert_eq!(
            names_in(dir.path()),
            vec![
                file_name(2, 8),
                file_name(3, 12),
                file_name(4, 16),
                file_name(5, 20)
            ]
        );
        // One recorded checkpoint is not enough to delete anything.
        assert!(prune_recorded(dir.path(), &[20], KEEP_RECORDED)
            .unwrap()
            .is_empty());
    }

    /// Two workers on one stage: A holds the lease, writes and records step 20, then stalls
    /// past its lease. B reclaims the stage, resumes from the checkpoint it found verified
    /// (step 10: say A's step-20 record reached the store after B read it), writes step 15
    /// and dies before recording it. Whatever happened in between, the newest recorded
    /// checkpoint's file must still be there and verify, or the next resume starts over.
    #[test]
    fn a_reclaimed_worker_writing_an_older_step_never_deletes_the_newest_recorded_file() {
        let dir = tempfile::tempdir().unwrap();
        let vm = varmap(0.5);
        let mut recorded: Vec<Checkpoint> = Vec::new();
        let record = |c: Checkpoint, recorded: &mut Vec<Checkpoint>| {
            recorded.push(c);
            let steps: Vec<usize> = recorded.iter().map(|c| c.step).collect();
            prune_recorded(dir.path(), &steps, KEEP_RECORDED).unwrap();
        };
        // A: epochs 1 and 2, both recorded.
        record(
            save(dir.path(), &meta(1, 10), &vm, &[]).unwrap(),
            &mut recorded,
        );
        record(
            save(dir.path(), &meta(2, 20), &vm, &[]).unwrap(),
            &mut recorded,
        );
        // B, resumed from step 10, writes step 15 and crashes before recording it.
        save(dir.path(), &meta(1, 15), &vm, &[]).unwrap();
        let newest = recorded.iter().max_by_key(|c| c.step).unwrap();
        assert_eq!(newest.step, 20);
        let loaded = load(newest, &Device::Cpu);
        assert!(
            loaded.is_ok(),
            "the newest recorded checkpoint must survive: {:?}",
            loaded.err()
        );
        // B's file stays too (it may still be recorded by a worker that holds a lease).
        assert!(dir.path().join(file_name(1, 15)).exists());
    }
}
