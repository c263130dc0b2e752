//! Fused encoder blocks for training on the CPU:
//!
//! - [`conv_bn_train`]: conv2d -> training-mode BatchNorm (-> ReLU) (-> 2x2 average pool),
//!   the ConvNet's whole block and ResNet's stem (section 2.1, appendix B.9), as ONE
//!   candle op over `(x, w, [gamma; beta])`. Its backward computes dx, dw, dgamma and
//!   dbeta in one go from the saved conv output. Its forward and backward are also the
//!   pieces `residual` chains into a whole residual block.
//! - [`add_relu`]: ResNet's `relu(y + shortcut)` as one op (the fast path outside training).
//!
//! Why: candle's backward adds every gradient into a freshly zeroed tensor of its node's
//! size, and runs large elementwise ops on its own thread pool, which competes with rayon
//! for the 2 cores. The unfused path (conv, BN, ReLU, pool as 3-4 nodes) paid that per node;
//! one node per block pays it once, keeps one intermediate (the conv output) instead of
//! three, and its input gradient is skipped when the input needs none (the images).
//!
//! Results equal the unfused ops within float rounding (tests below: candle's ops and
//! f64 finite differences).

use std::any::Any;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Shape, Tensor};
use candle_nn::BatchNorm;
use rayon::prelude::*;

use super::bn::{stats, update_running, Dims};
use super::conv::{self, Geom};
use super::{lock_err, uninit_vec, Kernel, Op, Real};

/// What the forward keeps for the backward: the conv output (`Vec<f32>` or `Vec<f64>`,
/// `[B, Cout, OH, OW]`) and the batch mean / biased variance per channel.
pub(super) struct Saved {
    pub(super) c: Box<dyn Any + Send + Sync>,
    pub(super) mean: Vec<f64>,
    pub(super) var: Vec<f64>,
}

impl Saved {
    pub(super) fn new<T: Real>(c: Vec<T>, mean: Vec<f64>, var: Vec<f64>) -> Self {
        Self {
            c: Box::new(c),
            mean,
            var,
        }
    }

    /// The saved conv output as `T`, or an error if the dtype changed since the forward.
    pub(super) fn c<T: Real>(&self, what: &str) -> Result<&[T]> {
        match self.c.downcast_ref::<Vec<T>>() {
            Some(c) => Ok(c),
            None => candle_core::bail!("{what}: dtype changed since the forward"),
        }
    }
}

/// Filled by the forward, emptied by the backward: the saved conv output is freed as soon
/// as its gradient is computed, not when the whole graph is dropped after the backward
/// (candle keeps every node alive until then). At ResNet-18 N=256 this is what keeps the
/// step's peak memory under PyTorch's.
pub(super) type Stash<S = Saved> = Arc<Mutex<Option<Arc<S>>>>;

#[derive(Clone, Copy)]
pub(super) struct Cfg {
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) eps: f64,
    pub(super) relu: bool,
    pub(super) pool: bool,
}

/// Per-channel scale and shift of the normalisation, `t = a * c + s`, rounded to T exactly
/// as the forward uses them (the backward recomputes the ReLU mask from them).
pub(super) fn affine<T: Real>(gb: &[f64], mean: &[f64], var: &[f64], eps: f64) -> (Vec<T>, Vec<T>) {
    let c = mean.len();
    (0..c)
        .map(|i| {
            let a = gb[i] / (var[i] + eps).sqrt();
            (T::from_f64(a), T::from_f64(gb[c + i] - a * mean[i]))
        })
        .unzip()
}

fn act<T: Real>(v: T, a: T, s: T, relu: bool) -> T {
    let t = v * a + s;
    if !relu || t > T::ZERO {
        t
    } else {
        T::ZERO
    }
}

/// Output side of a 2x2 average pool (floor, like candle's `avg_pool2d(2)`).
fn pooled(g: &Geom, pool: bool) -> (usize, usize) {
    if pool {
        (g.oh / 2, g.ow / 2)
    } else {
        (g.oh, g.ow)
    }
}

