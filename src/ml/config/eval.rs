//! The evaluation config: which method reads a pretrained encoder, each method with only
//! its own settings ([`EvalMethod`]), and the flat form a spec writes and every stored
//! evaluation has ([`FlatEvalConfig`]: every field of every method, those a method does not
//! use at their defaults). An evaluation's run id hashes the flat form, so a setting a
//! method does not use cannot split one evaluation into two ids: the typed config has no
//! place for it.

use serde::{Deserialize, Serialize};

use super::{AugOp, LrScaling};

/// The `kind` of the flat form: which method, the linear protocols under one name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalKind {
    /// Multinomial logistic regression on frozen features (section 2.3 linear protocol).
    #[default]
    Linear,
    /// Weighted k-nearest-neighbour vote on cosine similarity (k = 200, tau = 0.1).
    Knn,
    /// Fine-tuning with few labels (Table 7, appendix B.5): the whole encoder (BatchNorm in
    /// training mode) and a new zero-initialised linear head on h, the projection head
    /// discarded, trained by cross-entropy on a class-balanced `label_fraction` of the
    /// training split under random resized crop + flip only; top-1 on the un-augmented test
    /// split. Under the random-weights control (the untrained encoder) it is training from
    /// scratch on the same labels. Label `fine_tune-1%@h`. Checkpointed, so it resumes.
    FineTune,
    /// Table 3 (section 4.2): a small MLP on the frozen h or z = g(h) predicting which
    /// transformation (`task`) was applied to the image; label `probe-TASK@h`.
    Probe,
}

impl EvalKind {
    pub fn name(self) -> &'static str {
        match self {
            EvalKind::Linear => "linear",
            EvalKind::Knn => "knn",
            EvalKind::FineTune => "fine_tune",
            EvalKind::Probe => "probe",
        }
    }
}
/// What Table 3's probe predicts (`EvalConfig::task`). Each task's images are the
/// un-augmented images of the split, a fixed share of them transformed (the class of
/// every image drawn by a seeded permutation, so the shares are exact).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTask {
    /// Colour (class 0) vs grayscale (class 1, the colour op's grayscale with PIL's luma
    /// weights). One image in five is grayscale, the rate of the colour augmentation's
    /// grayscale (p = 0.2): the paper's random guess for this row is 80%.
    ColorVsGrayscale,
    /// Rotated by 0, 90, 180 or 270 degrees (classes 0-3, a quarter each): random guess 25%.
    Rotation,
    /// Original (class 0) vs corrupted by Gaussian noise (class 1; Figure 5's noise op,
    /// sigma U(0, 0.1) x 255, the same draw the pretraining's `noise` makes): half each.
    Corrupted,
    /// Original (class 0) vs Sobel-filtered (class 1): half each.
    Sobel,
}

impl ProbeTask {
    pub const ALL: [ProbeTask; 4] = [
        ProbeTask::ColorVsGrayscale,
        ProbeTask::Rotation,
        ProbeTask::Corrupted,
        ProbeTask::Sobel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProbeTask::ColorVsGrayscale => "color_vs_grayscale",
            ProbeTask::Rotation => "rotation",
            ProbeTask::Corrupted => "corrupted",
            ProbeTask::Sobel => "sobel",
        }
    }

    /// Number of classes the probe tells apart.
    pub fn classes(self) -> usize {
        match self {
            ProbeTask::Rotation => 4,
            _ => 2,
        }
    }

    /// The class of the image at position `pos` of the seeded permutation: class shares
    /// as the variants document (grayscale one in five, the others equal).
    pub fn class_at(self, pos: usize) -> u16 {
        match self {
            ProbeTask::ColorVsGrayscale => (pos % 5 == 0) as u16,
            t => (pos % t.classes()) as u16,
        }
    }

    /// The share (%) of the largest class: a constant guess's top-1.
    pub fn random_guess(self) -> f64 {
        match self {
            ProbeTask::ColorVsGrayscale => 80.0,
            ProbeTask::Rotation => 25.0,
            _ => 50.0,
        }
    }

    /// The pretraining op whose presence the task asks about (none for colour: the colour
    /// augmentation itself).
    pub fn op(self) -> Option<AugOp> {
        match self {
            ProbeTask::ColorVsGrayscale => None,
            ProbeTask::Rotation => Some(AugOp::Rotate),
            ProbeTask::Corrupted => Some(AugOp::Noise),
            ProbeTask::Sobel => Some(AugOp::Sobel),
        }
    }
}

