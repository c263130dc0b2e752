//! Training-mode BatchNorm (+ optional ReLU) as one candle `CustomOp3` over
//! `(x [B, C, ...], gamma [C], beta [C])`, with a one-pass backward that returns dx, dgamma
//! and dbeta together. Same maths as PyTorch / candle_nn (batch statistics, biased variance
//! for normalising, unbiased for the running variance, momentum update), replacing the
//! dozen candle ops and their temporaries of `BatchNorm::forward_t(x, true)`.
//!
//! Statistics are accumulated in f64 (per channel, channels in parallel); the elementwise
//! passes run per image in parallel.

use std::sync::{Arc, Mutex};

use candle_core::{Result, Shape, Tensor, Var};
use candle_nn::BatchNorm;
use rayon::prelude::*;

use super::{lock_err, Kernel, Op, Real};

/// Per-channel batch mean and biased variance, shared between the forward op, its backward
/// and the caller (which updates the running statistics).
type Stash = Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>;

#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub(super) b: usize,
    pub(super) c: usize,
    pub(super) hw: usize,
}

impl Dims {
    fn of(dims: &[usize]) -> Result<Self> {
        if dims.len() < 2 || dims[0] == 0 {
            candle_core::bail!("batch-norm input must be [B, C, ...] with B >= 1, got {dims:?}");
        }
        Ok(Self {
            b: dims[0],
            c: dims[1],
            hw: dims[2..].iter().product(),
        })
    }
    /// Values per channel.
    pub(super) fn m(&self) -> usize {
        self.b * self.hw
    }
    pub(super) fn at(&self, b: usize, c: usize) -> std::ops::Range<usize> {
        let o = (b * self.c + c) * self.hw;
        o..o + self.hw
    }
}

/// Sum of `f(i)` over a slice in 8 independent f64 lanes (vectorisable, and less rounding
/// than one running sum).
fn lane_sum<T: Real>(xs: &[T], f: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    let mut s: f64 = rest.iter().map(|&v| f(v)).sum();
    for a in acc {
        s += a;
    }
    s
}

