//! Sweep specs: the only module that parses YAML. A spec file becomes a [`Plan`]: the list
//! of fully resolved [`RunConfig`]s of its grid, each with its cell coordinates, plus lint
//! warnings. Errors name the file, line, column and field path, with a hint.

mod cell;
mod control;
mod depth;
mod error;
mod expand;
pub mod identity;
mod lint;
mod locate;
mod raw;
mod run;

use std::path::{Path, PathBuf};

pub use cell::{value_text, Lists};
pub use control::{is_control_cell, CONTROL_KEY, CONTROL_VALUE};
pub use error::{Location, SpecError};
pub use identity::{canonical_json, percent, stages, RunId, Stage, StageKind, SEMANTICS_VERSION};
pub use run::{default_evals, RunConfig};

/// How to read a spec: which profile, which `--set key=value` overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadOptions {
    pub profile: Option<String>,
    pub overrides: Vec<String>,
}

/// An expanded sweep.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub spec_path: PathBuf,
    pub spec_text: String,
    pub options: LoadOptions,
    /// Axis paths in product order (zip groups contribute each of their paths), then `seed`.
    pub axes: Vec<String>,
    pub runs: Vec<PlannedRun>,
    /// Grid points that resolved to a run already listed (same config), merged into it.
    pub merged_duplicates: usize,
    /// Points dropped by `exclude` rules.
    pub excluded: usize,
    /// Random-weights control runs appended after the grid's (`control`, on by default).
    pub controls: usize,
    pub warnings: Vec<String>,
}

impl Plan {
    /// The grid's runs, without the controls.
    pub fn grid(&self) -> &[PlannedRun] {
        &self.runs[..self.runs.len() - self.controls]
    }

    /// The random-weights control runs (after the grid's in `runs`).
    pub fn control_runs(&self) -> &[PlannedRun] {
        &self.runs[self.runs.len() - self.controls..]
    }
}

/// One run of the grid and where it sits in it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    pub config: RunConfig,
    /// (axis path, value) for each axis, then ("seed", n).
    pub cell: Vec<(String, serde_json::Value)>,
}

/// Reads and expands the spec at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Plan, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.to_path_buf(),
        location: None,
        path: String::new(),
        message: format!("cannot read the spec: {e}"),
        hint: Some("check the path; specs live under sweeps/".into()),
    })?;
    load_str(&text, path, opts)
}

/// Expands spec `text`; `file` names it in errors.
pub fn load_str(text: &str, file: &Path, opts: &LoadOptions) -> Result<Plan, SpecError> {
    let locate = |mut e: SpecError| {
        e.file = file.to_path_buf();
        if e.location.is_none() && !e.path.starts_with("--set") {
            e.location = locate::locate(text, &e.path);
        }
        e
    };
    expand_text(text, file, opts).map_err(locate)
}

fn expand_text(text: &str, file: &Path, opts: &LoadOptions) -> Result<Plan, SpecError> {
    depth::check(text)?;
    let raw = parse_raw(text)?;
    check_name(&raw.name)?;
    let profiles = raw.profiles.clone().unwrap_or_default();
    let profile = match &opts.profile {
        None => None,
        Some(p) => {
            let names: Vec<&str> = profiles.keys().filter_map(|k| k.as_str()).collect();
            let Some(v) = profiles.get(p.as_str()) else {
                let mut e = SpecError::new("profiles", format!("this spec has no profile `{p}`"));
                e = match error::nearest(p, names.iter().copied()) {
                    Some(n) => e.hint(format!("did you mean `{n}`?")),
                    None if names.is_empty() => e.hint("the spec defines no profiles"),
                    None => e.hint(format!("profiles here: {}", names.join(", "))),
                };
                return Err(e);
            };
            let prof: raw::RawProfile = run::typed(v.clone()).map_err(|(path, msg)| {
                field_error(format!("profiles.{p}.{path}").trim_end_matches('.'), msg)
            })?;
            Some((p.as_str(), prof))
        }
    };
    let eff = expand::effective(
        &raw,
        profile.as_ref().map(|(n, p)| (*n, p)),
        &opts.overrides,
    )?;

    let mut runs: Vec<PlannedRun> = Vec::new();
    let (mut merged, mut excluded) = (0, 0);
    'points: for point in expand::points(&eff) {
        let config = RunConfig::from_tree(point.tree).map_err(|(field, msg)| {
            attribute(
                &eff,
                profile.as_ref().map(|(n, p)| (*n, p)),
                &point.coords,
                &field,
                msg,
            )
        })?;
        for (i, rule) in eff.exclude.iter().enumerate() {
            let hit = expand::excluded_by(&config, rule)
                .map_err(|(field, msg)| field_error(&format!("exclude.{i}.{field}"), msg))?;
            if hit {
                excluded += 1;
                continue 'points;
            }
        }
        if runs.iter().any(|r| r.config == config) {
            merged += 1;
            continue;
        }
        let cell = point
            .cell
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    serde_json::to_value(v).expect("yaml value converts to json"),
                )
            })
            .collect();
        runs.push(PlannedRun { config, cell });
    }
    if runs.is_empty() {
        return Err(
            SpecError::new("exclude", "every grid point is excluded: the grid is empty")
                .hint("loosen the exclude rules"),
        );
    }
    let mut axes: Vec<String> = eff.axes.iter().flat_map(|a| a.paths.clone()).collect();
    axes.push("seed".into());
    let warnings = lint::lint(&runs, &eff.axes);
    let controls = if eff.control {
        control::controls(&runs)
    } else {
        Vec::new()
    };
    let n_controls = controls.len();
    runs.extend(controls);
    Ok(Plan {
        name: raw.name.clone(),
        description: match (
            &raw.description,
            profile.as_ref().and_then(|(_, p)| p.description.as_ref()),
        ) {
            (Some(d), Some(pd)) => Some(format!("{d} [{pd}]")),
            (d, pd) => d.clone().or_else(|| pd.cloned()),
        },
        spec_path: file.to_path_buf(),
        spec_text: text.to_string(),
        options: opts.clone(),
        axes,
        runs,
        merged_duplicates: merged,
        excluded,
        controls: n_controls,
        warnings,
    })
}

