//! Helpers shared by unit tests across modules (compiled for tests only): snapshot
//! comparison, CIFAR-10 fixture files, tiny in-memory image sets, the smallest model
//! config, and deterministic tensors for the kernels.

pub(crate) mod cifar;
pub(crate) mod images;
pub(crate) mod tensors;

use std::path::Path;
use std::sync::Arc;

use crate::ml::config::{
    Arch, EncoderConfig, EvalConfig, HeadConfig, InitScheme, LrScaling, OptimizerConfig,
    OptimizerKind, PretrainConfig, Stem,
};
use crate::ml::data::ImageSet;
use crate::ml::observer::{Control, Observer, ObserverError};
use crate::ml::{
    checkpoint, model::init, Checkpoint, Device, EvalOutcome, EvalResult, MlError, TrainEnv,
};

/// The smallest model a test trains: a width-1 ConvNet with the CIFAR stem and a
/// 16-dimensional projection; everything else default.
pub(crate) fn tiny_convnet() -> PretrainConfig {
    PretrainConfig {
        encoder: EncoderConfig {
            arch: Arch::Convnet,
            stem: Stem::Cifar,
            width: 1,
            ..Default::default()
        },
        head: HeadConfig {
            out_dim: Some(16),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Plain SGD at a fixed learning rate `lr` (no scaling, no warmup; momentum 0.9 and the
/// rest default): what the tiny training tests use.
pub(crate) fn plain_sgd(lr: f64) -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd,
        lr,
        lr_scaling: LrScaling::None,
        warmup_epochs: 0.0,
        ..Default::default()
    }
}

/// An evaluation's observer that records its checkpoints and asks to stop at its
/// `stop_at`-th progress report.
#[derive(Default)]
pub(crate) struct EvalRecorder {
    pub stop_at: Option<usize>,
    pub reports: usize,
    pub checkpoints: Vec<Checkpoint>,
}

impl Observer for EvalRecorder {
    fn on_checkpoint(&mut self, c: &Checkpoint) -> Result<(), ObserverError> {
        self.checkpoints.push(c.clone());
        Ok(())
    }
    fn on_eval_progress(&mut self, _done: usize, _total: usize, _what: &str) -> Control {
        self.reports += 1;
        if Some(self.reports) == self.stop_at {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// The result of an evaluation that must have finished.
pub(crate) fn finished(o: Result<EvalOutcome, MlError>) -> EvalResult {
    match o {
        Ok(EvalOutcome::Finished(r)) => r,
        other => panic!("not finished: {other:?}"),
    }
}

/// A CPU environment reading data from and writing checkpoints to `dir`, resuming from
/// `resume_from`, with two loader threads.
pub(crate) fn cpu_env(dir: &Path, resume_from: Vec<Checkpoint>) -> TrainEnv {
    TrainEnv {
        device: Device::Cpu,
        data_path: dir.to_path_buf(),
        checkpoint_dir: dir.to_path_buf(),
        resume_from,
        loader_threads: 2,
    }
}

/// A checkpoint of [`tiny_convnet`]'s untrained weights written into `dir`, and a CPU
/// environment whose checkpoints (an evaluation's own) go to `dir/eval`.
pub(crate) fn untrained_checkpoint(
    dir: &Path,
    init: InitScheme,
) -> (PretrainConfig, Checkpoint, TrainEnv) {
    let pretrain = PretrainConfig {
        init,
        ..tiny_convnet()
    };
    let (vm, _) = init::build_model_with(
        pretrain.init,
        &pretrain.encoder,
        &pretrain.head,
        3,
        pretrain.seed,
        &Device::Cpu,
    )
    .unwrap();
    let meta = checkpoint::CheckpointMeta {
        version: checkpoint::FORMAT_VERSION,
        epoch: 1,
        step: 1,
        step_in_epoch: 0,
        steps_per_epoch: 1,
        epoch_loss_sum: 0.0,
        epoch_acc_sum: 0.0,
        config: pretrain.clone(),
    };
    let ckpt = checkpoint::save(dir, &meta, &vm, &[]).unwrap();
    let env = TrainEnv {
        device: Device::Cpu,
        data_path: dir.to_path_buf(),
        checkpoint_dir: dir.join("eval"),
        resume_from: vec![],
        loader_threads: 1,
    };
    (pretrain, ckpt, env)
}

/// An untrained encoder's checkpoint (Kaiming-normal weights: under PyTorch's smaller
/// default, this untrained ConvNet's eval-mode features are dominated by its biases and
/// barely tell colours apart, and the evaluation tests are about the protocol, not the
/// init) and the splits it is evaluated on.
pub(crate) struct EvalFixture {
    dir: tempfile::TempDir,
    pretrain: PretrainConfig,
    ckpt: Checkpoint,
    env: TrainEnv,
    train: Arc<ImageSet>,
    test: Arc<ImageSet>,
}

impl EvalFixture {
    pub fn new(train: Arc<ImageSet>, test: Arc<ImageSet>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pretrain, ckpt, env) = untrained_checkpoint(dir.path(), InitScheme::KaimingNormal);
        EvalFixture {
            dir,
            pretrain,
            ckpt,
            env,
            train,
            test,
        }
    }

    /// The environment with its own checkpoint directory `name` and `resume_from`.
    pub fn env(&self, name: &str, resume_from: Vec<Checkpoint>) -> TrainEnv {
        TrainEnv {
            checkpoint_dir: self.dir.path().join(name),
            resume_from,
            ..self.env.clone()
        }
    }

    /// Evaluates the encoder by `eval` in `env`.
    pub fn run(
        &self,
        eval: &EvalConfig,
        env: &TrainEnv,
        obs: &mut dyn Observer,
    ) -> Result<EvalOutcome, MlError> {
        let (train, test) = (self.train.clone(), self.test.clone());
        crate::ml::eval::evaluate_on(&self.pretrain, eval, &self.ckpt, env, train, test, obs)
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
