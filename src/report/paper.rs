//! The paper (Chen et al. 2020, arXiv 2002.05709; see docs/ARCHITECTURE.md#report) beside
//! a report: where and how it measured a table or figure ([`PaperSetting`]; each
//! experiment in `experiments/` holds its own with its values), its names for datasets,
//! encoders and methods, and the lines that say, setting by setting, where our runs differ
//! from it.

use crate::ml::config::{Arch, DatasetName, EncoderConfig, Method, PretrainConfig};

use super::aggregate::{CellData, SweepData};
use super::protocols;

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

/// A method as the paper's tables name it.
pub(crate) fn method_name(m: Method) -> &'static str {
    match m {
        Method::Simclr => "SimCLR",
        Method::Supervised => "Supervised",
    }
}

/// The paper's finding and the settings in which ours differ, the linear evaluation
/// protocol of `label` (the evaluation set beside the paper's numbers) among them.
pub(crate) fn lines(
    data: &SweepData,
    label: &str,
    finding: Option<&str>,
    setting: &PaperSetting,
    ours: &[&PretrainConfig],
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(f) = finding {
        out.push(format!("The paper's {} finds: {f}.", setting.source));
    }
    let mut diffs = differences(setting, ours);
    if let Some(d) = data
        .eval_config(label)
        .and_then(|c| protocols::protocol_difference(label, &c))
    {
        diffs.push(d);
    }
    if !diffs.is_empty() {
        out.push(format!(
            "Settings that differ from the paper's {} ({} {}):",
            setting.source, setting.dataset, setting.encoder
        ));
        out.extend(diffs.into_iter().map(|d| format!("  - {d}")));
    }
    out
}

/// [`lines`] for a figure or table with the paper's `finding`, over `cells`.
pub(crate) fn finding_lines(
    data: &SweepData,
    label: &str,
    finding: &str,
    setting: &PaperSetting,
    cells: &[&CellData],
) -> Vec<String> {
    lines(data, label, Some(finding), setting, &data.configs(cells))
}

/// [`lines`] for a table without a finding, against the primary evaluation.
pub(crate) fn table_lines(
    data: &SweepData,
    setting: &PaperSetting,
    cells: &[&CellData],
) -> Vec<String> {
    lines(data, &data.primary(), None, setting, &data.configs(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's default setting (section 2.3).
    const DEFAULT: PaperSetting = PaperSetting {
        source: "Table 4",
        dataset: "ImageNet",
        encoder: "ResNet-50",
        epochs: Some(100),
        batch_size: Some(4096),
    };

    #[test]
    fn only_the_settings_that_differ_get_a_line() {
        let mut c = PretrainConfig::default();
        c.encoder.arch = Arch::Resnet50;
        c.epochs = 100;
        c.batch_size = 4096;
        assert_eq!(
            differences(&DEFAULT, &[&c]),
            ["dataset: paper ImageNet, ours CIFAR-10"]
        );
        let mut d = c.clone();
        d.epochs = 3;
        d.dataset.train_subset = Some(1000);
        assert_eq!(
            differences(&DEFAULT, &[&c, &d]),
            [
                "dataset: paper ImageNet, ours CIFAR-10, CIFAR-10 (1000-image subset)",
                "epochs: paper 100, ours 100, 3"
            ]
        );
    }
}
