//! Base encoders f(.) of SimCLR (section 2.1): ResNet-18/34 (BasicBlock), ResNet-50
//! (Bottleneck, expansion 4) with the CIFAR stem (appendix B.9: 3x3 stride-1 conv, no
//! max-pool) or the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool), width
//! multiplier 1/2/4 (Figure 7; it scales every block and the stem, as the official code),
//! and a small 4-block ConvNet for quick CPU runs. [`param_count`] counts an encoder's
//! parameters from its config alone (the x axis of Figure 7).
//! h = global average pool of the last feature map, `[B, D]`.
//!
//! Layout and variable names follow candle-transformers' `models/resnet.rs` (torchvision):
//! `conv1`, `bn1`, `layer{1..4}.{j}.conv{1,2,3}`, `.bn{1,2,3}`, `.downsample.{0,1}`. Convs
//! have no bias (BatchNorm follows). Like the official code, the stem also scales with the
//! width multiplier (64 * width channels).
//!
//! Conv and training-mode BatchNorm(+ReLU) go through `crate::ml::kernels` on the CPU unless
//! `Kernels::Candle` is selected; on CUDA through `crate::ml::cuda`'s cuDNN ops when the
//! stage chose them (`conv_impl`, after the device's self-check), else through candle's
//! ops. In training each block is one fused op on the CPU path: the ConvNet's
//! conv-BN-ReLU-avgpool and ResNet's stem ([`kernels::conv_bn_train`]), and each whole
//! residual block ([`kernels::residual_block_train`]).
//!
//! BatchNorm is candle_nn's (`forward_t(x, train)`: batch statistics and a running-average
//! update with momentum 0.1 in training mode, running statistics in eval mode); its running
//! mean/var are VarMap entries so checkpoints carry them.

use candle_core::{DType, Module, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;
use candle_nn::{batch_norm, conv2d_no_bias, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig};

use crate::ml::config::{Arch, EncoderConfig, Stem};
use crate::ml::cuda;
use crate::ml::kernels::{self, Kernels};

/// The input channels of every encoder a pretrain builds: images are decoded as RGB
/// (CIFAR and image folders alike).
pub const IN_CHANNELS: usize = 3;

/// BatchNorm as in PyTorch / the official code (eps 1e-5, momentum 0.1, affine).
pub(crate) fn bn(c: usize, vb: VarBuilder) -> Result<BatchNorm> {
    batch_norm(
        c,
        BatchNormConfig {
            eps: 1e-5,
            remove_mean: true,
            affine: true,
            momentum: 0.1,
        },
        vb,
    )
}

/// [`bn`] with its scale initialised to `gamma` (the official `batch_norm_relu(init_zero)`)
/// and, when `center` is false, no shift: beta is a constant 0 outside the VarMap, so it is
/// neither trained nor saved (the official `center=False`).
pub(crate) fn bn_with(c: usize, gamma: f64, center: bool, vb: VarBuilder) -> Result<BatchNorm> {
    use candle_nn::Init;
    let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.0))?;
    let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.0))?;
    let weight = vb.get_with_hints(c, "weight", Init::Const(gamma))?;
    let bias = if center {
        vb.get_with_hints(c, "bias", Init::Const(0.0))?
    } else {
        Tensor::zeros(c, vb.dtype(), vb.device())?
    };
    BatchNorm::new_with_momentum(c, running_mean, running_var, weight, bias, 1e-5, 0.1)
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        dilation: 1,
        groups: 1,
        cudnn_fwd_algo: None,
    };
    conv2d_no_bias(c_in, c_out, k, cfg, vb)
}

/// 3x3 stride-2 max-pool with padding 1 (torch `max_pool2d(x, 3, 2, 1)`), written as a max
/// over shifted strided slices so it has a backward pass (candle 0.11's max-pool backward
/// only supports kernel == stride; docs/ARCHITECTURE.md#cpu-kernels). Separable: max over
/// the 3 row offsets, then over the 3 column offsets. Padding is -inf, so padded cells
/// never win. `[B, C, H, W] -> [B, C, floor((H - 1) / 2) + 1, floor((W - 1) / 2) + 1]`.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let x = max_3_s2_along(x, 2)?;
    max_3_s2_along(&x, 3)
}

fn max_3_s2_along(x: &Tensor, dim: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    if n == 0 {
        candle_core::bail!("max-pool over an empty dimension");
    }
    let out = (n - 1) / 2 + 1;
    // Padded length 2 * out + 2 >= n + 2 (one -inf cell before, one or two after).
    let after = 2 * out + 1 - n;
    let mut pad_shape = x.dims().to_vec();
    pad_shape[dim] = 1;
    let before_t =
        Tensor::full(f32::NEG_INFINITY, pad_shape.clone(), x.device())?.to_dtype(x.dtype())?;
    pad_shape[dim] = after;
    let after_t = Tensor::full(f32::NEG_INFINITY, pad_shape, x.device())?.to_dtype(x.dtype())?;
    let padded = Tensor::cat(&[&before_t, x, &after_t], dim)?;
    let mut acc: Option<Tensor> = None;
    for off in 0..3u32 {
        let idx: Vec<u32> = (0..out as u32).map(|i| off + 2 * i).collect();
        let idx = Tensor::new(idx.as_slice(), x.device())?;
        let s = padded.index_select(&idx, dim)?;
        acc = Some(match acc {
            None => s,
            Some(a) => a.maximum(&s)?,
        });
    }
    acc.ok_or_else(|| candle_core::Error::Msg("unreachable".into()))
}

