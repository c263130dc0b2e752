//! Plain configuration structs of the SimCLR core: the one vocabulary shared by the spec
//! language (`spec` resolves YAML into these) and the trainer (`ml` consumes them).
//!
//! Every field has a default, so a spec lists only what differs. Defaults follow the paper's
//! CIFAR-10 adaptation (Chen et al. 2020, appendix B.9) and the official repository's
//! CIFAR-10 recipe (ResNet-18, LARS, base LR 1.0 with linear scaling, weight decay 1e-4,
//! temperature 0.5, colour strength 0.5, no blur).

use serde::{Deserialize, Serialize};

/// Which dataset a run trains and evaluates on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    #[default]
    Cifar10,
    Cifar100,
    /// A directory with one sub-directory per class of PNG/JPEG files.
    ImageFolder,
}

/// An image folder's training resolution when `dataset.image_size` is not given.
pub const DEFAULT_FOLDER_IMAGE_SIZE: usize = 64;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    pub name: DatasetName,
    /// Extracted directory or `.tar.gz` archive. `None`: looked up in the data directory
    /// (`--data-dir`, `SWEEP_DATA_DIR`), which the scheduler fills in before training.
    pub path: Option<String>,
    /// Class-balanced, seeded subset of the training split used for pretraining
    /// (`None`: the whole split).
    pub train_subset: Option<usize>,
    /// image_folder only: the training resolution. Every image (both splits) is resized so
    /// that its shorter side is `image_size` (bilinear, antialiased), then centre-cropped to
    /// `image_size x image_size` (torchvision `Resize(s)` + `CenterCrop(s)`). `None`:
    /// [`DEFAULT_FOLDER_IMAGE_SIZE`]. The paper trains ImageNet at 224 px; 64 keeps a few
    /// hundred images CPU-sized. CIFAR: must be `None` (its images are 32x32).
    pub image_size: Option<usize>,
    /// image_folder without `train/` and `test/` directories: the fraction of each class
    /// held out as the test split (rounded per class, at least one image on each side).
    pub test_fraction: f64,
    /// Seed of that held-out split: a property of the dataset, not of the run, so every
    /// run of a sweep (all its seeds) is evaluated on the same test images.
    pub split_seed: u64,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            name: DatasetName::Cifar10,
            path: None,
            train_subset: None,
            image_size: None,
            test_fraction: 0.2,
            split_seed: 0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// A small 4-block ConvNet for quick CPU runs (channels `16 * width`, doubling per block).
    Convnet,
    #[default]
    Resnet18,
    Resnet34,
    Resnet50,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 3x3 stride-1 conv, no max-pool (appendix B.9, for 32x32 images).
    #[default]
    Cifar,
    /// 7x7 stride-2 conv + 3x3 stride-2 max-pool (ImageNet).
    Imagenet,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    pub arch: Arch,
    pub stem: Stem,
    /// Width multiplier (1, 2 or 4 in the paper's Figure 7).
    pub width: usize,
    /// Initialise the scale (gamma) of the last BatchNorm of every residual block to 0, so
    /// each block starts as its shortcut (the official code's `init_zero=True` in
    /// `resnet.py`'s `residual_block` / `bottleneck_block`; default, as there). `false`: gamma 1
    /// (torchvision's default). The ConvNet has no residual blocks and ignores it.
    pub zero_init_residual: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Resnet18,
            stem: Stem::Cifar,
            width: 1,
            zero_init_residual: true,
        }
    }
}

/// Projection head g(.) of section 4.2 / Figure 8.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// z = h (no projection; `out_dim` is meaningless and must be absent).
    None,
    /// z = W h.
    Linear,
    /// z = W2 relu(BN(W1 h)) (`layers` linear layers in all).
    #[default]
    Nonlinear,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeadConfig {
    pub kind: HeadKind,
    /// Hidden width of the nonlinear head; `None`: the representation's dimension.
    pub hidden: Option<usize>,
    /// Output dimension of z; `None` only (and always) for `kind: none`.
    pub out_dim: Option<usize>,
    /// Number of linear layers of the nonlinear head (2 in the paper).
    pub layers: usize,
    /// BatchNorm on the head's output layer (linear and nonlinear heads): scale only, no
    /// shift, no ReLU. The official v1 code does this (`model_util.projection_head` calls
    /// `linear_layer(..., use_bias=False, use_bn=True)` for the last layer, whose BN has
    /// `center=use_bias`, i.e. no beta); default, as there. `false`: the paper's plain W2.
    pub output_bn: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            kind: HeadKind::Nonlinear,
            hidden: None,
            out_dim: Some(128),
            layers: 2,
            output_bn: true,
        }
    }
}