/// The longest sweep name: it names the report directory and Slurm jobs.
pub const MAX_NAME_LEN: usize = 64;

/// A sweep name is a safe single path component: 1 to [`MAX_NAME_LEN`] letters, digits,
/// `-`, `_` or `.`, starting with a letter or digit (so never `.`, `..` or a flag).
fn check_name(name: &str) -> Result<(), SpecError> {
    let why = "the name is used for report directories and in commands";
    if name.trim().is_empty() {
        return Err(SpecError::new("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(SpecError::new(
            "name",
            format!(
                "is {} characters long; at most {MAX_NAME_LEN} are allowed",
                name.chars().count()
            ),
        )
        .hint(format!("{why}: choose a shorter name")));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(SpecError::new(
            "name",
            format!(
                "`{name}` may only use letters, digits, - _ . and must start with a letter or digit"
            ),
        )
        .hint(why));
    }
    Ok(())
}

/// YAML syntax and top-level structure, with serde_yaml's own line and column.
fn parse_raw(text: &str) -> Result<raw::RawSpec, SpecError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, raw::RawSpec>(de).map_err(|e| {
        let path = e.path().to_string().replace('[', ".").replace(']', "");
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let location = inner.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        });
        let message = inner.to_string();
        // serde_yaml appends " at line L column C": the location is printed separately.
        let message = match message.find(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        let mut err = SpecError::new(path, message.clone());
        err.location = location;
        if let Some((_, hint)) = error::unknown_word_hint(&message) {
            err = err.hint(hint);
        }
        if message.contains("duplicate entry") {
            err = err.hint("each key (and each grid axis) may appear once");
        }
        err
    })
}

fn field_error(path: &str, msg: String) -> SpecError {
    let mut e = SpecError::new(path, msg.clone());
    if let Some((bad, hint)) = error::unknown_word_hint(&msg) {
        let names_it = path == bad || path.ends_with(&format!(".{bad}"));
        if msg.starts_with("unknown field") && !names_it {
            e.path = if path.is_empty() {
                bad
            } else {
                format!("{path}.{bad}")
            };
        }
        e = e.hint(hint);
    }
    e
}

/// Names the place in the spec that produced a bad `field` of a grid point.
fn attribute(
    eff: &expand::Effective,
    profile: Option<(&str, &raw::RawProfile)>,
    coords: &[usize],
    field: &str,
    msg: String,
) -> SpecError {
    if let Some((path, value)) = eff
        .overrides
        .iter()
        .find(|(p, _)| field == p || field.starts_with(&format!("{p}.")))
    {
        let v = serde_yaml::to_string(value).unwrap_or_default();
        return field_error(&format!("--set {path}={}", v.trim()), msg);
    }
    if let Some((axis, path)) = expand::axis_setting(&eff.axes, field) {
        let i = eff
            .axes
            .iter()
            .position(|a| a.source == axis.source)
            .unwrap_or(0);
        let value =
            axis.points[coords[i]].get(axis.paths.iter().position(|p| p == path).unwrap_or(0));
        let shown = value
            .and_then(|v| serde_json::to_string(v).ok())
            .unwrap_or_default();
        let shown = error::clip(&shown, 80);
        let at = if axis.source.starts_with("zip") {
            format!("{}.{path}", axis.source)
        } else {
            axis.source.clone()
        };
        let sub = field.strip_prefix(path).unwrap_or("");
        return field_error(
            &at,
            format!(
                "value {shown}{}: {msg}",
                if sub.is_empty() {
                    String::new()
                } else {
                    format!(" (at {sub})")
                }
            ),
        );
    }
    if let Some(rest) = field
        .strip_prefix("dataset.")
        .or((field == "dataset").then_some(""))
    {
        let in_profile = profile.is_some_and(|(_, p)| expand::written_in(p.dataset.as_ref(), rest));
        let prefix = match profile {
            Some((n, _)) if in_profile => format!("profiles.{n}.dataset"),
            _ => "dataset".into(),
        };
        return field_error(format!("{prefix}.{rest}").trim_end_matches('.'), msg);
    }
    if let Some((n, p)) = profile {
        if expand::written_in(p.base.as_ref(), field) {
            return field_error(&format!("profiles.{n}.base.{field}"), msg);
        }
    }
    field_error(format!("base.{field}").trim_end_matches('.'), msg)
}

#[cfg(test)]
mod tests;
