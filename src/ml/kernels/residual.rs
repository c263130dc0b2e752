//! A whole ResNet residual block in training on the CPU as ONE candle op:
//! `relu(main(x) + shortcut(x))`, where `main` is the block's chain of conv -> BN (-> ReLU)
//! (two 3x3 for a BasicBlock, 1x1-3x3-1x1 for a Bottleneck) and `shortcut` is the identity
//! or a 1x1 conv -> BN projection.
//!
//! Why one op: between forward and backward it keeps only the block input (held by candle),
//! each conv's raw output and the block output. The inner activations (the ReLU outputs fed
//! to the next conv, and the projection's BN output) are recomputed from the saved conv
//! outputs in the backward (one elementwise pass each, bit for bit the forward's values),
//! and the saved conv outputs are freed as soon as the block's backward is done (candle
//! would keep them until the whole graph is dropped). That is one to two
//! activation-sized tensors fewer per block, which is what brings ResNet-18's peak memory
//! under PyTorch's at N=256. The two paths' input gradients are summed in place, not by
//! candle's backward (a zeroed tensor and an add per branch point).
//!
//! Results equal candle's ops within float rounding (tests below: candle's ops and f64
//! finite differences).

use std::sync::{Arc, Mutex};

use candle_core::{Result, Shape, Tensor};
use candle_nn::BatchNorm;
use rayon::prelude::*;

use super::block::{
    self, activation, add_relu_in_place, affine, split_dx, take_saved, BlockForward, Cfg, ReluMask,
    Saved, Stash,
};
use super::bn::update_running;
use super::conv::Geom;
use super::{lock_err, Kernel, Op, Real};

/// One conv + BN of a block, as [`residual_block_train`] takes it.
pub struct BlockConv<'a> {
    /// `[Cout, Cin, k, k]`, no bias.
    pub w: &'a Tensor,
    /// Affine BatchNorm over Cout channels (batch statistics; running ones updated).
    pub bn: &'a BatchNorm,
    pub stride: usize,
    pub pad: usize,
}

/// Shape and settings of one conv + BN (what the op needs without the tensors).
#[derive(Clone, Copy, Debug)]
struct Spec {
    wdims: [usize; 4],
    stride: usize,
    pad: usize,
    eps: f64,
}

impl Spec {
    fn cout(&self) -> usize {
        self.wdims[0]
    }
    fn nw(&self) -> usize {
        self.wdims.iter().product()
    }
    /// `[w; gamma; beta]` elements in the packed parameters.
    fn len(&self) -> usize {
        self.nw() + 2 * self.cout()
    }
    fn cfg(&self, relu: bool) -> Cfg {
        Cfg {
            stride: self.stride,
            pad: self.pad,
            eps: self.eps,
            relu,
            pool: false,
        }
    }
}

/// The block's layout: the main chain, then the projection if any; parameters are packed
/// in that order as `[w; gamma; beta]` per conv (a candle op has at most 3 inputs).
#[derive(Clone, Debug)]
struct Plan {
    main: Vec<Spec>,
    down: Option<Spec>,
}

/// Geometry of every conv for one input shape.
struct Geoms {
    main: Vec<Geom>,
    down: Option<Geom>,
}

impl Plan {
    fn specs(&self) -> impl Iterator<Item = &Spec> {
        self.main.iter().chain(self.down.as_ref())
    }

    fn params_len(&self) -> usize {
        self.specs().map(Spec::len).sum()
    }

    /// Start of each conv's `[w; gamma; beta]` in the packed parameters (main, then down).
    fn offsets(&self) -> Vec<usize> {
        self.specs()
            .scan(0, |o, s| {
                let at = *o;
                *o += s.len();
                Some(at)
            })
            .collect()
    }

    fn geoms(&self, x: &[usize]) -> Result<Geoms> {
        let mut dims = x.to_vec();
        let mut main = Vec::with_capacity(self.main.len());
        for s in &self.main {
            let g = Geom::new(&dims, &s.wdims, s.stride, s.pad)?;
            dims = vec![g.b, g.cout, g.oh, g.ow];
            main.push(g);
        }
        let down = match &self.down {
            Some(s) => Some(Geom::new(x, &s.wdims, s.stride, s.pad)?),
            None => None,
        };
        let out = out_dims(&main, x);
        let short = match &down {
            Some(g) => vec![g.b, g.cout, g.oh, g.ow],
            None => x.to_vec(),
        };
        if out != short {
            candle_core::bail!(
                "residual block: main path gives {out:?} but the shortcut {short:?} (a \
                 projection is needed when the stride or width changes)"
            );
        }
        Ok(Geoms { main, down })
    }
}

