//! Base encoders f(.) of SimCLR (section 2.1): ResNet-18/34 (BasicBlock), ResNet-50
//! (Bottleneck, expansion 4) with the CIFAR stem (appendix B.9: 3x3 stride-1 conv, no
//! max-pool) or the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool), width
//! multiplier 1/2/4 (Figure 7), and a small 4-block ConvNet for quick CPU runs.
//! h = global average pool of the last feature map, `[B, D]`.
//!
//! Layout and variable names follow candle-transformers' `models/resnet.rs` (torchvision):
//! `conv1`, `bn1`, `layer{1..4}.{j}.conv{1,2,3}`, `.bn{1,2,3}`, `.downsample.{0,1}`. Convs
//! have no bias (BatchNorm follows). Like the official code, the stem also scales with the
//! width multiplier (64 * width channels).
//!
//! BatchNorm is candle_nn's (`forward_t(x, train)`: batch statistics and a running-average
//! update with momentum 0.1 in training mode, running statistics in eval mode); its running
//! mean/var are VarMap entries so checkpoints carry them.

use candle_core::{Module, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;
use candle_nn::{batch_norm, conv2d_no_bias, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig};

use super::config::{Arch, EncoderConfig, Stem};

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
/// only supports kernel == stride, DESIGN.md 11). Separable: max over the 3 row offsets,
/// then over the 3 column offsets. Padding is -inf, so padded cells never win.
/// `[B, C, H, W] -> [B, C, floor((H - 1) / 2) + 1, floor((W - 1) / 2) + 1]`.
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

/// conv -> BN (-> ReLU by the caller).
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
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
        Ok(Self {
            conv: conv(c_in, c_out, k, stride, vb_conv)?,
            bn: bn(c_out, vb_bn)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

/// ResNet residual block: BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 with the stride,
/// 1x1 to 4x), projection shortcut (1x1 conv + BN) when shape changes.
struct ResBlock {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl ResBlock {
    fn basic(c_in: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let convs = vec![
            ConvBn::new(c_in, planes, 3, stride, vb.pp("conv1"), vb.pp("bn1"))?,
            ConvBn::new(planes, planes, 3, 1, vb.pp("conv2"), vb.pp("bn2"))?,
        ];
        let downsample = Self::shortcut(c_in, planes, stride, &vb)?;
        Ok(Self { convs, downsample })
    }

    fn bottleneck(c_in: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let c_out = 4 * planes;
        let convs = vec![
            ConvBn::new(c_in, planes, 1, 1, vb.pp("conv1"), vb.pp("bn1"))?,
            ConvBn::new(planes, planes, 3, stride, vb.pp("conv2"), vb.pp("bn2"))?,
            ConvBn::new(planes, c_out, 1, 1, vb.pp("conv3"), vb.pp("bn3"))?,
        ];
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
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward_t(&y, train)?;
            if i != last {
                y = y.relu()?;
            }
        }
        let short = match &self.downsample {
            Some(d) => d.forward_t(x, train)?,
            None => x.clone(),
        };
        (y + short)?.relu()
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
                for (i, c) in [16 * w, 32 * w, 64 * w, 128 * w].into_iter().enumerate() {
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
                let (counts, bottleneck) = match cfg.arch {
                    Arch::Resnet18 => ([2, 2, 2, 2], false),
                    Arch::Resnet34 => ([3, 4, 6, 3], false),
                    _ => ([3, 4, 6, 3], true),
                };
                let stem_c = 64 * w;
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
                        let block = if bottleneck {
                            ResBlock::bottleneck(c_in, planes, stride, bvb)?
                        } else {
                            ResBlock::basic(c_in, planes, stride, bvb)?
                        };
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
        for l in &self.layers {
            y = match l {
                Layer::ConvBnRelu(c) => c.forward_t(&y, train)?.relu()?,
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
        // Global average pool: [B, D, h, w] -> [B, D].
        y.flatten_from(2)?.mean(D::Minus1)
    }
}
