//! Contrastive objectives of Table 2 / Table 4 with the contrastive accuracy of Table 5.
//!
//! A batch of N images gives 2N views: rows of `z1` and `z2`. Anchor i (0 <= i < 2N, the
//! rows of `cat(z1, z2)`) has exactly one positive, the other view of the same image
//! (p(i) = i +- N); the other 2(N-1) views are its negatives; self-similarity is never a
//! candidate. sim(u, v) = u.v, with u, v l2-normalised first when `l2_norm` (cosine).
//! Every loss is the mean over the 2N anchors of a per-anchor loss l_i (the paper's
//! Algorithm 1: L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]; the official TF code reports
//! twice this, the sum of the two directions' means).
//!
//! - NT-Xent: l_i = -log( exp(s_ip/tau) / sum_{k != i} exp(s_ik/tau) ), computed with a
//!   max-subtracted logsumexp.
//! - NT-Logistic: l_i = -log sigmoid(s_ip/tau) - (1/|N_i|) sum_{n in N_i} log sigmoid(-s_in/tau).
//!   Choice: negatives are *averaged*, so the positive and the negatives carry equal total
//!   weight (the paper re-weights negatives; a plain sum would let 2(N-1) negatives swamp
//!   the one positive). -log sigmoid(x) is computed as softplus(-x), stably.
//! - Margin triplet: l_i = (1/|N_i|) sum_{n in N_i} max(s_in - s_ip + m, 0) (no temperature).
//! - Semi-hard variants (appendix B.10, `semi_hard`): N_i keeps only the negatives that are
//!   farther from the anchor than its positive, s_in < s_ip, and for the margin loss also
//!   within the margin, s_in > s_ip - m (FaceNet's semi-hard negatives). Fallback when no
//!   negative of anchor i qualifies: N_i = {the least similar negative} (the convention of
//!   TensorFlow's `triplet_semihard_loss`), so every anchor keeps one negative term. The
//!   selection is made on the detached similarities (it is a mask, not differentiated).
//!   Without `semi_hard`, N_i is all 2(N-1) negatives.
//! - Contrastive accuracy, two definitions:
//!   - cross-view (Table 5 as the paper measures it; the official code's
//!     `argmax(logits_ab) == i`): for each of the N anchors of the first view, its positive
//!     is the most similar of the N views of the second view (ties: the lower index wins,
//!     as argmax);
//!   - strict: fraction of the 2N anchors whose positive is strictly more similar than
//!     every one of the 2(N-1) negatives, same-view ones included (2N-1 candidates).
//!
//!   Only the cross-view one is comparable with the paper's numbers.

use candle_core::{DType, Device, Result, Tensor, D};

use super::config::{LossConfig, LossKind};

/// Output of [`contrastive_loss`].
pub struct LossOutput {
    /// Scalar loss (differentiable w.r.t. z1, z2).
    pub loss: Tensor,
    /// Strict contrastive accuracy in [0, 1] (2N-1 candidates per anchor).
    pub accuracy: f64,
    /// The paper's contrastive accuracy in [0, 1] (N cross-view candidates per anchor).
    pub accuracy_cross_view: f64,
}

/// The official code's LARGE_NUM: subtracted from self-similarity logits.
const LARGE_NUM: f64 = 1e9;

/// sum over rows of a `[R, C]` tensor -> `[R]`.
fn row_sum(t: &Tensor) -> Result<Tensor> {
    t.sum(D::Minus1)
}

/// Rows scaled to unit l2 norm (torch `F.normalize`, eps 1e-12).
pub(crate) fn l2_normalize(z: &Tensor) -> Result<Tensor> {
    let norm = z
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    z.broadcast_div(&norm)
}

