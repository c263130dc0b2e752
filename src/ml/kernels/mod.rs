//! Fast CPU kernels for the encoder's hot ops (docs/ARCHITECTURE.md#cpu-kernels): conv2d
//! (forward, input gradient, weight gradient) as im2col / col2im around the `gemm` crate,
//! and BatchNorm (+ ReLU) in training mode as one fused op with a one-pass backward. Both
//! are candle `CustomOp`s with their own backward, so candle's autograd drives them.
//! `block` fuses whole encoder blocks (conv + BN (+ ReLU) (+ 2x2 avg-pool), and conv + BN +
//! shortcut + ReLU) into one op each: candle's backward costs a zeroed tensor and an add
//! per node, so fewer nodes means less time and memory.
//!
//! Which ops the encoder uses is chosen by [`Kernels`]: a process-wide default
//! ([`set_kernels`], `Fast` unless changed) and a per-thread override ([`with_kernels`], for
//! tests and the bench's "candle" column). On CUDA the encoder always keeps candle's
//! (cuDNN) path; these kernels are CPU-only. Results equal candle's ops within float
//! rounding (tests below and in `conv` / `bn`).
//!
//! Each op is written once, generic over f32 / f64, as a `Kernel`; `Op` makes it a
//! candle `CustomOp2` / `CustomOp3` (dtype dispatch and contiguous slices in one place).
//!
//! Work is spread over rayon's global pool (both cores), split into a fixed number of
//! parts where partial sums are reduced, so results do not depend on the thread count.

pub(crate) mod block;
pub(crate) mod bn;
pub(crate) mod conv;
pub(crate) mod residual;

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

pub use block::{add_relu, conv_bn_train};
pub use bn::batch_norm_train;
pub use conv::conv2d;
pub use residual::{residual_block_train, BlockConv};

/// Which implementation of conv2d / BatchNorm the encoder and head use on CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// candle's own ops (`Tensor::conv2d`, candle_nn's `BatchNorm`).
    Candle,
    /// This module's custom ops (CPU only; CUDA keeps candle's path).
    Fast,
}

static DEFAULT: AtomicU8 = AtomicU8::new(1);

thread_local! {
    static OVERRIDE: Cell<Option<Kernels>> = const { Cell::new(None) };
}

/// Set the process-wide default (the bench uses it for its "candle" column).
pub fn set_kernels(k: Kernels) {
    DEFAULT.store(matches!(k, Kernels::Fast) as u8, Ordering::Relaxed);
}

static FUSED: AtomicU8 = AtomicU8::new(1);

/// Whether the fast path fuses each block into one op ([`conv_bn_train`], [`add_relu`];
/// default on). Off, it runs the separate conv and BN(+ReLU) ops: the bench uses that
/// to measure what fusion brings in the same run.
pub fn set_fused_blocks(on: bool) {
    FUSED.store(on as u8, Ordering::Relaxed);
}

pub(crate) fn fused_blocks() -> bool {
    FUSED.load(Ordering::Relaxed) == 1
}

/// The kernels in force on this thread: the override of [`with_kernels`] if any, else the
/// process-wide default.
pub fn kernels() -> Kernels {
    OVERRIDE.with(|o| o.get()).unwrap_or_else(|| {
        if DEFAULT.load(Ordering::Relaxed) == 1 {
            Kernels::Fast
        } else {
            Kernels::Candle
        }
    })
}

/// Run `f` with `k` in force on this thread only (forward passes read the choice on the
/// calling thread; the backward follows whatever ops the forward recorded).
pub fn with_kernels<R>(k: Kernels, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Kernels>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(k))));
    f()
}

/// Float element types the kernels handle (f32 for training, f64 for exact tests).
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The elements of a CPU storage of this type (None for another dtype).
    fn data(s: &CpuStorage) -> Option<&[Self]>;
    /// A vector as a CPU storage.
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn data(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn data(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// A vector of `n` elements with unspecified contents, for an output its caller overwrites
/// completely before anything reads it: a zeroing pass over buffers of up to 134 MB (each
/// activation of ResNet-18 at N=256) is pure memory traffic. candle's
/// `CpuDevice::alloc_uninit` does the same.
pub(crate) fn uninit_vec<T: Real>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: T is f32 or f64 (plain bits, no drop, no invalid patterns) and every caller
    // writes each element before reading it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(n)
    };
    v
}

