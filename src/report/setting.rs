//! The setting a figure or table was measured in, as one caption sentence: dataset and
//! subset, encoder, epochs, batch size, the evaluation the numbers come from, and the
//! seeds. A field that varies over the cells shown lists its values.

use super::aggregate::{CellData, SweepData};
use super::paper::{dataset_name, encoder_name};

/// The distinct values of `f` over `items`, in order, joined with ", ".
fn values<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        let v = f(i);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.join(", ")
}

/// "Setting: CIFAR-10 (2000-image subset), ConvNet, 3 epochs, batch 256, top-1 of
/// linear@h, seeds 0, 1, 2."
pub(crate) fn sentence(data: &SweepData, cells: &[&CellData], label: &str) -> String {
    let runs: Vec<&super::aggregate::RunData> = cells
        .iter()
        .flat_map(|c| c.runs.iter().map(|&i| &data.runs[i]))
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    let mut seeds: Vec<i64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    format!(
        "Setting: {}, {}, {} epochs, batch {}, top-1 of {label}, seed{} {}.",
        values(&runs, |r| dataset_name(&r.config)),
        values(&runs, |r| encoder_name(&r.config)),
        values(&runs, |r| r.config.epochs.to_string()),
        values(&runs, |r| r.config.batch_size.to_string()),
        if seeds.len() == 1 { "" } else { "s" },
        seeds.join(", ")
    )
}