pub(super) fn stats<T: Real>(x: &[T], d: Dims) -> (Vec<f64>, Vec<f64>) {
    let m = d.m() as f64;
    (0..d.c)
        .into_par_iter()
        .map(|c| {
            let mean = (0..d.b)
                .map(|b| lane_sum(&x[d.at(b, c)], T::to_f64))
                .sum::<f64>()
                / m;
            let var = (0..d.b)
                .map(|b| {
                    lane_sum(&x[d.at(b, c)], |v| {
                        let z = v.to_f64() - mean;
                        z * z
                    })
                })
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .unzip()
}

fn forward<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    d: Dims,
    eps: f64,
    relu: bool,
) -> (Vec<T>, Vec<f64>, Vec<f64>) {
    let (mean, var) = stats(x, d);
    // y = a * x + s with a = gamma / sqrt(var + eps), s = beta - a * mean.
    let (a, s): (Vec<T>, Vec<T>) = (0..d.c)
        .map(|c| {
            let a = gamma[c].to_f64() / (var[c] + eps).sqrt();
            (T::from_f64(a), T::from_f64(beta[c].to_f64() - a * mean[c]))
        })
        .unzip();
    let mut y = vec![T::ZERO; x.len()];
    let img = d.c * d.hw;
    y.par_chunks_mut(img).enumerate().for_each(|(b, yb)| {
        for c in 0..d.c {
            let xs = &x[d.at(b, c)];
            let ys = &mut yb[c * d.hw..(c + 1) * d.hw];
            let (ac, sc) = (a[c], s[c]);
            if relu {
                for (o, &v) in ys.iter_mut().zip(xs) {
                    let t = v * ac + sc;
                    *o = if t > T::ZERO { t } else { T::ZERO };
                }
            } else {
                for (o, &v) in ys.iter_mut().zip(xs) {
                    *o = v * ac + sc;
                }
            }
        }
    });
    (y, mean, var)
}

/// Packed `[dx (numel), dgamma (C), dbeta (C)]` of the forward that saved `bwd`'s statistics.
fn backward<T: Real>(bwd: &BnBwd, [x, dy, y]: [&[T]; 3], d: Dims) -> Vec<T> {
    let BnBwd {
        eps,
        relu,
        ref gamma,
        ref mean,
        ref var,
    } = *bwd;
    let m = d.m() as f64;
    let n = x.len();
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    // g = dy masked by the ReLU; sums per channel: sum g, sum g * (x - mean).
    let (sg, sgx): (Vec<f64>, Vec<f64>) = (0..d.c)
        .into_par_iter()
        .map(|c| {
            let mu = mean[c];
            let mut sg = 0.0;
            let mut sgx = 0.0;
            for b in 0..d.b {
                let r = d.at(b, c);
                let (xs, ds, ys) = (&x[r.clone()], &dy[r.clone()], &y[r]);
                let mut a = [0f64; 4];
                let mut bx = [0f64; 4];
                for i in 0..xs.len() {
                    let g = if relu && ys[i] <= T::ZERO {
                        0.0
                    } else {
                        ds[i].to_f64()
                    };
                    a[i % 4] += g;
                    bx[i % 4] += g * (xs[i].to_f64() - mu);
                }
                sg += a.iter().sum::<f64>();
                sgx += bx.iter().sum::<f64>();
            }
            (sg, sgx)
        })
        .unzip();
    // dx = gamma * invstd * (g - sg / M - xhat * sum(g xhat) / M), written as
    // dx = k1 * g + k2 * x + k3 per channel.
    let coef: Vec<(T, T, T)> = (0..d.c)
        .map(|c| {
            let is = invstd[c];
            let k1 = gamma[c] * is;
            let sgxhat = sgx[c] * is;
            let k2 = -k1 * is * sgxhat / m;
            let k3 = -k1 * sg[c] / m - k2 * mean[c];
            (T::from_f64(k1), T::from_f64(k2), T::from_f64(k3))
        })
        .collect();
    let mut out = vec![T::ZERO; n + 2 * d.c];
    let img = d.c * d.hw;
    out[..n]
        .par_chunks_mut(img)
        .enumerate()
        .for_each(|(b, ob)| {
            for c in 0..d.c {
                let r = d.at(b, c);
                let (xs, ds, ys) = (&x[r.clone()], &dy[r.clone()], &y[r]);
                let (k1, k2, k3) = coef[c];
                let os = &mut ob[c * d.hw..(c + 1) * d.hw];
                for i in 0..os.len() {
                    let g = if relu && ys[i] <= T::ZERO {
                        T::ZERO
                    } else {
                        ds[i]
                    };
                    os[i] = k1 * g + k2 * xs[i] + k3;
                }
            }
        });
    for c in 0..d.c {
        out[n + c] = T::from_f64(sgx[c] * invstd[c]);
        out[n + d.c + c] = T::from_f64(sg[c]);
    }
    out
}

struct BnFwd {
    eps: f64,
    relu: bool,
    stash: Stash,
}

impl Kernel<3> for BnFwd {
    fn name(&self) -> &'static str {
        "fast-batch-norm-train"
    }

    fn run<T: Real>(
        &self,
        [x, gamma, beta]: [&[T]; 3],
        dims: [&[usize]; 3],
    ) -> Result<(Vec<T>, Shape)> {
        let d = Dims::of(dims[0])?;
        if gamma.len() != d.c || beta.len() != d.c {
            candle_core::bail!("batch-norm: gamma / beta must have {} elements", d.c);
        }
        let (y, mean, var) = forward(x, gamma, beta, d, self.eps, self.relu);
        *self.stash.lock().map_err(lock_err)? = Some((mean, var));
        Ok((y, Shape::from(dims[0])))
    }

    fn bwd(
        &self,
        [x, gamma, _beta]: [&Tensor; 3],
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let (mean, var) = self
            .stash
            .lock()
            .map_err(lock_err)?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("batch-norm backward before forward".into()))?;
        let op = BnBwd {
            eps: self.eps,
            relu: self.relu,
            gamma: gamma
                .to_dtype(candle_core::DType::F64)?
                .flatten_all()?
                .to_vec1()?,
            mean,
            var,
        };
        let dy = dy.contiguous()?;
        let n = x.elem_count();
        let c = op.gamma.len();
        let packed = x.apply_op3_no_bwd(&dy, res, &Op(op))?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dg = packed.narrow(0, n, c)?.reshape(gamma.shape())?;
        let db = packed.narrow(0, n + c, c)?.reshape(gamma.shape())?;
        Ok([Some(dx), Some(dg), Some(db)])
    }
}