/// BN's affine map `t = a * c + s` per channel (-> ReLU) over a conv output `c`
/// `[B, C, HW]`: the block's output without pooling. The residual block calls it again in
/// the backward with the same coefficients ([`affine`] of the saved statistics), so the
/// recomputed activations are the forward's bit for bit.
pub(super) fn activation<T: Real>(c: &[T], hw: usize, a: &[T], s: &[T], relu: bool) -> Vec<T> {
    let ch = a.len();
    let mut out = uninit_vec(c.len()); // every plane written below
    if hw > 0 {
        out.par_chunks_mut(hw)
            .zip(c.par_chunks(hw))
            .enumerate()
            .for_each(|(i, (o, cs))| {
                let k = i % ch;
                for (o, &v) in o.iter_mut().zip(cs) {
                    *o = act(v, a[k], s[k], relu);
                }
            });
    }
    out
}

/// Forward: `(out, conv output, mean, var)`.
pub(super) fn forward<T: Real>(
    x: &[T],
    w: &[T],
    gb: &[T],
    g: &Geom,
    cfg: Cfg,
) -> (Vec<T>, Vec<T>, Vec<f64>, Vec<f64>) {
    let c = conv::forward(x, w, g);
    let d = Dims {
        b: g.b,
        c: g.cout,
        hw: g.ohw(),
    };
    let (mean, var) = stats(&c, d);
    let gb64: Vec<f64> = gb.iter().map(|v| v.to_f64()).collect();
    let (a, s) = affine::<T>(&gb64, &mean, &var, cfg.eps);
    if !cfg.pool {
        let out = activation(&c, d.hw, &a, &s, cfg.relu);
        return (out, c, mean, var);
    }
    let (ph, pw) = pooled(g, true);
    let ow = g.ow;
    let mut out = uninit_vec(g.b * g.cout * ph * pw); // every image written below
    let img = g.cout * ph * pw;
    if img > 0 {
        let quarter = T::from_f64(0.25);
        out.par_chunks_mut(img).enumerate().for_each(|(b, ob)| {
            for ch in 0..g.cout {
                let cs = &c[d.at(b, ch)];
                let os = &mut ob[ch * ph * pw..(ch + 1) * ph * pw];
                let f = |v: T| act(v, a[ch], s[ch], cfg.relu);
                for py in 0..ph {
                    let r0 = &cs[2 * py * ow..2 * py * ow + ow];
                    let r1 = &cs[(2 * py + 1) * ow..(2 * py + 1) * ow + ow];
                    for (px, o) in os[py * pw..(py + 1) * pw].iter_mut().enumerate() {
                        *o =
                            (f(r0[2 * px]) + f(r0[2 * px + 1]) + f(r1[2 * px]) + f(r1[2 * px + 1]))
                                * quarter;
                    }
                }
            }
        });
    }
    (out, c, mean, var)
}

/// `(sum g, sum g * (c - mu))` over a short run, in 8 lanes of T (vectorisable), returned
/// in f64.
fn row_sums<T: Real>(g: &[T], c: &[T], mu: T) -> (f64, f64) {
    let mut a = [T::ZERO; 8];
    let mut b = [T::ZERO; 8];
    let (gc, cc) = (g.chunks_exact(8), c.chunks_exact(8));
    let (gr, cr) = (gc.remainder(), cc.remainder());
    for (g8, c8) in gc.zip(cc) {
        for i in 0..8 {
            a[i] += g8[i];
            b[i] += g8[i] * (c8[i] - mu);
        }
    }
    let (mut sa, mut sb) = (0f64, 0f64);
    for (&gv, &cv) in gr.iter().zip(cr) {
        sa += gv.to_f64();
        sb += (gv * (cv - mu)).to_f64();
    }
    for i in 0..8 {
        sa += a[i].to_f64();
        sb += b[i].to_f64();
    }
    (sa, sb)
}

