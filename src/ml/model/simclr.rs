//! The SimCLR network (section 2.1, Figure 2): base encoder f(.) then projection head g(.);
//! both the representation h = f(x) (used for evaluation) and z = g(h) (fed to the
//! contrastive loss) are returned. Variables live under `encoder.` and `head.`.
//!
//! Build it with [`crate::ml::model::init::build_model`] for deterministic weights.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::ml::config::{EncoderConfig, HeadConfig};
use crate::ml::model::encoder::Encoder;
use crate::ml::model::head::Head;

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

#[cfg(test)]
mod tests {
    use crate::ml::config::{Arch, EncoderConfig, HeadConfig, HeadKind, Stem};
    use crate::ml::model::init::build_model;
    use candle_core::{DType, Device, Tensor};

    fn convnet() -> EncoderConfig {
        EncoderConfig {
            arch: Arch::Convnet,
            stem: Stem::Cifar,
            width: 1,
            ..Default::default()
        }
    }

    fn head(
        kind: HeadKind,
        hidden: Option<usize>,
        out_dim: Option<usize>,
        layers: usize,
    ) -> HeadConfig {
        HeadConfig {
            kind,
            hidden,
            out_dim,
            layers,
            ..Default::default()
        }
    }

    fn var(map: &candle_nn::VarMap, name: &str) -> Tensor {
        map.data()
            .lock()
            .unwrap()
            .get(name)
            .unwrap()
            .as_tensor()
            .clone()
    }

    #[test]
    fn h_and_z_shapes_for_each_head() {
        let d = Device::Cpu;
        let x = Tensor::rand(0f32, 1.0, (4, 3, 8, 8), &d).unwrap();
        for (h, out) in [
            (head(HeadKind::None, None, None, 2), 128),
            (head(HeadKind::Linear, None, Some(16), 2), 16),
            (head(HeadKind::Nonlinear, None, Some(32), 2), 32),
            (head(HeadKind::Nonlinear, Some(64), Some(8), 3), 8),
        ] {
            let (map, m) = build_model(&convnet(), &h, 3, 0, &d).unwrap();
            assert_eq!(m.repr_dim(), 128);
            assert_eq!(m.out_dim(), out);
            let (hh, z) = m.forward_t(&x, true).unwrap();
            assert_eq!(hh.dims(), &[4, 128]);
            assert_eq!(z.dims(), &[4, out], "{h:?}");
            if h.kind == HeadKind::None {
                let diff: f32 = (hh - z)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert_eq!(diff, 0.0, "no head: z = h");
            }
            if h.layers == 3 {
                assert_eq!(var(&map, "head.linear0.weight").dims(), &[64, 128]);
                assert_eq!(var(&map, "head.linear1.weight").dims(), &[64, 64]);
                assert_eq!(var(&map, "head.linear2.weight").dims(), &[8, 64]);
                assert!(map
                    .data()
                    .lock()
                    .unwrap()
                    .contains_key("head.bn1.running_var"));
                // The output BN (default, as the official code): a scale, no shift.
                assert!(map.data().lock().unwrap().contains_key("head.bn2.weight"));
                assert!(!map.data().lock().unwrap().contains_key("head.bn2.bias"));
            }
        }
        let bad = head(HeadKind::Linear, None, None, 2);
        assert!(build_model(&convnet(), &bad, 3, 0, &d).is_err());
    }

    #[test]
    fn batch_norm_updates_running_stats_in_train_mode_and_uses_them_in_eval() {
        let d = Device::Cpu;
        let h = head(HeadKind::Nonlinear, None, Some(16), 2);
        let (map, m) = build_model(&convnet(), &h, 3, 0, &d).unwrap();
        let x = (Tensor::rand(0f32, 1.0, (6, 3, 8, 8), &d).unwrap() * 3.0).unwrap();
        let rm0: Vec<f32> = var(&map, "encoder.bn1.running_mean").to_vec1().unwrap();
        assert!(rm0.iter().all(|&v| v == 0.0));

        // Eval mode leaves the running statistics alone.
        let (e1, _) = m.forward_t(&x, false).unwrap();
        assert_eq!(
            var(&map, "encoder.bn1.running_mean")
                .to_vec1::<f32>()
                .unwrap(),
            rm0
        );

        // Train mode moves them (momentum 0.1 toward the batch statistics).
        let (t1, _) = m.forward_t(&x, true).unwrap();
        let rm1: Vec<f32> = var(&map, "encoder.bn1.running_mean").to_vec1().unwrap();
        assert!(rm1.iter().any(|&v| v != 0.0), "running mean not updated");
        let rv1: Vec<f32> = var(&map, "head.bn0.running_var").to_vec1().unwrap();
        assert!(
            rv1.iter().any(|&v| v != 1.0),
            "head running var not updated"
        );

        // Eval output now uses the new statistics, differs from the batch-statistics output,
        // and does not depend on what else is in the batch.
        let (e2, _) = m.forward_t(&x, false).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(0)
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
        };
        assert!(diff(&e1, &e2) > 0.0);
        assert!(diff(&t1, &e2) > 0.0);
        let (e_first, _) = m.forward_t(&x.narrow(0, 0, 2).unwrap(), false).unwrap();
        assert!(diff(&e_first, &e2.narrow(0, 0, 2).unwrap()) < 1e-5);

        // Round trip through safetensors carries the running statistics.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        map.save(&path).unwrap();
        let (mut map2, m2) = build_model(&convnet(), &h, 3, 99, &d).unwrap();
        map2.load(&path).unwrap();
        let (e3, _) = m2.forward_t(&x, false).unwrap();
        assert_eq!(diff(&e2, &e3), 0.0);
        assert_eq!(e3.dtype(), DType::F32);
    }

    #[test]
    fn checkpoint_carries_zero_init_gammas_and_the_output_bn() {
        let d = Device::Cpu;
        let enc = |zero| EncoderConfig {
            arch: crate::ml::config::Arch::Resnet18,
            zero_init_residual: zero,
            ..Default::default()
        };
        let h = head(HeadKind::Nonlinear, None, Some(8), 2);
        let x = Tensor::rand(0f32, 1.0, (4, 3, 8, 8), &d).unwrap();
        let (map, m) = build_model(&enc(true), &h, 3, 0, &d).unwrap();
        // One training-mode forward moves the running statistics off their initial values.
        m.forward_t(&x, true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        map.save(&path).unwrap();
        // Restored into a model built with gamma 1 and another seed: the saved values win.
        let (mut map2, m2) = build_model(&enc(false), &h, 3, 9, &d).unwrap();
        map2.load(&path).unwrap();
        for name in [
            "encoder.layer3.1.bn2.weight",
            "head.bn1.weight",
            "head.bn1.running_var",
        ] {
            let a: Vec<f32> = var(&map, name).to_vec1().unwrap();
            assert_eq!(a, var(&map2, name).to_vec1::<f32>().unwrap(), "{name}");
        }
        assert!(var(&map2, "encoder.layer3.1.bn2.weight")
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|&g| g == 0.0));
        let (_, z1) = m.forward_t(&x, false).unwrap();
        let (_, z2) = m2.forward_t(&x, false).unwrap();
        let z1: Vec<f32> = z1.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(z1, z2.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
