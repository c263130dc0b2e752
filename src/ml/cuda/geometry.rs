//! The arithmetic of a convolution and a batch-norm call on NCHW tensors: output sides from
//! input, kernel, stride and padding; the dims, strides and parameters the cuDNN
//! descriptors are built from (`i32`, as cuDNN takes them); the key the per-shape caches
//! are indexed by. Pure and device-free, so the default build tests it.

use std::fmt;

use candle_core::DType;

/// A 2-D convolution of `x [n, c_in, h, w]` by `w [c_out, c_in, kh, kw]` with one stride and
/// one padding for both axes (what the encoders use), dilation 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvGeometry {
    pub(crate) n: usize,
    pub(crate) c_in: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c_out: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
}

/// What cuDNN's legacy API takes: every dim and every element count below 2^31.
const I32_MAX: usize = i32::MAX as usize;

impl ConvGeometry {
    /// The geometry of `x` (dims) convolved with `w` (dims); an error that says what does
    /// not fit.
    pub(crate) fn of(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self, String> {
        let (&[n, c_in, h, wd], &[c_out, wc_in, kh, kw]) = (x, w) else {
            return Err(format!(
                "conv2d needs x [N, C, H, W] and w [C_out, C_in, kH, kW], got {x:?} and {w:?}"
            ));
        };
        if stride == 0 {
            return Err("conv2d stride must be >= 1".into());
        }
        if wc_in != c_in {
            return Err(format!(
                "conv2d: x has {c_in} channels, the kernel expects {wc_in}"
            ));
        }
        if [n, c_in, c_out, kh, kw].contains(&0) {
            return Err(format!("conv2d on an empty tensor: x {x:?}, w {w:?}"));
        }
        if h + 2 * pad < kh || wd + 2 * pad < kw {
            return Err(format!(
                "conv2d: kernel {kh}x{kw} is larger than the padded input {}x{}",
                h + 2 * pad,
                wd + 2 * pad
            ));
        }
        let g = Self {
            n,
            c_in,
            h,
            w: wd,
            c_out,
            kh,
            kw,
            stride,
            pad,
        };
        let largest = g.x_len().max(g.y_len()).max(g.w_len());
        if largest > I32_MAX
            || [n, c_in, h, wd, c_out, kh, kw, stride, pad]
                .iter()
                .any(|&d| d > I32_MAX)
        {
            return Err(format!(
                "conv2d: {g} has a tensor of {largest} elements, more than cuDNN takes (2^31 - 1)"
            ));
        }
        Ok(g)
    }

    /// Output rows: `floor((h + 2 pad - kh) / stride) + 1`.
    pub(crate) fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }

    /// Output columns: `floor((w + 2 pad - kw) / stride) + 1`.
    pub(crate) fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }

    pub(crate) fn x_dims(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }

    pub(crate) fn w_dims(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kh, self.kw]
    }

    pub(crate) fn y_dims(&self) -> [usize; 4] {
        [self.n, self.c_out, self.out_h(), self.out_w()]
    }

    pub(crate) fn x_len(&self) -> usize {
        self.x_dims().iter().product()
    }

    pub(crate) fn w_len(&self) -> usize {
        self.w_dims().iter().product()
    }

    pub(crate) fn y_len(&self) -> usize {
        self.y_dims().iter().product()
    }

    /// `(pad, stride, dilation)` per axis for `cudnnSetConvolution2dDescriptor`.
    pub(crate) fn descriptor_params(&self) -> ([i32; 2], [i32; 2], [i32; 2]) {
        let (p, s) = (self.pad as i32, self.stride as i32);
        ([p, p], [s, s], [1, 1])
    }
}

impl fmt::Display for ConvGeometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} conv stride {} pad {} on [{}, {}, {}, {}] -> {} channels",
            self.kh, self.kw, self.stride, self.pad, self.n, self.c_in, self.h, self.w, self.c_out
        )
    }
}