fn out_dims(main: &[Geom], x: &[usize]) -> Vec<usize> {
    match main.last() {
        Some(g) => vec![g.b, g.cout, g.oh, g.ow],
        None => x.to_vec(),
    }
}

/// What the forward keeps: per conv, its raw output and batch statistics.
struct State {
    main: Vec<Saved>,
    down: Option<Saved>,
}

/// `(block output, saved state)`.
fn forward<T: Real>(x: &[T], p: &[T], plan: &Plan, gs: &Geoms) -> (Vec<T>, State) {
    let offs = plan.offsets();
    let n = plan.main.len();
    let mut saved = Vec::with_capacity(n);
    let mut a: Option<Vec<T>> = None;
    for (i, (s, g)) in plan.main.iter().zip(&gs.main).enumerate() {
        let (w, gb) = p[offs[i]..offs[i] + s.len()].split_at(s.nw());
        let input = a.as_deref().unwrap_or(x);
        // The last conv's BN has no ReLU: it comes after the sum.
        let (out, c, mean, var) = block::forward(input, w, gb, g, s.cfg(i + 1 < n));
        saved.push(Saved::new(c, mean, var));
        a = Some(out);
    }
    let mut y = a.unwrap_or_else(|| x.to_vec());
    let down = plan.down.as_ref().zip(gs.down.as_ref()).map(|(s, g)| {
        let (w, gb) = p[offs[n]..offs[n] + s.len()].split_at(s.nw());
        let (short, c, mean, var) = block::forward(x, w, gb, g, s.cfg(false));
        add_relu_in_place(&mut y, &short);
        Saved::new(c, mean, var)
    });
    if down.is_none() {
        add_relu_in_place(&mut y, x);
    }
    (y, State { main: saved, down })
}

fn to_f64<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Packed `[dx (if need_dx); d params]` from `gm`, the output gradient already masked by
/// the final ReLU.
fn backward<T: Real>(
    op: &ResidualBwd,
    gs: &Geoms,
    gm: &[T],
    x: &[T],
    p: &[T],
    what: &str,
) -> Result<Vec<T>> {
    let (plan, state, need_dx) = (&op.plan, &*op.state, op.need_dx);
    let offs = plan.offsets();
    let n = plan.main.len();
    let nx = if need_dx { x.len() } else { 0 };
    let mut out = vec![T::ZERO; nx + p.len()];
    let (dx, dp) = out.split_at_mut(nx);
    // Main path, last conv first; `d` is the gradient at the current conv's output.
    let mut d: Option<Vec<T>> = None;
    for i in (0..n).rev() {
        let (s, g, sv) = (&plan.main[i], &gs.main[i], &state.main[i]);
        let (w, gb) = p[offs[i]..offs[i] + s.len()].split_at(s.nw());
        let gb = to_f64(gb);
        let dout = d.take();
        let dout = dout.as_deref().unwrap_or(gm);
        let dparams = &mut dp[offs[i]..offs[i] + s.len()];
        let cfg = s.cfg(i + 1 < n);
        if i == 0 {
            let dx = need_dx.then_some(&mut *dx);
            let c = sv.c(what)?;
            let fwd = BlockForward {
                x,
                w,
                gb: &gb,
                saved: sv,
                c,
                g,
                cfg,
            };
            block::backward_into(fwd, dout, dx, dparams);
        } else {
            // The previous conv's activation, recomputed from its saved output.
            let (ps, pv) = (&plan.main[i - 1], &state.main[i - 1]);
            let pgb = to_f64(&p[offs[i - 1] + ps.nw()..offs[i - 1] + ps.len()]);
            let (a, sh) = affine::<T>(&pgb, &pv.mean, &pv.var, ps.eps);
            let input = activation(pv.c::<T>(what)?, gs.main[i - 1].ohw(), &a, &sh, true);
            let mut din = vec![T::ZERO; input.len()];
            let c = sv.c(what)?;
            let fwd = BlockForward {
                x: &input,
                w,
                gb: &gb,
                saved: sv,
                c,
                g,
                cfg,
            };
            block::backward_into(fwd, dout, Some(&mut din), dparams);
            d = Some(din);
        }
    }
    // Shortcut: the projection's backward adds into dx, or the identity passes gm on.
    match (&plan.down, &gs.down, &state.down) {
        (Some(s), Some(g), Some(sv)) => {
            let (w, gb) = p[offs[n]..offs[n] + s.len()].split_at(s.nw());
            let gb = to_f64(gb);
            let dparams = &mut dp[offs[n]..offs[n] + s.len()];
            let dx = need_dx.then_some(dx);
            let fwd = BlockForward {
                x,
                w,
                gb: &gb,
                saved: sv,
                c: sv.c(what)?,
                g,
                cfg: s.cfg(false),
            };
            block::backward_into(fwd, gm, dx, dparams);
        }
        _ if need_dx => {
            dx.par_chunks_mut(1 << 14)
                .zip(gm.par_chunks(1 << 14))
                .for_each(|(o, g)| {
                    for (o, &v) in o.iter_mut().zip(g) {
                        *o += v;
                    }
                });
        }
        _ => {}
    }
    Ok(out)
}