/// Which representation an evaluation reads: h (encoder output) or z = g(h) (Figure 8).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    #[default]
    H,
    Z,
}

/// How a linear evaluation feeds the training images to its classifier.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvalProtocol {
    /// The fast probe: features of the un-augmented images extracted once through the frozen
    /// encoder, standardised with the train statistics, then the classifier trained on them.
    #[default]
    Features,
    /// The paper's protocol (appendix B.6 / B.5, the official CIFAR-10 linear-evaluation
    /// recipe): every step draws a fresh random resized crop + flip of each training image
    /// and passes it through the frozen encoder (BatchNorm in inference mode). Label
    /// `linear-aug@h`.
    Augmented,
}

impl EvalProtocol {
    pub fn name(self) -> &'static str {
        match self {
            EvalProtocol::Features => "features",
            EvalProtocol::Augmented => "augmented",
        }
    }
}

impl FeatureSource {
    /// "h" or "z", as labels write it.
    pub fn name(self) -> &'static str {
        match self {
            FeatureSource::H => "h",
            FeatureSource::Z => "z",
        }
    }
}

/// The probe MLP's hidden width when `hidden` is not given.
pub const DEFAULT_PROBE_HIDDEN: usize = 512;

/// One evaluation of a finished pretrain checkpoint: what it reads, what it scores, and its
/// method with that method's settings.
///
/// Reads and writes the flat form ([`FlatEvalConfig`]): a spec's `evals` entry, a stored
/// stage config, an evaluation checkpoint's metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(into = "FlatEvalConfig", try_from = "EvalConfigSpec")]
pub struct EvalConfig {
    /// The representation it reads: h, or z = g(h) (Figure 8). Fine-tuning reads h.
    pub on: FeatureSource,
    /// Class-balanced subset of the test split scored (`None`: all of it).
    pub test_subset: Option<usize>,
    pub method: EvalMethod,
}

/// How an evaluation reads the encoder, each method with only its own settings.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalMethod {
    /// Weighted k-nearest-neighbour vote on cosine similarity of features extracted once.
    Knn(KnnConfig),
    /// The fast linear probe: features of the un-augmented images extracted once through
    /// the frozen encoder, standardised with the train statistics, then the classifier
    /// trained on them. Label `linear@h`.
    LinearFeatures(LinearConfig),
    /// The paper's linear evaluation (appendix B.6 / B.5, the official CIFAR-10
    /// linear-evaluation recipe): every step draws a fresh random resized crop + flip of
    /// each training image and passes it through the frozen encoder (BatchNorm in inference
    /// mode). Label `linear-aug@h`.
    LinearAugmented(LinearConfig),
    /// Table 3's probe: an MLP predicting which transformation was applied.
    Probe(ProbeConfig),
    /// Fine-tuning the whole encoder and a new head on few labels (Table 7).
    FineTune(FineTuneConfig),
}

/// The kNN vote: `k` neighbours, each weighted by exp(similarity / `temperature`).
#[derive(Clone, Debug, PartialEq)]
pub struct KnnConfig {
    /// Class-balanced subset of the training split the neighbour bank holds (`None`: all).
    pub train_subset: Option<usize>,
    pub k: usize,
    pub temperature: f64,
}

/// A linear classifier on the frozen encoder, either protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearConfig {
    /// Class-balanced subset of the training split it trains on (`None`: all of it).
    pub train_subset: Option<usize>,
    pub training: EvalTraining,
    /// Batch normalisation on the classifier's output, no bias before it (the official
    /// `linear_layer(use_bn=True)`; its supervised head, v1 and TF2, uses `use_bn=False`,
    /// the default here). Without BN the weights start at zero (the official recipe's
    /// `--zero_init_logits_layer=True`); with BN they start from N(0, 0.01), the official
    /// dense initialiser, since zero weights under BN never move.
    pub head_bn: bool,
}

