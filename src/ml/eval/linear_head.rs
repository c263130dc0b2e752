//! The linear classifier of linear evaluation, shared by both protocols (`linear_features`
//! and `linear_augmented`) and fine-tuning's new head: logits = x W + b, or with `head_bn`
//! logits = BN(x W) (the official `linear_layer(use_bn=True)`: no bias before BN, BN with
//! scale and centre, eps 1e-5, running averages with decay 0.9, i.e. PyTorch momentum 0.1;
//! the running variance is the unbiased batch variance, as PyTorch keeps it).
//!
//! Initialisation: without BN the weights and bias start at zero (the official recipe's
//! `--zero_init_logits_layer=True`); with BN, W is drawn from N(0, 0.01) (the official
//! dense initialiser) from `rng::stream(seed, Domain::Eval, ..)`, gamma = 1, beta = 0: zero
//! weights under BN would never move. One training step ([`LinearHead::train_step`]) is
//! softmax cross-entropy on a batch, backward, and one optimizer step. [`optimizer`] is the
//! SGD of every evaluation that trains.
//!
//! Names (for the optimizer's decay rule and checkpoints): `linear.weight` `[D, C]`,
//! `linear.bias`, `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use rand_distr::{Distribution, Normal};

use super::checkpointed::restored;
use crate::ml::config::{EvalTraining, OptimizerConfig, OptimizerKind};
use crate::ml::error::{classify, tensor_err};
use crate::ml::rng::{self, Domain};
use crate::ml::training::optim::Optimizer;
use crate::ml::MlError;

const BN_EPS: f64 = 1e-5;
/// PyTorch's momentum (the official code's decay 0.9).
const BN_MOMENTUM: f64 = 0.1;

struct HeadBn {
    gamma: Var,
    beta: Var,
    running_mean: Tensor,
    running_var: Tensor,
}

/// A linear classifier over `D` features and `C` classes.
pub(crate) struct LinearHead {
    weight: Var,
    bias: Option<Var>,
    bn: Option<HeadBn>,
}

/// One optimizer step on the softmax cross-entropy of `logits` against labels `y` (u32
/// `[B]`) at learning rate `lr`; returns the loss. A non-finite loss is
/// `MlError::NonFinite` at (epoch, step), and nothing is updated.
pub(crate) fn cross_entropy_step(
    opt: &mut Optimizer,
    logits: &Tensor,
    y: &Tensor,
    lr: f64,
    epoch: usize,
    step: usize,
) -> Result<f64, MlError> {
    let loss = candle_nn::loss::cross_entropy(logits, y).map_err(tensor_err)?;
    let value = loss
        .to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(tensor_err)?;
    if !value.is_finite() {
        return Err(MlError::NonFinite { epoch, step, value });
    }
    let grads = loss.backward().map_err(tensor_err)?;
    opt.step(&grads, lr).map_err(classify).map(|()| value)
}

/// An evaluation's optimizer over `params` (the classifier's, for fine-tuning the
/// encoder's too, the probe's MLP): SGD with the training's momentum, Nesterov when it
/// says, its weight decay on weights only (bias and BN parameters are excluded by name).
pub(crate) fn optimizer(training: &EvalTraining, params: Vec<(String, Var)>) -> Optimizer {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::Sgd,
        momentum: training.momentum,
        nesterov: training.nesterov,
        weight_decay: training.weight_decay,
        ..Default::default()
    };
    Optimizer::new(&cfg, params)
}

