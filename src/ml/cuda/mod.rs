//! The encoder's training ops on CUDA through cuDNN, and the rule that they are used only
//! where they were checked (docs/ARCHITECTURE.md#cuda-ops).
//!
//! candle 0.11's cuDNN feature serves the forward convolution only: its input gradient is
//! its own transposed-convolution kernel, its weight gradient a direct convolution, and
//! BatchNorm a dozen elementwise kernels each way. `cudnn` (built with the `cuda` feature)
//! runs all three convolution directions and training-mode BatchNorm forward and backward
//! through cuDNN, as candle custom ops with their own backward.
//!
//! Before a worker's first stage on a CUDA device, [`prepare_stage`] runs the self-check
//! (`check`: each op against candle's on small seeded inputs) once per device and process;
//! the run config's `conv_impl` ([`ConvImpl`]) and the check's outcome decide the stage's
//! path ([`decide`]): `auto` takes cuDNN only if the check passed, else candle's ops with a
//! warning; `cudnn` fails the stage if it did not; `candle` never uses cuDNN's ops. The
//! encoder asks [`stage_ops`] at each convolution. Nothing else can turn the cuDNN path on,
//! so it never runs unchecked.
//!
//! `geometry` (shapes and descriptor parameters), `workspace` (the shared scratch buffer's
//! growth and the per-shape caches), `check` and the decision are device-free and tested in
//! the default build; only `cudnn` needs the `cuda` feature.

// Without the `cuda` feature there is no device to check: the check, the ops' reference and
// the cuDNN ops' arithmetic run in tests only.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod check;
#[cfg(feature = "cuda")]
mod cudnn;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod geometry;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod ops;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod workspace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};

pub use check::{CheckReport, Comparison};
pub(crate) use ops::TrainOps;

use super::config::ConvImpl;
use super::MlError;

/// Which ops a stage's CUDA training steps take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpsPath {
    /// `ml::cuda`'s cuDNN ops.
    Cudnn,
    /// candle's ops (and on the CPU, the CPU kernels: `conv_impl` means nothing there).
    Candle,
}

/// How a stage will run, and what its device's self-check found.
#[derive(Clone, Debug)]
pub struct StageOps {
    pub path: OpsPath,
    /// The device's self-check (`None` on the CPU, which has nothing to check).
    pub check: Option<Arc<CheckReport>>,
    /// The check ran during this call: the first stage on this device in this process.
    pub first_check: bool,
    /// Why `auto` took candle's ops, when it did.
    pub warning: Option<String>,
}

/// The path a stage takes from its `conv_impl`, whether its device is CUDA, and the
/// device's self-check; an error for a stage that cannot run as asked.
pub(crate) fn decide(
    conv_impl: ConvImpl,
    is_cuda: bool,
    check: Option<&CheckReport>,
) -> Result<(OpsPath, Option<String>), String> {
    if !is_cuda {
        return match conv_impl {
            ConvImpl::Cudnn => Err("conv_impl: cudnn needs a CUDA device; this worker runs on \
                 the CPU (remove conv_impl from the spec, or run the sweep with --devices cuda:0)"
                .into()),
            ConvImpl::Auto | ConvImpl::Candle => Ok((OpsPath::Candle, None)),
        };
    }
    let passed = check.is_some_and(CheckReport::passed);
    let why = || match check {
        Some(r) => r.describe(),
        None => "this build has no cuDNN ops (build with --features cuda)".into(),
    };
    match conv_impl {
        ConvImpl::Candle => Ok((OpsPath::Candle, None)),
        ConvImpl::Cudnn if passed => Ok((OpsPath::Cudnn, None)),
        ConvImpl::Auto if passed => Ok((OpsPath::Cudnn, None)),
        ConvImpl::Cudnn => Err(format!(
            "conv_impl: cudnn, but the self-check of the cuDNN ops did not pass on this \
             device, so they are not used (train with conv_impl: auto, which falls back to \
             candle's ops): {}",
            why()
        )),
        ConvImpl::Auto => Ok((
            OpsPath::Candle,
            Some(format!(
                "warning: the self-check of the cuDNN ops did not pass on this device; this \
                 stage trains with candle's ops instead (correct, slower): {}",
                why()
            )),
        )),
    }
}