/// `(x, packed params)` -> block output.
struct ResidualFwd {
    plan: Plan,
    stash: Stash<State>,
}

impl Kernel<2> for ResidualFwd {
    fn name(&self) -> &'static str {
        "fast-residual-block"
    }

    fn run<T: Real>(&self, [x, p]: [&[T]; 2], dims: [&[usize]; 2]) -> Result<(Vec<T>, Shape)> {
        let gs = self.plan.geoms(dims[0])?;
        if p.len() != self.plan.params_len() {
            candle_core::bail!("residual block: packed parameters have the wrong size");
        }
        let (y, state) = forward(x, p, &self.plan, &gs);
        *self.stash.lock().map_err(lock_err)? = Some(Arc::new(state));
        Ok((y, Shape::from(out_dims(&gs.main, dims[0]))))
    }

    fn bwd(
        &self,
        [x, p]: [&Tensor; 2],
        res: &Tensor,
        dout: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        // Taken, not cloned: the saved conv outputs go when this backward is done.
        let state = take_saved(&self.stash, "residual block")?;
        let gm = dout.contiguous()?.apply_op2_no_bwd(res, &Op(ReluMask))?;
        let need_dx = x.track_op();
        let op = ResidualBwd {
            plan: self.plan.clone(),
            state,
            need_dx,
        };
        let packed = gm.apply_op3_no_bwd(x, p, &Op(op))?;
        let (dx, nx) = split_dx(&packed, x, need_dx)?;
        let dp = packed.narrow(0, nx, p.elem_count())?;
        Ok([dx, Some(dp)])
    }
}

/// `(gm, x, packed params)` -> packed gradients.
struct ResidualBwd {
    plan: Plan,
    state: Arc<State>,
    need_dx: bool,
}

impl Kernel<3> for ResidualBwd {
    fn name(&self) -> &'static str {
        "fast-residual-block-backward"
    }

    fn run<T: Real>(&self, [gm, x, p]: [&[T]; 3], dims: [&[usize]; 3]) -> Result<(Vec<T>, Shape)> {
        let gs = self.plan.geoms(dims[1])?;
        let out = backward(self, &gs, gm, x, p, self.name())?;
        let n = out.len();
        Ok((out, Shape::from(n)))
    }
}

