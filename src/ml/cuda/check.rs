//! The self-check of an implementation of the training ops ([`TrainOps`]) against a
//! reference: seeded small inputs, a few convolution shapes (3x3 and 1x1, stride 1 and 2,
//! an odd side, the ImageNet stem's 7x7) and batch-norm shapes; for each, the forward
//! output and every gradient (convolution: dx and dw; batch norm: dx, dgamma, dbeta) and
//! the running statistics after one update, compared by their largest difference relative
//! to the largest reference value. An op that fails to run fails the check.
//!
//! Tolerances ([`tolerance`]): 5e-3 in float32 (cuDNN may pick TF32 tensor-core algorithms
//! for candle's float32 forward, whose inputs keep 10 mantissa bits: about 1e-3 on these
//! sums), 5e-2 in bfloat16 (8 mantissa bits), 1e-9 in float64 (the CPU tests). A wrong op
//! (a missed padding row, a transposed kernel, a biased running variance, a dropped term)
//! is off by tens of percent.
//!
//! Written over any pair of implementations, so `cargo test` runs the comparison and the
//! fallback on the CPU (the CPU kernels as a right candidate, deliberately wrong ops as
//! wrong ones); on a GPU the candidate is cuDNN and the reference candle's CUDA ops.

use std::fmt::Write as _;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{BatchNormConfig, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::geometry::ConvGeometry;
use super::ops::TrainOps;

/// The largest relative difference the check accepts in `dtype`.
pub(crate) fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-9,
        DType::BF16 | DType::F16 => 5e-2,
        _ => 5e-3,
    }
}

/// One compared quantity of one case.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The op, its shape and dtype.
    pub case: String,
    /// `y`, `dx`, `dw`, `dgamma`, `dbeta`, `running_mean` or `running_var`.
    pub quantity: &'static str,
    /// max |candidate - reference| / max |reference| (NaN or infinite if the candidate's
    /// output is not finite).
    pub error: f64,
    pub tolerance: f64,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.error.is_finite() && self.error <= self.tolerance
    }
}

/// The outcome of one self-check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub candidate: &'static str,
    pub reference: &'static str,
    pub comparisons: Vec<Comparison>,
    /// Cases where an op returned an error instead of a result ("case: error").
    pub errors: Vec<String>,
}

impl CheckReport {
    /// Every case ran and every quantity is within its tolerance.
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
            && !self.comparisons.is_empty()
            && self.comparisons.iter().all(Comparison::ok)
    }

    /// The largest error as a fraction of its tolerance (infinite if an op failed or gave
    /// a non-finite value): below 1 is a pass.
    pub fn worst_ratio(&self) -> f64 {
        if !self.errors.is_empty() {
            return f64::INFINITY;
        }
        self.comparisons.iter().fold(0.0, |m, c| {
            let r = c.error / c.tolerance;
            if r.is_nan() {
                f64::INFINITY
            } else {
                m.max(r)
            }
        })
    }

    /// A summary line, then one line per case (its worst quantity) and per error.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} vs {}: {} ({} quantities, worst {:.3} of its tolerance)",
            self.candidate,
            self.reference,
            if self.passed() { "passed" } else { "FAILED" },
            self.comparisons.len(),
            self.worst_ratio()
        );
        let mut cases: Vec<&str> = self.comparisons.iter().map(|c| c.case.as_str()).collect();
        cases.dedup();
        for case in cases {
            let of_case = self.comparisons.iter().filter(|c| c.case == case);
            let worst = of_case
                .clone()
                .max_by(|a, b| (a.error / a.tolerance).total_cmp(&(b.error / b.tolerance)));
            let bad: Vec<&str> = of_case.filter(|c| !c.ok()).map(|c| c.quantity).collect();
            if let Some(w) = worst {
                let verdict = if bad.is_empty() {
                    "ok".to_string()
                } else {
                    format!("WRONG {}", bad.join(", "))
                };
                let _ = write!(
                    s,
                    "\n  {case}: {verdict} (worst {} {:.2e}, tolerance {:.0e})",
                    w.quantity, w.error, w.tolerance
                );
            }
        }
        for e in &self.errors {
            let _ = write!(s, "\n  error: {e}");
        }
        s
    }
}

/// One convolution of the check: `x [n, c_in, side, side]`, `c_out` kernels `k x k`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvCase {
    pub(crate) n: usize,
    pub(crate) c_in: usize,
    pub(crate) side: usize,
    pub(crate) c_out: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
}

const fn conv(
    n: usize,
    c_in: usize,
    side: usize,
    c_out: usize,
    k: usize,
    stride: usize,
) -> ConvCase {
    ConvCase {
        n,
        c_in,
        side,
        c_out,
        k,
        stride,
        pad: k / 2,
    }
}