/// Whether this forward takes the fast CPU kernels (f32 / f64 on the CPU, `Kernels::Fast`).
pub(crate) fn use_fast(x: &Tensor) -> bool {
    x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && kernels::kernels() == Kernels::Fast
}

/// ReLU with PyTorch's gradient: none where the input is exactly 0. candle's own `relu`
/// passes it there (its backward is `ge(0)`), and exact zeros are common: with
/// zero-initialised residual BatchNorm a block's sum before its ReLU is exactly 0 wherever
/// its shortcut is, at step 0, so candle ops (CUDA) would train that BatchNorm unlike
/// PyTorch and our CPU kernels. The same values forward; candle's own where no gradient
/// is tracked.
pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return x.relu();
    }
    x.gt(0.0)?.where_cond(x, &x.zeros_like()?)
}

/// BN (training statistics if `train`) then ReLU if `relu`, fused on the fast path; the
/// caller has checked [`use_fast`].
pub(crate) fn bn_relu(x: &Tensor, bn: &BatchNorm, train: bool, relu: bool) -> Result<Tensor> {
    if train {
        return kernels::batch_norm_train(x, bn, relu);
    }
    let y = bn.forward_t(x, false)?;
    if relu {
        self::relu(&y)
    } else {
        Ok(y)
    }
}

/// conv -> BN (-> ReLU). On CPU with [`kernels::Kernels::Fast`] the conv is
/// [`kernels::conv2d`] and training-mode BN(+ReLU) is [`kernels::batch_norm_train`]; on
/// CUDA `cuda::stage_ops` when the stage chose cuDNN's ops; else candle's ops.
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
    stride: usize,
    pad: usize,
}

impl ConvBn {
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        vb_conv: VarBuilder,
        vb_bn: VarBuilder,
    ) -> Result<Self> {
        Self::with_gamma(c_in, c_out, k, stride, 1.0, vb_conv, vb_bn)
    }

    /// [`Self::new`] with the BatchNorm scale initialised to `gamma`.
    fn with_gamma(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        gamma: f64,
        vb_conv: VarBuilder,
        vb_bn: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: conv(c_in, c_out, k, stride, vb_conv)?,
            bn: bn_with(c_out, gamma, true, vb_bn)?,
            stride,
            pad: k / 2,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        self.forward_pool_t(x, train, relu, false)
    }

    /// Side of the conv output along one axis of size `n`.
    fn out_side(&self, n: usize) -> usize {
        let k = self.conv.weight().dim(3).unwrap_or(1);
        (n + 2 * self.pad).saturating_sub(k) / self.stride + 1
    }

    /// [`Self::forward_t`], then a 2x2 average pool if `pool`; in training on the fast path
    /// all of it is one fused op ([`kernels::conv_bn_train`]).
    fn forward_pool_t(&self, x: &Tensor, train: bool, relu: bool, pool: bool) -> Result<Tensor> {
        if use_fast(x) && train && kernels::fused_blocks() {
            return kernels::conv_bn_train(
                x,
                self.conv.weight(),
                &self.bn,
                self.stride,
                self.pad,
                relu,
                pool,
            );
        }
        let y = self.forward_unpooled_t(x, train, relu)?;
        if pool {
            y.avg_pool2d(2)
        } else {
            Ok(y)
        }
    }

    fn forward_unpooled_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if use_fast(x) {
            let y = kernels::conv2d(x, self.conv.weight(), self.pad, self.stride)?;
            return bn_relu(&y, &self.bn, train, relu);
        }
        if let Some(ops) = cuda::stage_ops(x) {
            return self.forward_with(ops, x, train, relu);
        }
        if x.dtype() != DType::F32 && x.dtype() != self.conv.weight().dtype() {
            return self.forward_mixed(x, train, relu);
        }
        let y = self.bn.forward_t(&self.conv.forward(x)?, train)?;
        if relu {
            self::relu(&y)
        } else {
            Ok(y)
        }
    }

    /// Through `ops` (`ml::cuda`'s cuDNN ops): the convolution in the input's dtype (the
    /// master weight cast to it when they differ, as [`Self::forward_mixed`] does),
    /// BatchNorm in its parameters' dtype, the output back in the input's dtype.
    fn forward_with(
        &self,
        ops: &dyn cuda::TrainOps,
        x: &Tensor,
        train: bool,
        relu: bool,
    ) -> Result<Tensor> {
        let w = self.conv.weight().to_dtype(x.dtype())?;
        let y = ops.conv2d(x, &w, self.stride, self.pad)?;
        let y = y.to_dtype(self.bn.running_mean().dtype())?;
        let y = if train {
            ops.batch_norm_train(&y, &self.bn)?
        } else {
            self.bn.forward_t(&y, false)?
        };
        let y = if relu { self::relu(&y)? } else { y };
        y.to_dtype(x.dtype())
    }

    /// Mixed precision (`Precision::Bf16`): the float32 master weight cast to the input's
    /// dtype for the convolution (the cast is differentiable, so the gradient reaches the
    /// float32 variable), BatchNorm and its statistics in float32, the output back in the
    /// input's dtype. What PyTorch's autocast does to conv and batch_norm.
    fn forward_mixed(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let w = self.conv.weight().to_dtype(x.dtype())?;
        let y = x.conv2d(&w, self.pad, self.stride, 1, 1)?;
        let y = self.bn.forward_t(&y.to_dtype(DType::F32)?, train)?;
        let y = if relu { self::relu(&y)? } else { y };
        y.to_dtype(x.dtype())
    }
}