/// The arithmetic a convolution may use, from its dtype and the stage's precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Math {
    /// Plain float32 (or float64) multiply-adds: `precision: f32` gets float32, not TF32
    /// (cuDNN's default math would allow TF32 tensor cores for float32 data).
    Fma,
    /// TF32 tensor cores allowed for float32 data (`precision: tf32`).
    Tf32,
    /// Half-precision tensor cores, float32 accumulation (`precision: bf16`).
    TensorOp,
}

/// The math for a convolution on `dtype` data, `tf32` when the stage allows TF32.
pub(crate) fn math_for(dtype: DType, tf32: bool) -> Math {
    match dtype {
        DType::BF16 | DType::F16 => Math::TensorOp,
        DType::F32 if tf32 => Math::Tf32,
        _ => Math::Fma,
    }
}

/// What a convolution's per-shape cache is keyed by: its geometry, dtype and math.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvKey {
    pub(crate) geometry: ConvGeometry,
    pub(crate) dtype: DType,
    pub(crate) math: Math,
}

/// `dims` as cuDNN's `int` array (the caller has checked they fit, as
/// [`ConvGeometry::of`] and [`BnGeometry::of`] do).
pub(crate) fn as_i32<const N: usize>(dims: [usize; N]) -> [i32; N] {
    dims.map(|d| d as i32)
}

/// Training-mode batch norm over `x [n, c, ...]`: per channel, statistics over the `n * hw`
/// values of that channel. cuDNN sees it as `[n, c, hw, 1]` (spatial mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BnGeometry {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) hw: usize,
}

impl BnGeometry {
    pub(crate) fn of(x: &[usize]) -> Result<Self, String> {
        if x.len() < 2 {
            return Err(format!("batch norm needs x [N, C, ...], got {x:?}"));
        }
        let g = Self {
            n: x[0],
            c: x[1],
            hw: x[2..].iter().product(),
        };
        if g.n == 0 || g.c == 0 || g.hw == 0 {
            return Err(format!("batch norm on an empty tensor {x:?}"));
        }
        if g.m() < 2 {
            // The running variance is unbiased (divided by m - 1), as in PyTorch.
            return Err(format!(
                "batch norm in training needs more than one value per channel, got {x:?}"
            ));
        }
        if g.len() > I32_MAX {
            return Err(format!(
                "batch norm: {} elements, more than cuDNN takes (2^31 - 1)",
                g.len()
            ));
        }
        Ok(g)
    }

    /// Values per channel.
    pub(crate) fn m(&self) -> usize {
        self.n * self.hw
    }

    pub(crate) fn len(&self) -> usize {
        self.n * self.c * self.hw
    }

    /// The 4-D view cuDNN normalises: `[n, c, hw, 1]`.
    pub(crate) fn x_dims(&self) -> [usize; 4] {
        [self.n, self.c, self.hw, 1]
    }

