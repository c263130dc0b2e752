//! Deterministic test tensors and comparisons for the kernels' tests.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

/// Values in [lo, hi) from a fixed integer hash (no RNG state, no candle RNG).
pub(crate) fn uniform(shape: &[usize], seed: u64, lo: f64, hi: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n as u64)
        .map(|i| {
            let z = (i + 1)
                .wrapping_mul(6364136223846793005)
                .wrapping_add(seed.wrapping_mul(1442695040888963407));
            lo + ((z >> 11) as f64 / (1u64 << 53) as f64) * (hi - lo)
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// (B, Cin, H, W, Cout, k, stride, pad) of a conv test case.
pub(crate) type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

/// f64 then f32, each with its tolerance: the dtypes comparisons with candle's ops run in.
pub(crate) fn dtypes(tol_f64: f64, tol_f32: f64) -> [(DType, f64); 2] {
    [(DType::F64, tol_f64), (DType::F32, tol_f32)]
}

/// Values in [-1, 1): what most kernel tests feed.
pub(crate) fn rnd(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    uniform(shape, seed, -1.0, 1.0, dtype)
}

/// Checks autograd's gradient of the scalar `loss()` against central finite
/// differences (f64, eps 1e-6) for every `stride`-th element of each named variable.
pub(crate) fn assert_grads_match_fd(
    loss: impl Fn() -> Tensor,
    vars: &[(&str, candle_core::Var)],
    stride: usize,
    tol: f64,
) {
    let grads = loss().backward().unwrap();
    let eps = 1e-6;
    for (name, v) in vars {
        let v0 = values(v.as_tensor());
        let g = values(grads.get(v).unwrap());
        for i in (0..v0.len()).step_by(stride) {
            let at = |delta: f64| {
                let mut t = v0.clone();
                t[i] += delta;
                v.set(&Tensor::from_vec(t, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            assert!((fd - g[i]).abs() < tol, "d{name}[{i}]: {} vs fd {fd}", g[i]);
        }
    }
}

/// The elements of an f64 tensor, flattened.
pub(crate) fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Gradients of `sum(y * r)`: a scalar loss that weighs every output differently.
pub(crate) fn weighted_grads(y: Tensor, r: &Tensor) -> GradStore {
    (y * r).unwrap().sum_all().unwrap().backward().unwrap()
}

/// max |a - b| as f64.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}