/// The ConvNet's channels per block at width multiplier `w`.
fn convnet_channels(w: usize) -> [usize; 4] {
    [16 * w, 32 * w, 64 * w, 128 * w]
}

/// A ResNet's blocks per stage and whether they are Bottlenecks (expansion 4): ResNet-18
/// [2, 2, 2, 2] BasicBlocks, ResNet-34 [3, 4, 6, 3] BasicBlocks, ResNet-50 [3, 4, 6, 3]
/// Bottlenecks. Stage `i` has `64 * 2^i * width` planes (the official code's
/// `width_multiplier` scales every block, and the stem, as [`Encoder::new`] does).
fn resnet_layout(arch: Arch) -> ([usize; 4], bool) {
    match arch {
        Arch::Resnet18 => ([2, 2, 2, 2], false),
        Arch::Resnet34 => ([3, 4, 6, 3], false),
        _ => ([3, 4, 6, 3], true),
    }
}

/// The number of trainable parameters of the encoder that [`Encoder::new`] builds from
/// `cfg` on `in_channels`-channel images, computed from the config alone (no weights are
/// allocated): convolution kernels (no biases) and each BatchNorm's scale and shift; not
/// the BatchNorm running statistics, which are not trained, and not the projection head.
/// This is what the paper's Figure 7 and Table 6 count on their x axis: ResNet-50 24M,
/// ResNet-50 (2x) 94M, ResNet-50 (4x) 375M (ImageNet stem; torchvision's `resnet50`
/// without its `fc` has 23,508,032).
pub fn param_count(cfg: &EncoderConfig, in_channels: usize) -> usize {
    let conv = |k: usize, c_in: usize, c_out: usize| k * k * c_in * c_out;
    let bn = |c: usize| 2 * c;
    let w = cfg.width;
    match cfg.arch {
        Arch::Convnet => {
            let mut c_in = in_channels;
            let mut n = 0;
            for c in convnet_channels(w) {
                n += conv(3, c_in, c) + bn(c);
                c_in = c;
            }
            n
        }
        Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 => {
            let (counts, bottleneck) = resnet_layout(cfg.arch);
            let stem_k = match cfg.stem {
                Stem::Cifar => 3,
                Stem::Imagenet => 7,
            };
            let mut c_in = 64 * w;
            let mut n = conv(stem_k, in_channels, c_in) + bn(c_in);
            for (li, &count) in counts.iter().enumerate() {
                let planes = (64 << li) * w;
                for j in 0..count {
                    let stride = if li > 0 && j == 0 { 2 } else { 1 };
                    let c_out = if bottleneck {
                        n += conv(1, c_in, planes) + bn(planes);
                        n += conv(3, planes, planes) + bn(planes);
                        n += conv(1, planes, 4 * planes) + bn(4 * planes);
                        4 * planes
                    } else {
                        n += conv(3, c_in, planes) + bn(planes);
                        n += conv(3, planes, planes) + bn(planes);
                        planes
                    };
                    if stride != 1 || c_in != c_out {
                        n += conv(1, c_in, c_out) + bn(c_out);
                    }
                    c_in = c_out;
                }
            }
            n
        }
    }
}