impl LinearHead {
    /// A fresh classifier (see the module documentation for the initialisation).
    pub fn new(
        dim: usize,
        classes: usize,
        bn: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Self, MlError> {
        let zeros = |shape: &[usize]| Var::zeros(shape, DType::F32, device).map_err(tensor_err);
        if !bn {
            return Ok(Self {
                weight: zeros(&[dim, classes])?,
                bias: Some(zeros(&[classes])?),
                bn: None,
            });
        }
        let mut r = rng::stream(seed, Domain::Eval, &[rng::key_of("linear.weight")]);
        let normal = Normal::new(0.0f32, 0.01).map_err(|e| MlError::Config(e.to_string()))?;
        let w: Vec<f32> = (0..dim * classes).map(|_| normal.sample(&mut r)).collect();
        let weight = Tensor::from_vec(w, (dim, classes), device)
            .and_then(|t| Var::from_tensor(&t))
            .map_err(tensor_err)?;
        let ones = Tensor::ones(classes, DType::F32, device)
            .and_then(|t| Var::from_tensor(&t))
            .map_err(tensor_err)?;
        Ok(Self {
            weight,
            bias: None,
            bn: Some(HeadBn {
                gamma: ones,
                beta: zeros(&[classes])?,
                running_mean: Tensor::zeros(classes, DType::F32, device).map_err(tensor_err)?,
                running_var: Tensor::ones(classes, DType::F32, device).map_err(tensor_err)?,
            }),
        })
    }

    /// The trainable parameters, named.
    pub fn params(&self) -> Vec<(String, Var)> {
        let mut out = vec![("linear.weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push(("linear.bias".into(), b.clone()));
        }
        if let Some(bn) = &self.bn {
            out.push(("bn.weight".into(), bn.gamma.clone()));
            out.push(("bn.bias".into(), bn.beta.clone()));
        }
        out
    }

    /// Logits `[B, C]` of features `x` `[B, D]`. In training mode BN normalises with the
    /// batch statistics and updates its running averages; else it uses those averages.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor, MlError> {
        let y = x.matmul(self.weight.as_tensor()).map_err(tensor_err)?;
        if let Some(b) = &self.bias {
            return y.broadcast_add(b.as_tensor()).map_err(tensor_err);
        }
        let Some(bn) = &mut self.bn else {
            return Ok(y);
        };
        let out = (|| {
            let (mean, var) = if train {
                let n = y.dim(0)?;
                let mean = y.mean_keepdim(0)?; // [1, C]
                let var = y.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?; // biased
                let m = BN_MOMENTUM;
                let unbiased = (var.detach() * (n as f64 / (n.max(2) - 1) as f64))?.squeeze(0)?;
                bn.running_mean =
                    ((&bn.running_mean * (1.0 - m))? + (mean.detach().squeeze(0)? * m)?)?;
                bn.running_var = ((&bn.running_var * (1.0 - m))? + (unbiased * m)?)?;
                (mean, var)
            } else {
                (bn.running_mean.unsqueeze(0)?, bn.running_var.unsqueeze(0)?)
            };
            let xhat = y
                .broadcast_sub(&mean)?
                .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
            xhat.broadcast_mul(bn.gamma.as_tensor())?
                .broadcast_add(bn.beta.as_tensor())
        })();
        out.map_err(tensor_err)
    }

    /// Inference-mode logits of `x`, flattened row-major (`[B * C]`).
    pub fn scores(&mut self, x: &Tensor) -> Result<Vec<f32>, MlError> {
        self.forward(x, false)?
            .flatten_all()
            .and_then(|l| l.to_vec1())
            .map_err(tensor_err)
    }

    /// One SGD step on features `x` `[B, D]` with labels `y` (u32 `[B]`) at learning rate
    /// `lr`: returns the batch's loss and the training-mode logits (detached). A non-finite
    /// loss is `MlError::NonFinite` at (epoch, step).
    pub fn train_step(
        &mut self,
        opt: &mut Optimizer,
        x: &Tensor,
        y: &Tensor,
        lr: f64,
        epoch: usize,
        step: usize,
    ) -> Result<(f64, Tensor), MlError> {
        let logits = self.forward(x, true)?;
        let value = cross_entropy_step(opt, &logits, y, lr, epoch, step)?;
        Ok((value, logits.detach()))
    }

    /// Every tensor of the classifier's state (parameters and BN running averages), named,
    /// for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .params()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        if let Some(bn) = &self.bn {
            out.push(("bn.running_mean".into(), bn.running_mean.clone()));
            out.push(("bn.running_var".into(), bn.running_var.clone()));
        }
        out
    }

    /// Restores a state written by [`LinearHead::state`]: every tensor present, same shapes.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<(), MlError> {
        let get = |name: &str, like: &Tensor| restored(t, name, like, "linear classifier");
        let expected = self.state().len();
        if t.len() != expected {
            return Err(MlError::Config(format!(
                "linear classifier: {} tensors, expected {expected}",
                t.len()
            )));
        }
        // Check everything before changing anything.
        let mut values = Vec::new();
        for (name, current) in self.state() {
            values.push((name.clone(), get(&name, &current)?));
        }
        for (name, v) in values {
            match name.as_str() {
                "linear.weight" => self.weight.set(&v),
                "linear.bias" => match &self.bias {
                    Some(b) => b.set(&v),
                    None => Ok(()),
                },
                "bn.weight" | "bn.bias" | "bn.running_mean" | "bn.running_var" => {
                    let bn = self
                        .bn
                        .as_mut()
                        .expect("state names BN tensors only with BN");
                    match name.as_str() {
                        "bn.weight" => bn.gamma.set(&v),
                        "bn.bias" => bn.beta.set(&v),
                        "bn.running_mean" => {
                            bn.running_mean = v;
                            Ok(())
                        }
                        _ => {
                            bn.running_var = v;
                            Ok(())
                        }
                    }
                }
                _ => Ok(()),
            }
            .map_err(tensor_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_norm_head_matches_hand_computed_values_and_keeps_running_averages() {
        let dev = Device::Cpu;
        let mut head = LinearHead::new(2, 2, true, 0, &dev).unwrap();
        // W = identity: the BN input is x itself.
        head.weight
            .set(&Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap())
            .unwrap();
        let x = Tensor::new(&[[1f32, 10.], [3., 30.]], &dev).unwrap();
        let out: Vec<Vec<f32>> = head.forward(&x, true).unwrap().to_vec2().unwrap();
        // Column 0: mean 2, biased var 1 -> (-1, 1) / sqrt(1 + 1e-5); column 1: var 100.
        let s0 = 1.0 / (1.0f32 + 1e-5).sqrt();
        let s1 = 10.0 / (100.0f32 + 1e-5).sqrt();
        assert!((out[0][0] + s0).abs() < 1e-5 && (out[1][0] - s0).abs() < 1e-5);
        assert!((out[0][1] + s1).abs() < 1e-5 && (out[1][1] - s1).abs() < 1e-5);
        // Running mean 0.1 * (2, 20); running var 0.9 + 0.1 * unbiased (2, 200).
        let bn = head.bn.as_ref().unwrap();
        let rm: Vec<f32> = bn.running_mean.to_vec1().unwrap();
        let rv: Vec<f32> = bn.running_var.to_vec1().unwrap();
        assert!((rm[0] - 0.2).abs() < 1e-6 && (rm[1] - 2.0).abs() < 1e-5);
        assert!((rv[0] - 1.1).abs() < 1e-6 && (rv[1] - 20.9).abs() < 1e-4);
        // Inference uses those averages.
        let inf: Vec<Vec<f32>> = head.forward(&x, false).unwrap().to_vec2().unwrap();
        assert!((inf[0][0] - (1.0 - 0.2) / (1.1f32 + 1e-5).sqrt()).abs() < 1e-5);
    }

    #[test]
    fn without_bn_the_head_starts_at_zero_and_state_round_trips() {
        let dev = Device::Cpu;
        let head = LinearHead::new(3, 4, false, 0, &dev).unwrap();
        let x = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
        let mut h2 = LinearHead::new(3, 4, false, 0, &dev).unwrap();
        assert!(h2.scores(&x).unwrap().iter().all(|&v| v == 0.0));
        let mut bn = LinearHead::new(3, 4, true, 5, &dev).unwrap();
        let before = bn.scores(&x).unwrap();
        let saved: HashMap<String, Tensor> = bn.state().into_iter().collect();
        bn.forward(&x, true).unwrap();
        bn.load_state(&saved).unwrap();
        assert_eq!(bn.scores(&x).unwrap(), before);
        // A state of the other kind of head is refused.
        let plain: HashMap<String, Tensor> = head.state().into_iter().collect();
        assert!(bn.load_state(&plain).is_err());
    }
}
