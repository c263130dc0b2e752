//! The paper's reference numbers (Chen et al. 2020, arXiv 2002.05709; see
//! docs/ARCHITECTURE.md#report) and the settings under which it measured them, so a report
//! can set its own results beside them and say, setting by setting, where the two
//! experiments differ.

use crate::ml::config::{
    Arch, DatasetName, EncoderConfig, EvalConfig, EvalKind, EvalProtocol, LossKind, LrScaling,
    Method, PretrainConfig, ProbeTask,
};

/// Where and how the paper measured a table or figure. `None`: the paper's text does not
/// pin the setting down (no difference line is printed for it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PaperSetting {
    pub source: &'static str,
    pub dataset: &'static str,
    pub encoder: &'static str,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
}

/// Figure 5: ImageNet, ResNet-50, trained in the default setting of section 2.3 ("unless
/// otherwise specified": batch 4096, 100 epochs), which section 3 does not override; its
/// cell values are not published in text.
pub(crate) const FIGURE_5: PaperSetting = PaperSetting {
    source: "Figure 5",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Figure 8: the default setting of section 2.3 (batch 4096, 100 epochs).
pub(crate) const FIGURE_8: PaperSetting = PaperSetting {
    source: "Figure 8",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 4: ImageNet linear evaluation, ResNet-50, 100 epochs (default batch 4096).
pub(crate) const TABLE_4: PaperSetting = PaperSetting {
    source: "Table 4",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 5: contrastive distribution over 4096 examples, 100 epochs.
pub(crate) const TABLE_5: PaperSetting = PaperSetting {
    source: "Table 5",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table B.1 / Figure 9: batch size and epochs are the axes themselves (LARS; Figure 9 is
/// B.1's linear-scaling column, 0.3 x B/256; B.1 adds square-root scaling, 0.075 x sqrt(B)).
pub(crate) const TABLE_B1: PaperSetting = PaperSetting {
    source: "Table B.1",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: None,
    batch_size: None,
};

/// Table 1: ImageNet, ResNet-50, the default setting of section 2.3 (batch 4096, 100
/// epochs), which section 3 does not override.
pub(crate) const TABLE_1: PaperSetting = PaperSetting {
    source: "Table 1",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 1's qualitative finding.
pub(crate) const TABLE_1_FINDING: &str = "stronger colour distortion improves the linear \
     evaluation of unsupervised (SimCLR) models and does not help, or hurts, supervised ones";

/// Table 3: ImageNet, ResNet-50, the section 4.2 setting (default training, 100 epochs);
/// MLP probes on its h and g(h).
pub(crate) const TABLE_3: PaperSetting = PaperSetting {
    source: "Table 3",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(100),
    batch_size: Some(4096),
};

/// Table 3's finding.
pub(crate) const TABLE_3_FINDING: &str = "an MLP predicts the transformation applied far \
     better from h than from g(h): the projection head removes information (colour, \
     rotation, noise, Sobel) that may be useful downstream";

/// Table 3 top-1 (%) of the MLP predicting `task` from h and from g(h); the last three rows
/// from a pretraining that also applied rotation, noise and Sobel.
pub(crate) fn table3(task: ProbeTask) -> (f64, f64) {
    match task {
        ProbeTask::ColorVsGrayscale => (99.3, 97.4),
        ProbeTask::Rotation => (67.6, 25.6),
        ProbeTask::Corrupted => (99.5, 59.6),
        ProbeTask::Sobel => (96.6, 56.3),
    }
}

/// Table 1's colour strengths, the columns left to right before `1 (+Blur)`.
pub(crate) const TABLE_1_STRENGTHS: [f64; 4] = [0.125, 0.25, 0.5, 1.0];

/// Table 1 top-1 (%) of `method` at colour strength `strength`, with Gaussian blur added
/// (`blur`: the last column, only at strength 1). SimCLR: linear evaluation of the
/// unsupervised ResNet-50; supervised: the supervised ResNet-50 trained under the same
/// augmentation (its own top-1). `None` where the paper has no such column (and for the
/// AutoAugment column, which this crate does not implement).
pub(crate) fn table1(method: Method, strength: f64, blur: bool) -> Option<f64> {
    const SIMCLR: [f64; 5] = [59.6, 61.0, 62.6, 63.2, 64.5];
    const SUPERVISED: [f64; 5] = [77.0, 76.7, 76.5, 75.7, 75.4];
    let col = match TABLE_1_STRENGTHS
        .iter()
        .position(|&x| (x - strength).abs() < 1e-9)?
    {
        3 if blur => 4,
        _ if blur => return None,
        i => i,
    };
    Some(match method {
        Method::Simclr => SIMCLR[col],
        Method::Supervised => SUPERVISED[col],
    })
}

/// Table 7: ImageNet, ResNet-50 (1x, 2x, 4x) pretrained for 1000 epochs at batch 4096
/// (section 6: "our models here are trained for 1000 epochs"), fine-tuned by B.5.
pub(crate) const TABLE_7: PaperSetting = PaperSetting {
    source: "Table 7",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: Some(1000),
    batch_size: Some(4096),
};

/// Table 7's qualitative finding.
pub(crate) const TABLE_7_FINDING: &str = "fine-tuning a SimCLR encoder on 1% or 10% of the \
     labels beats a supervised network trained on those labels alone, by far the most at 1%";

/// Table 7's rows: the name and the top-1 (%) at 1% and 10% of ImageNet's labels.
pub(crate) const TABLE_7_ROWS: [(&str, [f64; 2]); 4] = [
    ("Supervised baseline, ResNet-50", [25.4, 56.4]),
    ("SimCLR fine-tuned, ResNet-50", [48.3, 65.6]),
    ("SimCLR fine-tuned, ResNet-50 (2x)", [58.5, 71.7]),
    ("SimCLR fine-tuned, ResNet-50 (4x)", [63.0, 74.4]),
];

/// Table 7's top-1 of row `row` (an index into [`TABLE_7_ROWS`]) at `label_fraction`;
/// `None` for fractions other than 1% and 10%.
pub(crate) fn table7(row: usize, label_fraction: f64) -> Option<f64> {
    let col = [0.01, 0.1]
        .iter()
        .position(|&f| (f - label_fraction).abs() < 1e-9)?;
    TABLE_7_ROWS.get(row).map(|(_, v)| v[col])
}

/// Figure 7 / Table 6: the paper's points that have a number in its text, all ImageNet:
/// SimCLR's ResNet-50 at widths 1x, 2x, 4x trained 1000 epochs at batch 4096 (Table 6's
/// linear evaluation; Figure 7's red stars) and the supervised ResNet-50 (the abstract's
/// and Figure 1's 76.5, trained 90 epochs). Figure 7's other points (ResNet-18 to -152,
/// SimCLR at 100 epochs, the other supervised ResNets) are drawn, not written.
pub(crate) const FIGURE_7: PaperSetting = PaperSetting {
    source: "Figure 7 / Table 6",
    dataset: "ImageNet",
    encoder: "ResNet-50, ResNet-50 (2x), ResNet-50 (4x)",
    epochs: Some(1000),
    batch_size: Some(4096),
};

/// Figure 7's qualitative finding.
pub(crate) const FIGURE_7_FINDING: &str = "increasing depth and width both improve linear \
     evaluation, and the gap between supervised models and linear classifiers on \
     unsupervised (SimCLR) ones shrinks as the model grows: unsupervised learning benefits \
     more from bigger models";

/// Figure 7 / Table 6 top-1 (%) of `method` with encoder `arch` at width multiplier
/// `width` on ImageNet, where the paper's text gives it ([`FIGURE_7`]): SimCLR linear
/// evaluation of ResNet-50 1x / 2x / 4x 69.3 / 74.2 / 76.5; the supervised ResNet-50 76.5
/// (its own top-1). `None` elsewhere.
pub(crate) fn figure7(method: Method, arch: Arch, width: usize) -> Option<f64> {
    match (method, arch, width) {
        (Method::Simclr, Arch::Resnet50, 1) => Some(69.3),
        (Method::Simclr, Arch::Resnet50, 2) => Some(74.2),
        (Method::Simclr, Arch::Resnet50, 4) => Some(76.5),
        (Method::Supervised, Arch::Resnet50, 1) => Some(76.5),
        _ => None,
    }
}

/// Figure 5's qualitative finding, as the paper's text states it.
pub(crate) const FIGURE_5_FINDING: &str = "crop + color stands out; no single transformation \
     suffices (the paper's cell values are not published in text)";

/// Figure 8's qualitative finding.
pub(crate) const FIGURE_8_FINDING: &str = "a nonlinear head beats a linear one by about 3% and \
     no head by more than 10%; the output dimension matters little; h beats z = g(h) by more \
     than 10%";

/// Table 4 top-1 (%) for a loss and semi-hard mining.
pub(crate) fn table4(kind: LossKind, semi_hard: bool) -> Option<f64> {
    match (kind, semi_hard) {
        (LossKind::Margin, false) => Some(50.9),
        (LossKind::NtLogistic, false) => Some(51.6),
        (LossKind::Margin, true) => Some(57.5),
        (LossKind::NtLogistic, true) => Some(57.9),
        (LossKind::NtXent, false) => Some(63.9),
        (LossKind::NtXent, true) => None,
    }
}

/// Table 5 (contrastive accuracy %, top-1 %) for l2 norm and temperature.
pub(crate) fn table5(l2_norm: bool, temperature: f64) -> Option<(f64, f64)> {
    const ROWS: [(bool, f64, f64, f64); 6] = [
        (true, 0.05, 90.5, 59.7),
        (true, 0.1, 87.8, 64.4),
        (true, 0.5, 68.2, 60.7),
        (true, 1.0, 59.1, 58.0),
        (false, 10.0, 91.7, 57.2),
        (false, 100.0, 92.1, 57.0),
    ];
    ROWS.iter()
        .find(|r| r.0 == l2_norm && (r.1 - temperature).abs() < 1e-9)
        .map(|r| (r.2, r.3))
}

/// Batch sizes and epochs of Table B.1.
pub(crate) const B1_BATCHES: [usize; 6] = [256, 512, 1024, 2048, 4096, 8192];
pub(crate) const B1_EPOCHS: [usize; 4] = [100, 200, 400, 800];
/// Table B.1, left of the slash: linear LR scaling (these are Figure 9's bars).
const B1_LINEAR: [[f64; 4]; 6] = [
    [57.5, 61.9, 64.7, 66.6],
    [60.7, 64.0, 66.2, 67.8],
    [62.8, 65.3, 67.2, 68.5],
    [64.0, 66.1, 68.1, 68.9],
    [64.6, 66.5, 68.2, 68.9],
    [64.8, 66.6, 67.8, 69.0],
];
/// Table B.1, right of the slash: square-root LR scaling.
const B1_SQRT: [[f64; 4]; 6] = [
    [62.8, 64.3, 65.7, 66.5],
    [63.8, 65.6, 66.7, 67.4],
    [64.3, 66.1, 67.2, 68.3],
    [64.7, 66.8, 67.9, 68.8],
    [64.5, 66.8, 68.0, 69.1],
    [64.8, 67.0, 68.3, 69.1],
];

/// Table B.1 top-1 (%) at a batch size and epochs under LR scaling rule `scaling`; `None`
/// where the paper has no such cell (and for no scaling, which it did not run).
pub(crate) fn table_b1(batch_size: usize, epochs: usize, scaling: LrScaling) -> Option<f64> {
    let b = B1_BATCHES.iter().position(|&x| x == batch_size)?;
    let e = B1_EPOCHS.iter().position(|&x| x == epochs)?;
    match scaling {
        LrScaling::Linear => Some(B1_LINEAR[b][e]),
        LrScaling::Sqrt => Some(B1_SQRT[b][e]),
        LrScaling::None => None,
    }
}

/// A scaling rule as Table B.1's caption names it.
pub(crate) fn scaling_name(s: LrScaling) -> &'static str {
    match s {
        LrScaling::Linear => "linear",
        LrScaling::Sqrt => "square root",
        LrScaling::None => "none",
    }
}

/// How the evaluation `label` differs from the paper's linear evaluation (appendix B.6: a
/// fresh random crop + flip of each image through the frozen encoder every step, Nesterov
/// momentum, batch 4096, 90 epochs, 0.1 x B/256); `None` when it is that protocol at the
/// paper's batch size and epochs.
pub(crate) fn protocol_difference(label: &str, cfg: &EvalConfig) -> Option<String> {
    const PAPER: &str = "appendix B.6 (augmented crops through the frozen encoder, \
                         batch 4096, 90 epochs)";
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

pub(crate) fn dataset_name(c: &PretrainConfig) -> String {
    let name = match c.dataset.name {
        DatasetName::Cifar10 => "CIFAR-10",
        DatasetName::Cifar100 => "CIFAR-100",
        DatasetName::ImageFolder => "an image folder",
    };
    match c.dataset.train_subset {
        Some(n) => format!("{name} ({n}-image subset)"),
        None => name.to_string(),
    }
}

pub(crate) fn encoder_name(c: &PretrainConfig) -> String {
    encoder_config_name(&c.encoder)
}

/// An encoder as the paper names it: `ResNet-50`, `ResNet-50 (2x)`.
pub(crate) fn encoder_config_name(e: &EncoderConfig) -> String {
    let arch = match e.arch {
        Arch::Convnet => "ConvNet",
        Arch::Resnet18 => "ResNet-18",
        Arch::Resnet34 => "ResNet-34",
        Arch::Resnet50 => "ResNet-50",
    };
    if e.width == 1 {
        arch.to_string()
    } else {
        format!("{arch} ({}x)", e.width)
    }
}

/// The distinct values of a setting over the runs, joined ("100" or "2, 4").
fn values<T: PartialEq + ToString>(
    runs: &[&PretrainConfig],
    f: impl Fn(&PretrainConfig) -> T,
) -> String {
    let mut seen: Vec<T> = Vec::new();
    for r in runs {
        let v = f(r);
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per setting in which our runs differ from the paper's (dataset, encoder,
/// epochs, batch size, and the evaluation protocol when ours uses subsets).
pub(crate) fn differences(paper: &PaperSetting, runs: &[&PretrainConfig]) -> Vec<String> {
    let mut out = Vec::new();
    if runs.is_empty() {
        return out;
    }
    let ours = values(runs, dataset_name);
    if ours != paper.dataset {
        out.push(format!("dataset: paper {}, ours {ours}", paper.dataset));
    }
    let ours = values(runs, encoder_name);
    if ours != paper.encoder {
        out.push(format!("encoder: paper {}, ours {ours}", paper.encoder));
    }
    if let Some(e) = paper.epochs {
        let ours = values(runs, |c| c.epochs);
        if ours != e.to_string() {
            out.push(format!("epochs: paper {e}, ours {ours}"));
        }
    }
    if let Some(b) = paper.batch_size {
        let ours = values(runs, |c| c.batch_size);
        if ours != b.to_string() {
            out.push(format!("batch size: paper {b}, ours {ours}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_4_5_and_b1_give_the_papers_numbers_and_none_off_its_grid() {
        assert_eq!(table4(LossKind::NtXent, false), Some(63.9));
        assert_eq!(table4(LossKind::Margin, true), Some(57.5));
        assert_eq!(table5(true, 0.1), Some((87.8, 64.4)));
        assert_eq!(table5(false, 100.0), Some((92.1, 57.0)));
        assert_eq!(table5(true, 0.2), None);
        assert_eq!(table_b1(1024, 400, LrScaling::Linear), Some(67.2));
        assert_eq!(table_b1(8192, 800, LrScaling::Linear), Some(69.0));
        assert_eq!(table_b1(100, 2, LrScaling::Linear), None);
    }

    #[test]
    fn table_1_has_both_rows_and_blur_only_at_strength_1() {
        let row = |m| {
            let mut r: Vec<Option<f64>> = TABLE_1_STRENGTHS
                .iter()
                .map(|&s| table1(m, s, false))
                .collect();
            r.push(table1(m, 1.0, true));
            r
        };
        let some = |v: [f64; 5]| v.map(Some).to_vec();
        assert_eq!(row(Method::Simclr), some([59.6, 61.0, 62.6, 63.2, 64.5]));
        assert_eq!(
            row(Method::Supervised),
            some([77.0, 76.7, 76.5, 75.7, 75.4])
        );
        assert_eq!(table1(Method::Simclr, 0.5, true), None);
        assert_eq!(table1(Method::Supervised, 0.3, false), None);
    }

    #[test]
    fn table_7_has_four_rows_at_one_and_ten_percent() {
        let col = |f: f64| (0..4).map(|r| table7(r, f)).collect::<Vec<_>>();
        assert_eq!(col(0.01), [25.4, 48.3, 58.5, 63.0].map(Some).to_vec());
        assert_eq!(col(0.1), [56.4, 65.6, 71.7, 74.4].map(Some).to_vec());
        assert_eq!(table7(1, 0.5), None);
        assert_eq!(table7(4, 0.01), None);
    }

    #[test]
    fn figure_7_has_table_6s_resnet_50s_and_the_supervised_resnet_50_only() {
        let simclr = |w| figure7(Method::Simclr, Arch::Resnet50, w);
        assert_eq!(
            [simclr(1), simclr(2), simclr(4)],
            [Some(69.3), Some(74.2), Some(76.5)]
        );
        assert_eq!(figure7(Method::Supervised, Arch::Resnet50, 1), Some(76.5));
        // Drawn in Figure 7 but not written in the text: no number.
        assert_eq!(figure7(Method::Supervised, Arch::Resnet50, 4), None);
        assert_eq!(figure7(Method::Simclr, Arch::Resnet18, 1), None);
        assert_eq!(figure7(Method::Simclr, Arch::Resnet50, 3), None);
    }

    #[test]
    fn table_b1_has_both_scaling_rules_and_none_for_unscaled_runs() {
        // The corners and a middle cell of each side of the slash (arXiv v3, Table B.1).
        assert_eq!(table_b1(256, 100, LrScaling::Linear), Some(57.5));
        assert_eq!(table_b1(256, 100, LrScaling::Sqrt), Some(62.8));
        assert_eq!(table_b1(2048, 400, LrScaling::Sqrt), Some(67.9));
        assert_eq!(table_b1(8192, 800, LrScaling::Sqrt), Some(69.1));
        assert_eq!(table_b1(4096, 100, LrScaling::Sqrt), Some(64.5));
        // At batch 4096 the two rules give the same learning rate (4.8): close values.
        for e in B1_EPOCHS {
            let (l, q) = (
                table_b1(4096, e, LrScaling::Linear).unwrap(),
                table_b1(4096, e, LrScaling::Sqrt).unwrap(),
            );
            assert!((l - q).abs() <= 0.3, "{e}: {l} vs {q}");
        }
        // Square root wins at small batches and few epochs, as the caption says.
        assert!(table_b1(256, 100, LrScaling::Sqrt) > table_b1(256, 100, LrScaling::Linear));
        assert_eq!(table_b1(256, 100, LrScaling::None), None);
    }

    #[test]
    fn figure_5s_default_setting_and_the_linear_protocol_are_listed_as_differences() {
        let mut c = PretrainConfig::default();
        c.encoder.arch = Arch::Convnet;
        c.epochs = 3;
        c.batch_size = 512;
        assert_eq!(
            differences(&FIGURE_5, &[&c]),
            [
                "dataset: paper ImageNet, ours CIFAR-10",
                "encoder: paper ResNet-50, ours ConvNet",
                "epochs: paper 100, ours 3",
                "batch size: paper 4096, ours 512"
            ]
        );
        let fast = protocol_difference("linear@h", &EvalConfig::default()).unwrap();
        assert!(
            fast.contains("ours linear@h, features extracted once"),
            "{fast}"
        );
        let paper = protocol_difference("linear-aug@h", &EvalConfig::augmented()).unwrap();
        assert!(
            paper.contains("same protocol at batch 512, 100 epochs"),
            "{paper}"
        );
        let exact = EvalConfig {
            batch_size: 4096,
            epochs: 90,
            ..EvalConfig::augmented()
        };
        assert_eq!(protocol_difference("linear-aug@h", &exact), None);
    }

    #[test]
    fn only_the_settings_that_differ_get_a_line() {
        let mut c = PretrainConfig::default();
        c.encoder.arch = Arch::Resnet50;
        c.epochs = 100;
        c.batch_size = 4096;
        assert_eq!(
            differences(&TABLE_4, &[&c]),
            ["dataset: paper ImageNet, ours CIFAR-10"]
        );
        let mut d = c.clone();
        d.epochs = 3;
        d.dataset.train_subset = Some(1000);
        assert_eq!(
            differences(&TABLE_4, &[&c, &d]),
            [
                "dataset: paper ImageNet, ours CIFAR-10, CIFAR-10 (1000-image subset)",
                "epochs: paper 100, ours 100, 3"
            ]
        );
    }
}
