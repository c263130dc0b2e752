//! Deterministic weight initialisation: a `VarBuilder` backend that stores every variable in
//! a [`VarMap`] (so the optimizer sees it and checkpoints save it) but draws its initial
//! values from `rng::stream(seed, Domain::Init, &[rng::key_of(name)])` instead of candle's
//! RNG.
//!
//! Why: candle 0.11's CPU backend cannot be seeded. `CpuDevice::set_seed` bails with "cannot
//! seed the CPU rng with set_seed", and `rand_uniform` / `rand_normal` draw from
//! `rand::rng()` (the thread-local generator, seeded from the OS) on every call
//! (candle-core-0.11.1/src/cpu_backend/mod.rs). So `VarMap`-initialised weights differ on
//! every run.
//!
//! The distribution is chosen by the run's [`InitScheme`] from the hint the layer gives
//! candle_nn (the `Init`): a Kaiming hint marks a conv or linear weight (candle_nn's
//! `DEFAULT_KAIMING_NORMAL`), a uniform hint a bias, a constant hint a BatchNorm parameter
//! or statistic (kept as asked: gamma 1, or 0 where the layer asks for zero-init, beta 0,
//! running mean 0, variance 1).
//!
//! | scheme | conv weight | linear weight | bias |
//! |---|---|---|---|
//! | `pytorch` | U(+-1/sqrt(fan_in)) | U(+-1/sqrt(fan_in)) | U(+-1/sqrt(fan_in)) |
//! | `official` | truncated normal, std 1/sqrt(fan_in) | N(0, 0.01^2) | 0 |
//! | `kaiming_normal` | N(0, 2/fan_in) | N(0, 2/fan_in) | U(+-1/sqrt(fan_in)) |
//!
//! Each parameter's stream depends only on the seed and its full name, so the result does
//! not depend on the order in which layers are created.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, Linear, VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::classifier;
use crate::ml::config::{EncoderConfig, HeadConfig, InitScheme, Method, PretrainConfig};
use crate::ml::model::SimclrModel;
use crate::ml::rng::{self, Domain};

/// A `VarBuilder` backend: get-or-create in `map`, creating from the seeded stream of the
/// variable's name, with the distribution `scheme` gives the layer's hint.
pub struct SeededVarMap {
    map: VarMap,
    seed: u64,
    scheme: InitScheme,
}

impl SeededVarMap {
    pub fn new(map: VarMap, seed: u64, scheme: InitScheme) -> Self {
        Self { map, seed, scheme }
    }
}

/// Std of the normal that TF's `truncated_normal` variance scaling draws from, per unit of
/// the wanted std: a normal cut at +-2 std has std 0.8796 of the uncut one
/// (`tf.compat.v1.variance_scaling_initializer`).
const TRUNCATED_NORMAL_STD_RATIO: f64 = 0.879_625_661_034_239_8;

/// The distribution of a parameter under `scheme`, given candle_nn's hint for it.
fn scheme_init(hint: Init, scheme: InitScheme, shape: &Shape) -> Draw {
    let fan_in = FanInOut::FanIn.for_shape(shape).max(1) as f64;
    let is_weight = matches!(hint, Init::Kaiming { .. });
    let is_bias = matches!(hint, Init::Uniform { .. });
    match scheme {
        InitScheme::KaimingNormal => Draw::Hint(hint),
        InitScheme::Pytorch if is_weight => {
            let bound = 1.0 / fan_in.sqrt();
            Draw::Hint(Init::Uniform {
                lo: -bound,
                up: bound,
            })
        }
        InitScheme::Official if is_weight && shape.rank() == 4 => {
            Draw::TruncatedNormal(1.0 / fan_in.sqrt() / TRUNCATED_NORMAL_STD_RATIO)
        }
        InitScheme::Official if is_weight => Draw::Hint(Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        }),
        InitScheme::Official if is_bias => Draw::Hint(Init::Const(0.0)),
        InitScheme::Pytorch | InitScheme::Official => Draw::Hint(hint),
    }
}

enum Draw {
    Hint(Init),
    /// N(0, std^2) cut at +-2 std (redrawn until inside).
    TruncatedNormal(f64),
}