/// A ResNet residual block in training on the CPU, one candle op with its own backward:
/// `relu(main(x) + short(x))`, where `main` runs `convs` in order, each conv -> BatchNorm
/// with batch statistics (-> ReLU for all but the last), and `short` is `down` (conv ->
/// BN, no ReLU) or the identity. Updates every BatchNorm's running statistics like
/// candle_nn. Equals the same ops done one by one within float rounding. f32 and f64.
pub fn residual_block_train(
    x: &Tensor,
    convs: &[BlockConv],
    down: Option<&BlockConv>,
) -> Result<Tensor> {
    if convs.is_empty() {
        candle_core::bail!("residual block: no convolutions");
    }
    if !x.device().is_cpu() {
        candle_core::bail!("fused residual block runs on the CPU only");
    }
    let mut specs = Vec::with_capacity(convs.len() + 1);
    let mut parts = Vec::new();
    for c in convs.iter().chain(down) {
        let Some((gamma, beta)) = c.bn.weight_and_bias() else {
            candle_core::bail!("fused residual block needs affine BatchNorms");
        };
        if !c.w.device().is_cpu() {
            candle_core::bail!("fused residual block runs on the CPU only");
        }
        let (o, i, kh, kw) = c.w.dims4()?;
        if gamma.elem_count() != o || beta.elem_count() != o {
            candle_core::bail!(
                "residual block: kernel {:?} does not match BatchNorm of {} channels",
                c.w.shape(),
                gamma.elem_count()
            );
        }
        specs.push(Spec {
            wdims: [o, i, kh, kw],
            stride: c.stride,
            pad: c.pad,
            eps: c.bn.eps(),
        });
        parts.extend([
            c.w.flatten_all()?,
            gamma.flatten_all()?,
            beta.flatten_all()?,
        ]);
    }
    let down_spec = down.map(|_| specs[convs.len()]);
    specs.truncate(convs.len());
    let plan = Plan {
        main: specs,
        down: down_spec,
    };
    let gs = plan.geoms(x.dims())?;
    let p = Tensor::cat(&parts, 0)?;
    let stash: Stash<State> = Arc::new(Mutex::new(None));
    let y = x.contiguous()?.apply_op2(
        &p,
        Op(ResidualFwd {
            plan,
            stash: stash.clone(),
        }),
    )?;
    let state = stash
        .lock()
        .map_err(lock_err)?
        .clone()
        .ok_or_else(|| candle_core::Error::Msg("residual block left no statistics".into()))?;
    let pairs = state.main.iter().zip(convs).zip(&gs.main);
    for ((sv, c), g) in pairs.chain(state.down.iter().zip(down).zip(&gs.down)) {
        update_running(c.bn, sv.mean.clone(), sv.var.clone(), g.b * g.ohw())?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tensors::{dtypes, max_abs_diff as diff, rnd, weighted_grads};
    use candle_core::{DType, Device, ModuleT, Var};
    use candle_nn::{VarBuilder, VarMap};

    /// (Cin, Cout, k, stride) per conv of the main path, and of the projection if any.
    struct Case {
        main: Vec<(usize, usize, usize, usize)>,
        down: Option<(usize, usize, usize, usize)>,
    }

    fn cases() -> Vec<(&'static str, Case)> {
        vec![
            (
                "basic, identity",
                Case {
                    main: vec![(3, 3, 3, 1), (3, 3, 3, 1)],
                    down: None,
                },
            ),
            (
                "basic, strided projection",
                Case {
                    main: vec![(2, 4, 3, 2), (4, 4, 3, 1)],
                    down: Some((2, 4, 1, 2)),
                },
            ),
            (
                "bottleneck, 1x1 projection",
                Case {
                    main: vec![(3, 2, 1, 1), (2, 2, 3, 1), (2, 5, 1, 1)],
                    down: Some((3, 5, 1, 1)),
                },
            ),
        ]
    }

    /// Weights and BatchNorms (non-trivial gamma, beta, running mean) for every conv, named
    /// `c{i}` / `bn{i}` (the projection last), in one VarMap.
    fn params(case: &Case, dtype: DType, seed: u64) -> (VarMap, Vec<BatchNorm>) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, dtype, &Device::Cpu);
        let mut bns = Vec::new();
        for (i, &(cin, cout, k, _)) in case.main.iter().chain(&case.down).enumerate() {
            bns.push(crate::ml::model::encoder::bn(cout, vb.pp(format!("bn{i}"))).unwrap());
            let init = candle_nn::Init::Const(0.0);
            map.get(
                (cout, cin, k, k),
                &format!("c{i}"),
                init,
                dtype,
                &Device::Cpu,
            )
            .unwrap();
            let data = map.data().lock().unwrap();
            let s = seed + 10 * i as u64;
            data[&format!("c{i}")]
                .set(&rnd(&[cout, cin, k, k], s, dtype))
                .unwrap();
            for (j, name) in ["weight", "bias", "running_mean"].iter().enumerate() {
                let v = rnd(&[cout], s + 1 + j as u64, dtype);
                data[&format!("bn{i}.{name}")].set(&v).unwrap();
            }
        }
        (map, bns)
    }

    fn var(map: &VarMap, name: &str) -> Var {
        map.data().lock().unwrap()[name].clone()
    }

    fn ours(x: &Tensor, case: &Case, map: &VarMap, bns: &[BatchNorm]) -> Tensor {
        let ws: Vec<Var> = (0..bns.len()).map(|i| var(map, &format!("c{i}"))).collect();
        let conv = |i: usize, &(_, _, k, s): &(usize, usize, usize, usize)| BlockConv {
            w: ws[i].as_tensor(),
            bn: &bns[i],
            stride: s,
            pad: k / 2,
        };
        let main: Vec<BlockConv> = case
            .main
            .iter()
            .enumerate()
            .map(|(i, c)| conv(i, c))
            .collect();
        let down = case.down.as_ref().map(|c| conv(case.main.len(), c));
        residual_block_train(x, &main, down.as_ref()).unwrap()
    }

    /// candle's ops one by one.
    fn theirs(x: &Tensor, case: &Case, map: &VarMap, bns: &[BatchNorm]) -> Tensor {
        let conv_bn = |x: &Tensor, i: usize, &(_, _, k, s): &(usize, usize, usize, usize)| {
            let c = x
                .conv2d(var(map, &format!("c{i}")).as_tensor(), k / 2, s, 1, 1)
                .unwrap();
            bns[i].forward_t(&c, true).unwrap()
        };
        let mut y = x.clone();
        let n = case.main.len();
        for (i, c) in case.main.iter().enumerate() {
            y = conv_bn(&y, i, c);
            if i + 1 < n {
                y = y.relu().unwrap();
            }
        }
        let short = match &case.down {
            Some(c) => conv_bn(x, n, c),
            None => x.clone(),
        };
        (y + short).unwrap().relu().unwrap()
    }

    #[test]
    fn matches_candle_ops_values_gradients_and_running_stats() {
        for (dtype, tol) in dtypes(1e-11, 1e-4) {
            for (ci, (name, case)) in cases().iter().enumerate() {
                let what = format!("{name} {dtype:?}");
                let (m1, bn1) = params(case, dtype, 40 + ci as u64);
                let (m2, bn2) = params(case, dtype, 40 + ci as u64);
                let cin = case.main[0].0;
                // 7x7: candle's strided conv backward needs (H + 2p - k) divisible by the
                // stride (the finite-difference test covers other sides).
                let x = Var::from_tensor(&rnd(&[3, cin, 7, 7], ci as u64, dtype)).unwrap();
                let a = ours(x.as_tensor(), case, &m1, &bn1);
                let b = theirs(x.as_tensor(), case, &m2, &bn2);
                assert_eq!(a.dims(), b.dims(), "{what}");
                assert!(diff(&a, &b) < tol, "forward {what}");
                let r = rnd(a.dims(), 90 + ci as u64, dtype);
                let (g1, g2) = (weighted_grads(a, &r), weighted_grads(b, &r));
                let dx = diff(g1.get(&x).unwrap(), g2.get(&x).unwrap());
                assert!(dx < 10.0 * tol, "dx {what}: {dx}");
                let names = m1
                    .data()
                    .lock()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>();
                for n in names {
                    let (v1, v2) = (var(&m1, &n), var(&m2, &n));
                    if n.contains("running") {
                        let d = diff(v1.as_tensor(), v2.as_tensor());
                        assert!(d < tol, "{n} {what}: {d}");
                    } else {
                        let d = diff(g1.get(&v1).unwrap(), g2.get(&v2).unwrap());
                        assert!(d < 10.0 * tol, "d{n} {what}: {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dt = DType::F64;
        for (ci, (_, case)) in cases().iter().enumerate() {
            let (map, bns) = params(case, dt, 60 + ci as u64);
            let cin = case.main[0].0;
            let x = Var::from_tensor(&rnd(&[2, cin, 5, 4], 70 + ci as u64, dt)).unwrap();
            let shape = ours(x.as_tensor(), case, &map, &bns).dims().to_vec();
            let r = rnd(&shape, 80 + ci as u64, dt);
            let loss = || {
                (ours(x.as_tensor(), case, &map, &bns) * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
            };
            let mut vars = vec![("x".to_string(), x.clone())];
            for i in 0..bns.len() {
                for n in [
                    format!("c{i}"),
                    format!("bn{i}.weight"),
                    format!("bn{i}.bias"),
                ] {
                    vars.push((n.clone(), var(&map, &n)));
                }
            }
            let vars: Vec<(&str, Var)> =
                vars.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
            crate::test_support::tensors::assert_grads_match_fd(loss, &vars, 3, 1e-6);
        }
    }

    #[test]
    fn rejects_a_shape_changing_block_without_projection_and_a_second_backward() {
        let dt = DType::F32;
        let case = Case {
            main: vec![(2, 4, 3, 2), (4, 4, 3, 1)],
            down: None,
        };
        let (map, bns) = params(&case, dt, 1);
        let w0 = var(&map, "c0");
        let w1 = var(&map, "c1");
        let main = [
            BlockConv {
                w: w0.as_tensor(),
                bn: &bns[0],
                stride: 2,
                pad: 1,
            },
            BlockConv {
                w: w1.as_tensor(),
                bn: &bns[1],
                stride: 1,
                pad: 1,
            },
        ];
        let x = rnd(&[2, 2, 6, 6], 3, dt);
        let err = residual_block_train(&x, &main, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("projection"), "{err}");
        // A graph is backpropagated once: the saved state is gone after the first.
        let ok = Case {
            main: vec![(2, 2, 3, 1)],
            down: None,
        };
        let (map, bns) = params(&ok, dt, 2);
        let loss = ours(&x, &ok, &map, &bns).sum_all().unwrap();
        loss.backward().unwrap();
        let err = loss.backward().unwrap_err().to_string();
        assert!(err.contains("backpropagated once"), "{err}");
    }
}