/// The contrastive objectives of Table 2 / Table 4.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    #[default]
    NtXent,
    NtLogistic,
    Margin,
}

/// Which negatives an anchor is contrasted with (Table 4 / appendix B.10).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// The other 2(N-1) views of the batch, both augmentation views: the paper's Algorithm 1
    /// and the official code (`logits_ab` and `logits_aa` in `objective.py`).
    #[default]
    BothViews,
    /// Only the N-1 other images of the view the positive comes from (`logits_ab` alone):
    /// what the paper's Table 4 comparison does ("we only consider the negatives from one
    /// augmentation view (instead of both sides)", appendix B.10).
    OneView,
}

/// How NT-Logistic and the margin loss combine an anchor's negative terms; the paper and
/// the official code do not say (Table 2 defines one term per (u, v+, v-) triple).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum NegativeWeighting {
    /// The mean over the anchor's Table 2 triples (u, v+, v-): the positive term once, the
    /// negative terms averaged, so both carry the same total weight.
    #[default]
    Mean,
    /// The positive term once plus every negative term (word2vec's negative sampling, the
    /// source of the logistic loss that the paper cites).
    Sum,
}

/// Which of the semi-hard negatives an anchor uses (`semi_hard: true`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum SemiHardPick {
    /// One negative per anchor: the closest to the anchor among those farther than its
    /// positive (section 4.2: "closest in distance, but farther than positive examples";
    /// TensorFlow's `triplet_semihard_loss`).
    #[default]
    Closest,
    /// Every negative farther than the positive (and, for the margin loss, within the
    /// margin): FaceNet's semi-hard band.
    Band,
}

/// What an anchor uses when none of its negatives is semi-hard (all are at least as
/// similar as its positive); the paper does not say.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum SemiHardFallback {
    /// Its least similar negative (TensorFlow's `triplet_semihard_loss`).
    #[default]
    LeastSimilar,
    /// No negative term: the anchor keeps only its positive term (NT-Logistic) or adds
    /// nothing (margin).
    None,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    pub kind: LossKind,
    /// tau of NT-Xent / NT-Logistic (Table 5).
    pub temperature: f64,
    /// l2-normalise z before the similarity (Table 5).
    pub l2_norm: bool,
    /// m of the margin triplet loss.
    pub margin: f64,
    /// Which negatives each anchor has. Default: both views (Algorithm 1, official code);
    /// the paper's Table 4 used one view (appendix B.10), as `sweeps/losses.yaml` does.
    pub negatives: Negatives,
    /// NT-Logistic and margin: mean (default) or sum of an anchor's negative terms; the
    /// paper does not say (see [`NegativeWeighting`]).
    pub negative_weighting: NegativeWeighting,
    /// Semi-hard negative mining (section 4.2, Table 4) for nt_logistic and margin.
    pub semi_hard: bool,
    /// Semi-hard: the closest semi-hard negative (default, the paper's words) or all of them.
    pub semi_hard_pick: SemiHardPick,
    /// Semi-hard: an anchor without semi-hard negative uses its least similar negative
    /// (default, TensorFlow's convention) or none; the paper does not say.
    pub semi_hard_fallback: SemiHardFallback,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            kind: LossKind::NtXent,
            temperature: 0.5,
            l2_norm: true,
            margin: 1.0,
            negatives: Negatives::BothViews,
            negative_weighting: NegativeWeighting::Mean,
            semi_hard: false,
            semi_hard_pick: SemiHardPick::Closest,
            semi_hard_fallback: SemiHardFallback::LeastSimilar,
        }
    }
}

/// Figure 5's seven transformations (appendix A; docs/ARCHITECTURE.md#ml-core), and the
/// horizontal flip on its own.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AugOp {
    /// Random resized crop (area U(`crop_min_scale`, 1), log-uniform aspect 3/4..4/3),
    /// then a horizontal flip with p = 0.5 unless `crop_flip: false` (appendix A: "random
    /// crop and resize (with random flip)").
    Crop,
    Cutout,
    /// Colour distortion of strength `color_strength` (jitter p = 0.8, grayscale p = 0.2).
    Color,
    Sobel,
    /// Additive gaussian noise.
    Noise,
    /// Gaussian blur, p = 0.5, sigma U(0.1, 2.0), kernel 10% of the side.
    Blur,
    /// Rotation by 90, 180 or 270 degrees.
    Rotate,
    /// Horizontal flip with p = 0.5 (the official code's `random_flip_left_right`, a
    /// separate step after the crop in `preprocess_for_train`).
    Flip,
}