/// Every kind of convolution the encoders run: 3x3 stride 1 (blocks, CIFAR stem), 3x3
/// stride 2 on an even and an odd side (downsampling blocks), 1x1 stride 2 and 1
/// (projection shortcuts, Bottlenecks), 7x7 stride 2 (ImageNet stem).
pub(crate) const CONV_CASES: [ConvCase; 6] = [
    conv(2, 3, 8, 8, 3, 1),
    conv(2, 8, 8, 16, 3, 2),
    conv(3, 4, 7, 6, 3, 2),
    conv(2, 8, 8, 16, 1, 2),
    conv(2, 16, 5, 8, 1, 1),
    conv(2, 3, 12, 4, 7, 2),
];

/// Batch-norm inputs: a conv output, one with a single pixel per image (the last stage of
/// a small input), one with few channels and odd sides.
pub(crate) const BN_CASES: [[usize; 4]; 3] = [[4, 8, 5, 5], [6, 16, 1, 1], [3, 3, 7, 7]];

/// Runs every case through `candidate` and `reference` on `device`, the convolutions in
/// each of `conv_dtypes`, batch norm in float32 (where the encoders run it) or float64 if
/// that is the only dtype asked.
pub(crate) fn run_check(
    candidate: &dyn TrainOps,
    reference: &dyn TrainOps,
    device: &Device,
    conv_dtypes: &[DType],
) -> CheckReport {
    let mut report = CheckReport {
        candidate: candidate.name(),
        reference: reference.name(),
        comparisons: Vec::new(),
        errors: Vec::new(),
    };
    let mut seed = 0u64;
    for &dtype in conv_dtypes {
        for case in CONV_CASES {
            seed += 1;
            let name = format!(
                "conv {}x{} stride {} on [{}, {}, {s}, {s}] -> {} {dtype:?}",
                case.k,
                case.k,
                case.stride,
                case.n,
                case.c_in,
                case.c_out,
                s = case.side
            );
            let run = |ops: &dyn TrainOps| conv_quantities(ops, case, dtype, device, seed);
            compare(&mut report, &name, run(candidate), run(reference), dtype);
        }
    }
    let bn_dtype = if conv_dtypes == [DType::F64] {
        DType::F64
    } else {
        DType::F32
    };
    for dims in BN_CASES {
        seed += 1;
        let name = format!("batch norm on {dims:?} {bn_dtype:?}");
        let run = |ops: &dyn TrainOps| bn_quantities(ops, dims, bn_dtype, device, seed);
        compare(&mut report, &name, run(candidate), run(reference), bn_dtype);
    }
    report
}

type Quantities = Vec<(&'static str, Tensor)>;

fn compare(
    report: &mut CheckReport,
    case: &str,
    candidate: Result<Quantities>,
    reference: Result<Quantities>,
    dtype: DType,
) {
    let (got, want) = match (candidate, reference) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(e), _) => {
            report
                .errors
                .push(format!("{case}: {} failed: {e}", report.candidate));
            return;
        }
        (_, Err(e)) => {
            report
                .errors
                .push(format!("{case}: {} failed: {e}", report.reference));
            return;
        }
    };
    for ((quantity, g), (_, w)) in got.iter().zip(&want) {
        match relative_error(g, w) {
            Ok(error) => report.comparisons.push(Comparison {
                case: case.to_string(),
                quantity,
                error,
                tolerance: tolerance(dtype),
            }),
            Err(e) => report.errors.push(format!("{case}: {quantity}: {e}")),
        }
    }
}

/// max |a - b| / max |b| over all elements (same shape), in float64; infinite or NaN if
/// `a` has a non-finite value.
fn relative_error(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        candle_core::bail!("shape {:?}, expected {:?}", a.dims(), b.dims());
    }
    let host = |t: &Tensor| -> Result<Vec<f64>> {
        t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
    };
    let (a, b) = (host(a)?, host(b)?);
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(&b) {
        let d = (x - y).abs();
        if !d.is_finite() {
            return Ok(f64::NAN);
        }
        worst = worst.max(d);
    }
    Ok(worst / scale)
}

