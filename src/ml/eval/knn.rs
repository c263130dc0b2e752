//! The kNN vote (the monitor of later contrastive work): features of the train subset (the
//! neighbour bank) and of the test split extracted once through the frozen encoder; for
//! each test feature the cosine similarity to every train feature, the k = min(k, n_train)
//! nearest (ties: lower train index), each voting exp(sim / temperature) for its class; the
//! class scores give top-1 and top-5. It keeps no checkpoint (minutes at most, and
//! deterministic): a stopped vote starts again next time and gives the same numbers.

use candle_core::Device;

use super::features::{Extractor, FeatureSplits};
use super::score::{top_k, Scores};
use super::splits::Splits;
use crate::ml::config::{EvalTraining, FeatureSource, KnnConfig};
use crate::ml::error::tensor_err;
use crate::ml::model::SimclrModel;
use crate::ml::observer::{Control, Observer};
use crate::ml::training::loss::l2_normalize;
use crate::ml::{EvalOutcome, MlError};

/// Extracts the features of `model` and scores the vote; or stops when the observer asks.
pub(crate) fn evaluate(
    model: &SimclrModel,
    on: FeatureSource,
    cfg: &KnnConfig,
    splits: Splits,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<EvalOutcome, MlError> {
    let extractor = Extractor {
        model,
        on,
        // The batch a kNN stage has always extracted in: the flat form's batch size, which
        // a kNN stage stores at the features protocol's default.
        batch_size: EvalTraining::features().batch_size,
        device,
    };
    let Some(features) = extractor.extract_splits(&splits, obs)? else {
        return Ok(EvalOutcome::Stopped);
    };
    Ok(match vote(&features, cfg, obs)? {
        Some(scores) => EvalOutcome::Finished(scores.result(features.test.y.len())),
        None => EvalOutcome::Stopped,
    })
}

/// Weighted kNN vote on cosine similarity; returns its test scores, or `None` when stopped.
pub(crate) fn vote(
    f: &FeatureSplits,
    cfg: &KnnConfig,
    obs: &mut dyn Observer,
) -> Result<Option<Scores>, MlError> {
    let (ytr, yte, num_classes) = (&f.train.y, &f.test.y, f.classes);
    let (k, temperature) = (cfg.k, cfg.temperature);
    let ntr = ytr.len();
    if ntr == 0 || k == 0 || num_classes == 0 || temperature <= 0.0 {
        return Err(MlError::Config(
            "kNN needs train features, k >= 1 and a positive temperature".into(),
        ));
    }
    let k = k.min(ntr);
    let trt = l2_normalize(&f.train.x)
        .and_then(|t| t.t())
        .map_err(tensor_err)?; // [D, Ntr]
    let te = l2_normalize(&f.test.x).map_err(tensor_err)?; // [Nte, D]
    let nte = yte.len();
    let mut scores = vec![0f32; nte * num_classes];
    const CHUNK: usize = 256;
    let mut order: Vec<usize> = Vec::with_capacity(ntr);
    for start in (0..nte).step_by(CHUNK) {
        let len = CHUNK.min(nte - start);
        let sim: Vec<f32> = te
            .narrow(0, start, len)
            .and_then(|q| q.matmul(&trt))
            .and_then(|s| s.flatten_all())
            .and_then(|s| s.to_vec1())
            .map_err(tensor_err)?; // [len, Ntr]
        for (r, row) in sim.chunks_exact(ntr).enumerate() {
            order.clear();
            order.extend(0..ntr);
            let cmp = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            if k < ntr {
                order.select_nth_unstable_by(k - 1, cmp);
            }
            let out = &mut scores[(start + r) * num_classes..(start + r + 1) * num_classes];
            for &j in &order[..k] {
                let c = ytr[j] as usize;
                if c < num_classes {
                    out[c] += ((row[j] as f64) / temperature).exp() as f32;
                }
            }
        }
        if obs.on_eval_progress(start + len, nte, "kNN") == Control::Stop {
            return Ok(None);
        }
    }
    let (top1, top5) = top_k(&scores, num_classes, yte);
    Ok(Some(Scores {
        top1,
        top5,
        train_top1: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::eval::features::Labelled;
    use crate::ml::observer::NullObserver;
    use candle_core::Tensor;

    fn labelled(v: &[f32], rows: usize, y: &[u16]) -> Labelled {
        let x = Tensor::from_vec(v.to_vec(), (rows, v.len() / rows), &Device::Cpu).unwrap();
        Labelled { x, y: y.to_vec() }
    }

    fn knn(k: usize) -> KnnConfig {
        KnnConfig {
            train_subset: None,
            k,
            temperature: 0.1,
        }
    }

    #[test]
    fn knn_on_hand_made_features_gives_the_known_votes() {
        // Train: class 0 along +x, class 1 along +y, class 2 along -x.
        let train = labelled(
            &[1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9, 0.2, 1.0, -1.0, 0.0],
            6,
            &[0, 0, 1, 1, 1, 2],
        );
        // Test 0 at 30 degrees: its 3 nearest are (1,0) [cos .866], (.9,.1) [.908], (.2,1)
        // [.66]: weights exp(.908/.1) + exp(.866/.1) for class 0 beat exp(.66/.1): class 0.
        // Test 1 along -x: nearest (-1,0) (class 2) then the two closest of the rest.
        // Test 2 at 60 degrees, labelled 1: class 1's neighbours win.
        let test = labelled(&[0.866, 0.5, -1.0, 0.0, 0.5, 0.866], 3, &[0, 0, 1]);
        let mut f = FeatureSplits {
            train,
            test,
            classes: 3,
        };
        let (top1, top5) = vote(&f, &knn(3), &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        // Test 1 is labelled 0 but its nearest neighbour is class 2: 2 of 3 right at top-1,
        // all at top-5 (3 classes).
        assert!((top1 - 2.0 / 3.0).abs() < 1e-12, "{top1}");
        assert_eq!(top5, 1.0);
        // k larger than the bank is clamped; k = 1 is plain nearest neighbour.
        let (t1, _) = vote(&f, &knn(1000), &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert!((0.0..=1.0).contains(&t1));
        f.test.y = vec![0, 2, 1];
        let (nn1, _) = vote(&f, &knn(1), &mut NullObserver)
            .unwrap()
            .unwrap()
            .test();
        assert_eq!(nn1, 1.0);
    }
}