/// ResNet residual block: BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 with the stride,
/// 1x1 to 4x), projection shortcut (1x1 conv + BN) when shape changes. The last BN's scale
/// starts at `last_gamma` (0 with `zero_init_residual`: the block starts as its shortcut).
struct ResBlock {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl ResBlock {
    /// A BasicBlock (`planes` out) or, if `bottleneck`, a Bottleneck (`4 * planes` out).
    fn new(
        bottleneck: bool,
        c_in: usize,
        planes: usize,
        stride: usize,
        last_gamma: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (convs, c_out) = if bottleneck {
            let c_out = 4 * planes;
            let convs = vec![
                ConvBn::new(c_in, planes, 1, 1, vb.pp("conv1"), vb.pp("bn1"))?,
                ConvBn::new(planes, planes, 3, stride, vb.pp("conv2"), vb.pp("bn2"))?,
                ConvBn::with_gamma(
                    planes,
                    c_out,
                    1,
                    1,
                    last_gamma,
                    vb.pp("conv3"),
                    vb.pp("bn3"),
                )?,
            ];
            (convs, c_out)
        } else {
            let convs = vec![
                ConvBn::new(c_in, planes, 3, stride, vb.pp("conv1"), vb.pp("bn1"))?,
                ConvBn::with_gamma(
                    planes,
                    planes,
                    3,
                    1,
                    last_gamma,
                    vb.pp("conv2"),
                    vb.pp("bn2"),
                )?,
            ];
            (convs, planes)
        };
        let downsample = Self::shortcut(c_in, c_out, stride, &vb)?;
        Ok(Self { convs, downsample })
    }

    fn shortcut(
        c_in: usize,
        c_out: usize,
        stride: usize,
        vb: &VarBuilder,
    ) -> Result<Option<ConvBn>> {
        if stride == 1 && c_in == c_out {
            return Ok(None);
        }
        let vb = vb.pp("downsample");
        Ok(Some(ConvBn::new(
            c_in,
            c_out,
            1,
            stride,
            vb.pp("0"),
            vb.pp("1"),
        )?))
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if use_fast(x) && train && kernels::fused_blocks() {
            // Fast path: the whole block is one op that recomputes its inner activations.
            fn spec(c: &ConvBn) -> kernels::BlockConv<'_> {
                kernels::BlockConv {
                    w: c.conv.weight(),
                    bn: &c.bn,
                    stride: c.stride,
                    pad: c.pad,
                }
            }
            let convs: Vec<_> = self.convs.iter().map(spec).collect();
            let down = self.downsample.as_ref().map(spec);
            return kernels::residual_block_train(x, &convs, down.as_ref());
        }
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward_t(&y, train, i != last)?;
        }
        let short = match &self.downsample {
            Some(d) => d.forward_t(x, train, false)?,
            None => x.clone(),
        };
        if use_fast(x) && kernels::fused_blocks() {
            return kernels::add_relu(&y, &short);
        }
        relu(&(y + short)?)
    }
}

enum Layer {
    /// conv -> BN -> ReLU.
    ConvBnRelu(ConvBn),
    /// 2x2 average pool, stride 2 (ConvNet downsampling).
    AvgPool2,
    /// 3x3 stride-2 max-pool (ImageNet stem).
    MaxPool3s2,
    Res(ResBlock),
}

/// The base encoder f(.): images `[B, C, H, W]` -> h `[B, repr_dim]`.
pub struct Encoder {
    layers: Vec<Layer>,
    repr_dim: usize,
}

impl Encoder {
    pub fn new(cfg: &EncoderConfig, in_channels: usize, vb: VarBuilder) -> Result<Self> {
        if cfg.width == 0 {
            candle_core::bail!("encoder width multiplier must be >= 1");
        }
        if in_channels == 0 {
            candle_core::bail!("encoder needs at least one input channel");
        }
        let w = cfg.width;
        let mut layers = Vec::new();
        let repr_dim;
        match cfg.arch {
            Arch::Convnet => {
                if cfg.stem != Stem::Cifar {
                    candle_core::bail!("the convnet encoder has no ImageNet stem; use stem: cifar");
                }
                // 4 blocks conv3x3-BN-ReLU, 16w/32w/64w/128w channels, 2x2 avg-pool after
                // blocks 1-3.
                let mut c_in = in_channels;
                for (i, c) in convnet_channels(w).into_iter().enumerate() {
                    let n = i + 1;
                    layers.push(Layer::ConvBnRelu(ConvBn::new(
                        c_in,
                        c,
                        3,
                        1,
                        vb.pp(format!("conv{n}")),
                        vb.pp(format!("bn{n}")),
                    )?));
                    if n < 4 {
                        layers.push(Layer::AvgPool2);
                    }
                    c_in = c;
                }
                repr_dim = c_in;
            }
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 => {
                let (counts, bottleneck) = resnet_layout(cfg.arch);
                let stem_c = 64 * w;
                let last_gamma = if cfg.zero_init_residual { 0.0 } else { 1.0 };
                match cfg.stem {
                    Stem::Cifar => layers.push(Layer::ConvBnRelu(ConvBn::new(
                        in_channels,
                        stem_c,
                        3,
                        1,
                        vb.pp("conv1"),
                        vb.pp("bn1"),
                    )?)),
                    Stem::Imagenet => {
                        layers.push(Layer::ConvBnRelu(ConvBn::new(
                            in_channels,
                            stem_c,
                            7,
                            2,
                            vb.pp("conv1"),
                            vb.pp("bn1"),
                        )?));
                        layers.push(Layer::MaxPool3s2);
                    }
                }
                let mut c_in = stem_c;
                for (li, &count) in counts.iter().enumerate() {
                    let planes = (64 << li) * w;
                    let lvb = vb.pp(format!("layer{}", li + 1));
                    for j in 0..count {
                        let stride = if li > 0 && j == 0 { 2 } else { 1 };
                        let bvb = lvb.pp(j.to_string());
                        let block =
                            ResBlock::new(bottleneck, c_in, planes, stride, last_gamma, bvb)?;
                        c_in = if bottleneck { 4 * planes } else { planes };
                        layers.push(Layer::Res(block));
                    }
                }
                repr_dim = c_in;
            }
        }
        Ok(Self { layers, repr_dim })
    }