/// Table 3's probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Class-balanced subset of the training split it trains on (`None`: all of it).
    pub train_subset: Option<usize>,
    /// Which transformation it predicts.
    pub task: ProbeTask,
    /// Width of the MLP's one hidden layer (ReLU). The paper says only "we train additional
    /// MLPs"; [`DEFAULT_PROBE_HIDDEN`], the dimension of ResNet-18's h, unless a spec says.
    pub hidden: usize,
    /// SGD on features standardised with the train statistics, as the features probe.
    pub training: EvalTraining,
}

/// Fine-tuning with few labels.
#[derive(Clone, Debug, PartialEq)]
pub struct FineTuneConfig {
    /// The fraction of the training split whose labels it trains on, a class-balanced
    /// subset (`floor(fraction x images / classes)` of each class) drawn by
    /// `data::balanced_subset` from the pretrain seed, so a SimCLR run and its
    /// random-weights control (same seed) fine-tune on the same images, and for one seed
    /// the 1% subset lies inside the 10% one. The paper: 1% and 10% of ImageNet (Table 7).
    pub label_fraction: f64,
    pub training: EvalTraining,
    /// BN on the new head's output, as [`LinearConfig::head_bn`].
    pub head_bn: bool,
}

/// How an evaluation trains what it trains (a classifier, the probe's MLP, the fine-tuned
/// encoder): SGD with momentum, the learning rate cosine-decayed to 0 from its peak without
/// warmup (the official code's `--warmup_epochs=0`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTraining {
    pub epochs: usize,
    /// Base learning rate, scaled by `lr_scaling`.
    pub lr: f64,
    /// How `lr` scales with `batch_size`. The paper (B.6) and the official code: linear,
    /// 0.1 x B/256; the features probe has always used `lr` as is (none).
    pub lr_scaling: LrScaling,
    pub batch_size: usize,
    pub weight_decay: f64,
    /// Nesterov's correction (the paper's B.5/B.6 and the official `--optimizer=momentum`,
    /// `use_nesterov=True`) or plain momentum.
    pub nesterov: bool,
    /// SGD momentum (0.9 in the paper's B.5 / B.6 and the official code).
    pub momentum: f64,
}

impl EvalTraining {
    /// The features probe's and Table 3 probe's defaults: 100 epochs, batch 256, lr 0.1 as
    /// is, plain momentum 0.9, no weight decay.
    pub fn features() -> Self {
        Self {
            epochs: 100,
            lr: 0.1,
            lr_scaling: LrScaling::None,
            batch_size: 256,
            weight_decay: 0.0,
            nesterov: false,
            momentum: 0.9,
        }
    }

    /// The paper's linear evaluation as the official CIFAR-10 recipe runs it
    /// (`--train_mode=finetune --fine_tune_after_block=4 --zero_init_logits_layer=True
    /// --optimizer=momentum --learning_rate=0.1 --weight_decay=0.0 --train_epochs=100
    /// --train_batch_size=512 --warmup_epochs=0`): Nesterov momentum 0.9, 0.1 x B/256
    /// (0.2 at batch 512), no weight decay, 100 epochs, no BN in the head. The paper's
    /// ImageNet setting (B.6: batch 4096, 90 epochs, 0.1 x B/256 = 1.6) differs only in
    /// batch size and epochs, which the official code adapts to CIFAR-10 as above.
    pub fn augmented() -> Self {
        Self {
            lr_scaling: LrScaling::Linear,
            batch_size: 512,
            nesterov: true,
            ..Self::features()
        }
    }

