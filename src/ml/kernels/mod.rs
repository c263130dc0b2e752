//! Fast CPU kernels for the encoder's hot ops (issue 6, DESIGN.md 11): conv2d (forward,
//! input gradient, weight gradient) as im2col / col2im around the `gemm` crate, and
//! BatchNorm (+ ReLU) in training mode as one fused op with a one-pass backward. Both are
//! candle `CustomOp`s with their own backward, so candle's autograd drives them.
//!
//! Which ops the encoder uses is chosen by [`Kernels`]: a process-wide default
//! ([`set_kernels`], `Fast` unless changed) and a per-thread override ([`with_kernels`], for
//! tests and the bench's "before" column). On CUDA the encoder always keeps candle's
//! (cuDNN) path; these kernels are CPU-only. Results equal candle's ops within float
//! rounding (tests below and in `conv` / `bn`).
//!
//! Work is spread over rayon's global pool (both cores), split into a fixed number of
//! parts where partial sums are reduced, so results do not depend on the thread count.

pub(crate) mod bn;
pub(crate) mod conv;

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{CpuStorage, Layout, Result};

pub use bn::batch_norm_train;
pub use conv::conv2d;

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

/// Set the process-wide default (the bench uses it for its "before" column).
pub fn set_kernels(k: Kernels) {
    DEFAULT.store(matches!(k, Kernels::Fast) as u8, Ordering::Relaxed);
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
}

/// The contiguous slice of a storage a layout describes.
pub(crate) fn slice<'a, T>(v: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: fast kernel needs a contiguous tensor"),
    }
}

/// Number of parts reductions are split into (independent of the thread count, so results
/// are too).
pub(crate) const PARTS: usize = 4;

pub(crate) fn wrap<T: Real>(v: Vec<T>) -> CpuStorage {
    // Vec<T> -> CpuStorage for the two float types we support.
    let any: Box<dyn std::any::Any> = Box::new(v);
    match any.downcast::<Vec<f32>>() {
        Ok(v) => CpuStorage::F32(*v),
        Err(any) => match any.downcast::<Vec<f64>>() {
            Ok(v) => CpuStorage::F64(*v),
            Err(_) => unreachable!("Real is only implemented for f32 and f64"),
        },
    }
}
