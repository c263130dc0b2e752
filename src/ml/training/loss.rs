//! Contrastive objectives of Table 2 / Table 4 with the contrastive accuracy of Table 5.
//!
//! A batch of N images gives 2N views: rows of `z1` and `z2`. Anchor i (0 <= i < 2N, the
//! rows of `cat(z1, z2)`) has exactly one positive, the other view of the same image
//! (p(i) = i +- N); self-similarity is never a candidate. sim(u, v) = u.v, with u, v
//! l2-normalised first when `l2_norm` (cosine). Every loss is the mean over the 2N anchors
//! of a per-anchor loss l_i (the paper's Algorithm 1: L = 1/(2N) sum_k [l(2k-1, 2k) +
//! l(2k, 2k-1)]; the official TF code reports twice this, the sum of the two directions'
//! means).
//!
//! Negatives (`negatives`): N_i is either every other view of the batch, 2(N-1) of them
//! (`both_views`: Algorithm 1, the official `objective.py`, which holds NT-Xent only), or
//! the N-1 other images of the positive's view (`one_view`: the paper's Table 4
//! comparison, appendix B.10 "we only consider the negatives from one augmentation view
//! (instead of both sides)"; we read the side as the positive's, as Table 2 writes the
//! pair u, v+ and the negatives v- alike).
//!
//! - NT-Xent: l_i = -log( exp(s_ip/tau) / (exp(s_ip/tau) + sum_{n in N_i} exp(s_in/tau)) ),
//!   a max-subtracted logsumexp; the rest of the row is masked by the official code's
//!   LARGE_NUM.
//! - NT-Logistic (Table 2: log sigma(u.v+/tau) + log sigma(-u.v-/tau) per triple):
//!   l_i = -log sigmoid(s_ip/tau) - sum_{n in M_i} w_i log sigmoid(-s_in/tau), each
//!   -log sigmoid(x) computed as softplus(-x), stably.
//! - Margin triplet (Table 2: max(u.v- - u.v+ + m, 0) per triple; no temperature):
//!   l_i = sum_{n in M_i} w_i max(s_in - s_ip + m, 0).
//! - Weights (`negative_weighting`; the paper and the official code say nothing):
//!   `mean`, w_i = 1/|M_i| (the mean of Table 2's triple terms over the anchor's triples:
//!   the positive and the negatives carry equal total weight); `sum`, w_i = 1 (word2vec's
//!   negative sampling, the logistic loss the paper cites).
//! - M_i: N_i, or with `semi_hard` (section 4.2: "semi-hard negative terms (i.e., those
//!   that are within the margin and closest in distance, but farther than positive
//!   examples)") the semi-hard negatives S_i = {n in N_i : s_in < s_ip}:
//!   `semi_hard_pick: closest` keeps the one of S_i most similar to the anchor (the
//!   paper's words; TensorFlow's `triplet_semihard_loss`; first index on ties; for the
//!   margin loss "within the margin" changes nothing: if the closest is outside it, every
//!   term is zero anyway); `band` keeps all of S_i, for the margin loss only those within
//!   the margin, s_in > s_ip - m (FaceNet's band). When the pick is empty (no negative
//!   farther than the positive; for the margin band, none within the margin either),
//!   `semi_hard_fallback` decides, the paper being silent: `least_similar` uses the least similar negative of N_i
//!   (TensorFlow's convention; first index on ties), `none` uses no negative. The
//!   selection is made on the detached similarities (a mask, not differentiated).
//! - Contrastive accuracy, two definitions (independent of the options above):
//!   - cross-view (Table 5 as the paper measures it; the official code's
//!     `argmax(logits_ab) == i`): for each of the N anchors of the first view, its positive
//!     is the most similar of the N views of the second view (ties: the lower index wins,
//!     as argmax);
//!   - strict: fraction of the 2N anchors whose positive is strictly more similar than
//!     every one of the 2(N-1) negatives, same-view ones included (2N-1 candidates).
//!
//!   Only the cross-view one is comparable with the paper's numbers.
//!
//! Golden values: `bench/loss_goldens.py` (PyTorch) writes `loss_goldens.json`, the loss
//! and its gradient for every variant, which the tests below compare against.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::ml::config::{
    LossConfig, LossKind, NegativeWeighting, Negatives, SemiHardFallback, SemiHardPick,
};

/// Output of [`contrastive_loss`].
pub struct LossOutput {
    /// Scalar loss (differentiable w.r.t. z1, z2).
    pub loss: Tensor,
    /// Strict contrastive accuracy in [0, 1] (2N-1 candidates per anchor).
    pub accuracy: f64,
    /// The paper's contrastive accuracy in [0, 1] (N cross-view candidates per anchor).
    pub accuracy_cross_view: f64,
}

