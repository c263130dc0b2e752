//! The SimCLR network (section 2.1, Figure 2): base encoder f(.) then projection head g(.);
//! both the representation h = f(x) (used for evaluation) and z = g(h) (fed to the
//! contrastive loss) are returned. Variables live under `encoder.` and `head.`.
//!
//! Build it with [`super::init::build_model`] for deterministic weights.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{EncoderConfig, HeadConfig};
use super::encoder::Encoder;
use super::head::Head;

pub struct SimclrModel {
    encoder: Encoder,
    head: Head,
}

impl SimclrModel {
    pub fn new(
        vb: VarBuilder,
        enc: &EncoderConfig,
        head: &HeadConfig,
        in_channels: usize,
    ) -> Result<Self> {
        let encoder = Encoder::new(enc, in_channels, vb.pp("encoder"))?;
        let head = Head::new(head, encoder.repr_dim(), vb.pp("head"))?;
        Ok(Self { encoder, head })
    }

    /// Dimension of h.
    pub fn repr_dim(&self) -> usize {
        self.encoder.repr_dim()
    }

    /// Dimension of z.
    pub fn out_dim(&self) -> usize {
        self.head.out_dim()
    }

    /// x `[B, C, H, W]` f32 -> (h `[B, repr_dim]`, z `[B, out_dim]`). `train`: BatchNorm
    /// uses batch statistics and updates its running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let h = self.encoder.forward_t(x, train)?;
        let z = self.head.forward_t(&h, train)?;
        Ok((h, z))
    }

    /// h only (feature extraction for evaluation; usually `train = false`).
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.encoder.forward_t(x, train)
    }

    /// z = g(h) for already computed h.
    pub fn project(&self, h: &Tensor, train: bool) -> Result<Tensor> {
        self.head.forward_t(h, train)
    }
}
