//! Which evaluation protocol produced a number: one line per evaluation label, written
//! under every table and figure that shows its top-1 (the paper's augmented linear
//! protocol and the fast features probe give different numbers and must never be mixed up),
//! and how it differs from the paper's own evaluation. What an evaluation method prints
//! about itself is here, in one place per method.

use crate::ml::config::{
    EvalConfig, EvalKind, EvalProtocol, FeatureSource, FlatEvalConfig, LrScaling,
};

use super::aggregate::SweepData;

fn on(cfg: &FlatEvalConfig) -> &'static str {
    match cfg.on {
        FeatureSource::H => "h",
        FeatureSource::Z => "z = g(h)",
    }
}

fn subsets(cfg: &FlatEvalConfig) -> String {
    let part = |n: Option<usize>, split: &str| match n {
        Some(n) => format!(", {n}-image {split} subset"),
        None => String::new(),
    };
    format!(
        "{}{}",
        part(cfg.train_subset, "train"),
        part(cfg.test_subset, "test")
    )
}

/// The classifier's optimisation in words: "100 epochs, batch 512, Nesterov momentum 0.9,
/// lr 0.1 x B/256 = 0.2 with cosine decay, weight decay 0".
fn classifier(cfg: &FlatEvalConfig) -> String {
    let lr = match cfg.lr_scaling {
        LrScaling::None => format!("lr {}", cfg.lr),
        LrScaling::Linear => format!(
            "lr {} x B/256 = {}",
            cfg.lr,
            round(cfg.lr_scaling.apply(cfg.lr, cfg.batch_size))
        ),
        LrScaling::Sqrt => format!(
            "lr {} x sqrt(B) = {}",
            cfg.lr,
            round(cfg.lr_scaling.apply(cfg.lr, cfg.batch_size))
        ),
    };
    format!(
        "{} epochs, batch {}, {} momentum {}, {lr} with cosine decay, weight decay {}{}",
        cfg.epochs,
        cfg.batch_size,
        if cfg.nesterov { "Nesterov" } else { "plain" },
        cfg.momentum,
        cfg.weight_decay,
        if cfg.head_bn {
            ", BN on the logits"
        } else {
            ""
        }
    )
}

fn round(v: f64) -> String {
    format!("{}", (v * 1e6).round() / 1e6)
}

/// "`label`: what produced its numbers".
pub(crate) fn describe(label: &str, cfg: &EvalConfig) -> String {
    let flat = cfg.flat();
    let cfg = &flat;
    let what = match (cfg.kind, cfg.protocol) {
        (EvalKind::Knn, _) => format!(
            "weighted kNN (k = {}, tau = {}) on {} features extracted once from the \
             un-augmented images",
            cfg.k,
            cfg.temperature,
            on(cfg)
        ),
        (EvalKind::Linear, EvalProtocol::Features) => format!(
            "fast linear probe: {} features extracted once from the un-augmented images, \
             standardised; {}",
            on(cfg),
            classifier(cfg)
        ),
        (EvalKind::Probe, _) => format!(
            "Table 3's probe: an MLP (one hidden layer of {} units, ReLU) on {} features of \
             un-augmented images, a share of them transformed, predicting which transformation \
             ({}); {}",
            cfg.hidden
                .unwrap_or(crate::ml::config::DEFAULT_PROBE_HIDDEN),
            on(cfg),
            cfg.task.map_or("?", |t| t.name()),
            classifier(cfg)
        ),
        (EvalKind::Linear, EvalProtocol::Augmented) => format!(
            "the paper's linear evaluation (appendix B.6, official CIFAR-10 recipe): a fresh \
             random crop + flip of every training image through the frozen encoder at each \
             step, classifier on {}; {}",
            on(cfg),
            classifier(cfg)
        ),
        (EvalKind::FineTune, _) => format!(
            "fine-tuning (appendix B.5): the whole encoder (BatchNorm in training mode) and a \
             new linear head on h trained on a class-balanced {}% of the training labels, a \
             fresh random crop + flip of each image every step; {}",
            crate::spec::percent(cfg.label_fraction),
            classifier(cfg)
        ),
    };
    format!("{label}: {what}{}.", subsets(cfg))
}

/// One note per evaluation label shown: which protocol produced its numbers.
pub(crate) fn notes(data: &SweepData, labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|l| data.eval_config(l).map(|c| describe(l, &c)))
        .collect()
}

/// How the evaluation `label` differs from the paper's linear evaluation (appendix B.6: a
/// fresh random crop + flip of each image through the frozen encoder every step, Nesterov
/// momentum, batch 4096, 90 epochs, 0.1 x B/256); `None` when it is that protocol at the
/// paper's batch size and epochs.
pub(crate) fn protocol_difference(label: &str, cfg: &EvalConfig) -> Option<String> {
    const PAPER: &str = "appendix B.6 (augmented crops through the frozen encoder, \
                         batch 4096, 90 epochs)";
    let flat = cfg.flat();
    let cfg = &flat;
    match (cfg.kind, cfg.protocol) {
        (EvalKind::Knn, _) => Some(format!(
            "evaluation: paper linear, {PAPER}; ours {label}, a kNN vote"
        )),
        (EvalKind::Probe, _) => Some(format!(
            "evaluation: paper linear, {PAPER}; ours {label}, Table 3's transformation probe"
        )),
        (EvalKind::Linear, EvalProtocol::Features) => Some(format!(
            "linear evaluation: paper {PAPER}; ours {label}, features extracted once from \
             un-augmented images (the fast probe)"
        )),
        (EvalKind::FineTune, _) => {
            let paper_epochs = if cfg.label_fraction <= 0.01 { 60 } else { 30 };
            (cfg.batch_size != 4096 || cfg.epochs != paper_epochs).then(|| {
                format!(
                    "fine-tuning: paper appendix B.5 (batch 4096, {paper_epochs} epochs at this \
                     label fraction, lr 0.05 x B/256); ours {label}, batch {}, {} epochs",
                    cfg.batch_size, cfg.epochs
                )
            })
        }
        (EvalKind::Linear, EvalProtocol::Augmented) => (cfg.batch_size != 4096 || cfg.epochs != 90)
            .then(|| {
                format!(
                    "linear evaluation: paper {PAPER}; ours {label}, the same protocol at batch \
                     {}, {} epochs",
                    cfg.batch_size, cfg.epochs
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_is_named_with_its_settings() {
        let fast = describe("linear@h", &EvalConfig::default());
        assert!(fast.contains("fast linear probe"), "{fast}");
        assert!(
            fast.contains("100 epochs, batch 256, plain momentum 0.9, lr 0.1 with"),
            "{fast}"
        );
        let paper = describe("linear-aug@h", &EvalConfig::augmented());
        assert!(paper.contains("the paper's linear evaluation"), "{paper}");
        assert!(
            paper.contains("batch 512, Nesterov momentum 0.9, lr 0.1 x B/256 = 0.2"),
            "{paper}"
        );
        let knn: EvalConfig =
            serde_json::from_value(serde_json::json!({"kind": "knn", "train_subset": 2000}))
                .unwrap();
        let k = describe("knn@h", &knn);
        assert!(k.starts_with("knn@h: weighted kNN (k = 200"), "{k}");
        assert!(k.ends_with(", 2000-image train subset."), "{k}");
    }
}
