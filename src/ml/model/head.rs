//! Projection heads g(.) of section 4.2 / Figure 8: z = g(h).
//!
//! - `none`: z = h (`out_dim` is ignored; the spec layer rejects it).
//! - `linear`: z = W h, one Linear without bias (the paper's W h; the official v1 code's
//!   linear head also has no bias).
//! - `nonlinear`: `layers` Linear layers; every layer but the last is followed by BatchNorm
//!   (training-mode statistics, like the encoder) and ReLU: z = W2 relu(BN(W1 h)) for
//!   layers = 2. All Linear layers have no bias: in hidden layers BN's beta plays that role
//!   (as in the official code), and the last is the paper's plain W2. Hidden width
//!   `hidden.unwrap_or(repr_dim)`.
//! - `output_bn` (default, as the official v1 code's `linear_layer(..., use_bn=True)` on
//!   every head layer): the last layer of a linear or nonlinear head is followed by
//!   BatchNorm with a scale and no shift (`center=False` there), no ReLU. Off: the paper's
//!   formula, no BN after the last layer.
//!
//! Variable names: `linear{i}.weight`, `bn{i}.{weight,bias,running_mean,running_var}` (the
//! output BN has no `bias`).

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{linear_no_bias, BatchNorm, Linear, VarBuilder};

use crate::ml::config::{HeadConfig, HeadKind};
use crate::ml::model::encoder::{bn, bn_relu, bn_with, relu, use_fast};

/// One layer: the linear map, then BatchNorm if any, then ReLU if `relu`.
struct Layer {
    linear: Linear,
    bn: Option<BatchNorm>,
    relu: bool,
}

pub struct Head {
    layers: Vec<Layer>,
    out_dim: usize,
}

/// The output BN of `cfg` (scale, no shift), if it asks for one.
fn output_bn(cfg: &HeadConfig, d: usize, vb: VarBuilder) -> Result<Option<BatchNorm>> {
    if cfg.output_bn {
        Ok(Some(bn_with(d, 1.0, false, vb)?))
    } else {
        Ok(None)
    }
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
                let linear = linear_no_bias(repr_dim, out, vb.pp("linear0"))?;
                let bn = output_bn(cfg, out, vb.pp("bn0"))?;
                Ok(Self {
                    layers: vec![Layer {
                        linear,
                        bn,
                        relu: false,
                    }],
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
                    let linear = linear_no_bias(d_in, d_out, vb.pp(format!("linear{i}")))?;
                    let bn_vb = vb.pp(format!("bn{i}"));
                    let bn = if last {
                        output_bn(cfg, d_out, bn_vb)?
                    } else {
                        Some(bn(d_out, bn_vb)?)
                    };
                    layers.push(Layer {
                        linear,
                        bn,
                        relu: !last,
                    });
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
        for l in &self.layers {
            z = l.linear.forward(&z)?;
            if let Some(b) = &l.bn {
                z = if use_fast(&z) {
                    bn_relu(&z, b, train, l.relu)?
                } else {
                    let y = b.forward_t(&z, train)?;
                    if l.relu {
                        relu(&y)?
                    } else {
                        y
                    }
                };
            }
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::init::seeded_var_builder;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn head(kind: HeadKind, output_bn: bool) -> (VarMap, Head) {
        let cfg = HeadConfig {
            kind,
            out_dim: Some(8),
            output_bn,
            ..Default::default()
        };
        let map = VarMap::new();
        let h = Head::new(&cfg, 16, seeded_var_builder(&map, 4, &Device::Cpu)).unwrap();
        (map, h)
    }

    /// Per-dimension mean and (biased) variance of z over the batch.
    fn column_stats(z: &Tensor) -> (Vec<f32>, Vec<f32>) {
        let mean = z.mean_keepdim(0).unwrap();
        let var = z
            .broadcast_sub(&mean)
            .unwrap()
            .sqr()
            .unwrap()
            .mean(0)
            .unwrap();
        (
            mean.flatten_all().unwrap().to_vec1().unwrap(),
            var.to_vec1().unwrap(),
        )
    }

    #[test]
    fn output_bn_centres_and_scales_each_dimension_of_z_in_training() {
        let h = (Tensor::randn(0f32, 1.0, (32, 16), &Device::Cpu).unwrap() + 0.7)
            .unwrap()
            .relu()
            .unwrap();
        for kind in [HeadKind::Linear, HeadKind::Nonlinear] {
            let (map, with) = head(kind, true);
            let (mean, var) = column_stats(&with.forward_t(&h, true).unwrap());
            assert_eq!(mean.len(), 8);
            assert!(
                mean.iter().all(|m| m.abs() < 1e-5),
                "{kind:?} means {mean:?}"
            );
            // gamma 1: unit variance (up to BN's eps).
            assert!(
                var.iter().all(|v| (v - 1.0).abs() < 1e-3),
                "{kind:?} {var:?}"
            );
            // Scale only: a gamma and running statistics, no beta (official center=False).
            let last = if kind == HeadKind::Linear { 0 } else { 1 };
            let data = map.data().lock().unwrap();
            for s in ["weight", "running_mean", "running_var"] {
                assert!(data.contains_key(&format!("bn{last}.{s}")), "{kind:?} {s}");
            }
            assert!(!data.contains_key(&format!("bn{last}.bias")), "{kind:?}");
            drop(data);
            // No ReLU after the output BN: about half of z is negative.
            let z = with.forward_t(&h, true).unwrap();
            let neg: f32 = z
                .lt(0f32)
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(neg > 0.3 && neg < 0.7, "{kind:?} negative fraction {neg}");

            // Without it, z of non-negative h is not centred.
            let (_, without) = head(kind, false);
            let (mean, _) = column_stats(&without.forward_t(&h, true).unwrap());
            assert!(mean.iter().any(|m| m.abs() > 1e-2), "{kind:?} {mean:?}");
        }
        // The nonlinear head's hidden BN keeps its beta.
        let (map, _) = head(HeadKind::Nonlinear, true);
        assert!(map.data().lock().unwrap().contains_key("bn0.bias"));
    }
}