    /// Fine-tuning on `label_fraction` of the labels: the paper's appendix B.5 adapted to
    /// CIFAR-10.
    ///
    /// The paper (ImageNet, ResNet-50): Nesterov momentum 0.9, batch 4096, lr 0.8
    /// (0.05 x B/256) without warmup, no regularisation (no weight decay), 60 epochs on 1% of
    /// the labels and 30 on 10%, only random crop (with flip) and resize for preprocessing,
    /// a centre crop at test time. The schedule after the (absent) warmup is the official
    /// code's cosine decay. Kept here: the optimizer, momentum, 0.05 x B/256, no weight decay,
    /// the epochs per fraction (60 at 1% or less, else 30), the crop + flip.
    ///
    /// Adapted: batch 100 instead of 4096, since 1% of CIFAR-10 is 500 images (4096 would
    /// not fill one batch); 100 divides both 500 and 5,000, so the dropped incomplete batch
    /// drops nothing, and it gives 300 steps at 1% and 1,500 at 10%, the order of the
    /// paper's 180 and 940 (12.8k / 128k images at 4096). lr 0.05 x 100/256 = 0.0195 by the
    /// paper's rule. The test split is scored un-augmented: its 32x32 images are the
    /// official code's "no crop at 32 pixels or less", the CIFAR form of the centre crop.
    pub fn fine_tune(label_fraction: f64) -> Self {
        Self {
            epochs: if label_fraction <= 0.01 { 60 } else { 30 },
            lr: 0.05,
            lr_scaling: LrScaling::Linear,
            batch_size: 100,
            weight_decay: 0.0,
            nesterov: true,
            momentum: 0.9,
        }
    }

    /// The peak learning rate: `lr` scaled for `batch_size`.
    pub fn peak_lr(&self) -> f64 {
        self.lr_scaling.apply(self.lr, self.batch_size)
    }
}

impl KnnConfig {
    /// k = 200, tau = 0.1, the whole training split.
    fn default_vote() -> Self {
        Self {
            train_subset: None,
            k: 200,
            temperature: 0.1,
        }
    }
}

impl Default for EvalConfig {
    /// The features probe on h with its defaults.
    fn default() -> Self {
        Self::linear(EvalMethod::LinearFeatures, EvalTraining::features())
    }
}

impl EvalConfig {
    fn linear(method: fn(LinearConfig) -> EvalMethod, training: EvalTraining) -> Self {
        Self {
            on: FeatureSource::H,
            test_subset: None,
            method: method(LinearConfig {
                train_subset: None,
                training,
                head_bn: false,
            }),
        }
    }

    /// The paper's linear evaluation on h with the official CIFAR-10 recipe
    /// ([`EvalTraining::augmented`]).
    pub fn augmented() -> Self {
        Self::linear(EvalMethod::LinearAugmented, EvalTraining::augmented())
    }

    /// The kNN vote on h with its defaults (k = 200, tau = 0.1).
    pub fn knn() -> Self {
        Self {
            method: EvalMethod::Knn(KnnConfig::default_vote()),
            ..Self::default()
        }
    }

    /// Table 3's probe of `task` on h with its defaults.
    pub fn probe(task: ProbeTask) -> Self {
        Self {
            method: EvalMethod::Probe(ProbeConfig {
                train_subset: None,
                task,
                hidden: DEFAULT_PROBE_HIDDEN,
                training: EvalTraining::features(),
            }),
            ..Self::default()
        }
    }

    /// Fine-tuning on `label_fraction` of the labels with its defaults
    /// ([`EvalTraining::fine_tune`]).
    pub fn fine_tune(label_fraction: f64) -> Self {
        Self {
            method: EvalMethod::FineTune(FineTuneConfig {
                label_fraction,
                training: EvalTraining::fine_tune(label_fraction),
                head_bn: false,
            }),
            ..Self::default()
        }
    }

    /// "linear@h", "knn@z"; the paper's augmented linear protocol is "linear-aug@h", so
    /// that reports, the dashboard and `status` never mix its numbers with the features
    /// probe's; fine-tuning names its label fraction, "fine_tune-1%@h", "fine_tune-10%@h";
    /// Table 3's probe names its task: "probe-rotation@z".
    pub fn label(&self) -> String {
        let variant = match &self.method {
            EvalMethod::Knn(_) | EvalMethod::LinearFeatures(_) => String::new(),
            EvalMethod::LinearAugmented(_) => "-aug".into(),
            EvalMethod::Probe(p) => format!("-{}", p.task.name()),
            EvalMethod::FineTune(f) => format!("-{}%", percent(f.label_fraction)),
        };
        format!("{}{variant}@{}", self.kind().name(), self.on.name())
    }