/// Over one channel plane: zero `g` where the forward's ReLU was off (recomputed from the
/// conv output `c` with the forward's rounding) if `relu`, and return `(sum g, sum g (c -
/// mu))`. Chunks of 64 are summed in T lanes ([`row_sums`]) and added up in f64, whatever
/// the map's width (4x4 maps made per-row sums the bottleneck).
fn masked_sums<T: Real>(g: &mut [T], c: &[T], a: T, s: T, mu: T, relu: bool) -> (f64, f64) {
    let (mut sg, mut sgx) = (0f64, 0f64);
    for (gk, ck) in g.chunks_mut(64).zip(c.chunks(64)) {
        if relu {
            for (gv, &cv) in gk.iter_mut().zip(ck) {
                *gv = if cv * a + s <= T::ZERO { T::ZERO } else { *gv };
            }
        }
        let (u, v) = row_sums(gk, ck, mu);
        sg += u;
        sgx += v;
    }
    (sg, sgx)
}

/// What one block's forward pass leaves for its backward.
#[derive(Clone, Copy)]
pub(super) struct BlockForward<'a, T> {
    /// The block's input `[B, Cin, H, W]`.
    pub(super) x: &'a [T],
    /// The conv's weights `[Cout, Cin, k, k]`.
    pub(super) w: &'a [T],
    /// BatchNorm's gamma then beta, as f64.
    pub(super) gb: &'a [f64],
    /// The batch statistics the forward normalised with.
    pub(super) saved: &'a Saved,
    /// The conv's output `[B, Cout, OH, OW]`.
    pub(super) c: &'a [T],
    pub(super) g: &'a Geom,
    pub(super) cfg: Cfg,
}

/// Backward of one block: adds dx (`[B, Cin, H, W]`) into `dx` if given, and writes
/// `[dw; dgamma; dbeta]` into `dparams`.
pub(super) fn backward_into<T: Real>(
    fwd: BlockForward<T>,
    dout: &[T],
    dx: Option<&mut [T]>,
    dparams: &mut [T],
) {
    let BlockForward {
        x,
        w,
        gb,
        saved,
        c,
        g,
        cfg,
    } = fwd;
    let d = Dims {
        b: g.b,
        c: g.cout,
        hw: g.ohw(),
    };
    let (a, s) = affine::<T>(gb, &saved.mean, &saved.var, cfg.eps);
    let (ph, pw) = pooled(g, cfg.pool);
    let ow = g.ow;
    let cimg = g.cout * d.hw;
    let quarter = T::from_f64(0.25);
    // Pass 1: gbuf = dL/dt (through the pool and ReLU mask), and per image and channel the
    // sums of gbuf and gbuf * (c - mean) (reduced over images in a fixed order below).
    let mut gbuf = uninit_vec(c.len()); // pass 1 writes every plane
    let partial: Vec<Vec<(f64, f64)>> = gbuf
        .par_chunks_mut(cimg.max(1))
        .enumerate()
        .map(|(b, gi)| {
            (0..g.cout)
                .map(|ch| {
                    let cs = &c[d.at(b, ch)];
                    let gs = &mut gi[ch * d.hw..(ch + 1) * d.hw];
                    let (ac, sc) = (a[ch], s[ch]);
                    let mu = T::from_f64(saved.mean[ch]);
                    let od = &dout[(b * g.cout + ch) * ph * pw..(b * g.cout + ch + 1) * ph * pw];
                    // The gradient at the conv-BN output: the pool's spread or a copy.
                    if cfg.pool {
                        for (y, gr) in gs.chunks_mut(ow).enumerate() {
                            if y / 2 < ph {
                                let orow = &od[(y / 2) * pw..(y / 2 + 1) * pw];
                                for (pair, &o) in gr.chunks_mut(2).zip(orow) {
                                    pair.fill(o * quarter);
                                }
                                gr[2 * pw..].fill(T::ZERO);
                            } else {
                                gr.fill(T::ZERO);
                            }
                        }
                    } else {
                        gs.copy_from_slice(od);
                    }
                    let (sg, sgx) = masked_sums(gs, cs, ac, sc, mu, cfg.relu);
                    (sg, sgx)
                })
                .collect()
        })
        .collect();
    let mut sg = vec![0f64; g.cout];
    let mut sgx = vec![0f64; g.cout];
    for p in &partial {
        for (ch, &(u, v)) in p.iter().enumerate() {
            sg[ch] += u;
            sgx[ch] += v;
        }
    }
    // Pass 2: dc = gamma * invstd * (g - sg / M - xhat * sum(g xhat) / M) = k1 g + k2 c + k3.
    let m = d.m() as f64;
    let invstd: Vec<f64> = saved
        .var
        .iter()
        .map(|v| 1.0 / (v + cfg.eps).sqrt())
        .collect();
    let coef: Vec<(T, T, T)> = (0..g.cout)
        .map(|ch| {
            let is = invstd[ch];
            let k1 = gb[ch] * is;
            let k2 = -k1 * is * sgx[ch] * is / m;
            let k3 = -k1 * sg[ch] / m - k2 * saved.mean[ch];
            (T::from_f64(k1), T::from_f64(k2), T::from_f64(k3))
        })
        .collect();
    gbuf.par_chunks_mut(cimg.max(1))
        .enumerate()
        .for_each(|(b, gi)| {
            for (ch, &(k1, k2, k3)) in coef.iter().enumerate() {
                let cs = &c[d.at(b, ch)];
                for (gv, &cv) in gi[ch * d.hw..(ch + 1) * d.hw].iter_mut().zip(cs) {
                    *gv = k1 * *gv + k2 * cv + k3;
                }
            }
        });
    let nw = g.cout * g.cin * g.k * g.k;
    if let Some(dx) = dx {
        conv::grad_input_into(&gbuf, w, g, dx);
    }
    let dw = conv::grad_weight(x, &gbuf, g);
    dparams[..nw].copy_from_slice(&dw);
    for ch in 0..g.cout {
        dparams[nw + ch] = T::from_f64(sgx[ch] * invstd[ch]);
        dparams[nw + g.cout + ch] = T::from_f64(sg[ch]);
    }
}