/// (x, dy, y) -> packed [dx, dgamma, dbeta].
struct BnBwd {
    eps: f64,
    relu: bool,
    gamma: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
}

impl Kernel<3> for BnBwd {
    fn name(&self) -> &'static str {
        "fast-batch-norm-train-backward"
    }

    fn run<T: Real>(&self, [x, dy, y]: [&[T]; 3], dims: [&[usize]; 3]) -> Result<(Vec<T>, Shape)> {
        let d = Dims::of(dims[0])?;
        let out = backward(self, [x, dy, y], d);
        Ok((out, Shape::from(x.len() + 2 * d.c)))
    }
}

/// Training-mode `bn.forward_t(x, true)` (then `.relu()` if `relu`) as one fused CPU op:
/// normalises `x [B, C, ...]` with the batch statistics, applies gamma / beta and updates
/// bn's running mean / variance in place exactly as candle_nn does (momentum, unbiased
/// variance). Needs an affine BatchNorm that removes the mean (the encoders' `bn`).
pub fn batch_norm_train(x: &Tensor, bn: &BatchNorm, relu: bool) -> Result<Tensor> {
    let Some((gamma, beta)) = bn.weight_and_bias() else {
        candle_core::bail!("fast batch-norm needs an affine BatchNorm");
    };
    if !x.device().is_cpu() {
        candle_core::bail!("fast batch-norm runs on the CPU only");
    }
    let d = Dims::of(x.dims())?;
    if d.c != gamma.elem_count() {
        candle_core::bail!(
            "batch-norm input {:?} does not have {} channels",
            x.shape(),
            gamma.elem_count()
        );
    }
    let stash: Stash = Arc::new(Mutex::new(None));
    let y = x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        Op(BnFwd {
            eps: bn.eps(),
            relu,
            stash: stash.clone(),
        }),
    )?;
    let (mean, var) =
        stash.lock().map_err(lock_err)?.clone().ok_or_else(|| {
            candle_core::Error::Msg("batch-norm forward left no statistics".into())
        })?;
    update_running(bn, mean, var, d.m())?;
    Ok(y)
}