    /// The flat form's `kind`.
    pub fn kind(&self) -> EvalKind {
        match self.method {
            EvalMethod::Knn(_) => EvalKind::Knn,
            EvalMethod::LinearFeatures(_) | EvalMethod::LinearAugmented(_) => EvalKind::Linear,
            EvalMethod::Probe(_) => EvalKind::Probe,
            EvalMethod::FineTune(_) => EvalKind::FineTune,
        }
    }

    /// The flat form's `protocol`: augmented for the paper's linear evaluation, features
    /// for every other method.
    pub fn protocol(&self) -> EvalProtocol {
        match self.method {
            EvalMethod::LinearAugmented(_) => EvalProtocol::Augmented,
            _ => EvalProtocol::Features,
        }
    }

    /// The class-balanced subset of the training split it reads (`None`: all of it, or
    /// fine-tuning, which reads its label fraction).
    pub fn train_subset(&self) -> Option<usize> {
        match &self.method {
            EvalMethod::Knn(c) => c.train_subset,
            EvalMethod::LinearFeatures(c) | EvalMethod::LinearAugmented(c) => c.train_subset,
            EvalMethod::Probe(c) => c.train_subset,
            EvalMethod::FineTune(_) => None,
        }
    }

    /// How it trains, for every method but kNN.
    pub fn training(&self) -> Option<&EvalTraining> {
        match &self.method {
            EvalMethod::Knn(_) => None,
            EvalMethod::LinearFeatures(c) | EvalMethod::LinearAugmented(c) => Some(&c.training),
            EvalMethod::Probe(c) => Some(&c.training),
            EvalMethod::FineTune(c) => Some(&c.training),
        }
    }

    /// How it trains, mutably (see [`EvalConfig::training`]).
    pub fn training_mut(&mut self) -> Option<&mut EvalTraining> {
        match &mut self.method {
            EvalMethod::Knn(_) => None,
            EvalMethod::LinearFeatures(c) | EvalMethod::LinearAugmented(c) => Some(&mut c.training),
            EvalMethod::Probe(c) => Some(&mut c.training),
            EvalMethod::FineTune(c) => Some(&mut c.training),
        }
    }

    /// The flat form: every field of every method, those this method does not use at their
    /// defaults.
    pub fn flat(&self) -> FlatEvalConfig {
        FlatEvalConfig::from(self.clone())
    }
}

/// A fraction as a percentage without trailing zeros: 0.01 -> "1", 0.125 -> "12.5".
pub fn percent(fraction: f64) -> String {
    let p = (fraction * 100.0 * 1e6).round() / 1e6;
    format!("{p}")
}

/// The flat form of an evaluation, as every stored evaluation has it: the fields of every
/// method, those the method does not use at the defaults of its kind and protocol.
/// Fields added after evaluations were stored are left out at their defaults (`task`,
/// `hidden`, `momentum`, `label_fraction`), so every earlier id stays.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct FlatEvalConfig {
    pub kind: EvalKind,
    pub on: FeatureSource,
    pub protocol: EvalProtocol,
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub lr_scaling: LrScaling,
    pub batch_size: usize,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub head_bn: bool,
    pub k: usize,
    pub temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<ProbeTask>,
    /// The probe's hidden width, `None` at [`DEFAULT_PROBE_HIDDEN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    #[serde(skip_serializing_if = "is_default_momentum")]
    pub momentum: f64,
    #[serde(skip_serializing_if = "is_all_labels")]
    pub label_fraction: f64,
}

const DEFAULT_MOMENTUM: f64 = 0.9;
const ALL_LABELS: f64 = 1.0;

fn is_default_momentum(m: &f64) -> bool {
    *m == DEFAULT_MOMENTUM
}

fn is_all_labels(f: &f64) -> bool {
    *f == ALL_LABELS
}