/// Number of parts reductions are split into (independent of the thread count, so results
/// are too).
pub(crate) const PARTS: usize = 4;

/// The error of a poisoned stash (a thread panicked while holding it).
pub(crate) fn lock_err<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("fast kernel stash poisoned".into())
}

/// One of this module's ops over `N` tensors of one float type, written once for f32 and
/// f64; [`Op`] makes it a candle custom op (dtype dispatch, contiguous slices).
pub(crate) trait Kernel<const N: usize> {
    /// candle's name for the op; error messages start with it.
    fn name(&self) -> &'static str;

    /// The output and its shape from the inputs' (contiguous) data and dims.
    fn run<T: Real>(&self, xs: [&[T]; N], dims: [&[usize]; N]) -> Result<(Vec<T>, Shape)>;

    /// The inputs' gradients from the output `res` and its gradient `dout` (ops without a
    /// backward keep this default and are applied with `apply_op*_no_bwd`).
    fn bwd(&self, _xs: [&Tensor; N], _res: &Tensor, _dout: &Tensor) -> Result<[Option<Tensor>; N]> {
        Err(candle_core::Error::BackwardNotSupported { op: self.name() })
    }
}

/// A [`Kernel`] as a candle `CustomOp2` / `CustomOp3`.
pub(crate) struct Op<K>(pub(crate) K);

impl<K: Kernel<2>> CustomOp2 for Op<K> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_fwd(&self.0, [(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        a1: &Tensor,
        a2: &Tensor,
        res: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [g1, g2] = self.0.bwd([a1, a2], res, dout)?;
        Ok((g1, g2))
    }
}

impl<K: Kernel<3>> CustomOp3 for Op<K> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_fwd(&self.0, [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        a1: &Tensor,
        a2: &Tensor,
        a3: &Tensor,
        res: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [g1, g2, g3] = self.0.bwd([a1, a2, a3], res, dout)?;
        Ok((g1, g2, g3))
    }
}

/// Runs `k` on the inputs as f32, else as f64; an error for other or mixed dtypes.
fn cpu_fwd<K: Kernel<N>, const N: usize>(
    k: &K,
    ins: [(&CpuStorage, &Layout); N],
) -> Result<(CpuStorage, Shape)> {
    match cpu_fwd_as::<f32, K, N>(k, ins)? {
        Some(out) => Ok(out),
        None => cpu_fwd_as::<f64, K, N>(k, ins)?.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: fast kernel supports f32 and f64 (same dtype) only",
                k.name()
            ))
        }),
    }
}