impl AugOp {
    /// The seven transformations of Figure 5, in the figure's order.
    pub const FIGURE5: [AugOp; 7] = [
        AugOp::Crop,
        AugOp::Cutout,
        AugOp::Color,
        AugOp::Sobel,
        AugOp::Noise,
        AugOp::Blur,
        AugOp::Rotate,
    ];

    /// Every op: Figure 5's seven, then flip.
    pub const ALL: [AugOp; 8] = {
        let mut all = [AugOp::Flip; 8];
        let mut i = 0;
        while i < Self::FIGURE5.len() {
            all[i] = Self::FIGURE5[i];
            i += 1;
        }
        all
    };

    pub fn name(self) -> &'static str {
        match self {
            AugOp::Crop => "crop",
            AugOp::Cutout => "cutout",
            AugOp::Color => "color",
            AugOp::Sobel => "sobel",
            AugOp::Noise => "noise",
            AugOp::Blur => "blur",
            AugOp::Rotate => "rotate",
            AugOp::Flip => "flip",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum AugProtocol {
    /// SimCLR's pipeline: both views get `ops`, each with its own randomness.
    #[default]
    Symmetric,
    /// Figure 5's ablation as the paper runs it (section 3): a random resized crop x_i
    /// (no flip, area U(`crop_min_scale`, 1)), drawn afresh every step, is shared by both
    /// branches; `ops` in order on one branch, the other branch is x_i itself. A `crop`
    /// in `ops` is a second random crop (and flip) of x_i.
    OneBranch,
    /// Figure 5's ablation without the shared crop: `ops` in order on the raw image, the
    /// other view the raw image (the same every epoch). This crate's protocol before the
    /// paper's; kept to compare with runs made under it.
    OneBranchRaw,
}

/// Where a pretrain's training views are augmented (`augment.on`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum AugmentOn {
    /// On the host: `ml::augment` on u8 images, by the loader's background threads.
    #[default]
    Host,
    /// On the run's device: the training images held there as u8 and augmented by tensor
    /// ops (`ml::augment::device`), parameters drawn by the same code from the same streams
    /// as on the host. The views equal the host's up to float rounding (a pixel may differ
    /// by one level), so it is part of the run id. The official code augments on the
    /// accelerator too (TF ops in the input pipeline).
    Device,
}

impl AugmentOn {
    fn is_host(&self) -> bool {
        *self == AugmentOn::Host
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub protocol: AugProtocol,
    /// Applied in this order.
    pub ops: Vec<AugOp>,
    /// Colour distortion strength s (1.0 ImageNet, 0.5 CIFAR-10).
    pub color_strength: f64,
    /// Smallest crop area fraction of random resized crop.
    pub crop_min_scale: f64,
    /// Whether `crop` ends with a horizontal flip (p = 0.5). Appendix A's crop is "random
    /// crop and resize (with random flip)", and the official `preprocess_for_train` flips
    /// right after cropping; `false` makes `crop` a crop only, so that `flip` can be an op
    /// of its own (`ops: [crop, flip, color]` is then the official pipeline spelled out).
    pub crop_flip: bool,
    /// Where the views are made: `host` (default) or `device` (see [`AugmentOn`]). Left
    /// out of the canonical JSON at `host`, so every run made before the field existed
    /// keeps its id.
    #[serde(skip_serializing_if = "AugmentOn::is_host")]
    pub on: AugmentOn,
    /// Transformations added to every view after `ops`, each independently with its own
    /// probability (Table 3's pretraining: "other than crop and color augmentation, we
    /// additionally and independently add rotation (one of {0, 90, 180, 270}), Gaussian
    /// noise, and Sobel filtering transformation during the pretraining"; the paper gives
    /// no probabilities). Each op is Figure 5's (`rotate` turns by 90, 180 or 270 degrees,
    /// so `p: 0.75` gives the paper's uniform one of {0, 90, 180, 270}; `noise` sigma
    /// U(0, 0.1) x 255; `sobel` the filtered luma). Empty by default and then left out of
    /// the canonical JSON, so every run made before the field existed keeps its id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraOp>,
}

/// One of [`AugmentConfig::extra`]: `op` applied with probability `p`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtraOp {
    pub op: AugOp,
    /// In [0, 1].
    pub p: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            protocol: AugProtocol::Symmetric,
            ops: vec![AugOp::Crop, AugOp::Color],
            color_strength: 0.5,
            crop_min_scale: 0.08,
            crop_flip: true,
            on: AugmentOn::Host,
            extra: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    #[default]
    Lars,
    Adamw,
}

/// How the base learning rate scales with the batch size (appendix B.1, Figure 9).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrScaling {
    /// lr = base * B / 256 (the paper's 0.3 x B/256 with base 0.3).
    #[default]
    Linear,
    /// lr = base * sqrt(B) (the paper's 0.075 x sqrt(B) with base 0.075).
    Sqrt,
    /// lr = base.
    None,
}