struct BlockFwd {
    cfg: Cfg,
    stash: Stash,
}

impl Kernel<3> for BlockFwd {
    fn name(&self) -> &'static str {
        "fast-conv-bn-block"
    }

    fn run<T: Real>(&self, [x, w, gb]: [&[T]; 3], dims: [&[usize]; 3]) -> Result<(Vec<T>, Shape)> {
        let g = Geom::new(dims[0], dims[1], self.cfg.stride, self.cfg.pad)?;
        if gb.len() != 2 * g.cout {
            candle_core::bail!("conv-bn block: gamma / beta must have {} elements", g.cout);
        }
        let (out, c, mean, var) = forward(x, w, gb, &g, self.cfg);
        *self.stash.lock().map_err(lock_err)? = Some(Arc::new(Saved::new(c, mean, var)));
        let (ph, pw) = pooled(&g, self.cfg.pool);
        Ok((out, Shape::from((g.b, g.cout, ph, pw))))
    }

    fn bwd(
        &self,
        [x, w, gb]: [&Tensor; 3],
        _res: &Tensor,
        dout: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let saved = take_saved(&self.stash, "conv-bn block")?;
        let g = Geom::new(x.dims(), w.dims(), self.cfg.stride, self.cfg.pad)?;
        let need_dx = x.track_op();
        let op = BlockBwd {
            cfg: self.cfg,
            g,
            gb: gb.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
            saved,
            need_dx,
        };
        let packed = dout.contiguous()?.apply_op3_no_bwd(x, w, &Op(op))?;
        let nw = w.elem_count();
        let (dx, nx) = split_dx(&packed, x, need_dx)?;
        let dw = packed.narrow(0, nx, nw)?.reshape(w.shape())?;
        let dgb = packed.narrow(0, nx + nw, 2 * g.cout)?;
        Ok([dx, Some(dw), Some(dgb)])
    }
}

/// The forward's saved state, taken out of the stash (so it is freed with the backward).
pub(super) fn take_saved<S>(stash: &Stash<S>, what: &str) -> Result<Arc<S>> {
    stash.lock().map_err(lock_err)?.take().ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{what}: no saved forward state (a graph is backpropagated once)"
        ))
    })
}

