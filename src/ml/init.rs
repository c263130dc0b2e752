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
//! The distribution is the one the layer asks candle_nn for (the `Init` hint), so the weights
//! are distributed exactly as candle_nn's defaults: conv and linear weights
//! `DEFAULT_KAIMING_NORMAL` (normal, std = sqrt(2 / fan_in)), their biases uniform in
//! +-1/sqrt(fan_in), BatchNorm weight 1, bias 0, running_mean 0, running_var 1. Each
//! parameter's stream depends only on the seed and its full name, so the result does not
//! depend on the order in which layers are created.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::config::{EncoderConfig, HeadConfig};
use super::model::SimclrModel;
use super::rng::{self, Domain};

/// A `VarBuilder` backend: get-or-create in `map`, creating from the seeded stream of the
/// variable's name.
pub struct SeededVarMap {
    map: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(map: VarMap, seed: u64) -> Self {
        Self { map, seed }
    }
}

/// The initial value of parameter `name`, drawn from its own stream.
pub fn init_tensor(
    shape: &Shape,
    name: &str,
    init: Init,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let n = shape.elem_count();
    let mut rng = rng::stream(seed, Domain::Init, &[rng::key_of(name)]);
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
        let var = Var::from_tensor(&init_tensor(&s, name, h, self.seed, dtype, dev)?)?;
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

/// A f32 `VarBuilder` over `map` whose new variables are drawn from `seed`.
pub fn seeded_var_builder(map: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap::new(map.clone(), seed)),
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

/// The one entry point of the trainer: a fresh VarMap and the model built on it, all
/// weights drawn deterministically from `seed`. Load a checkpoint into the returned VarMap
/// (`VarMap::load`) to restore weights and running statistics in place.
pub fn build_model(
    enc: &EncoderConfig,
    head: &HeadConfig,
    in_channels: usize,
    seed: u64,
    device: &Device,
) -> Result<(VarMap, SimclrModel)> {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, seed, device);
    let model = SimclrModel::new(vb, enc, head, in_channels)?;
    Ok((map, model))
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

    #[test]
    fn distributions_follow_candle_nn_defaults() {
        let (e, h) = small();
        let (map, _) = build_model(&e, &h, 3, 0, &Device::Cpu).unwrap();
        let v = values(&map);
        let get = |n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.clone();
        // conv4: 128 x 64 x 3 x 3, kaiming normal, std sqrt(2 / (64 * 9)).
        let w = get("encoder.conv4.weight");
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / w.len() as f64;
        let std =
            (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        let want = (2.0f64 / 576.0).sqrt();
        assert!(mean.abs() < 0.05 * want, "mean {mean}");
        assert!((std / want - 1.0).abs() < 0.02, "std {std} vs {want}");
        assert!(get("encoder.bn2.weight").iter().all(|&x| x == 1.0));
        assert!(get("encoder.bn2.bias").iter().all(|&x| x == 0.0));
        assert!(get("encoder.bn2.running_mean").iter().all(|&x| x == 0.0));
        assert!(get("encoder.bn2.running_var").iter().all(|&x| x == 1.0));
        assert!(trainable_vars(&map)
            .iter()
            .all(|(k, _)| !is_running_stat(k)));
        assert!(trainable_vars(&map).len() < map.all_vars().len());
    }
}