impl FlatEvalConfig {
    /// The defaults of `kind` under `protocol` (fine_tune: at `label_fraction`).
    fn defaults_for(kind: EvalKind, protocol: EvalProtocol, label_fraction: f64) -> Self {
        let (protocol, t, label_fraction) = match (kind, protocol) {
            (EvalKind::FineTune, _) => (
                EvalProtocol::Features,
                EvalTraining::fine_tune(label_fraction),
                label_fraction,
            ),
            (_, EvalProtocol::Features) => (protocol, EvalTraining::features(), ALL_LABELS),
            (_, EvalProtocol::Augmented) => (protocol, EvalTraining::augmented(), ALL_LABELS),
        };
        let vote = KnnConfig::default_vote();
        Self {
            kind,
            on: FeatureSource::H,
            protocol,
            train_subset: None,
            test_subset: None,
            epochs: t.epochs,
            lr: t.lr,
            lr_scaling: t.lr_scaling,
            batch_size: t.batch_size,
            weight_decay: t.weight_decay,
            nesterov: t.nesterov,
            head_bn: false,
            k: vote.k,
            temperature: vote.temperature,
            task: None,
            hidden: None,
            momentum: t.momentum,
            label_fraction,
        }
    }

    fn set_training(&mut self, t: EvalTraining) {
        self.epochs = t.epochs;
        self.lr = t.lr;
        self.lr_scaling = t.lr_scaling;
        self.batch_size = t.batch_size;
        self.weight_decay = t.weight_decay;
        self.nesterov = t.nesterov;
        self.momentum = t.momentum;
    }
}

impl From<EvalConfig> for FlatEvalConfig {
    fn from(e: EvalConfig) -> Self {
        let fraction = match &e.method {
            EvalMethod::FineTune(f) => f.label_fraction,
            _ => ALL_LABELS,
        };
        let mut flat = FlatEvalConfig::defaults_for(e.kind(), e.protocol(), fraction);
        flat.on = e.on;
        flat.test_subset = e.test_subset;
        match e.method {
            EvalMethod::Knn(c) => {
                flat.train_subset = c.train_subset;
                flat.k = c.k;
                flat.temperature = c.temperature;
            }
            EvalMethod::LinearFeatures(c) | EvalMethod::LinearAugmented(c) => {
                flat.train_subset = c.train_subset;
                flat.set_training(c.training);
                flat.head_bn = c.head_bn;
            }
            EvalMethod::Probe(c) => {
                flat.train_subset = c.train_subset;
                flat.task = Some(c.task);
                flat.hidden = (c.hidden != DEFAULT_PROBE_HIDDEN).then_some(c.hidden);
                flat.set_training(c.training);
            }
            EvalMethod::FineTune(c) => {
                flat.set_training(c.training);
                flat.head_bn = c.head_bn;
            }
        }
        flat
    }
}

/// What a spec writes for an evaluation (and what a stored one holds): every setting
/// optional, filled from the defaults of its kind and protocol; the settings its method
/// does not use are ignored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct EvalConfigSpec {
    kind: EvalKind,
    on: FeatureSource,
    protocol: EvalProtocol,
    train_subset: Option<usize>,
    test_subset: Option<usize>,
    epochs: Option<usize>,
    lr: Option<f64>,
    lr_scaling: Option<LrScaling>,
    batch_size: Option<usize>,
    weight_decay: Option<f64>,
    nesterov: Option<bool>,
    head_bn: Option<bool>,
    k: Option<usize>,
    temperature: Option<f64>,
    momentum: Option<f64>,
    label_fraction: Option<f64>,
    task: Option<ProbeTask>,
    hidden: Option<usize>,
}