/// The input gradient at the front of a packed backward output (if `need_dx`, as `x`'s
/// shape), and where the rest starts.
pub(super) fn split_dx(
    packed: &Tensor,
    x: &Tensor,
    need_dx: bool,
) -> Result<(Option<Tensor>, usize)> {
    if !need_dx {
        return Ok((None, 0));
    }
    let nx = x.elem_count();
    Ok((Some(packed.narrow(0, 0, nx)?.reshape(x.shape())?), nx))
}

/// (dout, x, w) -> packed gradients.
struct BlockBwd {
    cfg: Cfg,
    g: Geom,
    gb: Vec<f64>,
    saved: Arc<Saved>,
    need_dx: bool,
}

impl Kernel<3> for BlockBwd {
    fn name(&self) -> &'static str {
        "fast-conv-bn-block-backward"
    }

    /// Packed `[dx (if need_dx); dw; dgamma; dbeta]`.
    fn run<T: Real>(&self, [dy, x, w]: [&[T]; 3], _: [&[usize]; 3]) -> Result<(Vec<T>, Shape)> {
        let (sv, g, cfg) = (&*self.saved, &self.g, self.cfg);
        let nx = if self.need_dx { x.len() } else { 0 };
        let mut out = vec![T::ZERO; nx + w.len() + 2 * g.cout];
        let (dx, dparams) = out.split_at_mut(nx);
        let dx = self.need_dx.then_some(dx);
        let c = sv.c(self.name())?;
        let fwd = BlockForward {
            x,
            w,
            gb: &self.gb,
            saved: sv,
            c,
            g,
            cfg,
        };
        backward_into(fwd, dy, dx, dparams);
        let n = out.len();
        Ok((out, Shape::from(n)))
    }
}

/// One training-mode block on the CPU: `x [B, Cin, H, W]` conv `w [Cout, Cin, k, k]`
/// (stride, zero padding `pad`, no bias) -> BatchNorm with batch statistics and bn's
/// gamma / beta (-> ReLU if `relu`) (-> 2x2 average pool, stride 2, if `pool`), as one
/// candle op with its own backward. Updates bn's running mean / variance like candle_nn.
/// Equals `bn.forward_t(&x.conv2d(w, pad, stride, 1, 1)?, true)?` then `.relu()?` then
/// `.avg_pool2d(2)?` within float rounding. f32 and f64.
pub fn conv_bn_train(
    x: &Tensor,
    w: &Tensor,
    bn: &BatchNorm,
    stride: usize,
    pad: usize,
    relu: bool,
    pool: bool,
) -> Result<Tensor> {
    let Some((gamma, beta)) = bn.weight_and_bias() else {
        candle_core::bail!("fused conv-bn block needs an affine BatchNorm");
    };
    if !x.device().is_cpu() || !w.device().is_cpu() {
        candle_core::bail!("fused conv-bn block runs on the CPU only");
    }
    let g = Geom::new(x.dims(), w.dims(), stride, pad)?;
    if gamma.elem_count() != g.cout || beta.elem_count() != g.cout {
        candle_core::bail!(
            "conv-bn block: kernel {:?} does not match BatchNorm of {} channels",
            w.shape(),
            gamma.elem_count()
        );
    }
    let gb = Tensor::cat(&[gamma.flatten_all()?, beta.flatten_all()?], 0)?;
    let stash: Stash = Arc::new(Mutex::new(None));
    let cfg = Cfg {
        stride,
        pad,
        eps: bn.eps(),
        relu,
        pool,
    };
    let y = x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &gb,
        Op(BlockFwd {
            cfg,
            stash: stash.clone(),
        }),
    )?;
    let saved = stash
        .lock()
        .map_err(lock_err)?
        .clone()
        .ok_or_else(|| candle_core::Error::Msg("conv-bn block left no statistics".into()))?;
    update_running(bn, saved.mean.clone(), saved.var.clone(), g.b * g.ohw())?;
    Ok(y)
}

