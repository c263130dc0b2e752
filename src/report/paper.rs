//! The paper's reference numbers (Chen et al. 2020, arXiv 2002.05709; see
//! docs/ARCHITECTURE.md#report) and the settings under which it measured them, so a report
//! can set its own results beside them and say, setting by setting, where the two
//! experiments differ.

use crate::ml::config::{Arch, DatasetName, LossKind, PretrainConfig};

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

/// Figure 5: ImageNet, ResNet-50; its cell values are not published in text.
pub(crate) const FIGURE_5: PaperSetting = PaperSetting {
    source: "Figure 5",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: None,
    batch_size: None,
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

/// Table B.1 / Figure 9: batch size and epochs are the axes themselves.
pub(crate) const TABLE_B1: PaperSetting = PaperSetting {
    source: "Table B.1",
    dataset: "ImageNet",
    encoder: "ResNet-50",
    epochs: None,
    batch_size: None,
};

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
const B1: [[f64; 4]; 6] = [
    [57.5, 61.9, 64.7, 66.6],
    [60.7, 64.0, 66.2, 67.8],
    [62.8, 65.3, 67.2, 68.5],
    [64.0, 66.1, 68.1, 68.9],
    [64.6, 66.5, 68.2, 68.9],
    [64.8, 66.6, 67.8, 69.0],
];

/// Table B.1 top-1 (%) with linear LR scaling.
pub(crate) fn table_b1(batch_size: usize, epochs: usize) -> Option<f64> {
    let b = B1_BATCHES.iter().position(|&x| x == batch_size)?;
    let e = B1_EPOCHS.iter().position(|&x| x == epochs)?;
    Some(B1[b][e])
}

fn dataset_name(c: &PretrainConfig) -> String {
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

fn encoder_name(c: &PretrainConfig) -> String {
    let arch = match c.encoder.arch {
        Arch::Convnet => "ConvNet",
        Arch::Resnet18 => "ResNet-18",
        Arch::Resnet34 => "ResNet-34",
        Arch::Resnet50 => "ResNet-50",
    };
    if c.encoder.width == 1 {
        arch.to_string()
    } else {
        format!("{arch} ({}x)", c.encoder.width)
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
    fn reference_values_match_design_section_8() {
        assert_eq!(table4(LossKind::NtXent, false), Some(63.9));
        assert_eq!(table4(LossKind::Margin, true), Some(57.5));
        assert_eq!(table5(true, 0.1), Some((87.8, 64.4)));
        assert_eq!(table5(false, 100.0), Some((92.1, 57.0)));
        assert_eq!(table5(true, 0.2), None);
        assert_eq!(table_b1(1024, 400), Some(67.2));
        assert_eq!(table_b1(8192, 800), Some(69.0));
        assert_eq!(table_b1(100, 2), None);
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