/// bn's running statistics after a batch with these per-channel mean / biased variance over
/// `m` values per channel, with candle_nn's formulas (batch_norm.rs, forward_train:
/// momentum, unbiased variance).
pub(super) fn update_running(
    bn: &BatchNorm,
    mean: Vec<f64>,
    var: Vec<f64>,
    m: usize,
) -> Result<()> {
    let mom = bn.momentum();
    let rm = Var::from_tensor(bn.running_mean())?;
    let rv = Var::from_tensor(bn.running_var())?;
    let dev = rm.device().clone();
    let c = mean.len();
    let mean = Tensor::from_vec(mean, c, &dev)?.to_dtype(rm.dtype())?;
    let var = Tensor::from_vec(var, c, &dev)?.to_dtype(rv.dtype())?;
    let mf = m as f64;
    rm.set(&((rm.as_tensor() * (1.0 - mom))? + (mean * mom)?)?)?;
    rv.set(&((rv.as_tensor() * (1.0 - mom))? + (var * (mom * mf / (mf - 1.0)))?)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tensors::{dtypes, max_abs_diff as diff, values, weighted_grads};
    use candle_core::{DType, Device, ModuleT};
    use candle_nn::{VarBuilder, VarMap};

    fn rnd(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        crate::test_support::tensors::uniform(shape, seed, -1.0, 2.0, dtype)
    }

    fn new_bn(c: usize, dtype: DType, seed: u64) -> (VarMap, BatchNorm) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, dtype, &Device::Cpu);
        let bn = crate::ml::model::encoder::bn(c, vb).unwrap();
        // Non-trivial affine parameters and running statistics.
        for (name, s) in [("weight", 1), ("bias", 2), ("running_mean", 3)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&rnd(&[c], seed + s, dtype)).unwrap();
        }
        (map, bn)
    }

    fn get(map: &VarMap, name: &str) -> Var {
        map.data().lock().unwrap().get(name).unwrap().clone()
    }

    #[test]
    fn forward_backward_and_running_stats_match_candle_nn() {
        for (dtype, tol) in dtypes(1e-12, 2e-5) {
            for (i, shape) in [vec![4, 3, 5, 6], vec![7, 5], vec![2, 4, 3, 3]]
                .iter()
                .enumerate()
            {
                for relu in [false, true] {
                    let c = shape[1];
                    let (m1, bn1) = new_bn(c, dtype, 10 * i as u64);
                    let (m2, bn2) = new_bn(c, dtype, 10 * i as u64);
                    let x = Var::from_tensor(&rnd(shape, i as u64, dtype)).unwrap();
                    let r = rnd(shape, 50 + i as u64, dtype);
                    let ours = batch_norm_train(x.as_tensor(), &bn1, relu).unwrap();
                    let mut theirs = bn2.forward_t(x.as_tensor(), true).unwrap();
                    if relu {
                        theirs = theirs.relu().unwrap();
                    }
                    assert!(diff(&ours, &theirs) < tol, "forward {shape:?} relu {relu}");
                    for name in ["running_mean", "running_var"] {
                        let d = diff(get(&m1, name).as_tensor(), get(&m2, name).as_tensor());
                        assert!(d < tol, "{name} {shape:?}: {d}");
                    }
                    let (g1, g2) = (weighted_grads(ours, &r), weighted_grads(theirs, &r));
                    let pairs = [
                        ("dx", x.clone(), x.clone()),
                        ("dgamma", get(&m1, "weight"), get(&m2, "weight")),
                        ("dbeta", get(&m1, "bias"), get(&m2, "bias")),
                    ];
                    for (name, a, b) in pairs {
                        let d = diff(g1.get(&a).unwrap(), g2.get(&b).unwrap());
                        assert!(
                            d < tol * 10.0,
                            "{name} {shape:?} relu {relu} {dtype:?}: {d}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let shape = [3usize, 2, 2, 3];
        let x0 = values(&rnd(&shape, 4, DType::F64));
        let r = rnd(&shape, 5, DType::F64);
        let (_m, bn) = new_bn(2, DType::F64, 0);
        let f = |xv: &[f64]| -> f64 {
            let x = Tensor::from_slice(xv, &shape, &Device::Cpu).unwrap();
            (batch_norm_train(&x, &bn, false).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let x = Var::from_tensor(&Tensor::from_slice(&x0, &shape, &Device::Cpu).unwrap()).unwrap();
        let gs = (batch_norm_train(x.as_tensor(), &bn, false).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = values(gs.get(&x).unwrap());
        let eps = 1e-6;
        for i in 0..x0.len() {
            let (mut a, mut b) = (x0.clone(), x0.clone());
            a[i] += eps;
            b[i] -= eps;
            let fd = (f(&a) - f(&b)) / (2.0 * eps);
            assert!((fd - gx[i]).abs() < 1e-6, "dx[{i}]: {} vs fd {fd}", gx[i]);
        }
    }
}