/// softplus(x) = log(1 + exp(x)) = relu(x) + log(1 + exp(-|x|)), stable for any x.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// Contrastive loss of the two views' projections z1, z2 `[N, D]` (row k of both is image
/// k). See the module doc for the exact definitions.
pub fn contrastive_loss(z1: &Tensor, z2: &Tensor, cfg: &LossConfig) -> Result<LossOutput> {
    if z1.rank() != 2 || z1.shape() != z2.shape() {
        candle_core::bail!(
            "contrastive loss needs z1, z2 of the same [N, D] shape, got {:?} and {:?}",
            z1.shape(),
            z2.shape()
        );
    }
    let n = z1.dim(0)?;
    if n < 2 {
        candle_core::bail!(
            "contrastive loss needs at least 2 images per batch (negatives), got {n}"
        );
    }
    if cfg.kind != LossKind::Margin && (cfg.temperature.is_nan() || cfg.temperature <= 0.0) {
        candle_core::bail!("temperature must be > 0, got {}", cfg.temperature);
    }
    let two_n = 2 * n;
    let dev = z1.device();
    let dtype = z1.dtype();
    if dtype != DType::F32 && dtype != DType::F64 {
        candle_core::bail!("contrastive loss needs f32 or f64 inputs, got {dtype:?}");
    }
    let z = Tensor::cat(&[z1, z2], 0)?; // [2N, D]
    let z = if cfg.l2_norm { l2_normalize(&z)? } else { z };
    // The positive of row i is row (i + N) mod 2N.
    let z_pos = Tensor::cat(&[&z.narrow(0, n, n)?, &z.narrow(0, 0, n)?], 0)?; // [2N, D]
    let sim = z.matmul(&z.t()?)?; // [2N, 2N]
    let s_pos = row_sum(&(&z * &z_pos)?)?; // [2N]

    // Host copy of the similarities: accuracy and the negative masks.
    let sim_h: Vec<Vec<f64>> = sim.detach().to_dtype(DType::F64)?.to_vec2()?;
    let pos_of = |i: usize| (i + n) % two_n;
    let mut correct = 0usize;
    for (i, row) in sim_h.iter().enumerate() {
        let p = pos_of(i);
        let best_neg = row
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i && j != p)
            .map(|(_, &v)| v)
            .fold(f64::NEG_INFINITY, f64::max);
        if row[p] > best_neg {
            correct += 1;
        }
    }
    let accuracy = correct as f64 / two_n as f64;
    let accuracy_cross_view = cross_view_accuracy(&sim_h, n);

    let loss = match cfg.kind {
        LossKind::NtXent => {
            let tau = cfg.temperature;
            let eye = Tensor::eye(two_n, dtype, dev)?;
            let logits = ((&sim / tau)? - (eye * LARGE_NUM)?)?; // [2N, 2N]
            let m = logits.max_keepdim(D::Minus1)?.detach(); // [2N, 1]
            let lse = (logits
                .broadcast_sub(&m)?
                .exp()?
                .sum_keepdim(D::Minus1)?
                .log()?
                + m)?
                .squeeze(D::Minus1)?; // [2N]
            (lse - (s_pos / tau)?)?.mean_all()?
        }
        LossKind::NtLogistic => {
            let tau = cfg.temperature;
            let w = negative_weights(&sim_h, n, cfg, dev)?.to_dtype(dtype)?; // [2N, 2N]
            let pos_term = softplus(&(s_pos / -tau)?)?; // -log sigmoid(s_p / tau)
            let neg_term = row_sum(&(softplus(&(&sim / tau)?)? * w)?)?; // -log sigmoid(-s_n / tau)
            (pos_term + neg_term)?.mean_all()?
        }
        LossKind::Margin => {
            let w = negative_weights(&sim_h, n, cfg, dev)?.to_dtype(dtype)?;
            let hinge = (sim.broadcast_sub(&s_pos.unsqueeze(1)?)? + cfg.margin)?.relu()?;
            row_sum(&(hinge * w)?)?.mean_all()?
        }
    };
    Ok(LossOutput {
        loss,
        accuracy,
        accuracy_cross_view,
    })
}

