//! `sweep report`: reads one sweep from the store and writes its figures and tables
//! (docs/ARCHITECTURE.md#layers: `report` reads the store and writes files; it never trains).
//!
//! Output in `out/`: README.md (settings, provenance, tables, embedded figures, the
//! paper's numbers beside ours with the settings that differ), PNG/SVG figures, booktabs
//! LaTeX tables, and CSV (every run's resolved config and final metrics in `runs.csv`,
//! each table as CSV). Which figures and tables are drawn follows the grid axes and the
//! evaluations (`contents`): each of the paper's experiments is one file in
//! `experiments/`, and everything else here is shared by all of them. A partial sweep
//! reports what it has: missing or failed cells are marked, never fatal.

mod aggregate;
mod compare;
mod contents;
mod control;
mod experiment;
mod experiments;
mod findings;
mod labels;
mod paper;
mod plots;
mod protocols;
mod readme;
mod sections;
mod setting;
mod stats;
mod tables;
mod tuning;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::store::Store;

// What the dashboard (`sweep serve`) shows of a sweep is this report's own: the same
// data, sections, tables and figures (inline SVG), so the two never disagree.
pub(crate) use aggregate::{compact, ParsedConfig, SweepData};
pub(crate) use plots::Figure;
use readme::Provenance;
pub(crate) use sections::{run_curves, Section};
use tables::csv_line;

/// The sections of a sweep's report, in order: the paper experiments it is, then the
/// Findings, the training curves and the table of every cell.
pub(crate) fn sections(data: &SweepData) -> Vec<Section> {
    contents::build(data, experiments::ALL)
}

/// The kinds of file a report is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Figures as PNG.
    Png,
    /// Figures as SVG.
    Svg,
    /// README.md with the tables and the figures embedded.
    Md,
    /// Tables as booktabs LaTeX.
    Tex,
    /// Tables as CSV, and `runs.csv`.
    Csv,
}

/// Writes the sweep's report into `out`; returns the files written.
pub async fn write(
    store: &Store,
    sweep: &str,
    out: &Path,
    formats: &[Format],
) -> anyhow::Result<Vec<PathBuf>> {
    let data = SweepData::load(store, sweep, None)
        .await
        .with_context(|| format!("reading sweep {sweep}"))?;
    let prov = Provenance {
        code: format!(
            "simclr-sweep {}, run semantics v{}",
            env!("CARGO_PKG_VERSION"),
            crate::spec::SEMANTICS_VERSION
        ),
        rendered_on: machine(),
        trained_on: trained_on(store, sweep).await?,
        rendered_at: utc(crate::store::now_ms()),
        sweep_dates: format!(
            "registered {}, last changed {}",
            utc(data.sweep.created_at),
            utc(data.sweep.updated_at)
        ),
    };
    render(&data, &prov, out, formats)
}

/// Writes every sweep's report into `root/NAME` and the index `root/README.md`: one line
/// per sweep, its headline finding and a link to its report.
pub async fn write_all(
    store: &Store,
    root: &Path,
    formats: &[Format],
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut index = String::from(
        "# Reports\n\nOne line per sweep: its headline finding (see each report's Findings for the test behind it) and its report. Written by `sweep report --all`.\n\n",
    );
    for s in store.sweeps().await? {
        written.extend(write(store, &s.name, &root.join(&s.name), formats).await?);
        let data = SweepData::load(store, &s.name, None).await?;
        let profile = s
            .profile
            .map(|p| format!(" (profile {p})"))
            .unwrap_or_default();
        index.push_str(&format!(
            "- [{}]({}/README.md){profile}: {}\n",
            s.name,
            s.name,
            contents::headline(&data, experiments::ALL)
        ));
    }
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let p = root.join("README.md");
    std::fs::write(&p, index).with_context(|| format!("writing {}", p.display()))?;
    written.push(p);
    Ok(written)
}

/// Renders `data` into `out` in the given formats.
fn render(
    data: &SweepData,
    prov: &Provenance,
    out: &Path,
    formats: &[Format],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Files {
        out,
        formats,
        written: Vec::new(),
    };
    let secs = sections(data);
    for sec in &secs {
        files.section(sec)?;
    }
    if files.wants(Format::Csv) {
        files.put("runs.csv", &runs_csv(data))?;
    }
    if files.wants(Format::Md) {
        let readme = readme::render(data, &secs, prov, files.image_format(), &files.names());
        files.put("README.md", &readme)?;
    }
    Ok(files.written)
}

/// The report's output directory, the formats asked for, and what has been written.
struct Files<'a> {
    out: &'a Path,
    formats: &'a [Format],
    written: Vec<PathBuf>,
}