/// Seeded values uniform in [lo, hi) as a tensor of `dtype` on `device`.
fn seeded(
    dims: &[usize],
    seed: u64,
    (lo, hi): (f64, f64),
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(lo..hi)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

fn var(t: Tensor) -> Result<Var> {
    Var::from_tensor(&t)
}

/// y, dx and dw of one convolution under the loss sum(y * r) for a seeded r.
fn conv_quantities(
    ops: &dyn TrainOps,
    case: ConvCase,
    dtype: DType,
    device: &Device,
    seed: u64,
) -> Result<Quantities> {
    let x_dims = [case.n, case.c_in, case.side, case.side];
    let w_dims = [case.c_out, case.c_in, case.k, case.k];
    let g = ConvGeometry::of(&x_dims, &w_dims, case.stride, case.pad)
        .map_err(candle_core::Error::Msg)?;
    let bound = 1.0 / ((case.c_in * case.k * case.k) as f64).sqrt();
    let x = var(seeded(&x_dims, 3 * seed, (-1.0, 1.0), dtype, device)?)?;
    let w = var(seeded(
        &w_dims,
        3 * seed + 1,
        (-bound, bound),
        dtype,
        device,
    )?)?;
    let r = seeded(&g.y_dims(), 3 * seed + 2, (-1.0, 1.0), DType::F32, device)?;
    let r = if dtype == DType::F64 {
        r.to_dtype(DType::F64)?
    } else {
        r
    };
    let y = ops.conv2d(x.as_tensor(), w.as_tensor(), case.stride, case.pad)?;
    let loss = (y.to_dtype(r.dtype())? * &r)?.sum_all()?;
    let grads = loss.backward()?;
    let grad = |v: &Var, what: &str| {
        grads
            .get(v)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no gradient for {what}")))
    };
    Ok(vec![
        ("y", y.clone()),
        ("dx", grad(&x, "x")?),
        ("dw", grad(&w, "w")?),
    ])
}

/// y, dx, dgamma, dbeta and the running statistics after one training-mode batch norm
/// (non-trivial scale, shift and running statistics) under the loss sum(y * r).
fn bn_quantities(
    ops: &dyn TrainOps,
    dims: [usize; 4],
    dtype: DType,
    device: &Device,
    seed: u64,
) -> Result<Quantities> {
    let c = dims[1];
    let map = VarMap::new();
    // The encoders' BatchNorm: PyTorch's eps and momentum, affine.
    let cfg = BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine: true,
        momentum: 0.1,
    };
    let bn = candle_nn::batch_norm(c, cfg, VarBuilder::from_varmap(&map, dtype, device))?;
    let named = |name: &str| -> Result<Var> {
        map.data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("batch norm has no {name}")))
    };
    let (gamma, beta) = (named("weight")?, named("bias")?);
    let (rm, rv) = (named("running_mean")?, named("running_var")?);
    gamma.set(&seeded(&[c], 5 * seed, (0.5, 1.5), dtype, device)?)?;
    beta.set(&seeded(&[c], 5 * seed + 1, (-0.5, 0.5), dtype, device)?)?;
    rm.set(&seeded(&[c], 5 * seed + 2, (-0.2, 0.2), dtype, device)?)?;
    rv.set(&seeded(&[c], 5 * seed + 3, (0.5, 1.5), dtype, device)?)?;
    // An offset and a spread per channel, as conv outputs have.
    let x = var(seeded(&dims, 5 * seed + 4, (-1.0, 3.0), dtype, device)?)?;
    let r = seeded(&dims, 5 * seed + 5, (-1.0, 1.0), dtype, device)?;
    let y = ops.batch_norm_train(x.as_tensor(), &bn)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let grad = |v: &Var, what: &str| {
        grads
            .get(v)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no gradient for {what}")))
    };
    Ok(vec![
        ("y", y.clone()),
        ("dx", grad(&x, "x")?),
        ("dgamma", grad(&gamma, "gamma")?),
        ("dbeta", grad(&beta, "beta")?),
        ("running_mean", rm.as_tensor().copy()?),
        ("running_var", rv.as_tensor().copy()?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::cuda::ops::CandleOps;
    use crate::ml::kernels;
    use candle_core::ModuleT;
    use candle_nn::BatchNorm;

    /// The CPU kernels: a right implementation the check must accept.
    struct CpuKernels;
    impl TrainOps for CpuKernels {
        fn name(&self) -> &'static str {
            "cpu-kernels"
        }
        fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
            kernels::conv2d(x, w, pad, stride)
        }
        fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
            kernels::batch_norm_train(x, bn, false)
        }
    }

    /// Wrong in one way each; right otherwise (candle's ops).
    #[derive(Clone, Copy, PartialEq)]
    enum Fault {
        /// The forward output 1% too large.
        ScaledOutput,
        /// The gradient of the kernel computed for the kernel flipped in space (a classic
        /// backward-filter mistake; forward and dx right).
        FlippedFilterGradient,
        /// Running statistics left as they were.
        NoRunningUpdate,
        /// The running variance biased (divided by m, not m - 1).
        BiasedRunningVariance,
        /// The convolution refuses to run.
        Error,
    }

    struct Wrong(Fault);
    impl TrainOps for Wrong {
        fn name(&self) -> &'static str {
            "deliberately-wrong"
        }
        fn conv2d(&self, x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
            let y = x.conv2d(w, pad, stride, 1, 1)?;
            match self.0 {
                Fault::ScaledOutput => y * 1.01,
                Fault::FlippedFilterGradient => {
                    // The same forward and dx; w's gradient arrives through its flip.
                    let k = w.dim(3)?;
                    let rev: Vec<u32> = (0..k as u32).rev().collect();
                    let rev = Tensor::new(rev.as_slice(), w.device())?;
                    let flipped = w.index_select(&rev, 2)?.index_select(&rev, 3)?;
                    let via_flip = x.detach().conv2d(&flipped, pad, stride, 1, 1)?;
                    let zero = (&via_flip - via_flip.detach())?;
                    x.conv2d(&w.detach(), pad, stride, 1, 1)? + zero
                }
                Fault::Error => candle_core::bail!("no kernel for this shape"),
                _ => Ok(y),
            }
        }
        fn batch_norm_train(&self, x: &Tensor, bn: &BatchNorm) -> Result<Tensor> {
            let (rm, rv) = (bn.running_mean().copy()?, bn.running_var().copy()?);
            let y = bn.forward_t(x, true)?;
            let set = |t: &Tensor, v: &Tensor| Var::from_tensor(t)?.set(v);
            match self.0 {
                Fault::NoRunningUpdate => {
                    set(bn.running_mean(), &rm)?;
                    set(bn.running_var(), &rv)?;
                }
                Fault::BiasedRunningVariance => {
                    let m = (x.elem_count() / x.dim(1)?) as f64;
                    // new = (1 - mom) old + mom * unbiased: take back mom * var / m.
                    let unbiased =
                        ((bn.running_var() - (&rv * (1.0 - bn.momentum()))?)? / bn.momentum())?;
                    let biased = (unbiased * ((m - 1.0) / m))?;
                    set(
                        bn.running_var(),
                        &((&rv * (1.0 - bn.momentum()))? + (biased * bn.momentum())?)?,
                    )?;
                }
                _ => {}
            }
            Ok(y)
        }
    }

    fn check(candidate: &dyn TrainOps, dtypes: &[DType]) -> CheckReport {
        run_check(candidate, &CandleOps, &Device::Cpu, dtypes)
    }

    #[test]
    fn a_right_implementation_passes_in_float32_and_float64() {
        for dtypes in [&[DType::F32][..], &[DType::F64]] {
            let r = check(&CpuKernels, dtypes);
            assert!(r.passed(), "{}", r.describe());
            // Every conv case gives y, dx, dw; every batch-norm case six quantities.
            assert_eq!(
                r.comparisons.len(),
                3 * CONV_CASES.len() + 6 * BN_CASES.len()
            );
            assert!(r.worst_ratio() < 1.0);
        }
        // Against itself: exactly equal.
        assert_eq!(check(&CandleOps, &[DType::F32]).worst_ratio(), 0.0);
    }

    #[test]
    fn each_deliberate_fault_fails_the_check_and_is_named() {
        let cases = [
            (Fault::ScaledOutput, "y"),
            (Fault::FlippedFilterGradient, "dw"),
            (Fault::NoRunningUpdate, "running_mean"),
            (Fault::BiasedRunningVariance, "running_var"),
        ];
        for (fault, quantity) in cases {
            let r = check(&Wrong(fault), &[DType::F32]);
            assert!(!r.passed(), "{quantity}: {}", r.describe());
            assert!(r.worst_ratio() > 1.0);
            let wrong: Vec<&str> = r
                .comparisons
                .iter()
                .filter(|c| !c.ok())
                .map(|c| c.quantity)
                .collect();
            assert!(wrong.contains(&quantity), "{quantity}: {wrong:?}");
            assert!(
                r.describe().contains(&format!("WRONG {quantity}")),
                "{}",
                r.describe()
            );
        }
        // Only the flipped kernel gradient is wrong there: forward and dx pass.
        let r = check(&Wrong(Fault::FlippedFilterGradient), &[DType::F32]);
        assert!(
            r.comparisons
                .iter()
                .filter(|c| c.quantity != "dw")
                .all(Comparison::ok),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn an_op_that_errors_fails_the_check() {
        let r = check(&Wrong(Fault::Error), &[DType::F32]);
        assert!(!r.passed());
        assert_eq!(r.worst_ratio(), f64::INFINITY);
        assert_eq!(r.errors.len(), CONV_CASES.len());
        assert!(r.describe().contains("no kernel for this shape"));
    }

    #[test]
    fn non_finite_output_is_never_within_tolerance() {
        let c = Comparison {
            case: "x".into(),
            quantity: "y",
            error: f64::NAN,
            tolerance: 1.0,
        };
        assert!(!c.ok());
        let a = Tensor::new(&[1f32, f32::INFINITY], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        assert!(relative_error(&a, &b).unwrap().is_nan());
        let empty = CheckReport {
            candidate: "a",
            reference: "b",
            comparisons: vec![],
            errors: vec![],
        };
        assert!(
            !empty.passed(),
            "a check that compared nothing does not pass"
        );
    }
}