/// `y = relu(y + short)` (the residual sum).
pub(super) fn add_relu_in_place<T: Real>(y: &mut [T], short: &[T]) {
    y.par_chunks_mut(1 << 14)
        .zip(short.par_chunks(1 << 14))
        .for_each(|(ys, ss)| {
            for (o, &v) in ys.iter_mut().zip(ss) {
                let t = *o + v;
                *o = if t > T::ZERO { t } else { T::ZERO };
            }
        });
}

/// dout masked where the output was not positive.
fn relu_mask<T: Real>(dout: &[T], y: &[T]) -> Vec<T> {
    let mut g = uninit_vec(dout.len());
    g.par_chunks_mut(1 << 14)
        .zip(dout.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
        .for_each(|(gs, (ds, ys))| {
            for ((o, &dv), &yv) in gs.iter_mut().zip(ds).zip(ys) {
                *o = if yv > T::ZERO { dv } else { T::ZERO };
            }
        });
    g
}

/// The common shape of an elementwise op's two inputs, or an error if they differ.
fn same_shape(what: &str, [a, b]: [&[usize]; 2]) -> Result<Shape> {
    if a != b {
        candle_core::bail!("{what}: shapes {a:?} and {b:?} differ");
    }
    Ok(Shape::from(a))
}

/// (a, b) -> relu(a + b).
struct AddRelu;

impl Kernel<2> for AddRelu {
    fn name(&self) -> &'static str {
        "fast-add-relu"
    }

    fn run<T: Real>(&self, [a, b]: [&[T]; 2], dims: [&[usize]; 2]) -> Result<(Vec<T>, Shape)> {
        let shape = same_shape(self.name(), dims)?;
        let mut y = a.to_vec();
        add_relu_in_place(&mut y, b);
        Ok((y, shape))
    }

    fn bwd(&self, _: [&Tensor; 2], res: &Tensor, dout: &Tensor) -> Result<[Option<Tensor>; 2]> {
        let g = dout.contiguous()?.apply_op2_no_bwd(res, &Op(ReluMask))?;
        Ok([Some(g.clone()), Some(g)])
    }
}

/// (dout, y) -> dout where y > 0, else 0.
pub(super) struct ReluMask;

impl Kernel<2> for ReluMask {
    fn name(&self) -> &'static str {
        "fast-relu-mask"
    }

    fn run<T: Real>(&self, [dout, y]: [&[T]; 2], dims: [&[usize]; 2]) -> Result<(Vec<T>, Shape)> {
        let shape = same_shape(self.name(), dims)?;
        Ok((relu_mask(dout, y), shape))
    }
}