/// Each device's self-check, run once per process (the lock is held while it runs, so two
/// threads never both run it).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Verdicts(Mutex<Vec<(usize, Arc<CheckReport>)>>);

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
impl Verdicts {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// The report for `device`, from `run` if there is none yet (then `true`).
    fn get_or_run(
        &self,
        device: usize,
        run: impl FnOnce() -> CheckReport,
    ) -> (Arc<CheckReport>, bool) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, r)) = all.iter().find(|(d, _)| *d == device) {
            return (Arc::clone(r), false);
        }
        let r = Arc::new(run());
        all.push((device, Arc::clone(&r)));
        (r, true)
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
static VERDICTS: Verdicts = Verdicts::new();

/// Whether the stage running now takes the cuDNN ops on CUDA (a worker runs one stage at a
/// time; only [`prepare_stage`] sets it, after a passed check).
static CUDNN_IN_FORCE: AtomicBool = AtomicBool::new(false);

/// Runs `run` and turns a panic in it into a failed report (cuDNN bindings may panic).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn guarded(
    candidate: &'static str,
    reference: &'static str,
    run: impl FnOnce() -> CheckReport,
) -> CheckReport {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        CheckReport {
            candidate,
            reference,
            comparisons: Vec::new(),
            errors: vec![format!("the check panicked: {msg}")],
        }
    })
}

/// The self-check of `device` (run now if it has not run in this process; then `true`),
/// or `None` where there is nothing to check: the CPU, or a build without the cuDNN ops.
fn device_check(device: &Device) -> Option<(Arc<CheckReport>, bool)> {
    #[cfg(feature = "cuda")]
    if let candle_core::DeviceLocation::Cuda { gpu_id } = device.location() {
        return Some(VERDICTS.get_or_run(gpu_id, || {
            guarded("cudnn", "candle", || {
                check::run_check(
                    &cudnn::CudnnOps,
                    &ops::CandleOps,
                    device,
                    &[candle_core::DType::F32, candle_core::DType::BF16],
                )
            })
        }));
    }
    let _ = device;
    None
}

/// Decides the ops of the stage about to run on `device` under `conv_impl`, running the
/// device's self-check first if this process has not. Every stage calls it (the worker
/// before each stage, the trainer before its first step), so the choice never leaks from
/// one stage into the next.
pub fn prepare_stage(device: &Device, conv_impl: ConvImpl) -> Result<StageOps, MlError> {
    CUDNN_IN_FORCE.store(false, Ordering::SeqCst);
    let (check, first_check) = match device_check(device) {
        Some((r, first)) => (Some(r), first),
        None => (None, false),
    };
    let (path, warning) =
        decide(conv_impl, device.is_cuda(), check.as_deref()).map_err(MlError::Config)?;
    CUDNN_IN_FORCE.store(path == OpsPath::Cudnn, Ordering::SeqCst);
    Ok(StageOps {
        path,
        check,
        first_check,
        warning,
    })
}