    /// Dimension of h.
    pub fn repr_dim(&self) -> usize {
        self.repr_dim
    }

    /// `[B, C, H, W]` -> h `[B, repr_dim]`; `train` selects BatchNorm's batch statistics (and
    /// updates its running statistics).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.rank() != 4 {
            candle_core::bail!("encoder input must be [B, C, H, W], got {:?}", x.shape());
        }
        let mut y = x.clone();
        let mut layers = self.layers.iter().peekable();
        while let Some(l) = layers.next() {
            y = match l {
                // conv-BN-ReLU then the 2x2 average pool: one op on the fast path.
                Layer::ConvBnRelu(c)
                    if matches!(layers.peek(), Some(Layer::AvgPool2))
                        && c.out_side(y.dim(2)?) >= 2
                        && c.out_side(y.dim(3)?) >= 2 =>
                {
                    layers.next();
                    c.forward_pool_t(&y, train, true, true)?
                }
                Layer::ConvBnRelu(c) => c.forward_t(&y, train, true)?,
                Layer::AvgPool2 => {
                    if y.dim(2)? >= 2 && y.dim(3)? >= 2 {
                        y.avg_pool2d(2)?
                    } else {
                        y
                    }
                }
                Layer::MaxPool3s2 => max_pool_3x3_s2(&y)?,
                Layer::Res(b) => b.forward_t(&y, train)?,
            };
        }
        // Global average pool: [B, D, h, w] -> [B, D], in float32 whatever the input's
        // dtype (under bf16 the head and the loss stay float32).
        let y = match y.dtype() {
            DType::BF16 | DType::F16 => y.to_dtype(DType::F32)?,
            _ => y,
        };
        y.flatten_from(2)?.mean(D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::init::seeded_var_builder;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn enc(arch: Arch, stem: Stem, width: usize) -> EncoderConfig {
        EncoderConfig {
            arch,
            stem,
            width,
            ..Default::default()
        }
    }

    // PyTorch 2.15 golden values, from this script:
    // import torch, torch.nn.functional as F
    // torch.set_default_dtype(torch.float64)
    // x = torch.tensor([[[[0.1,0.5,-0.2,0.3,0.9,-0.4],[0.7,-0.1,0.2,0.8,0.0,0.6],[-0.3,0.4,1.1,-0.5,0.2,0.1],[0.25,0.35,-0.6,0.45,0.55,-0.7],[0.05,-0.15,0.65,0.75,-0.85,0.95]]]], requires_grad=True)
    // y = F.max_pool2d(x, 3, 2, 1)
    // w = torch.arange(1, y.numel()+1, dtype=torch.float64).reshape(y.shape)
    // (y * w).sum().backward()
    // print("maxpool y", y.flatten().tolist(), "shape", list(y.shape))
    // print("maxpool grad", x.grad.flatten().tolist())
    // Printed:
    // maxpool y [0.7, 0.8, 0.9, 0.7, 1.1, 0.8, 0.35, 0.75, 0.95] shape [1, 1, 3, 3]
    // maxpool grad [0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 5.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0, 0.0, 9.0]
    #[test]
    fn max_pool_matches_pytorch_forward_and_backward() {
        let d = Device::Cpu;
        let x: [f64; 30] = [
            0.1, 0.5, -0.2, 0.3, 0.9, -0.4, 0.7, -0.1, 0.2, 0.8, 0.0, 0.6, -0.3, 0.4, 1.1, -0.5,
            0.2, 0.1, 0.25, 0.35, -0.6, 0.45, 0.55, -0.7, 0.05, -0.15, 0.65, 0.75, -0.85, 0.95,
        ];
        let v = Var::from_tensor(&Tensor::from_slice(&x, (1, 1, 5, 6), &d).unwrap()).unwrap();
        let y = max_pool_3x3_s2(v.as_tensor()).unwrap();
        assert_eq!(y.dims(), &[1, 1, 3, 3]);
        let got: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![0.7, 0.8, 0.9, 0.7, 1.1, 0.8, 0.35, 0.75, 0.95]);
        let w = Tensor::arange(1f64, 10.0, &d)
            .unwrap()
            .reshape((1, 1, 3, 3))
            .unwrap();
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        let gx: Vec<f64> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut want = [0.0; 30];
        for (i, val) in [
            (4, 3.0),
            (6, 5.0),
            (9, 8.0),
            (14, 5.0),
            (19, 7.0),
            (27, 8.0),
            (29, 9.0),
        ] {
            want[i] = val;
        }
        assert_eq!(gx, want.to_vec());
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences() {
        let d = Device::Cpu;
        // Distinct values (no ties), odd and even sides.
        let x: Vec<f64> = (0..2 * 7 * 8)
            .map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0)
            .collect();
        let wv: Vec<f64> = (0..2 * 4 * 4).map(|i| 0.5 + (i % 5) as f64).collect();
        let w = Tensor::from_vec(wv, (1, 2, 4, 4), &d).unwrap();
        let f = |xs: &Tensor| {
            max_pool_3x3_s2(xs)
                .unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let v = Var::from_tensor(&Tensor::from_vec(x.clone(), (1, 2, 7, 8), &d).unwrap()).unwrap();
        let g = f(v.as_tensor()).backward().unwrap();
        let gx: Vec<f64> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-4; // smaller than half the gap between distinct values
        for k in 0..x.len() {
            let mut p = x.clone();
            p[k] += eps;
            let lp: f64 = f(&Tensor::from_vec(p.clone(), (1, 2, 7, 8), &d).unwrap())
                .to_scalar()
                .unwrap();
            p[k] -= 2.0 * eps;
            let lm: f64 = f(&Tensor::from_vec(p, (1, 2, 7, 8), &d).unwrap())
                .to_scalar()
                .unwrap();
            let fd = (lp - lm) / (2.0 * eps);
            assert!(
                (gx[k] - fd).abs() < 1e-6,
                "d/dx[{k}]: autograd {} vs fd {fd}",
                gx[k]
            );
        }
    }

    fn build(cfg: &EncoderConfig, dtype: DType) -> (VarMap, Encoder) {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, &Device::Cpu).set_dtype(dtype);
        let e = Encoder::new(cfg, 3, vb).unwrap();
        (map, e)
    }

    fn n_params(map: &VarMap) -> usize {
        crate::ml::model::init::trainable_vars(map)
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    #[test]
    fn representation_shapes_per_arch_and_stem() {
        let d = Device::Cpu;
        for (cfg, side, dim) in [
            (enc(Arch::Convnet, Stem::Cifar, 1), 16, 128),
            (enc(Arch::Convnet, Stem::Cifar, 2), 9, 256),
            (enc(Arch::Resnet18, Stem::Cifar, 1), 8, 512),
            (enc(Arch::Resnet18, Stem::Imagenet, 1), 16, 512),
            (enc(Arch::Resnet34, Stem::Cifar, 1), 8, 512),
        ] {
            let (_, e) = build(&cfg, DType::F32);
            assert_eq!(e.repr_dim(), dim);
            let x = Tensor::rand(0f32, 1.0, (2, 3, side, side), &d).unwrap();
            let h = e.forward_t(&x, true).unwrap();
            assert_eq!(h.dims(), &[2, dim], "{cfg:?}");
        }
    }

    #[test]
    fn resnet50_forward_shape() {
        let (_, e) = build(&enc(Arch::Resnet50, Stem::Cifar, 1), DType::F32);
        assert_eq!(e.repr_dim(), 2048);
        let x = Tensor::rand(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
        assert_eq!(e.forward_t(&x, false).unwrap().dims(), &[2, 2048]);
    }

    #[test]
    fn resnet_parameter_counts_match_torchvision() {
        // torchvision resnet18 / resnet50 without the 1000-way fc: 11,689,512 - 513,000 and
        // 25,557,032 - 2,049,000. The CIFAR stem swaps the 7x7x3x64 conv for a 3x3x3x64 one.
        let (m, _) = build(&enc(Arch::Resnet18, Stem::Imagenet, 1), DType::F32);
        assert_eq!(n_params(&m), 11_176_512);
        let (m, _) = build(&enc(Arch::Resnet18, Stem::Cifar, 1), DType::F32);
        assert_eq!(n_params(&m), 11_176_512 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64);
        let (m, _) = build(&enc(Arch::Resnet50, Stem::Imagenet, 1), DType::F32);
        assert_eq!(n_params(&m), 23_508_032);
    }

    #[test]
    fn param_count_is_what_the_built_encoder_holds() {
        for cfg in [
            enc(Arch::Convnet, Stem::Cifar, 1),
            enc(Arch::Convnet, Stem::Cifar, 2),
            enc(Arch::Resnet18, Stem::Cifar, 1),
            enc(Arch::Resnet18, Stem::Imagenet, 1),
            enc(Arch::Resnet34, Stem::Cifar, 1),
            enc(Arch::Resnet50, Stem::Cifar, 1),
            enc(Arch::Resnet50, Stem::Imagenet, 1),
        ] {
            let (m, _) = build(&cfg, DType::F32);
            assert_eq!(param_count(&cfg, 3), n_params(&m), "{cfg:?}");
        }
        // The input channels enter only the stem.
        let cfg = enc(Arch::Resnet18, Stem::Imagenet, 1);
        assert_eq!(param_count(&cfg, 1), param_count(&cfg, 3) - 7 * 7 * 2 * 64);
    }

    #[test]
    fn param_count_matches_torchvision_and_the_papers_table_6() {
        let n = |arch, width| param_count(&enc(arch, Stem::Imagenet, width), 3);
        // torchvision resnet18 / resnet34 / resnet50 without the 1000-way fc.
        assert_eq!(n(Arch::Resnet18, 1), 11_689_512 - 513_000);
        assert_eq!(n(Arch::Resnet34, 1), 21_797_672 - 513_000);
        assert_eq!(n(Arch::Resnet50, 1), 25_557_032 - 2_049_000);
        // Table 6: ResNet-50 24M, (2x) 94M, (4x) 375M: the width multiplier scales every
        // block's channels (and the stem's), so parameters grow about as its square.
        let millions = |p: usize| (p as f64 / 1e6).round() as usize;
        assert_eq!(millions(n(Arch::Resnet50, 1)), 24);
        assert_eq!(millions(n(Arch::Resnet50, 2)), 94);
        assert_eq!(millions(n(Arch::Resnet50, 4)), 375);
        // Figure 7's other encoders grow the same way.
        assert_eq!(millions(n(Arch::Resnet18, 4)), 179);
        assert_eq!(millions(n(Arch::Resnet34, 2)), 85);
    }

    #[test]
    fn wide_resnets_scale_every_stage_and_the_representation() {
        // ResNet-18 (2x): stem 128 channels, stages of 128..1024 planes, h of 1024; what
        // it holds is what param_count says.
        let cfg = enc(Arch::Resnet18, Stem::Cifar, 2);
        let (m, e) = build(&cfg, DType::F32);
        assert_eq!(n_params(&m), param_count(&cfg, 3));
        assert_eq!(e.repr_dim(), 1024);
        let x = Tensor::rand(0f32, 1.0, (2, 3, 8, 8), &Device::Cpu).unwrap();
        assert_eq!(e.forward_t(&x, false).unwrap().dims(), &[2, 1024]);
    }

    #[test]
    fn convnet_gradients_flow_and_match_finite_differences() {
        let d = Device::Cpu;
        let (map, e) = build(&enc(Arch::Convnet, Stem::Cifar, 1), DType::F64);
        // Seeded inputs: with unseeded ones, one draw in many put a ReLU or max-pool kink
        // within eps of a probed weight and the finite difference missed the gradient.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut draw = |n: usize, lo: f64, hi: f64| -> Vec<f64> {
            (0..n).map(|_| rng.gen_range(lo..hi)).collect()
        };
        let x = Tensor::from_vec(draw(3 * 3 * 8 * 8, 0.0, 1.0), (3, 3, 8, 8), &d).unwrap();
        let w = Tensor::from_vec(draw(3 * 128, -1.0, 1.0), (3, 128), &d).unwrap();
        // Training mode: the loss couples the batch through BN statistics, as in pretraining.
        let f = |e: &Encoder| {
            e.forward_t(&x, true)
                .unwrap()
                .mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let grads = f(&e).backward().unwrap();
        for (name, var) in crate::ml::model::init::trainable_vars(&map) {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm: f64 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm > 0.0, "zero gradient for {name}");
        }
        // Finite differences on a few weights of the first and last convs.
        for name in ["conv1.weight", "conv4.weight"] {
            let var = map.data().lock().unwrap().get(name).unwrap().clone();
            let g: Vec<f64> = grads
                .get(&var)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for k in [0, 7, base.len() - 1] {
                let eps = 1e-5;
                let mut p = base.clone();
                p[k] += eps;
                var.set(&Tensor::from_vec(p.clone(), var.shape(), &d).unwrap())
                    .unwrap();
                let lp: f64 = f(&e).to_scalar().unwrap();
                p[k] -= 2.0 * eps;
                var.set(&Tensor::from_vec(p, var.shape(), &d).unwrap())
                    .unwrap();
                let lm: f64 = f(&e).to_scalar().unwrap();
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &d).unwrap())
                    .unwrap();
                let fd = (lp - lm) / (2.0 * eps);
                assert!(
                    (g[k] - fd).abs() <= 1e-5 * fd.abs().max(1.0),
                    "{name}[{k}]: autograd {} vs fd {fd}",
                    g[k]
                );
            }
        }
    }

    /// `Precision::Bf16`'s encoder: half-precision input, float32 master weights cast per
    /// conv, BatchNorm in float32. candle's CPU backend has no bf16 matrix product, so the
    /// test runs the same dtype-generic code with f16 (CUDA runs it with bf16 through
    /// cuDNN): h and every weight's gradient agree with the float32 encoder's to half
    /// precision, and the gradients land on the float32 variables the optimizer updates.
    #[test]
    fn half_precision_forward_and_backward_track_f32_with_f32_master_weights() {
        let (map, e) = build(&enc(Arch::Resnet18, Stem::Cifar, 1), DType::F32);
        // Seeded inputs: unseeded ones put a gradient over the tolerance once in a while.
        let x = crate::test_support::tensors::uniform(&[4, 3, 8, 8], 11, 0.0, 1.0, DType::F32);
        let w = crate::test_support::tensors::uniform(&[4, 512], 12, -1.0, 1.0, DType::F32);
        let run = |x: &Tensor| {
            let h = e.forward_t(x, true).unwrap();
            assert_eq!(
                h.dtype(),
                DType::F32,
                "h is float32 under half precision too"
            );
            let loss = h.mul(&w).unwrap().sum_all().unwrap();
            (h, loss.backward().unwrap())
        };
        // The reference: the same candle ops in float32 (the fast CPU kernels take f32).
        let (h32, g32) = kernels::with_kernels(Kernels::Candle, || run(&x));
        let (h16, g16) = run(&x.to_dtype(DType::F16).unwrap());
        let rel = |a: &Tensor, b: &Tensor| -> f32 {
            let diff: f32 = (a - b)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            let norm: f32 = b.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            (diff / norm.max(1e-30)).sqrt()
        };
        assert!(
            rel(&h16, &h32) < 0.03,
            "h: relative error {}",
            rel(&h16, &h32)
        );
        let mut checked = 0;
        for (name, var) in crate::ml::model::init::trainable_vars(&map) {
            assert_eq!(
                var.dtype(),
                DType::F32,
                "{name}: master weights stay float32"
            );
            let (a, b) = (g16.get(&var), g32.get(&var));
            let (Some(a), Some(b)) = (a, b) else {
                panic!("{name}: no gradient under half precision");
            };
            assert_eq!(a.dtype(), DType::F32, "{name}");
            let r = rel(a, b);
            // A zero-initialised last BN scale has tiny upstream gradients; bf16 noise there
            // is relative to almost nothing.
            if b.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1e-6
            {
                assert!(r < 0.1, "{name}: gradient relative error {r}");
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} gradients compared");
    }

    #[test]
    fn convnet_rejects_imagenet_stem_and_zero_width() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, &Device::Cpu);
        assert!(Encoder::new(&enc(Arch::Convnet, Stem::Imagenet, 1), 3, vb.clone()).is_err());
        assert!(Encoder::new(&enc(Arch::Resnet18, Stem::Cifar, 0), 3, vb).is_err());
    }

    #[test]
    fn relu_gives_no_gradient_at_exactly_zero_as_pytorch() {
        let x = candle_core::Var::new(&[-1.0f32, 0.0, 2.0], &Device::Cpu).unwrap();
        let y = relu(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), [0.0, 0.0, 2.0]);
        let grads = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        // torch.relu: d/dx at 0 is 0 (candle's own `relu` gives 3 there).
        assert_eq!(g, [0.0, 0.0, 3.0]);
    }

    #[test]
    fn zero_init_residual_blocks_start_as_their_shortcut() {
        let d = Device::Cpu;
        // A block's input is a ReLU output (non-negative), so relu(0 + x) = x.
        let x = Tensor::randn(0f32, 1.0, (3, 16, 6, 6), &d)
            .unwrap()
            .relu()
            .unwrap();
        for bottleneck in [false, true] {
            for (gamma, identity) in [(0.0, true), (1.0, false)] {
                let map = VarMap::new();
                let vb = seeded_var_builder(&map, 2, &d);
                let planes = if bottleneck { 4 } else { 16 };
                let block = ResBlock::new(bottleneck, 16, planes, 1, gamma, vb).unwrap();
                for train in [true, false] {
                    let y = block.forward_t(&x, train).unwrap();
                    let diff = crate::test_support::tensors::max_abs_diff(&y, &x);
                    assert_eq!(
                        diff == 0.0,
                        identity,
                        "bottleneck {bottleneck} gamma {gamma} train {train}: diff {diff}"
                    );
                }
            }
        }
    }

    #[test]
    fn zero_init_residual_zeroes_only_the_last_bn_scale_of_each_block() {
        for (arch, last) in [(Arch::Resnet18, "bn2"), (Arch::Resnet50, "bn3")] {
            for zero in [true, false] {
                let map = VarMap::new();
                let vb = seeded_var_builder(&map, 0, &Device::Cpu);
                let cfg = EncoderConfig {
                    zero_init_residual: zero,
                    ..enc(arch, Stem::Cifar, 1)
                };
                Encoder::new(&cfg, 3, vb).unwrap();
                let data = map.data().lock().unwrap();
                let mut n_last = 0;
                for (k, v) in data.iter().filter(|(k, _)| k.ends_with(".weight")) {
                    if v.rank() != 1 {
                        continue; // conv kernels
                    }
                    let vals: Vec<f32> = v.as_tensor().to_vec1().unwrap();
                    let is_last = k.starts_with("layer") && k.ends_with(&format!("{last}.weight"));
                    n_last += is_last as usize;
                    let want = if is_last && zero { 0.0 } else { 1.0 };
                    assert!(vals.iter().all(|&g| g == want), "{arch:?} {k}");
                }
                let blocks = if arch == Arch::Resnet18 { 8 } else { 16 };
                assert_eq!(n_last, blocks, "{arch:?}");
            }
        }
    }
}