/// The initial value of parameter `name` under `scheme`, drawn from its own stream.
pub fn init_tensor(
    shape: &Shape,
    name: &str,
    hint: Init,
    scheme: InitScheme,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n = shape.elem_count();
    let mut rng = rng::stream(seed, Domain::Init, &[rng::key_of(name)]);
    let init = match scheme_init(hint, scheme, shape) {
        Draw::Hint(init) => init,
        Draw::TruncatedNormal(std) => {
            let values = draw_truncated_normal(&mut rng, std, n)?;
            return Tensor::from_vec(values, shape.clone(), device)?.to_dtype(dtype);
        }
    };
    let values: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => draw_uniform(&mut rng, lo, up, n)?,
        Init::Randn { mean, stdev } => draw_normal(&mut rng, mean, stdev, n)?,
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            // Same formula as candle_nn::Init::var.
            let fan = match fan {
                FanInOut::FanIn => FanInOut::FanIn.for_shape(shape),
                FanInOut::FanOut => FanInOut::FanOut.for_shape(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    draw_uniform(&mut rng, -bound, bound, n)?
                }
                NormalOrUniform::Normal => draw_normal(&mut rng, 0.0, std, n)?,
            }
        }
    };
    Tensor::from_vec(values, shape.clone(), device)?.to_dtype(dtype)
}

fn draw_uniform<R: Rng>(rng: &mut R, lo: f64, up: f64, n: usize) -> Result<Vec<f32>> {
    if lo >= up || !lo.is_finite() || !up.is_finite() {
        candle_core::bail!("uniform init needs lo < up, got [{lo}, {up})");
    }
    let d = Uniform::new(lo, up);
    Ok((0..n).map(|_| d.sample(rng) as f32).collect())
}

fn draw_normal<R: Rng>(rng: &mut R, mean: f64, std: f64, n: usize) -> Result<Vec<f32>> {
    let d = Normal::new(mean, std).map_err(candle_core::Error::wrap)?;
    Ok((0..n).map(|_| d.sample(rng) as f32).collect())
}