/// The ops a forward on `x` takes in this stage: the cuDNN ops on CUDA when
/// [`prepare_stage`] chose them, else `None` (the encoder's own path).
pub(crate) fn stage_ops(x: &Tensor) -> Option<&'static dyn TrainOps> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && CUDNN_IN_FORCE.load(Ordering::Relaxed) {
        return Some(&cudnn::CudnnOps);
    }
    let _ = x;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::cuda::check::run_check;
    use crate::ml::cuda::ops::CandleOps;
    use candle_core::{DType, Result};
    use candle_nn::BatchNorm;

    fn report(passed: bool) -> CheckReport {
        CheckReport {
            candidate: "cudnn",
            reference: "candle",
            comparisons: vec![Comparison {
                case: "conv 3x3".into(),
                quantity: "dx",
                error: if passed { 1e-4 } else { 0.3 },
                tolerance: 5e-3,
            }],
            errors: vec![],
        }
    }

    #[test]
    fn auto_takes_cudnn_only_after_a_passed_check_and_falls_back_with_a_warning() {
        let (ok, bad) = (report(true), report(false));
        assert_eq!(
            decide(ConvImpl::Auto, true, Some(&ok)),
            Ok((OpsPath::Cudnn, None))
        );
        let (path, warning) = decide(ConvImpl::Auto, true, Some(&bad)).unwrap();
        assert_eq!(path, OpsPath::Candle);
        let warning = warning.unwrap();
        assert!(
            warning.contains("did not pass") && warning.contains("WRONG dx"),
            "{warning}"
        );
        // No check at all (a build without the ops) is no pass.
        assert_eq!(
            decide(ConvImpl::Auto, true, None).unwrap().0,
            OpsPath::Candle
        );
    }

    #[test]
    fn cudnn_demanded_fails_the_stage_unless_checked_and_candle_never_uses_it() {
        assert_eq!(
            decide(ConvImpl::Cudnn, true, Some(&report(true))),
            Ok((OpsPath::Cudnn, None))
        );
        let err = decide(ConvImpl::Cudnn, true, Some(&report(false))).unwrap_err();
        assert!(
            err.contains("did not pass") && err.contains("conv 3x3"),
            "{err}"
        );
        for r in [Some(report(true)), Some(report(false)), None] {
            assert_eq!(
                decide(ConvImpl::Candle, true, r.as_ref()),
                Ok((OpsPath::Candle, None))
            );
        }
    }

    #[test]
    fn on_the_cpu_only_cudnn_is_refused() {
        assert!(decide(ConvImpl::Cudnn, false, None)
            .unwrap_err()
            .contains("needs a CUDA device"));
        for c in [ConvImpl::Auto, ConvImpl::Candle] {
            assert_eq!(decide(c, false, None), Ok((OpsPath::Candle, None)));
        }
        let s = prepare_stage(&Device::Cpu, ConvImpl::Auto).unwrap();
        assert_eq!(
            (s.path, s.check.is_none(), s.first_check),
            (OpsPath::Candle, true, false)
        );
        assert!(prepare_stage(&Device::Cpu, ConvImpl::Cudnn).is_err());
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(
            stage_ops(&x).is_none(),
            "the CPU never takes the cuDNN path"
        );
    }

    /// A convolution 2% off: the check must catch it.
    struct WrongConv;
    impl TrainOps for WrongConv {
        fn name(&self) -> &'static str {
            "wrong-conv"
        }
        fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
            x.conv2d(&(w * 1.02)?, pad, stride, 1, 1)
        }
        fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
            CandleOps.batch_norm_train(x, bn)
        }
    }

    #[test]
    fn a_wrong_op_fails_its_device_check_once_and_the_stage_falls_back() {
        let verdicts = Verdicts::new();
        let mut runs = 0;
        for expect_first in [true, false, false] {
            let (r, first) = verdicts.get_or_run(7, || {
                runs += 1;
                run_check(&WrongConv, &CandleOps, &Device::Cpu, &[DType::F32])
            });
            assert_eq!(first, expect_first);
            assert!(!r.passed(), "{}", r.describe());
            let (path, warning) = decide(ConvImpl::Auto, true, Some(&r)).unwrap();
            assert_eq!(path, OpsPath::Candle);
            assert!(warning.unwrap().contains("WRONG y, dx"));
            assert!(decide(ConvImpl::Cudnn, true, Some(&r)).is_err());
        }
        assert_eq!(runs, 1, "one check per device and process");
        // Another device is checked on its own.
        let (_, first) = verdicts.get_or_run(8, || report(true));
        assert!(first);
    }

    #[test]
    fn a_panicking_check_is_a_failed_one() {
        let r = guarded("cudnn", "candle", || panic!("descriptor destroy failed"));
        assert!(!r.passed());
        assert!(r.describe().contains("descriptor destroy failed"));
    }
}