/// The official code's LARGE_NUM: subtracted from the logits that are not candidates.
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
    let accuracy = strict_accuracy(&sim_h, n);
    let accuracy_cross_view = cross_view_accuracy(&sim_h, n);

    let loss = match cfg.kind {
        LossKind::NtXent => {
            let tau = cfg.temperature;
            // 1 where column j is neither anchor i's positive nor one of its negatives.
            let mut off = vec![1f64; two_n * two_n];
            for i in 0..two_n {
                off[i * two_n + positive_of(i, n)] = 0.0;
                for j in negatives_of(i, n, cfg.negatives) {
                    off[i * two_n + j] = 0.0;
                }
            }
            let off = Tensor::from_vec(off, (two_n, two_n), dev)?.to_dtype(dtype)?;
            let logits = ((&sim / tau)? - (off * LARGE_NUM)?)?; // [2N, 2N]
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

/// The row of anchor i's positive among the 2N views.
fn positive_of(i: usize, n: usize) -> usize {
    (i + n) % (2 * n)
}

/// N_i: the rows anchor i is contrasted with, in index order (module doc).
fn negatives_of(i: usize, n: usize, which: Negatives) -> impl Iterator<Item = usize> + Clone {
    let p = positive_of(i, n);
    let range = match which {
        Negatives::BothViews => 0..2 * n,
        // The positive's view: rows N..2N for an anchor of the first view, 0..N otherwise.
        Negatives::OneView if i < n => n..2 * n,
        Negatives::OneView => 0..n,
    };
    range.filter(move |&j| j != i && j != p)
}

/// Strict accuracy: the fraction of the 2N anchors whose positive is more similar than
/// every other view of the batch.
fn strict_accuracy(sim: &[Vec<f64>], n: usize) -> f64 {
    let correct = sim
        .iter()
        .enumerate()
        .filter(|&(i, row)| {
            let p = positive_of(i, n);
            negatives_of(i, n, Negatives::BothViews).all(|j| row[p] > row[j])
        })
        .count();
    correct as f64 / (2 * n) as f64
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

/// M_i of the module doc: the negatives anchor i's loss uses, in index order.
fn chosen_negatives(row: &[f64], i: usize, n: usize, cfg: &LossConfig) -> Vec<usize> {
    let negs = negatives_of(i, n, cfg.negatives);
    if !cfg.semi_hard {
        return negs.collect();
    }
    let sp = row[positive_of(i, n)];
    let farther = negs.clone().filter(|&j| row[j] < sp);
    let semi: Vec<usize> = match cfg.semi_hard_pick {
        SemiHardPick::Closest => first_best(row, farther, |a, b| a > b).into_iter().collect(),
        SemiHardPick::Band if cfg.kind == LossKind::Margin => {
            farther.filter(|&j| row[j] > sp - cfg.margin).collect()
        }
        SemiHardPick::Band => farther.collect(),
    };
    if !semi.is_empty() {
        return semi;
    }
    match cfg.semi_hard_fallback {
        SemiHardFallback::LeastSimilar => first_best(row, negs, |a, b| a < b).into_iter().collect(),
        SemiHardFallback::None => Vec::new(),
    }
}

/// The index of `js` whose `row` value is best by `better` (strictly: the first one wins
/// ties); `None` when `js` is empty.
fn first_best(
    row: &[f64],
    js: impl Iterator<Item = usize>,
    better: impl Fn(f64, f64) -> bool,
) -> Option<usize> {
    js.fold(None, |best, j| match best {
        Some(k) if !better(row[j], row[k]) => Some(k),
        _ => Some(j),
    })
}

/// `[2N, 2N]` weights of the negatives each anchor uses: w_i on M_i, 0 elsewhere (self,
/// positive, unused negatives). See the module doc for M_i and w_i.
fn negative_weights(sim: &[Vec<f64>], n: usize, cfg: &LossConfig, dev: &Device) -> Result<Tensor> {
    let two_n = 2 * n;
    let mut w = vec![0f64; two_n * two_n];
    for (i, row) in sim.iter().enumerate() {
        let chosen = chosen_negatives(row, i, n, cfg);
        let weight = match cfg.negative_weighting {
            NegativeWeighting::Mean => 1.0 / chosen.len().max(1) as f64,
            NegativeWeighting::Sum => 1.0,
        };
        for j in chosen {
            w[i * two_n + j] = weight;
        }
    }
    Tensor::from_vec(w, (two_n, two_n), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// One variant of `loss_goldens.json` (written by `bench/loss_goldens.py`).
    #[derive(serde::Deserialize)]
    struct Golden {
        name: String,
        /// The `LossConfig` fields that differ from the defaults.
        config: LossConfig,
        z1: Vec<Vec<f64>>,
        z2: Vec<Vec<f64>>,
        loss: f64,
        grad_z1: Vec<Vec<f64>>,
        grad_z2: Vec<Vec<f64>>,
    }

    fn goldens() -> Vec<Golden> {
        #[derive(serde::Deserialize)]
        struct File {
            goldens: Vec<Golden>,
        }
        let f: File = serde_json::from_str(include_str!("loss_goldens.json")).unwrap();
        f.goldens
    }

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

    fn cfg(kind: LossKind, temperature: f64, l2_norm: bool) -> LossConfig {
        LossConfig {
            kind,
            temperature,
            l2_norm,
            ..LossConfig::default()
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

    fn flat(rows: &[Vec<f64>]) -> Vec<f64> {
        rows.concat()
    }

    fn golden_inputs(g: &Golden, dtype: DType) -> (Tensor, Tensor) {
        let t = |rows: &[Vec<f64>]| {
            Tensor::new(rows.to_vec(), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        (t(&g.z1), t(&g.z2))
    }

    #[test]
    fn every_variant_matches_pytorch_loss_and_gradient() {
        let all = goldens();
        assert!(all.len() >= 20, "the golden file lost its cases");
        for g in &all {
            let c = &g.config;
            let (a, b) = golden_inputs(g, DType::F64);
            let (va, vb) = (Var::from_tensor(&a).unwrap(), Var::from_tensor(&b).unwrap());
            let out = contrastive_loss(va.as_tensor(), vb.as_tensor(), c).unwrap();
            let l = out.loss.to_scalar::<f64>().unwrap();
            assert!(
                (l - g.loss).abs() <= 1e-12 * g.loss.abs().max(1.0),
                "{}: loss {l}, PyTorch {}",
                g.name,
                g.loss
            );
            let grads = out.loss.backward().unwrap();
            for (v, want, which) in [(&va, &g.grad_z1, "z1"), (&vb, &g.grad_z2, "z2")] {
                let got: Vec<f64> = grads
                    .get(v)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let want = flat(want);
                assert_eq!(got.len(), want.len(), "{}", g.name);
                for (k, (x, y)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-10,
                        "{}: d loss / d {which}[{k}] = {x}, PyTorch {y}",
                        g.name
                    );
                }
            }
            // f32, the dtype training runs in: the same value to f32 precision.
            let (a, b) = golden_inputs(g, DType::F32);
            let (l32, _) = value(&a, &b, c);
            assert!(
                (l32 - g.loss).abs() <= 2e-6 * g.loss.abs().max(1.0),
                "{} f32: loss {l32}, PyTorch {}",
                g.name,
                g.loss
            );
        }
    }

    #[test]
    fn every_variants_gradient_matches_finite_differences() {
        // The semi-hard selection is piecewise constant: the goldens are away from its
        // switches (bench/loss_goldens.py checks), so central differences see one piece.
        let eps = 1e-6;
        for g in &goldens() {
            let (a, b) = golden_inputs(g, DType::F64);
            let v = Var::from_tensor(&a).unwrap();
            let out = contrastive_loss(v.as_tensor(), &b, &g.config).unwrap();
            let got: Vec<f64> = out
                .loss
                .backward()
                .unwrap()
                .get(&v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base = flat(&g.z1);
            for k in 0..base.len() {
                let at = |delta: f64| {
                    let mut p = base.clone();
                    p[k] += delta;
                    let t = Tensor::from_vec(p, a.shape(), &Device::Cpu).unwrap();
                    value(&t, &b, &g.config).0
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (got[k] - fd).abs() < 1e-7,
                    "{}: grad z1[{k}] {} vs finite difference {fd}",
                    g.name,
                    got[k]
                );
            }
        }
    }

    #[test]
    fn each_option_changes_the_loss_it_governs() {
        // Guards against an option that is parsed but ignored: within the goldens, the
        // variants that differ in one option differ in value.
        let all = goldens();
        let loss_of = |name: &str| {
            all.iter()
                .find(|g| g.name == name)
                .unwrap_or_else(|| panic!("no golden {name}"))
                .loss
        };
        for (a, b) in [
            ("nt_xent_tau05", "nt_xent_one_view"),
            ("nt_logistic_mean", "nt_logistic_sum"),
            ("nt_logistic_sh_closest", "nt_logistic_sh_band"),
            ("nt_logistic_mean", "nt_logistic_sh_closest"),
            ("margin_mean", "margin_sh_closest"),
            (
                "fallback_nt_logistic_least_similar",
                "fallback_nt_logistic_none",
            ),
            ("fallback_margin_least_similar", "fallback_margin_none"),
        ] {
            assert!(
                (loss_of(a) - loss_of(b)).abs() > 1e-3,
                "{a} and {b} give the same loss"
            );
        }
    }

    #[test]
    fn negatives_and_semi_hard_choices_on_a_hand_made_row() {
        // N = 3: rows 0..3 are the first view, 3..6 the second; anchor 0's positive is 3.
        assert_eq!(
            negatives_of(0, 3, Negatives::BothViews).collect::<Vec<_>>(),
            [1, 2, 4, 5]
        );
        assert_eq!(
            negatives_of(0, 3, Negatives::OneView).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(
            negatives_of(4, 3, Negatives::OneView).collect::<Vec<_>>(),
            [0, 2]
        );
        // Anchor 0: positive 0.6; negatives 1: 0.9 (harder than the positive), 2: 0.5
        // (semi-hard, the closest), 4: 0.2 (semi-hard, within a margin of 0.5), 5: -0.3.
        let row = [1.0, 0.9, 0.5, 0.6, 0.2, -0.3];
        let mut c = LossConfig {
            kind: LossKind::Margin,
            margin: 0.5,
            semi_hard: true,
            ..LossConfig::default()
        };
        assert_eq!(chosen_negatives(&row, 0, 3, &c), [2]);
        c.semi_hard_pick = SemiHardPick::Band;
        assert_eq!(chosen_negatives(&row, 0, 3, &c), [2, 4]);
        c.kind = LossKind::NtLogistic; // no margin: every negative farther than the positive
        assert_eq!(chosen_negatives(&row, 0, 3, &c), [2, 4, 5]);
        c.negatives = Negatives::OneView;
        assert_eq!(chosen_negatives(&row, 0, 3, &c), [4, 5]);
        // No negative farther than the positive: the fallback.
        let hard = [1.0, 0.9, 0.8, 0.1, 0.7, 0.7];
        c.negatives = Negatives::BothViews;
        assert_eq!(
            chosen_negatives(&hard, 0, 3, &c),
            [4],
            "least similar, first of a tie"
        );
        c.semi_hard_fallback = SemiHardFallback::None;
        assert!(chosen_negatives(&hard, 0, 3, &c).is_empty());
        c.semi_hard = false;
        assert_eq!(chosen_negatives(&hard, 0, 3, &c), [1, 2, 4, 5]);
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
        assert_eq!(strict_accuracy(&sim, 2), 0.25); // only anchor 2 beats every negative
                                                    // On the golden pairs every anchor's pair wins across the views, while one anchor
                                                    // in eight loses to a same-view negative (strict 0.875), whatever the loss options.
        let (a, b) = zs(DType::F64);
        for l2_norm in [true, false] {
            for negatives in [Negatives::BothViews, Negatives::OneView] {
                let c = LossConfig {
                    negatives,
                    ..cfg(LossKind::NtXent, 0.5, l2_norm)
                };
                let out = contrastive_loss(&a, &b, &c).unwrap();
                // torch: (F.normalize(z1) @ F.normalize(z2).T).argmax(1) == arange(4).
                assert_eq!(out.accuracy_cross_view, 1.0);
                assert_eq!(out.accuracy, 0.875);
            }
        }
    }

    #[test]
    fn nt_xent_is_stable_for_tiny_temperature_and_large_unnormalised_z() {
        let (a, b) = zs(DType::F32);
        let a = (a * 100.0).unwrap();
        for kind in [LossKind::NtXent, LossKind::NtLogistic] {
            for negatives in [Negatives::BothViews, Negatives::OneView] {
                let c = LossConfig {
                    negatives,
                    ..cfg(kind, 0.01, false)
                };
                let (l, _) = value(&a, &b, &c);
                assert!(l.is_finite(), "{c:?}: loss {l}");
            }
        }
    }

    #[test]
    fn perfect_pairs_give_full_accuracy_and_low_loss() {
        // Orthogonal images, identical views: every anchor's positive is its best candidate.
        let d = Device::Cpu;
        let e = Tensor::eye(4, DType::F32, &d).unwrap();
        let out = contrastive_loss(&e, &e, &cfg(LossKind::NtXent, 0.1, true)).unwrap();
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