/// `relu(a + b)` (ResNet's residual sum) as one op on the CPU; same shapes, f32 / f64.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() || !b.device().is_cpu() {
        candle_core::bail!("fast add-relu runs on the CPU only");
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, Op(AddRelu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tensors::{
        dtypes, max_abs_diff as diff, rnd, weighted_grads, ConvCase,
    };
    use candle_core::{Device, ModuleT, Var};
    use candle_nn::{VarBuilder, VarMap};

    /// A BatchNorm with non-trivial gamma / beta / running mean, and the conv weight, all in
    /// one VarMap.
    fn params(cin: usize, cout: usize, k: usize, dtype: DType, seed: u64) -> (VarMap, BatchNorm) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, dtype, &Device::Cpu);
        let bn = crate::ml::model::encoder::bn(cout, vb.pp("bn")).unwrap();
        map.get(
            (cout, cin, k, k),
            "w",
            candle_nn::Init::Const(0.0),
            dtype,
            &Device::Cpu,
        )
        .unwrap();
        let data = map.data().lock().unwrap();
        data["w"]
            .set(&rnd(&[cout, cin, k, k], seed, dtype))
            .unwrap();
        for (name, s) in [("bn.weight", 1), ("bn.bias", 2), ("bn.running_mean", 3)] {
            data[name].set(&rnd(&[cout], seed + s, dtype)).unwrap();
        }
        drop(data);
        (map, bn)
    }

    fn var(map: &VarMap, name: &str) -> Var {
        map.data().lock().unwrap()[name].clone()
    }

    /// The unfused reference: candle's conv2d, candle_nn's BatchNorm, relu, avg_pool2d.
    fn reference(
        x: &Tensor,
        w: &Tensor,
        bn: &BatchNorm,
        s: usize,
        p: usize,
        relu: bool,
        pool: bool,
    ) -> Tensor {
        let mut y = bn
            .forward_t(&x.conv2d(w, p, s, 1, 1).unwrap(), true)
            .unwrap();
        if relu {
            y = y.relu().unwrap();
        }
        if pool {
            y = y.avg_pool2d(2).unwrap();
        }
        y
    }

    // ConvNet / ResNet shapes in miniature, odd sides,
    // 1x1 strided shortcuts, a 2x2 map pooled to 1x1.
    const CASES: [ConvCase; 6] = [
        (3, 3, 8, 8, 4, 3, 1, 1),
        (2, 2, 7, 6, 3, 3, 1, 1),
        (4, 4, 6, 6, 5, 1, 2, 0),
        (5, 3, 5, 5, 2, 3, 2, 1),
        (9, 2, 2, 2, 3, 3, 1, 1),
        (2, 3, 10, 6, 4, 3, 1, 1),
    ];

    #[test]
    fn fused_block_matches_candle_ops_values_gradients_and_running_stats() {
        for (dtype, tol) in dtypes(1e-11, 1e-4) {
            for (i, &(b, cin, h, w, cout, k, s, p)) in CASES.iter().enumerate() {
                for (relu, pool) in [(true, true), (true, false), (false, false), (false, true)] {
                    let g = Geom::new(&[b, cin, h, w], &[cout, cin, k, k], s, p).unwrap();
                    // candle's avg-pool backward upsamples with nearest neighbours, which
                    // is wrong for odd sides (the finite-difference test covers those).
                    if pool && (g.oh % 2 == 1 || g.ow % 2 == 1) {
                        continue;
                    }
                    let what = format!("case {i} relu {relu} pool {pool} {dtype:?}");
                    let (m1, bn1) = params(cin, cout, k, dtype, 10 * i as u64);
                    let (m2, bn2) = params(cin, cout, k, dtype, 10 * i as u64);
                    let x = Var::from_tensor(&rnd(&[b, cin, h, w], i as u64, dtype)).unwrap();
                    let (w1, w2) = (var(&m1, "w"), var(&m2, "w"));
                    let ours = conv_bn_train(x.as_tensor(), w1.as_tensor(), &bn1, s, p, relu, pool)
                        .unwrap();
                    let theirs = reference(x.as_tensor(), w2.as_tensor(), &bn2, s, p, relu, pool);
                    assert_eq!(ours.dims(), theirs.dims(), "{what}");
                    assert!(diff(&ours, &theirs) < tol, "forward {what}");
                    for name in ["bn.running_mean", "bn.running_var"] {
                        let d = diff(var(&m1, name).as_tensor(), var(&m2, name).as_tensor());
                        assert!(d < tol, "{name} {what}: {d}");
                    }
                    let r = rnd(ours.dims(), 70 + i as u64, dtype);
                    let (g1, g2) = (weighted_grads(ours, &r), weighted_grads(theirs, &r));
                    let dx = diff(g1.get(&x).unwrap(), g2.get(&x).unwrap());
                    assert!(dx < 10.0 * tol, "dx {what}: {dx}");
                    for name in ["w", "bn.weight", "bn.bias"] {
                        let (a, c) = (var(&m1, name), var(&m2, name));
                        let d = diff(g1.get(&a).unwrap(), g2.get(&c).unwrap());
                        assert!(d < 10.0 * tol, "d{name} {what}: {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn fused_block_gradients_match_finite_differences() {
        let (b, cin, h, w, cout, k, s, p) = (3, 2, 6, 5, 3, 3, 1, 1);
        let dt = DType::F64;
        let (map, bn) = params(cin, cout, k, dt, 5);
        let x = Var::from_tensor(&rnd(&[b, cin, h, w], 6, dt)).unwrap();
        let r = rnd(&[b, cout, 3, 2], 7, dt);
        let loss = || {
            let y = conv_bn_train(
                x.as_tensor(),
                var(&map, "w").as_tensor(),
                &bn,
                s,
                p,
                true,
                true,
            )
            .unwrap();
            (y * &r).unwrap().sum_all().unwrap()
        };
        let vars = [
            ("x", x.clone()),
            ("w", var(&map, "w")),
            ("gamma", var(&map, "bn.weight")),
            ("beta", var(&map, "bn.bias")),
        ];
        crate::test_support::tensors::assert_grads_match_fd(loss, &vars, 3, 1e-6);
    }

    #[test]
    fn no_input_gradient_for_inputs_that_need_none() {
        let dt = DType::F64;
        let (map, bn) = params(2, 3, 3, dt, 1);
        let x = rnd(&[2, 2, 4, 4], 2, dt); // plain tensor, like the images
        let y = conv_bn_train(&x, var(&map, "w").as_tensor(), &bn, 1, 1, true, false).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(&var(&map, "w")).is_some());
    }

    #[test]
    fn add_relu_matches_candle_ops_and_finite_differences() {
        for dtype in [DType::F64, DType::F32] {
            let a = Var::from_tensor(&rnd(&[3, 4, 5], 1, dtype)).unwrap();
            let b = Var::from_tensor(&rnd(&[3, 4, 5], 2, dtype)).unwrap();
            let r = rnd(&[3, 4, 5], 3, dtype);
            let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
            let theirs = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
            assert_eq!(diff(&ours, &theirs), 0.0);
            let (g1, g2) = (weighted_grads(ours, &r), weighted_grads(theirs, &r));
            for v in [&a, &b] {
                assert_eq!(diff(g1.get(v).unwrap(), g2.get(v).unwrap()), 0.0);
            }
        }
        // f64 finite differences on a few entries (away from the kink).
        let a0: Vec<f64> = rnd(&[10], 4, DType::F64).to_vec1().unwrap();
        let b = rnd(&[10], 5, DType::F64);
        let r = rnd(&[10], 6, DType::F64);
        let a = Var::from_slice(&a0, 10, &Device::Cpu).unwrap();
        let f =
            |t: &Tensor| -> Tensor { (add_relu(t, &b).unwrap() * &r).unwrap().sum_all().unwrap() };
        let ga: Vec<f64> = f(a.as_tensor())
            .backward()
            .unwrap()
            .get(&a)
            .unwrap()
            .to_vec1()
            .unwrap();
        let eps = 1e-6;
        for i in 0..10 {
            let mut p = a0.clone();
            let mut m = a0.clone();
            p[i] += eps;
            m[i] -= eps;
            let at = |v: Vec<f64>| {
                f(&Tensor::from_vec(v, 10, &Device::Cpu).unwrap())
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (at(p) - at(m)) / (2.0 * eps);
            assert!((fd - ga[i]).abs() < 1e-8, "da[{i}]: {} vs {fd}", ga[i]);
        }
    }

    #[test]
    fn rejects_mismatched_batch_norm_and_shapes() {
        let dt = DType::F32;
        let (map, bn) = params(2, 3, 3, dt, 1);
        let w = var(&map, "w");
        let block = |x: &[usize], bn: &BatchNorm| {
            conv_bn_train(&rnd(x, 1, dt), w.as_tensor(), bn, 1, 1, true, false)
        };
        // Wrong input channels.
        assert!(block(&[1, 4, 4, 4], &bn).is_err());
        // BatchNorm of another width.
        let (_m2, bn4) = params(2, 4, 3, dt, 1);
        assert!(block(&[1, 2, 4, 4], &bn4).is_err());
        assert!(add_relu(&rnd(&[2, 3], 1, dt), &rnd(&[3, 2], 1, dt)).is_err());
    }
}