impl LrScaling {
    /// The peak learning rate for `base` at batch size `batch_size`.
    pub fn apply(self, base: f64, batch_size: usize) -> f64 {
        match self {
            LrScaling::Linear => base * batch_size as f64 / 256.0,
            LrScaling::Sqrt => base * (batch_size as f64).sqrt(),
            LrScaling::None => base,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Base learning rate, scaled by `lr_scaling`.
    pub lr: f64,
    pub lr_scaling: LrScaling,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// LARS trust coefficient (eta).
    pub trust_coefficient: f64,
    /// Adam betas and epsilon (AdamW only).
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Linear warmup length in epochs (may be fractional), then cosine decay if `cosine`.
    pub warmup_epochs: f64,
    pub cosine: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Lars,
            lr: 1.0,
            lr_scaling: LrScaling::Linear,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
            trust_coefficient: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_epochs: 10.0,
            cosine: true,
        }
    }
}

impl OptimizerConfig {
    /// Peak learning rate after scaling for `batch_size`.
    pub fn peak_lr(&self, batch_size: usize) -> f64 {
        self.lr_scaling.apply(self.lr, batch_size)
    }
}

/// How the conv and linear weights of the encoder and projection head are drawn
/// (`PretrainConfig::init`). BatchNorm starts at gamma 1 (0 where
/// `EncoderConfig::zero_init_residual` says so), beta 0, running mean 0, variance 1 in all.
///
/// Under BatchNorm with weight decay the scale of the initial weights sets the effective
/// learning rate of the scale-invariant weights, so this changes what a run learns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// PyTorch's default (`nn.Conv2d` / `nn.Linear.reset_parameters`: Kaiming-uniform with
    /// a = sqrt(5)): weights U(+-1/sqrt(fan_in)), biases U(+-1/sqrt(fan_in)).
    ///
    /// The default, for parity with PyTorch: on the twin (bench/twin.sh: the same ConvNet,
    /// recipe and evaluation in PyTorch and here, 3 seeds) it is the only scheme whose
    /// learning matches PyTorch's: median final loss 5.457 against PyTorch's 5.468, per-epoch
    /// losses within 0.06, linear top-1 44.1% against 43.9%. `kaiming_normal` ends lower
    /// (5.401) and higher (47.7%) on that 80-step budget: its weights are about 2.4x larger,
    /// so under BatchNorm and weight decay its steps are smaller, which suits a short run;
    /// on a longer recipe (10k images, 20 epochs, one seed) PyTorch's scheme led instead
    /// (60.0% against 57.5%). Numbers: docs/ARCHITECTURE.md#initialisation.
    #[default]
    Pytorch,
    /// The official TF v1 code: conv kernels `tf.variance_scaling_initializer()` (scale 1,
    /// fan_in, truncated normal: N(0, (1/sqrt(fan_in) / 0.8796)^2) cut at 2 standard
    /// deviations, so the drawn std is 1/sqrt(fan_in)); dense kernels of the head
    /// `random_normal_initializer(stddev=0.01)` (`model_util.linear_layer`); biases 0.
    Official,
    /// candle_nn's default (this crate before the option existed): weights normal with std
    /// sqrt(2/fan_in), biases U(+-1/sqrt(fan_in)).
    KaimingNormal,
}

/// How a pretrain stage trains its encoder (`PretrainConfig::method`, part of the run id).
///
/// A field of the pretrain rather than a stage kind of its own: a supervised baseline is,
/// to the run graph, exactly what a SimCLR pretrain is (a producer of an encoder
/// checkpoint that the same linear and kNN evaluation stages read), with the same
/// dataset, encoder, augmentation, optimizer, schedule, checkpoint and resume machinery.
/// Only the objective of a step differs. A new `vocab::StageKind` is for stages that
/// consume an encoder in a new way (docs/ARCHITECTURE.md#stage-kinds).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// SimCLR (Algorithm 1): two augmented views per image, the projection head, the
    /// contrastive loss.
    #[default]
    Simclr,
    /// The supervised baseline of Table 1 and Figure 7: the same encoder with a linear
    /// classifier on h (`classifier.weight`, `classifier.bias`; the official code's
    /// supervised head, `linear_layer(num_classes, use_bias=True, use_bn=False)`), trained
    /// with softmax cross-entropy on the labels; one view per image, augmented by the same
    /// `augment` config (the paper trains its supervised ResNet-50 under the same colour
    /// distortions). No projection head and no contrastive loss: `head` and `loss` are
    /// reset to their defaults and evaluations read h.
    Supervised,
}

