//! Projection heads g(.) of section 4.2 / Figure 8: z = g(h).
//!
//! - `none`: z = h (`out_dim` is ignored; the spec layer rejects it).
//! - `linear`: z = W h, one Linear without bias (the paper's W h; the official v1 code's
//!   linear head also has no bias).
//! - `nonlinear`: `layers` Linear layers; every layer but the last is followed by BatchNorm
//!   (training-mode statistics, like the encoder) and ReLU: z = W2 relu(BN(W1 h)) for
//!   layers = 2. All Linear layers have no bias: in hidden layers BN's beta plays that role
//!   (as in the official code), and the last is the paper's plain W2. Unlike the official v1
//!   code there is no BN after the last layer (the paper's formula has none). Hidden width
//!   `hidden.unwrap_or(repr_dim)`.
//!
//! Variable names: `linear{i}.weight`, `bn{i}.{weight,bias,running_mean,running_var}`.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{linear_no_bias, BatchNorm, Linear, VarBuilder};

use super::config::{HeadConfig, HeadKind};
use super::encoder::{bn, bn_relu, use_fast};

pub struct Head {
    layers: Vec<(Linear, Option<BatchNorm>)>,
    out_dim: usize,
}

impl Head {
    pub fn new(cfg: &HeadConfig, repr_dim: usize, vb: VarBuilder) -> Result<Self> {
        let out_of = |cfg: &HeadConfig| match cfg.out_dim {
            Some(d) if d > 0 => Ok(d),
            _ => Err(candle_core::Error::Msg(format!(
                "{:?} head needs out_dim >= 1",
                cfg.kind
            ))),
        };
        match cfg.kind {
            HeadKind::None => Ok(Self {
                layers: vec![],
                out_dim: repr_dim,
            }),
            HeadKind::Linear => {
                let out = out_of(cfg)?;
                let l = linear_no_bias(repr_dim, out, vb.pp("linear0"))?;
                Ok(Self {
                    layers: vec![(l, None)],
                    out_dim: out,
                })
            }
            HeadKind::Nonlinear => {
                let out = out_of(cfg)?;
                if cfg.layers == 0 {
                    candle_core::bail!("nonlinear head needs layers >= 1");
                }
                let hidden = cfg.hidden.unwrap_or(repr_dim);
                if hidden == 0 {
                    candle_core::bail!("nonlinear head needs hidden >= 1");
                }
                let mut layers = Vec::with_capacity(cfg.layers);
                let mut d_in = repr_dim;
                for i in 0..cfg.layers {
                    let last = i + 1 == cfg.layers;
                    let d_out = if last { out } else { hidden };
                    let l = linear_no_bias(d_in, d_out, vb.pp(format!("linear{i}")))?;
                    let b = if last {
                        None
                    } else {
                        Some(bn(d_out, vb.pp(format!("bn{i}")))?)
                    };
                    layers.push((l, b));
                    d_in = d_out;
                }
                Ok(Self {
                    layers,
                    out_dim: out,
                })
            }
        }
    }

    /// Dimension of z.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// h `[B, repr_dim]` -> z `[B, out_dim]`.
    pub fn forward_t(&self, h: &Tensor, train: bool) -> Result<Tensor> {
        let mut z = h.clone();
        for (l, b) in &self.layers {
            z = l.forward(&z)?;
            if let Some(b) = b {
                z = if use_fast(&z) {
                    bn_relu(&z, b, train, true)?
                } else {
                    b.forward_t(&z, train)?.relu()?
                };
            }
        }
        Ok(z)
    }
}