fn draw_truncated_normal<R: Rng>(rng: &mut R, std: f64, n: usize) -> Result<Vec<f32>> {
    let d = Normal::new(0.0, std).map_err(candle_core::Error::wrap)?;
    Ok((0..n)
        .map(|_| loop {
            let x: f64 = d.sample(rng);
            if x.abs() <= 2.0 * std {
                break x as f32;
            }
        })
        .collect())
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let var = Var::from_tensor(&init_tensor(
            &s,
            name,
            h,
            self.scheme,
            self.seed,
            dtype,
            dev,
        )?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
        match data.get(name) {
            Some(v) => v.as_tensor().to_device(dev)?.to_dtype(dtype),
            None => candle_core::bail!("no variable {name} in the VarMap"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// A f32 `VarBuilder` over `map` whose new variables are drawn from `seed` with the
/// default [`InitScheme`].
pub fn seeded_var_builder(map: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    seeded_var_builder_with(map, seed, InitScheme::default(), device)
}

/// A f32 `VarBuilder` over `map` whose new variables are drawn from `seed` under `scheme`.
pub fn seeded_var_builder_with(
    map: &VarMap,
    seed: u64,
    scheme: InitScheme,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap::new(map.clone(), seed, scheme)),
        DType::F32,
        device.clone(),
    )
}

/// True for BatchNorm running statistics: buffers, not parameters. They live in the VarMap
/// (so checkpoints carry them) but the optimizer must skip them (they never get a gradient).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// The variables an optimizer updates: every VarMap entry except BatchNorm running
/// statistics, sorted by name (a stable order for optimizer state). Rank-1 entries are
/// BatchNorm gammas/betas and biases (the official code excludes those from weight decay and
/// from LARS adaptation).
pub fn trainable_vars(map: &VarMap) -> Vec<(String, Var)> {
    let data = match map.data().lock() {
        Ok(d) => d,
        Err(p) => p.into_inner(),
    };
    let mut v: Vec<(String, Var)> = data
        .iter()
        .filter(|(k, _)| !is_running_stat(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A fresh VarMap and the model built on it, all weights drawn deterministically from
/// `seed` with the default [`InitScheme`]: for a model whose weights are then restored
/// from a checkpoint (`VarMap::load`, `checkpoint::restore_varmap`), where the draw does
/// not matter. A run that trains from scratch uses [`build_model_with`].
pub fn build_model(
    enc: &EncoderConfig,
    head: &HeadConfig,
    in_channels: usize,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, SimclrModel)> {
    build_model_with(InitScheme::default(), enc, head, in_channels, seed, device)
}

/// The trainer's entry point: [`build_model`] with the run's initialisation `scheme`.
pub fn build_model_with(
    scheme: InitScheme,
    enc: &EncoderConfig,
    head: &HeadConfig,
    in_channels: usize,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, SimclrModel)> {
    let map = VarMap::new();
    let vb = seeded_var_builder_with(&map, seed, scheme, device);
    let model = SimclrModel::new(vb, enc, head, in_channels)?;
    Ok((map, model))
}

/// Everything a pretrain of `cfg` trains and checkpoints, drawn from its seed under its
/// scheme: encoder and head, and for a supervised run (`Method::Supervised`) the linear
/// classifier on h over `num_classes` (`classifier::classifier`). The trainer starts from
/// it and an evaluation restores a checkpoint into it, so both agree on the variables.
pub fn build_pretrain(
    cfg: &PretrainConfig,
    num_classes: usize,
    device: &Device,
) -> Result<(VarMap, SimclrModel, Option<Linear>)> {
    let (map, model) = build_model_with(
        cfg.init,
        &cfg.encoder,
        &cfg.head,
        crate::ml::model::encoder::IN_CHANNELS,
        cfg.seed,
        device,
    )?;
    let classifier = match cfg.method {
        Method::Simclr => None,
        Method::Supervised => {
            let vb = seeded_var_builder_with(&map, cfg.seed, cfg.init, device);
            Some(classifier::classifier(model.repr_dim(), num_classes, vb)?)
        }
    };
    Ok((map, model, classifier))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::config::{Arch, Stem};

    fn values(map: &VarMap) -> Vec<(String, Vec<f32>)> {
        let data = map.data().lock().unwrap();
        let mut v: Vec<(String, Vec<f32>)> = data
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn small() -> (EncoderConfig, HeadConfig) {
        let e = EncoderConfig {
            arch: Arch::Convnet,
            stem: Stem::Cifar,
            width: 1,
            ..Default::default()
        };
        (e, HeadConfig::default())
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let (e, h) = small();
        let d = Device::Cpu;
        let a = values(&build_model(&e, &h, 3, 5, &d).unwrap().0);
        let b = values(&build_model(&e, &h, 3, 5, &d).unwrap().0);
        let c = values(&build_model(&e, &h, 3, 6, &d).unwrap().0);
        assert_eq!(a, b);
        let wa = &a
            .iter()
            .find(|(k, _)| k == "encoder.conv1.weight")
            .unwrap()
            .1;
        let wc = &c
            .iter()
            .find(|(k, _)| k == "encoder.conv1.weight")
            .unwrap()
            .1;
        assert_ne!(wa, wc);
    }

    #[test]
    fn values_do_not_depend_on_creation_order() {
        let d = Device::Cpu;
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let m1 = VarMap::new();
        let vb1 = seeded_var_builder(&m1, 1, &d);
        vb1.get_with_hints((4, 3), "a", init).unwrap();
        vb1.get_with_hints((5, 2), "b", init).unwrap();
        let m2 = VarMap::new();
        let vb2 = seeded_var_builder(&m2, 1, &d);
        vb2.get_with_hints((5, 2), "b", init).unwrap();
        vb2.get_with_hints((4, 3), "a", init).unwrap();
        assert_eq!(values(&m1), values(&m2));
        // Asking again returns the stored variable, not a new draw.
        let again: Vec<f32> = vb1
            .get_with_hints((4, 3), "a", init)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(again, values(&m1)[0].1);
        assert!(
            vb1.get_with_hints((3, 3), "a", init).is_err(),
            "shape mismatch must fail"
        );
    }

    /// Mean, std, max |x| of a parameter.
    fn moments(w: &[f32]) -> (f64, f64, f64) {
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let max = w.iter().map(|&x| (x as f64).abs()).fold(0.0, f64::max);
        (mean, var.sqrt(), max)
    }

    fn model_values(scheme: InitScheme, seed: u64) -> Vec<(String, Vec<f32>)> {
        let (e, h) = small();
        values(
            &build_model_with(scheme, &e, &h, 3, seed, &Device::Cpu)
                .unwrap()
                .0,
        )
    }

    fn get(v: &[(String, Vec<f32>)], name: &str) -> Vec<f32> {
        v.iter().find(|(k, _)| k == name).unwrap().1.clone()
    }

    #[test]
    fn each_scheme_draws_its_documented_distributions() {
        // conv4: 128 x 64 x 3 x 3 (fan_in 576, 73,728 draws); head.linear0: 128 x 128
        // (fan_in 128, 16,384 draws).
        let conv_fan: f64 = 576.0;
        let lin_fan: f64 = 128.0;
        for scheme in [
            InitScheme::Pytorch,
            InitScheme::Official,
            InitScheme::KaimingNormal,
        ] {
            let v = model_values(scheme, 0);
            let (cm, cs, cmax) = moments(&get(&v, "encoder.conv4.weight"));
            let (lm, ls, lmax) = moments(&get(&v, "head.linear0.weight"));
            // (std, max |x| bound) of conv and linear weights.
            let (conv_std, conv_max, lin_std, lin_max) = match scheme {
                // U(+-b), b = 1/sqrt(fan_in): std b / sqrt(3).
                InitScheme::Pytorch => (
                    1.0 / (3.0 * conv_fan).sqrt(),
                    1.0 / conv_fan.sqrt(),
                    1.0 / (3.0 * lin_fan).sqrt(),
                    1.0 / lin_fan.sqrt(),
                ),
                // Truncated normal with std 1/sqrt(fan_in), cut at 2 std of the uncut
                // normal; dense N(0, 0.01^2).
                InitScheme::Official => (
                    1.0 / conv_fan.sqrt(),
                    2.0 / conv_fan.sqrt() / TRUNCATED_NORMAL_STD_RATIO,
                    0.01,
                    f64::INFINITY,
                ),
                InitScheme::KaimingNormal => (
                    (2.0 / conv_fan).sqrt(),
                    f64::INFINITY,
                    (2.0 / lin_fan).sqrt(),
                    f64::INFINITY,
                ),
            };
            assert!(cm.abs() < 0.02 * conv_std, "{scheme:?} conv mean {cm}");
            assert!(lm.abs() < 0.05 * lin_std, "{scheme:?} linear mean {lm}");
            assert!(
                (cs / conv_std - 1.0).abs() < 0.02,
                "{scheme:?} conv std {cs} vs {conv_std}"
            );
            assert!(
                (ls / lin_std - 1.0).abs() < 0.03,
                "{scheme:?} linear std {ls} vs {lin_std}"
            );
            assert!(
                cmax <= conv_max * (1.0 + 1e-6),
                "{scheme:?} conv max {cmax}"
            );
            assert!(
                lmax <= lin_max * (1.0 + 1e-6),
                "{scheme:?} linear max {lmax}"
            );
            // The bounded draws reach close to their bound (not a narrower distribution).
            if conv_max.is_finite() {
                assert!(cmax > 0.97 * conv_max, "{scheme:?} conv max {cmax}");
            }
            // BatchNorm is the same under every scheme.
            assert!(get(&v, "encoder.bn2.weight").iter().all(|&x| x == 1.0));
            assert!(get(&v, "encoder.bn2.bias").iter().all(|&x| x == 0.0));
            assert!(get(&v, "encoder.bn2.running_mean")
                .iter()
                .all(|&x| x == 0.0));
            assert!(get(&v, "encoder.bn2.running_var").iter().all(|&x| x == 1.0));
            // Deterministic per seed, different across seeds.
            assert_eq!(v, model_values(scheme, 0), "{scheme:?}");
            assert_ne!(
                get(&v, "encoder.conv4.weight"),
                get(&model_values(scheme, 1), "encoder.conv4.weight")
            );
        }
        // The schemes draw different weights from the same seed.
        assert_ne!(
            model_values(InitScheme::Pytorch, 0),
            model_values(InitScheme::KaimingNormal, 0)
        );
    }

    #[test]
    fn biases_are_zero_under_official_and_uniform_otherwise() {
        // Our networks have no biases (BN follows every layer); a layer that asks for one
        // gets candle_nn's uniform hint, which `official` replaces by TF's zeros.
        let d = Device::Cpu;
        let hint = Init::Uniform {
            lo: -0.25,
            up: 0.25,
        };
        let draw = |scheme| -> Vec<f32> {
            let m = VarMap::new();
            seeded_var_builder_with(&m, 0, scheme, &d)
                .get_with_hints(1000, "fc.bias", hint)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert!(draw(InitScheme::Official).iter().all(|&x| x == 0.0));
        for scheme in [InitScheme::Pytorch, InitScheme::KaimingNormal] {
            let b = draw(scheme);
            assert!(b.iter().all(|&x| x.abs() <= 0.25), "{scheme:?}");
            let (_, std, max) = moments(&b);
            assert!(max > 0.24 && (std * 12f64.sqrt() / 0.5 - 1.0).abs() < 0.1);
        }
    }

    #[test]
    fn trainable_vars_skip_running_statistics() {
        let (e, h) = small();
        let (map, _) = build_model(&e, &h, 3, 0, &Device::Cpu).unwrap();
        assert!(trainable_vars(&map)
            .iter()
            .all(|(k, _)| !is_running_stat(k)));
        assert!(trainable_vars(&map).len() < map.all_vars().len());
    }
}