/// A field of an evaluation (relative to it) and what is wrong with it.
pub(crate) type EvalFieldError = (&'static str, String);

impl EvalConfig {
    /// Rejects values its method cannot run with, naming the field (relative to the
    /// evaluation). Each method states its own constraints here, beside its settings.
    pub(crate) fn validate(&self) -> Result<(), EvalFieldError> {
        match &self.method {
            EvalMethod::Knn(c) => {
                if c.k == 0 {
                    return Err(("k", "must be at least 1".into()));
                }
                require_positive("temperature", c.temperature)
            }
            EvalMethod::LinearFeatures(c) | EvalMethod::LinearAugmented(c) => c.training.validate(),
            EvalMethod::Probe(c) => {
                c.training.validate()?;
                if c.hidden == 0 {
                    return Err(("hidden", "must be at least 1".into()));
                }
                Ok(())
            }
            EvalMethod::FineTune(c) => {
                // Fine-tuning refuses a fraction outside (0, 1] and z (it fine-tunes the
                // encoder and reads h; the projection head is discarded, as in the paper's B.5).
                if !(c.label_fraction > 0.0 && c.label_fraction <= 1.0) {
                    return Err((
                        "label_fraction",
                        format!(
                            "must be in (0, 1] (0.01 and 0.1 in the paper's Table 7), got {}",
                            c.label_fraction
                        ),
                    ));
                }
                if self.on == FeatureSource::Z {
                    return Err((
                        "on",
                        "fine_tune trains a new head on h (the projection head is discarded); \
                         use on: h"
                            .into(),
                    ));
                }
                c.training.validate()
            }
        }
    }
}

impl EvalTraining {
    /// What every trained evaluation needs: momentum in [0, 1), at least one epoch and one
    /// image a batch, a positive learning rate.
    fn validate(&self) -> Result<(), EvalFieldError> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err((
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if self.epochs == 0 {
            return Err(("epochs", "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        require_positive("lr", self.lr)
    }
}

/// A finite number above 0, or the field and what is wrong with it.
pub(crate) fn require_positive(field: &'static str, v: f64) -> Result<(), EvalFieldError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err((field, format!("must be a positive number, got {v}")))
    }
}

impl EvalConfigSpec {
    /// The evaluation this spec entry means, or the field that makes it none.
    pub(crate) fn resolve(self) -> Result<EvalConfig, EvalFieldError> {
        let fraction = self.label_fraction.unwrap_or(ALL_LABELS);
        let d = FlatEvalConfig::defaults_for(self.kind, self.protocol, fraction);
        let training = EvalTraining {
            epochs: self.epochs.unwrap_or(d.epochs),
            lr: self.lr.unwrap_or(d.lr),
            lr_scaling: self.lr_scaling.unwrap_or(d.lr_scaling),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            nesterov: self.nesterov.unwrap_or(d.nesterov),
            momentum: self.momentum.unwrap_or(d.momentum),
        };
        let linear = || LinearConfig {
            train_subset: self.train_subset,
            training: training.clone(),
            head_bn: self.head_bn.unwrap_or(d.head_bn),
        };
        let method = match (self.kind, self.protocol) {
            (EvalKind::Linear, EvalProtocol::Features) => EvalMethod::LinearFeatures(linear()),
            (EvalKind::Linear, EvalProtocol::Augmented) => EvalMethod::LinearAugmented(linear()),
            (EvalKind::Knn, EvalProtocol::Features) => EvalMethod::Knn(KnnConfig {
                train_subset: self.train_subset,
                k: self.k.unwrap_or(d.k),
                temperature: self.temperature.unwrap_or(d.temperature),
            }),
            (EvalKind::Knn, protocol) => {
                return Err((
                    "protocol",
                    format!(
                        "{} applies to linear evaluation; kNN reads the extracted features \
                         (remove protocol or use kind: linear)",
                        protocol.name()
                    ),
                ))
            }
            (EvalKind::Probe, protocol) => {
                let Some(task) = self.task else {
                    let tasks: Vec<&str> = ProbeTask::ALL.iter().map(|t| t.name()).collect();
                    return Err((
                        "task",
                        format!(
                            "a probe predicts a transformation: add task: one of {}",
                            tasks.join(", ")
                        ),
                    ));
                };
                if protocol != EvalProtocol::Features {
                    return Err((
                        "protocol",
                        "the probe reads features extracted once; remove protocol".into(),
                    ));
                }
                EvalMethod::Probe(ProbeConfig {
                    train_subset: self.train_subset,
                    task,
                    hidden: self.hidden.unwrap_or(DEFAULT_PROBE_HIDDEN),
                    training,
                })
            }
            // Always augmented crops of the labelled subset through the whole encoder: the
            // linear protocols' switch means nothing to it.
            (EvalKind::FineTune, _) => {
                if self.train_subset.is_some() {
                    return Err((
                        "train_subset",
                        "fine_tune trains on a class-balanced label_fraction of the training \
                         split; remove train_subset and set label_fraction"
                            .into(),
                    ));
                }
                EvalMethod::FineTune(FineTuneConfig {
                    label_fraction: fraction,
                    training,
                    head_bn: self.head_bn.unwrap_or(d.head_bn),
                })
            }
        };
        Ok(EvalConfig {
            on: self.on,
            test_subset: self.test_subset,
            method,
        })
    }
}

impl TryFrom<EvalConfigSpec> for EvalConfig {
    type Error = String;

    fn try_from(spec: EvalConfigSpec) -> Result<Self, String> {
        spec.resolve()
            .map_err(|(field, message)| format!("{field}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> EvalConfig {
        serde_json::from_value(v).unwrap()
    }

    fn field_error(v: serde_json::Value) -> &'static str {
        let spec: EvalConfigSpec = serde_json::from_value(v).unwrap();
        spec.resolve().expect_err("must be refused").0
    }

    #[test]
    fn settings_a_method_does_not_use_resolve_away() {
        let knn = json!({"kind": "knn", "lr": 0.5, "epochs": 3, "head_bn": true, "hidden": 64,
                         "task": "rotation", "label_fraction": 0.1, "momentum": 0.5});
        assert_eq!(spec(knn), EvalConfig::knn());
        assert_eq!(
            spec(json!({"k": 5, "temperature": 0.3})),
            EvalConfig::default()
        );
        let probe = json!({"kind": "probe", "task": "sobel", "hidden": 512, "head_bn": true});
        assert_eq!(spec(probe), EvalConfig::probe(ProbeTask::Sobel));
        let fine = json!({"kind": "fine_tune", "label_fraction": 0.1, "protocol": "augmented"});
        assert_eq!(spec(fine), EvalConfig::fine_tune(0.1));
        // The flat form writes the defaults for them, and leaves out the late fields there.
        let flat = serde_json::to_value(EvalConfig::probe(ProbeTask::Sobel)).unwrap();
        assert_eq!(flat["k"], json!(200));
        assert_eq!(flat["task"], json!("sobel"));
        for late in ["hidden", "momentum", "label_fraction"] {
            assert!(flat.get(late).is_none(), "{late} in {flat}");
        }
    }

    #[test]
    fn each_method_defaults_per_protocol_and_the_flat_form_reads_back() {
        let aug = spec(json!({"protocol": "augmented", "on": "z"}));
        let EvalMethod::LinearAugmented(c) = &aug.method else {
            panic!("{aug:?}")
        };
        assert_eq!(c.training, EvalTraining::augmented());
        assert_eq!(c.training.peak_lr(), 0.2);
        assert_eq!(EvalTraining::fine_tune(0.01).epochs, 60);
        assert_eq!(EvalTraining::fine_tune(0.1).epochs, 30);
        for eval in [aug, EvalConfig::knn(), EvalConfig::fine_tune(0.1)] {
            assert_eq!(spec(serde_json::to_value(&eval).unwrap()), eval);
        }
    }

    #[test]
    fn a_method_that_cannot_be_built_names_its_field() {
        assert_eq!(field_error(json!({"kind": "probe"})), "task");
        let probe = json!({"kind": "probe", "task": "rotation", "protocol": "augmented"});
        assert_eq!(field_error(probe), "protocol");
        assert_eq!(
            field_error(json!({"kind": "knn", "protocol": "augmented"})),
            "protocol"
        );
        let fine = json!({"kind": "fine_tune", "train_subset": 100});
        assert_eq!(field_error(fine), "train_subset");
        // A stored config that cannot be built says which field, through serde too.
        let e = serde_json::from_value::<EvalConfig>(json!({"kind": "probe"})).unwrap_err();
        assert!(e.to_string().starts_with("task: "), "{e}");
    }

    #[test]
    fn labels_name_the_method_and_what_it_reads() {
        let z = |e: EvalConfig| EvalConfig {
            on: FeatureSource::Z,
            ..e
        };
        let labels: Vec<String> = [
            EvalConfig::default(),
            z(EvalConfig::augmented()),
            EvalConfig::knn(),
            z(EvalConfig::probe(ProbeTask::Rotation)),
            EvalConfig::fine_tune(0.125),
        ]
        .iter()
        .map(EvalConfig::label)
        .collect();
        let want = [
            "linear@h",
            "linear-aug@z",
            "knn@h",
            "probe-rotation@z",
            "fine_tune-12.5%@h",
        ];
        assert_eq!(labels, want);
    }
}