/// [`cpu_fwd`] for one element type: None if an input has another.
fn cpu_fwd_as<T: Real, K: Kernel<N>, const N: usize>(
    k: &K,
    ins: [(&CpuStorage, &Layout); N],
) -> Result<Option<(CpuStorage, Shape)>> {
    let mut xs: [&[T]; N] = [&[]; N];
    for (x, (s, l)) in xs.iter_mut().zip(ins) {
        let Some(v) = T::data(s) else {
            return Ok(None);
        };
        *x = match l.contiguous_offsets() {
            Some((a, b)) => &v[a..b],
            None => candle_core::bail!("{}: fast kernel needs a contiguous tensor", k.name()),
        };
    }
    let (y, shape) = k.run(xs, ins.map(|(_, l)| l.dims()))?;
    Ok(Some((T::storage(y), shape)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{
        Arch, EncoderConfig, HeadConfig, LossConfig, OptimizerConfig, OptimizerKind, Stem,
    };
    use crate::ml::model::init::seeded_var_builder;
    use crate::ml::model::SimclrModel;
    use crate::ml::training::loss::contrastive_loss;
    use crate::ml::training::optim::Optimizer;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarMap;

    fn images(n: usize, side: usize, seed: u64) -> Tensor {
        let len = n * 3 * side * side;
        let v: Vec<f32> = (0..len as u64)
            .map(|i| {
                let z = (i + 1)
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(seed.wrapping_mul(1442695040888963407));
                (z >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        Tensor::from_vec(v, (n, 3, side, side), &Device::Cpu).unwrap()
    }

    /// Losses of a few SimCLR steps (forward, NT-Xent, backward, SGD with momentum) and the
    /// final variables, running statistics included.
    fn tiny_pretrain(
        k: Kernels,
        enc: &EncoderConfig,
        steps: u64,
        dtype: DType,
    ) -> (Vec<f64>, Vec<(String, Vec<f64>)>) {
        with_kernels(k, || {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 11, &Device::Cpu).set_dtype(dtype);
            let model = SimclrModel::new(vb, enc, &HeadConfig::default(), 3).unwrap();
            let cfg = OptimizerConfig {
                kind: OptimizerKind::Sgd,
                weight_decay: 1e-4,
                ..OptimizerConfig::default()
            };
            let mut opt = Optimizer::from_varmap(&cfg, &map);
            let n = 6;
            let mut losses = Vec::new();
            for step in 0..steps {
                // Side 16: the ConvNet's maps stay even (16, 8, 4, 2). On odd maps candle's
                // avg-pool backward (a nearest upsample) is wrong, and the fused block is not
                // (block.rs tests it against finite differences).
                let x = images(2 * n, 16, step).to_dtype(dtype).unwrap();
                let (_, z) = model.forward_t(&x, true).unwrap();
                let z1 = z.narrow(0, 0, n).unwrap();
                let z2 = z.narrow(0, n, n).unwrap();
                let out = contrastive_loss(&z1, &z2, &LossConfig::default()).unwrap();
                losses.push(out.loss.to_dtype(DType::F64).unwrap().to_scalar().unwrap());
                let grads = out.loss.backward().unwrap();
                opt.step(&grads, 0.05).unwrap();
            }
            let data = map.data().lock().unwrap();
            let mut vars: Vec<(String, Vec<f64>)> = data
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_tensor()
                            .to_dtype(DType::F64)
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1()
                            .unwrap(),
                    )
                })
                .collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            (losses, vars)
        })
    }

    /// `zero_init_residual`: each residual block's last BatchNorm starts at gamma 0, so at
    /// step 0 a block's sum before its ReLU is exactly 0 wherever its shortcut is: the
    /// two paths agree only if both give a ReLU no gradient at exactly 0, as PyTorch does.
    fn assert_same_run(
        arch: Arch,
        zero_init_residual: bool,
        steps: u64,
        dtype: DType,
        (loss_tol, var_tol): (f64, f64),
    ) {
        let enc = EncoderConfig {
            arch,
            stem: Stem::Cifar,
            width: 1,
            zero_init_residual,
        };
        let (l1, v1) = tiny_pretrain(Kernels::Candle, &enc, steps, dtype);
        let (l2, v2) = tiny_pretrain(Kernels::Fast, &enc, steps, dtype);
        for (a, b) in l1.iter().zip(&l2) {
            assert!(
                (a - b).abs() <= loss_tol * a.abs(),
                "{arch:?} zero-init {zero_init_residual} {dtype:?} losses {l1:?} vs {l2:?}"
            );
        }
        // Both paths moved the weights alike (running statistics included).
        assert_eq!(v1.len(), v2.len());
        for ((n1, a), (n2, b)) in v1.iter().zip(&v2) {
            assert_eq!(n1, n2);
            let scale = a.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
            let d = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                d <= var_tol * scale,
                "{arch:?} zero-init {zero_init_residual} {dtype:?} {n1}: max diff {d} ({scale})"
            );
        }
    }

    #[test]
    fn pretrain_with_fast_kernels_matches_candle_ops() {
        // f64: the two paths agree to rounding through several optimizer steps, with
        // residual blocks that start as their shortcut (the default) and without.
        let f64_tol = (1e-10, 1e-9);
        assert_same_run(Arch::Convnet, false, 4, DType::F64, f64_tol);
        assert_same_run(Arch::Resnet18, false, 2, DType::F64, f64_tol);
        assert_same_run(Arch::Resnet18, true, 2, DType::F64, f64_tol);
        // f32, what training uses.
        assert_same_run(Arch::Convnet, false, 4, DType::F32, (1e-4, 1e-3));
    }

    #[test]
    fn override_is_per_thread_and_restored() {
        with_kernels(Kernels::Candle, || {
            assert_eq!(kernels(), Kernels::Candle);
            with_kernels(Kernels::Fast, || assert_eq!(kernels(), Kernels::Fast));
            assert_eq!(kernels(), Kernels::Candle);
            std::thread::spawn(|| assert_eq!(kernels(), Kernels::Fast))
                .join()
                .unwrap();
        });
    }
}