/// The official code's contrastive accuracy: over the N anchors of the first view (rows
/// 0..N of `sim`, `[2N, 2N]`), the fraction whose argmax over the second view's columns
/// N..2N is their own pair (first maximum wins, as `tf.argmax`).
fn cross_view_accuracy(sim: &[Vec<f64>], n: usize) -> f64 {
    let hits = (0..n)
        .filter(|&i| {
            let cross = &sim[i][n..2 * n];
            let best = cross
                .iter()
                .enumerate()
                .fold(0, |b, (j, &v)| if v > cross[b] { j } else { b });
            best == i
        })
        .count();
    hits as f64 / n as f64
}

/// `[2N, 2N]` weights of the negatives each anchor uses: 1/|N_i| on N_i, 0 elsewhere (self,
/// positive, unselected negatives). See the module doc for N_i.
fn negative_weights(sim: &[Vec<f64>], n: usize, cfg: &LossConfig, dev: &Device) -> Result<Tensor> {
    let two_n = 2 * n;
    let mut w = vec![0f64; two_n * two_n];
    let m = cfg.margin;
    let margin_loss = cfg.kind == LossKind::Margin;
    for (i, row) in sim.iter().enumerate() {
        let p = (i + n) % two_n;
        let sp = row[p];
        let negs = (0..two_n).filter(|&j| j != i && j != p);
        let chosen: Vec<usize> = if cfg.semi_hard {
            let semi: Vec<usize> = negs
                .clone()
                .filter(|&j| row[j] < sp && (!margin_loss || row[j] > sp - m))
                .collect();
            if semi.is_empty() {
                // Fallback: the least similar negative (first one on ties).
                let mut best = None::<(usize, f64)>;
                for j in negs {
                    if best.is_none_or(|(_, v)| row[j] < v) {
                        best = Some((j, row[j]));
                    }
                }
                best.map(|(j, _)| vec![j]).unwrap_or_default()
            } else {
                semi
            }
        } else {
            negs.collect()
        };
        let k = chosen.len() as f64;
        for j in chosen {
            w[i * two_n + j] = 1.0 / k;
        }
    }
    Tensor::from_vec(w, (two_n, two_n), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    // Golden values: PyTorch 2.15 (CPU, float64), from this script:
    //
    // import torch, torch.nn.functional as F
    // torch.set_default_dtype(torch.float64)
    // z1 = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.8, 0.1], [-0.5, 0.4, 0.7], [0.3, -0.6, 0.2]])
    // z2 = torch.tensor([[0.7, 0.3, -0.1], [0.6, 0.5, 0.2], [-0.4, -0.2, 0.9], [0.1, -0.8, -0.3]])
    // def sims(z1, z2, l2):
    //     z = torch.cat([z1, z2])
    //     if l2: z = F.normalize(z, dim=1)
    //     n = z1.shape[0]
    //     s = z @ z.T
    //     pos = torch.cat([torch.arange(n, 2*n), torch.arange(0, n)])
    //     return s, pos, n
    // def acc(s, pos):
    //     s = s.clone(); s.fill_diagonal_(-float('inf'))
    //     return (s.argmax(1) == pos).double().mean().item()
    // def nt_xent(z1, z2, tau, l2):
    //     s, pos, n = sims(z1, z2, l2)
    //     logits = s / tau - torch.eye(2*n) * 1e9
    //     return F.cross_entropy(logits, pos), acc(s, pos)
    // FALLBACK = []
    // def neg_sets(s, pos, semi, margin):
    //     sets = []
    //     for i in range(s.shape[0]):
    //         p = pos[i].item(); negs = [j for j in range(s.shape[0]) if j not in (i, p)]
    //         if semi:
    //             q = [j for j in negs if s[i, j] < s[i, p] and (margin is None or s[i, j] > s[i, p] - margin)]
    //             if not q: q = [min(negs, key=lambda j: s[i, j].item())]; FALLBACK.append(i)
    //         else:
    //             q = negs
    //         sets.append(q)
    //     return sets
    // def nt_logistic(z1, z2, tau, l2, semi):
    //     s, pos, n = sims(z1, z2, l2)
    //     sets = neg_sets(s.detach(), pos, semi, None)
    //     ls = []
    //     for i in range(2*n):
    //         l = -F.logsigmoid(s[i, pos[i]] / tau)
    //         l = l - torch.stack([F.logsigmoid(-s[i, j] / tau) for j in sets[i]]).mean()
    //         ls.append(l)
    //     return torch.stack(ls).mean(), acc(s, pos), [len(q) for q in sets]
    // def margin(z1, z2, m, l2, semi):
    //     s, pos, n = sims(z1, z2, l2)
    //     sets = neg_sets(s.detach(), pos, semi, m)
    //     ls = [torch.stack([torch.clamp(s[i, j] - s[i, pos[i]] + m, min=0) for j in sets[i]]).mean() for i in range(2*n)]
    //     return torch.stack(ls).mean(), acc(s, pos), [len(q) for q in sets]
    // a = z1.clone().requires_grad_(True)
    // l, ac = nt_xent(a, z2, 0.5, True); l.backward()
    // print("nt_xent tau=0.5 l2", repr(l.item()), ac, "grad z1", a.grad.flatten().tolist())
    // print("nt_xent tau=0.1 l2", *nt_xent(z1, z2, 0.1, True))
    // print("nt_xent tau=1.0 no-l2", *nt_xent(z1, z2, 1.0, False))
    // for semi in (False, True):
    //     l, ac, k = nt_logistic(z1, z2, 0.5, True, semi); print("nt_logistic tau=0.5 l2 semi", semi, repr(l.item()), ac, k)
    //     FALLBACK.clear(); l, ac, k = margin(z1, z2, 0.5, True, semi); print("margin m=0.5 l2 semi", semi, repr(l.item()), ac, k, "fallback anchors", FALLBACK)
    // y1 = torch.tensor([[1.0, 0.0], [0.9, 0.1]]); y2 = torch.tensor([[-1.0, 0.0], [0.8, 0.2]])
    // FALLBACK.clear(); l, ac, k = nt_logistic(y1, y2, 0.5, True, True); print("fallback nt_logistic semi", repr(l.item()), ac, k, "fallback anchors", FALLBACK)
    //
    // Printed:
    // nt_xent tau=0.5 l2 0.8518937575910915 0.875 grad z1 [0.020920921171884377, -0.07863433471232735, 0.036551318611543995, -0.1317604538317923, 0.032280484823548644, 0.005277029075195384, 0.0975351680796955, 0.23167811231947383, -0.0627195155542026, 0.16688865423578356, 0.18507492475851564, 0.3048917929218717]
    // nt_xent tau=0.1 l2 0.247887061515374 0.875
    // nt_xent tau=1.0 no-l2 1.4151874358317484 0.875
    // nt_logistic tau=0.5 l2 semi False 0.8587690282418241 0.875 [6, 6, 6, 6, 6, 6, 6, 6]
    // margin m=0.5 l2 semi False 0.04628939149918034 0.875 [6, 6, 6, 6, 6, 6, 6, 6] fallback anchors []
    // nt_logistic tau=0.5 l2 semi True 0.8339242658867859 0.875 [6, 6, 6, 6, 6, 5, 6, 6]
    // margin m=0.5 l2 semi True 0.14751534594289595 0.875 [1, 2, 1, 1, 2, 1, 1, 1] fallback anchors [6, 7]
    // fallback nt_logistic semi 1.9869323292602319 0.25 [1, 1, 1, 2] fallback anchors [0, 2]

    const Z1: [[f64; 3]; 4] = [
        [0.9, 0.1, -0.3],
        [0.2, 0.8, 0.1],
        [-0.5, 0.4, 0.7],
        [0.3, -0.6, 0.2],
    ];
    const Z2: [[f64; 3]; 4] = [
        [0.7, 0.3, -0.1],
        [0.6, 0.5, 0.2],
        [-0.4, -0.2, 0.9],
        [0.1, -0.8, -0.3],
    ];

    fn zs(dtype: DType) -> (Tensor, Tensor) {
        let d = Device::Cpu;
        let a = Tensor::new(&Z1, &d).unwrap().to_dtype(dtype).unwrap();
        let b = Tensor::new(&Z2, &d).unwrap().to_dtype(dtype).unwrap();
        (a, b)
    }

    fn cfg(
        kind: LossKind,
        temperature: f64,
        l2_norm: bool,
        margin: f64,
        semi_hard: bool,
    ) -> LossConfig {
        LossConfig {
            kind,
            temperature,
            l2_norm,
            margin,
            semi_hard,
        }
    }

    fn value(z1: &Tensor, z2: &Tensor, c: &LossConfig) -> (f64, f64) {
        let out = contrastive_loss(z1, z2, c).unwrap();
        let l = out
            .loss
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        (l, out.accuracy)
    }

    #[test]
    fn the_two_contrastive_accuracies_follow_their_definitions() {
        // N = 2: rows/cols 0, 1 are the first view, 2, 3 the second; (0, 2) and (1, 3) pair.
        let sim = vec![
            // Anchor 0: its pair (0.5) beats the other cross-view candidate (0.4) but not
            // the same-view negative (0.9): right cross-view, wrong strictly.
            vec![1.0, 0.9, 0.5, 0.4],
            // Anchor 1: a tie across the views goes to the lower index, as argmax: wrong.
            vec![0.9, 1.0, 0.3, 0.3],
            // Anchors 2 and 3 (second view) count only in the strict accuracy.
            vec![0.5, 0.1, 1.0, 0.2],
            vec![0.4, 0.3, 0.2, 1.0],
        ];
        assert_eq!(cross_view_accuracy(&sim, 2), 0.5);
        // On the golden pairs every anchor's pair wins across the views, while one anchor
        // in eight loses to a same-view negative (strict 0.875, below).
        let (a, b) = zs(DType::F64);
        for l2_norm in [true, false] {
            let c = cfg(LossKind::NtXent, 0.5, l2_norm, 1.0, false);
            let out = contrastive_loss(&a, &b, &c).unwrap();
            // torch: (F.normalize(z1) @ F.normalize(z2).T).argmax(1) == arange(4): all true.
            assert_eq!(out.accuracy_cross_view, 1.0);
            assert_eq!(out.accuracy, 0.875);
        }
    }

    #[test]
    fn golden_values_match_pytorch_in_f64_and_f32() {
        let cases = [
            (
                cfg(LossKind::NtXent, 0.5, true, 1.0, false),
                0.8518937575910915,
            ),
            (
                cfg(LossKind::NtXent, 0.1, true, 1.0, false),
                0.247887061515374,
            ),
            (
                cfg(LossKind::NtXent, 1.0, false, 1.0, false),
                1.4151874358317484,
            ),
            (
                cfg(LossKind::NtLogistic, 0.5, true, 1.0, false),
                0.8587690282418241,
            ),
            (
                cfg(LossKind::NtLogistic, 0.5, true, 1.0, true),
                0.8339242658867859,
            ),
            (
                cfg(LossKind::Margin, 1.0, true, 0.5, false),
                0.04628939149918034,
            ),
            (
                cfg(LossKind::Margin, 1.0, true, 0.5, true),
                0.14751534594289595,
            ),
        ];
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-6)] {
            let (a, b) = zs(dtype);
            for (c, want) in &cases {
                let (got, acc) = value(&a, &b, c);
                assert!(
                    (got - want).abs() <= tol * want.abs().max(1.0),
                    "{c:?} {dtype:?}: got {got}, PyTorch {want}"
                );
                assert_eq!(acc, 0.875, "{c:?}: contrastive accuracy");
            }
        }
    }

    #[test]
    fn semi_hard_fallback_uses_least_similar_negative_like_the_reference() {
        let d = Device::Cpu;
        let y1 = Tensor::new(&[[1.0f64, 0.0], [0.9, 0.1]], &d).unwrap();
        let y2 = Tensor::new(&[[-1.0f64, 0.0], [0.8, 0.2]], &d).unwrap();
        let (l, acc) = value(&y1, &y2, &cfg(LossKind::NtLogistic, 0.5, true, 1.0, true));
        assert!((l - 1.9869323292602319).abs() < 1e-12, "got {l}");
        assert_eq!(acc, 0.25);
    }

    #[test]
    fn nt_xent_gradient_matches_pytorch_and_finite_differences() {
        let want = [
            0.020920921171884377,
            -0.07863433471232735,
            0.036551318611543995,
            -0.1317604538317923,
            0.032280484823548644,
            0.005277029075195384,
            0.0975351680796955,
            0.23167811231947383,
            -0.0627195155542026,
            0.16688865423578356,
            0.18507492475851564,
            0.3048917929218717,
        ];
        let (a, b) = zs(DType::F64);
        let c = cfg(LossKind::NtXent, 0.5, true, 1.0, false);
        let v = Var::from_tensor(&a).unwrap();
        let out = contrastive_loss(v.as_tensor(), &b, &c).unwrap();
        let g = out.loss.backward().unwrap();
        let got: Vec<f64> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // Central finite differences on the same f64 loss.
        let base: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for k in 0..base.len() {
            let mut p = base.clone();
            p[k] += eps;
            let lp = value(
                &Tensor::from_vec(p.clone(), (4, 3), &Device::Cpu).unwrap(),
                &b,
                &c,
            )
            .0;
            p[k] -= 2.0 * eps;
            let lm = value(&Tensor::from_vec(p, (4, 3), &Device::Cpu).unwrap(), &b, &c).0;
            let fd = (lp - lm) / (2.0 * eps);
            assert!(
                (got[k] - want[k]).abs() < 1e-10,
                "grad[{k}] {} vs PyTorch {}",
                got[k],
                want[k]
            );
            assert!(
                (got[k] - fd).abs() < 1e-7,
                "grad[{k}] {} vs finite difference {fd}",
                got[k]
            );
        }
    }

    #[test]
    fn nt_xent_is_stable_for_tiny_temperature_and_large_unnormalised_z() {
        let (a, b) = zs(DType::F32);
        let a = (a * 100.0).unwrap();
        let (l, _) = value(&a, &b, &cfg(LossKind::NtXent, 0.01, false, 1.0, false));
        assert!(l.is_finite(), "loss {l}");
        let (l, _) = value(&a, &b, &cfg(LossKind::NtLogistic, 0.01, false, 1.0, false));
        assert!(l.is_finite(), "loss {l}");
    }

    #[test]
    fn perfect_pairs_give_full_accuracy_and_low_loss() {
        // Orthogonal images, identical views: every anchor's positive is its best candidate.
        let d = Device::Cpu;
        let e = Tensor::eye(4, DType::F32, &d).unwrap();
        let out = contrastive_loss(&e, &e, &cfg(LossKind::NtXent, 0.1, true, 1.0, false)).unwrap();
        assert_eq!(out.accuracy, 1.0);
        let l = out.loss.to_scalar::<f32>().unwrap();
        // -log(e^10 / (e^10 + 6)) ~ 2.7e-4.
        assert!(
            (l - (1.0f32 + 6.0 * (-10.0f32).exp()).ln()).abs() < 1e-5,
            "loss {l}"
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let d = Device::Cpu;
        let c = LossConfig::default();
        let one = Tensor::zeros((1, 3), DType::F32, &d).unwrap();
        assert!(contrastive_loss(&one, &one, &c).is_err());
        let a = Tensor::zeros((2, 3), DType::F32, &d).unwrap();
        let b = Tensor::zeros((2, 4), DType::F32, &d).unwrap();
        assert!(contrastive_loss(&a, &b, &c).is_err());
    }
}