impl Method {
    fn is_simclr(&self) -> bool {
        *self == Method::Simclr
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Simclr => "simclr",
            Method::Supervised => "supervised",
        }
    }
}

/// The arithmetic of a pretrain's forward and backward passes (`PretrainConfig::precision`,
/// part of the run id). The paper's TPU runs used bfloat16 activations with float32
/// variables (the official code's `--use_tpu` path casts to bfloat16 inside the model);
/// PyTorch users on GPUs train with autocast.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// float32 everywhere (default; the only choice on the CPU).
    #[default]
    F32,
    /// float32 tensors, matrix products on CUDA tensor cores in TF32 (10-bit mantissa
    /// inputs, float32 accumulation): PyTorch's `allow_tf32`. CUDA only.
    Tf32,
    /// Encoder convolutions and activations in bfloat16, with float32 master weights (the
    /// optimizer updates float32 variables; each step casts them), BatchNorm in float32
    /// (batch and running statistics), the head and the loss in float32: PyTorch's autocast.
    /// CUDA only.
    Bf16,
}

impl Precision {
    fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Which implementation of the encoder's convolutions and training-mode BatchNorm a CUDA
/// pretrain uses (`PretrainConfig::conv_impl`; the CPU has its own kernels and ignores it).
/// Part of the run id away from `auto`, since the two paths round differently.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConvImpl {
    /// cuDNN (`ml::cuda`) when the worker's self-check of those ops passed on this device,
    /// else candle's ops, with a warning (default).
    #[default]
    Auto,
    /// cuDNN for all three convolution directions and BatchNorm; the stage fails if the
    /// self-check did not pass on this device.
    Cudnn,
    /// candle's ops: its cuDNN forward convolution, its own kernels for the gradients and
    /// BatchNorm as elementwise ops (the path before `ml::cuda` existed).
    Candle,
}

impl ConvImpl {
    fn is_auto(&self) -> bool {
        *self == ConvImpl::Auto
    }

    pub fn name(self) -> &'static str {
        match self {
            ConvImpl::Auto => "auto",
            ConvImpl::Cudnn => "cudnn",
            ConvImpl::Candle => "candle",
        }
    }
}

/// Everything one pretraining run needs, and nothing about where or how it is executed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// SimCLR (default) or the supervised baseline; see [`Method`]. Left out of the
    /// canonical JSON when it is SimCLR, so every run made before the field existed keeps
    /// its id (and its stored results).
    #[serde(skip_serializing_if = "Method::is_simclr")]
    pub method: Method,
    pub dataset: DatasetConfig,
    pub encoder: EncoderConfig,
    pub head: HeadConfig,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
    pub optimizer: OptimizerConfig,
    /// Weight initialisation of encoder and head (part of the run id). On `PretrainConfig`
    /// rather than `EncoderConfig` because it sets the head's dense layers too (they differ
    /// from the convolutions under `official`).
    pub init: InitScheme,
    /// N: the number of images per step (2N views, 2(N-1) negatives per positive pair).
    pub batch_size: usize,
    /// Training epochs; 0 is the random-initialisation baseline (untrained weights).
    pub epochs: usize,
    pub seed: u64,
    /// Write a checkpoint every this many epochs (resume granularity; not part of RunId).
    pub checkpoint_every: usize,
    /// f32 (default), tf32 or bf16 (see [`Precision`]; the last two need CUDA). Left out of
    /// the canonical JSON at f32, so every run made before the field existed keeps its id.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// auto (default), cudnn or candle (see [`ConvImpl`]). Left out of the canonical JSON
    /// at auto, so every run made before the field existed keeps its id.
    #[serde(skip_serializing_if = "ConvImpl::is_auto")]
    pub conv_impl: ConvImpl,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Simclr,
            dataset: DatasetConfig::default(),
            encoder: EncoderConfig::default(),
            head: HeadConfig::default(),
            loss: LossConfig::default(),
            augment: AugmentConfig::default(),
            optimizer: OptimizerConfig::default(),
            init: InitScheme::default(),
            batch_size: 512,
            epochs: 1000,
            seed: 0,
            checkpoint_every: 1,
            precision: Precision::F32,
            conv_impl: ConvImpl::Auto,
        }
    }
}

mod eval;
pub use eval::*;