impl Files<'_> {
    fn wants(&self, f: Format) -> bool {
        self.formats.contains(&f)
    }

    /// Writes `text` to `out/name`.
    fn put(&mut self, name: &str, text: &str) -> anyhow::Result<()> {
        let p = self.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        self.written.push(p);
        Ok(())
    }

    /// A section's figures and tables in the formats asked for.
    fn section(&mut self, sec: &Section) -> anyhow::Result<()> {
        let (png, svg) = (self.wants(Format::Png), self.wants(Format::Svg));
        for fig in &sec.figures {
            self.written.extend(fig.write(self.out, png, svg)?);
        }
        for t in &sec.tables {
            if self.wants(Format::Tex) {
                self.put(&format!("{}.tex", t.id), &t.latex())?;
            }
            if self.wants(Format::Csv) {
                self.put(&format!("{}.csv", t.id), &t.csv())?;
            }
        }
        Ok(())
    }

    /// The image format README.md embeds: PNG when written, else SVG, else none.
    fn image_format(&self) -> Option<&'static str> {
        if self.wants(Format::Png) {
            Some("png")
        } else if self.wants(Format::Svg) {
            Some("svg")
        } else {
            None
        }
    }

    /// The names of the files written so far, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    }
}

/// Flattens a JSON config into `prefix.path = value` pairs (arrays kept as JSON).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), String::new())),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// One row per pretrain run: identity, state, cell, final metrics, each evaluation's
/// state and top-1/top-5 (percent), then the resolved pretrain and evaluation configs.
fn runs_csv(data: &SweepData) -> String {
    let mut columns: Vec<String> = [
        "run_id",
        "state",
        "seed",
        "cell",
        "compute_seconds",
        "dataset_fingerprint",
        "final_loss",
        "final_contrastive_acc",
        "failure",
    ]
    .map(String::from)
    .to_vec();
    let num = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
    let coords = |c: &aggregate::CellData| -> Vec<String> {
        c.coords
            .iter()
            .map(|(k, v)| format!("{k}={}", aggregate::compact(v)))
            .collect()
    };
    // Each run's cell, by run index (a cell first, else a control): one pass over the
    // cells rather than a search of every cell for every run.
    let mut cell_of: Vec<Option<String>> = vec![None; data.runs.len()];
    for c in &data.cells {
        for &i in &c.runs {
            cell_of[i].get_or_insert_with(|| coords(c).join("; "));
        }
    }
    for c in &data.controls {
        for &i in &c.runs {
            cell_of[i].get_or_insert_with(|| {
                let control = format!(
                    "{}={}",
                    crate::spec::CONTROL_KEY,
                    crate::spec::CONTROL_VALUE
                );
                std::iter::once(control)
                    .chain(coords(c))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        }
    }
    // Columns in order of first appearance, with their index; each row's fields by
    // column (the first value of a key a row repeats).
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        index.insert(c.clone(), i);
    }
    let mut rows: Vec<Vec<Option<String>>> = Vec::with_capacity(data.runs.len());
    for (r, cell) in data.runs.iter().zip(cell_of) {
        let mut row = vec![
            ("run_id".to_string(), r.id.clone()),
            ("state".into(), r.state.as_str().into()),
            ("seed".into(), r.seed.to_string()),
            ("cell".into(), cell.unwrap_or_default()),
            (
                "compute_seconds".into(),
                format!("{:.3}", r.compute_seconds),
            ),
            ("dataset_fingerprint".into(), r.fingerprint.clone()),
            ("final_loss".into(), num(r.final_loss)),
            ("final_contrastive_acc".into(), num(r.final_contrastive_acc)),
            ("failure".into(), r.failure.clone().unwrap_or_default()),
        ];
        for e in &r.evals {
            row.push((format!("{}.id", e.label), e.id.clone()));
            row.push((format!("{}.state", e.label), e.state.as_str().into()));
            row.push((format!("{}.top1", e.label), num(e.top1)));
            row.push((format!("{}.top5", e.label), num(e.top5)));
            if let Some(f) = &e.failure {
                row.push((format!("{}.failure", e.label), f.clone()));
            }
        }
        flatten("config", &r.stored_config.json(), &mut row);
        for e in &r.evals {
            flatten(&format!("{}.config", e.label), &e.config, &mut row);
        }
        let mut fields: Vec<Option<String>> = Vec::new();
        for (k, v) in row {
            let next = columns.len();
            let i = *index.entry(k).or_insert_with_key(|k| {
                columns.push(k.clone());
                next
            });
            if fields.len() <= i {
                fields.resize(i + 1, None);
            }
            fields[i].get_or_insert(v);
        }
        rows.push(fields);
    }
    let mut s = csv_line(&columns);
    for mut row in rows {
        // A row made before later rows added columns is short: empty fields.
        row.resize(columns.len(), None);
        let fields: Vec<String> = row.into_iter().map(Option::unwrap_or_default).collect();
        s.push_str(&csv_line(&fields));
    }
    s
}

/// Host name, OS and architecture, and CPU count of the rendering machine.
fn machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{host} ({} {}, {cpus} CPUs)",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The hosts that finished the sweep's stages, with how many each: "vm (147 stages)".
async fn trained_on(store: &Store, sweep: &str) -> anyhow::Result<String> {
    let mut hosts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in store.sweep_runs(sweep).await? {
        if r.state == crate::store::RunState::Done {
            let host = r.lease_host.unwrap_or_else(|| "unrecorded".into());
            *hosts.entry(host).or_default() += 1;
        }
    }
    if hosts.is_empty() {
        return Ok("no finished stages yet".into());
    }
    Ok(hosts
        .iter()
        .map(|(h, n)| format!("{h} ({n} stage{})", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests;