    /// Where dgamma and dbeta start in the backward's one output `[dx | dgamma | dbeta]`,
    /// and its length: each part starts at a multiple of 64 elements (256 bytes in float32,
    /// the alignment of a fresh allocation), the gaps unused.
    pub(crate) fn packed_gradients(&self) -> (usize, usize, usize) {
        const ALIGN: usize = 64;
        let dgamma = self.len().div_ceil(ALIGN) * ALIGN;
        let dbeta = dgamma + self.c.div_ceil(ALIGN) * ALIGN;
        (dgamma, dbeta, dbeta + self.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sides_follow_pytorch_for_every_encoder_conv() {
        // (input side, kernel, stride, pad) -> output side, as torch.nn.Conv2d gives.
        for (side, k, s, p, out) in [
            (32, 3, 1, 1, 32), // ResNet cifar stem, 3x3 in the blocks
            (32, 3, 2, 1, 16), // first conv of a downsampling block
            (32, 1, 2, 0, 16), // its projection shortcut
            (7, 3, 2, 1, 4),   // odd side, stride 2
            (7, 1, 2, 0, 4),
            (224, 7, 2, 3, 112), // ImageNet stem
            (5, 5, 1, 0, 1),     // kernel as large as the input
        ] {
            let g = ConvGeometry::of(&[2, 3, side, side], &[8, 3, k, k], s, p).unwrap();
            assert_eq!(
                (g.out_h(), g.out_w()),
                (out, out),
                "side {side} k {k} s {s} p {p}"
            );
            assert_eq!(g.y_dims(), [2, 8, out, out]);
            assert_eq!(g.y_len(), 2 * 8 * out * out);
        }
        let g = ConvGeometry::of(&[1, 3, 9, 6], &[4, 3, 3, 1], 2, 1).unwrap();
        assert_eq!(
            (g.out_h(), g.out_w()),
            (5, 4),
            "rectangular input and kernel"
        );
    }

    #[test]
    fn descriptor_parameters_are_what_cudnn_takes() {
        let g = ConvGeometry::of(&[4, 16, 8, 8], &[32, 16, 3, 3], 2, 1).unwrap();
        assert_eq!(g.descriptor_params(), ([1, 1], [2, 2], [1, 1]));
        assert_eq!(as_i32(g.x_dims()), [4, 16, 8, 8]);
        assert_eq!(as_i32(g.w_dims()), [32, 16, 3, 3]);
        assert_eq!(as_i32(g.y_dims()), [4, 32, 4, 4]);
        assert_eq!(
            g.to_string(),
            "3x3 conv stride 2 pad 1 on [4, 16, 8, 8] -> 32 channels"
        );
    }

    #[test]
    fn math_follows_the_dtype_and_the_stages_precision() {
        assert_eq!(math_for(DType::F32, false), Math::Fma, "f32 stays float32");
        assert_eq!(math_for(DType::F32, true), Math::Tf32);
        assert_eq!(math_for(DType::BF16, false), Math::TensorOp);
        assert_eq!(math_for(DType::F64, true), Math::Fma);
        let g = ConvGeometry::of(&[2, 3, 8, 8], &[4, 3, 3, 3], 1, 1).unwrap();
        let key = |dtype, math| ConvKey {
            geometry: g,
            dtype,
            math,
        };
        assert_ne!(key(DType::F32, Math::Fma), key(DType::F32, Math::Tf32));
        assert_ne!(key(DType::F32, Math::Fma), key(DType::BF16, Math::Fma));
    }

    #[test]
    fn shapes_cudnn_cannot_take_are_refused_with_the_reason() {
        let err = |x: &[usize], w: &[usize], s, p| ConvGeometry::of(x, w, s, p).unwrap_err();
        assert!(err(&[2, 3, 8], &[4, 3, 3, 3], 1, 1).contains("[N, C, H, W]"));
        assert!(err(&[2, 3, 8, 8], &[4, 5, 3, 3], 1, 1).contains("3 channels"));
        assert!(err(&[2, 3, 8, 8], &[4, 3, 3, 3], 0, 1).contains("stride"));
        assert!(err(&[2, 3, 2, 2], &[4, 3, 5, 5], 1, 0).contains("larger than the padded"));
        assert!(err(&[0, 3, 8, 8], &[4, 3, 3, 3], 1, 1).contains("empty"));
        // 2^31 elements in one tensor: beyond the legacy API's int sizes.
        assert!(err(&[1 << 16, 64, 32, 32], &[64, 64, 3, 3], 1, 1).contains("2^31"));
    }

    #[test]
    fn batch_norm_geometry_counts_values_per_channel() {
        let g = BnGeometry::of(&[4, 6, 5, 3]).unwrap();
        assert_eq!((g.m(), g.len()), (60, 360));
        assert_eq!(g.x_dims(), [4, 6, 15, 1]);
        assert_eq!(BnGeometry::of(&[8, 5]).unwrap().x_dims(), [8, 5, 1, 1]);
        // [dx: 360 | pad to 384 | dgamma: 6 | pad to 448 | dbeta: 6]
        assert_eq!(g.packed_gradients(), (384, 448, 454));
        let aligned = BnGeometry::of(&[2, 64, 4, 4]).unwrap();
        assert_eq!(
            aligned.packed_gradients(),
            (2048, 2112, 2176),
            "no gap when aligned"
        );
        assert!(BnGeometry::of(&[1, 4, 1, 1])
            .unwrap_err()
            .contains("more than one value"));
        assert!(BnGeometry::of(&[4]).is_err());
    }
}
