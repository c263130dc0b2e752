//! Grid expansion: profile and `--set` overrides applied to the raw spec, axes and
//! generators turned into points, their product taken (seeds outermost, then grid axes in
//! file order, then zip groups), exclude rules applied, each point resolved into a
//! [`RunConfig`] and identical runs merged.

use serde_yaml::{Mapping, Value};

use super::error::SpecError;
use super::raw::{get_path, merge, set_path, RawProfile, RawSpec};
use super::run::{FieldError, RunConfig};
use crate::ml::config::AugOp;

/// One axis of the product: a grid entry or a zip group.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// Where it is written, for error messages: `grid.batch_size`, `zip.0`.
    pub source: String,
    /// Run-config paths it sets (one for a grid axis, several for a zip group).
    pub paths: Vec<String>,
    /// Points: for each, one value per path.
    pub points: Vec<Vec<Value>>,
}

/// A grid point before typing: its tree and its coordinates.
pub(crate) struct Point {
    pub tree: Value,
    /// (axis path, value) for every axis, plus `seed`.
    pub cell: Vec<(String, Value)>,
    /// Index of the point along each axis (for error attribution).
    pub coords: Vec<usize>,
}

/// The spec after the profile and overrides: the parts expansion needs.
pub(crate) struct Effective {
    pub base: Value,
    pub axes: Vec<Axis>,
    pub exclude: Vec<Mapping>,
    pub seeds: Vec<u64>,
    /// Whether to add the random-weights control: `--set control=...`, else the
    /// profile's `control`, else the spec's, else on.
    pub control: bool,
    /// (path, value) from `--set`, applied last to every point.
    pub overrides: Vec<(String, Value)>,
}

const GENERATORS: &[&str] = &["pairs_of", "head_dims", "cases"];

/// Applies the profile and the overrides to the raw spec.
pub(crate) fn effective(
    raw: &RawSpec,
    profile: Option<(&str, &RawProfile)>,
    overrides: &[String],
) -> Result<Effective, SpecError> {
    let mut sections = Sections::of(raw)?;
    if let Some((_, p)) = profile {
        sections.apply_profile(p);
    }
    let overrides = sections.apply_overrides(overrides)?;
    check_seeds(&sections.seeds)?;
    let mut axes = grid_axes(&sections.grid)?;
    for (i, group) in sections.zip.iter().enumerate() {
        axes.push(zip_axis(i, group)?);
    }
    check_distinct_axes(&axes)?;
    let Sections {
        mut base,
        dataset,
        exclude,
        seeds,
        control,
        ..
    } = sections;
    set_path(&mut base, "dataset", &dataset);
    Ok(Effective {
        base,
        axes,
        exclude,
        seeds,
        control: control.unwrap_or(true),
        overrides,
    })
}

/// The spec's sections, with defaults for those left out, as the profile and the
/// overrides change them.
struct Sections {
    base: Value,
    dataset: Value,
    grid: Mapping,
    zip: Vec<Mapping>,
    exclude: Vec<Mapping>,
    seeds: Vec<u64>,
    control: Option<bool>,
}

impl Sections {
    fn of(raw: &RawSpec) -> Result<Self, SpecError> {
        Ok(Self {
            base: base_tree(raw)?,
            dataset: raw
                .dataset
                .clone()
                .unwrap_or(Value::Mapping(Mapping::new())),
            grid: raw.grid.clone().unwrap_or_default(),
            zip: raw.zip.clone().unwrap_or_default(),
            exclude: raw.exclude.clone().unwrap_or_default(),
            seeds: raw.seeds.clone().unwrap_or_else(|| vec![0]),
            control: raw.control,
        })
    }

    /// `dataset` and `base` merge key by key, `grid` replaces axis by axis, the rest
    /// replace.
    fn apply_profile(&mut self, p: &RawProfile) {
        if let Some(d) = &p.dataset {
            merge(&mut self.dataset, d);
        }
        if let Some(b) = &p.base {
            merge(&mut self.base, b);
        }
        if let Some(g) = &p.grid {
            for (k, v) in g {
                self.grid.insert(k.clone(), v.clone());
            }
        }
        if let Some(z) = &p.zip {
            self.zip = z.clone();
        }
        if let Some(e) = &p.exclude {
            self.exclude = e.clone();
        }
        if let Some(s) = &p.seeds {
            self.seeds = s.clone();
        }
        if p.control.is_some() {
            self.control = p.control;
        }
    }

    /// Takes `--set seeds=...` as the seeds, `--set control=...` as whether to add the
    /// control, and every other `--set path=value` out of the grid; returns the latter,
    /// which apply to every point.
    fn apply_overrides(&mut self, overrides: &[String]) -> Result<Vec<(String, Value)>, SpecError> {
        let mut parsed = Vec::new();
        for o in overrides {
            let (key, value) = parse_override(o)?;
            if key == "seeds" {
                self.seeds = serde_yaml::from_value(value).map_err(|e| {
                    SpecError::new(
                        format!("--set {o}"),
                        format!("seeds must be a list of integers: {e}"),
                    )
                })?;
                continue;
            }
            if key == "control" {
                let Value::Bool(on) = value else {
                    return Err(SpecError::new(
                        format!("--set {o}"),
                        "control must be true or false",
                    )
                    .hint("--set control=false runs the grid without its random-weights control"));
                };
                self.control = Some(on);
                continue;
            }
            if key.starts_with("seed") || key == "name" {
                return Err(SpecError::new(
                    format!("--set {o}"),
                    format!("`{key}` cannot be overridden"),
                )
                .hint("use --set seeds=[0,1] to choose seeds"));
            }
            // An override fixes an axis: drop the axis rather than expand it for nothing.
            self.grid.remove(key.as_str());
            parsed.push((key, value));
        }
        Ok(parsed)
    }
}

/// The spec's `base`: a mapping (empty when left out), without the fields that have
/// their own top-level sections.
fn base_tree(raw: &RawSpec) -> Result<Value, SpecError> {
    let mut base = raw.base.clone().unwrap_or(Value::Mapping(Mapping::new()));
    if base.is_null() {
        base = Value::Mapping(Mapping::new());
    }
    if !base.is_mapping() {
        return Err(SpecError::new(
            "base",
            "must be a mapping of run-config fields",
        ));
    }
    for (key, hint) in [
        (
            "dataset",
            "write the dataset at the top level of the spec (`dataset:`)",
        ),
        ("seed", "list seeds at the top level (`seeds: [0, 1, 2]`)"),
    ] {
        if base.get(key).is_some() {
            return Err(SpecError::new(format!("base.{key}"), "not allowed in base").hint(hint));
        }
    }
    Ok(base)
}

/// At least one seed, none twice.
fn check_seeds(seeds: &[u64]) -> Result<(), SpecError> {
    if seeds.is_empty() {
        return Err(
            SpecError::new("seeds", "the list of seeds is empty: the grid has no runs")
                .hint("list at least one seed, e.g. `seeds: [0]`"),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in seeds {
        if !seen.insert(*s) {
            return Err(SpecError::new("seeds", format!("seed {s} is listed twice")));
        }
    }
    Ok(())
}

/// One axis per `grid` entry, in file order.
fn grid_axes(grid: &Mapping) -> Result<Vec<Axis>, SpecError> {
    let mut axes = Vec::new();
    for (k, v) in grid {
        let path = k
            .as_str()
            .ok_or_else(|| SpecError::new("grid", "axis names must be strings (dotted paths)"))?;
        axes.push(Axis {
            source: format!("grid.{path}"),
            paths: vec![path.to_string()],
            points: grid_points(path, v)?.into_iter().map(|v| vec![v]).collect(),
        });
    }
    Ok(axes)
}

/// The axis of zip group `i`: its lists, of equal length, taken element by element.
fn zip_axis(i: usize, group: &Mapping) -> Result<Axis, SpecError> {
    let source = format!("zip.{i}");
    let mut paths = Vec::new();
    let mut columns = Vec::new();
    for (k, v) in group {
        let path = k
            .as_str()
            .ok_or_else(|| SpecError::new(&source, "axis names must be strings"))?;
        let Value::Sequence(values) = v else {
            return Err(SpecError::new(
                format!("{source}.{path}"),
                "a zipped axis must be a list",
            ));
        };
        paths.push(path.to_string());
        columns.push(values.clone());
    }
    let len = columns.first().map_or(0, Vec::len);
    if let Some((p, c)) = paths.iter().zip(&columns).find(|(_, c)| c.len() != len) {
        return Err(SpecError::new(
            format!("{source}.{p}"),
            format!(
                "has {} values but {} has {len}: zipped axes vary together and need equal lengths",
                c.len(),
                paths[0]
            ),
        ));
    }
    if len == 0 {
        return Err(SpecError::new(
            &source,
            "has no values: the grid would be empty",
        ));
    }
    let points = (0..len)
        .map(|j| columns.iter().map(|c| c[j].clone()).collect())
        .collect();
    Ok(Axis {
        source,
        paths,
        points,
    })
}

fn parse_override(o: &str) -> Result<(String, Value), SpecError> {
    let Some((key, value)) = o.split_once('=') else {
        return Err(SpecError::new(format!("--set {o}"), "expected key=value")
            .hint("e.g. --set optimizer.lr=0.5 or --set augment.ops=[crop,color]"));
    };
    let key = key.trim().to_string();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(SpecError::new(
            format!("--set {o}"),
            "the key must be a dotted path like optimizer.lr",
        ));
    }
    let value: Value = serde_yaml::from_str(value).map_err(|e| {
        SpecError::new(
            format!("--set {o}"),
            format!("the value is not valid YAML: {e}"),
        )
    })?;
    Ok((key, value))
}

/// The values of one grid axis: a list, or a generator.
fn grid_points(path: &str, v: &Value) -> Result<Vec<Value>, SpecError> {
    let at = format!("grid.{path}");
    let points = match v {
        Value::Sequence(s) => s.clone(),
        Value::Mapping(m) if m.len() == 1 => {
            let (name, arg) = m.iter().next().expect("one entry");
            match name.as_str() {
                Some("pairs_of") => pairs_of(&at, arg)?,
                Some("head_dims") => head_dims(&at, arg)?,
                Some("cases") => cases(&at, arg)?,
                other => {
                    let name = other.unwrap_or("?");
                    let mut e = SpecError::new(&at, format!("unknown generator `{name}`"));
                    e = match super::error::nearest(name, GENERATORS.iter().copied()) {
                        Some(n) => e.hint(format!("did you mean `{n}`?")),
                        None => e.hint(format!(
                            "an axis is a list of values or one of the generators {}",
                            GENERATORS.join(", ")
                        )),
                    };
                    return Err(e);
                }
            }
        }
        _ => {
            return Err(
                SpecError::new(&at, "an axis must be a list of values or a generator").hint(
                    format!(
                        "write `{path}: [a, b]`, or a generator: {}",
                        GENERATORS.join(", ")
                    ),
                ),
            )
        }
    };
    if points.is_empty() {
        return Err(
            SpecError::new(&at, "has no values: the grid would be empty")
                .hint("list at least one value, or remove the axis"),
        );
    }
    Ok(points)
}

/// Figure 5: every ordered pair of distinct ops, with the single op on the diagonal;
/// row-major, row = first op. 7 ops give 49 values.
fn pairs_of(at: &str, arg: &Value) -> Result<Vec<Value>, SpecError> {
    let ops: Vec<AugOp> = serde_yaml::from_value(arg.clone()).map_err(|e| {
        let mut err = SpecError::new(
            format!("{at}.pairs_of"),
            format!("expected a list of augmentation ops: {e}"),
        );
        if let Some((_, hint)) = super::error::unknown_word_hint(&e.to_string()) {
            err = err.hint(hint);
        }
        err
    })?;
    if ops.is_empty() {
        return Err(SpecError::new(
            format!("{at}.pairs_of"),
            "has no ops: the grid would be empty",
        ));
    }
    let mut out = Vec::with_capacity(ops.len() * ops.len());
    for (i, a) in ops.iter().enumerate() {
        if ops[..i].contains(a) {
            return Err(SpecError::new(
                format!("{at}.pairs_of"),
                format!("`{}` is listed twice", a.name()),
            ));
        }
        for b in &ops {
            let cell: Vec<&str> = if a == b {
                vec![a.name()]
            } else {
                vec![a.name(), b.name()]
            };
            out.push(serde_yaml::to_value(cell).expect("strings serialise"));
        }
    }
    Ok(out)
}

/// Figure 8: `{kinds: [none, linear, nonlinear], out_dims: [...]}`: `none` once (it has no
/// output dimension), every other kind once per dimension.
fn head_dims(at: &str, arg: &Value) -> Result<Vec<Value>, SpecError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Arg {
        kinds: Vec<crate::ml::config::HeadKind>,
        out_dims: Vec<usize>,
    }
    let a: Arg = serde_yaml::from_value(arg.clone()).map_err(|e| {
        let mut err = SpecError::new(
            format!("{at}.head_dims"),
            format!("expected {{kinds: [...], out_dims: [...]}}: {e}"),
        );
        if let Some((_, hint)) = super::error::unknown_word_hint(&e.to_string()) {
            err = err.hint(hint);
        }
        err
    })?;
    let mut out = Vec::new();
    for kind in &a.kinds {
        let kind_v = serde_yaml::to_value(kind).expect("enum serialises");
        if *kind == crate::ml::config::HeadKind::None {
            out.push(mapping(&[("kind", kind_v), ("out_dim", Value::Null)]));
        } else {
            for d in &a.out_dims {
                out.push(mapping(&[
                    ("kind", kind_v.clone()),
                    ("out_dim", Value::from(*d as u64)),
                ]));
            }
        }
    }
    Ok(out)
}

/// Table 4's per-loss grids: `{cases: [{kind: margin, margin: [0, 0.4]}, {kind: nt_xent}]}`.
/// Each case is a mapping; its list-valued keys vary (their product, first key slowest),
/// the others are fixed; the axis takes the cases' points one case after the other. A
/// field whose value is itself a list is written as a list of lists.
fn cases(at: &str, arg: &Value) -> Result<Vec<Value>, SpecError> {
    let at = format!("{at}.cases");
    let Value::Sequence(list) = arg else {
        return Err(SpecError::new(&at, "expected a list of mappings")
            .hint("e.g. cases: [{kind: margin, margin: [0, 0.4]}, {kind: nt_xent}]"));
    };
    if list.is_empty() {
        return Err(SpecError::new(&at, "has no cases: the grid would be empty"));
    }
    let mut out = Vec::new();
    for (i, case) in list.iter().enumerate() {
        let Value::Mapping(m) = case else {
            return Err(SpecError::new(
                format!("{at}.{i}"),
                "a case is a mapping of fields to a value or a list of values",
            ));
        };
        let mut points = vec![Mapping::new()];
        for (k, v) in m {
            let values = match v {
                Value::Sequence(vs) if vs.is_empty() => {
                    let key = k.as_str().unwrap_or("?");
                    return Err(SpecError::new(
                        format!("{at}.{i}.{key}"),
                        "has no values: the case would be empty",
                    ));
                }
                Value::Sequence(vs) => vs.clone(),
                v => vec![v.clone()],
            };
            points = points
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut p = p.clone();
                        p.insert(k.clone(), v.clone());
                        p
                    })
                })
                .collect();
        }
        out.extend(points.into_iter().map(Value::Mapping));
    }
    Ok(out)
}

fn mapping(entries: &[(&str, Value)]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String((*k).to_string()), v.clone());
    }
    Value::Mapping(m)
}

/// Two axes may not set the same field, nor one field inside another's.
fn check_distinct_axes(axes: &[Axis]) -> Result<(), SpecError> {
    let all: Vec<(&str, &str)> = axes
        .iter()
        .flat_map(|a| a.paths.iter().map(move |p| (p.as_str(), a.source.as_str())))
        .collect();
    for (i, (p, src)) in all.iter().enumerate() {
        for (q, src2) in &all[i + 1..] {
            let nested = q.starts_with(&format!("{p}.")) || p.starts_with(&format!("{q}."));
            if p == q || nested {
                return Err(SpecError::new(
                    *src2,
                    format!(
                        "axis `{q}` overlaps axis `{p}` ({src}): the same field is varied twice"
                    ),
                )
                .hint("merge them into one axis, or vary them together in a zip group"));
            }
        }
    }
    Ok(())
}

/// All points of the product, seeds outermost, first axis slowest.
pub(crate) fn points(eff: &Effective) -> Vec<Point> {
    let mut out = Vec::new();
    let sizes: Vec<usize> = eff.axes.iter().map(|a| a.points.len()).collect();
    let total: usize = sizes.iter().product();
    for &seed in &eff.seeds {
        for flat in 0..total {
            let mut coords = vec![0; sizes.len()];
            let mut rem = flat;
            for (i, s) in sizes.iter().enumerate().rev() {
                coords[i] = rem % s;
                rem /= s;
            }
            let mut tree = eff.base.clone();
            let mut cell = Vec::new();
            for (axis, &c) in eff.axes.iter().zip(&coords) {
                for (path, value) in axis.paths.iter().zip(&axis.points[c]) {
                    set_path(&mut tree, path, value);
                    cell.push((path.clone(), value.clone()));
                }
            }
            for (path, value) in &eff.overrides {
                set_path(&mut tree, path, value);
            }
            set_path(&mut tree, "seed", &Value::from(seed));
            cell.push(("seed".to_string(), Value::from(seed)));
            out.push(Point { tree, cell, coords });
        }
    }
    out
}

/// Whether `run` matches every `path: value` of `rule`.
pub(crate) fn excluded_by(run: &RunConfig, rule: &Mapping) -> Result<bool, FieldError> {
    let mut tree = serde_json::to_value(&run.pretrain).expect("config serialises");
    if let serde_json::Value::Object(m) = &mut tree {
        m.insert(
            "evals".into(),
            serde_json::to_value(&run.evals).expect("serialises"),
        );
    }
    for (k, v) in rule {
        let path = k.as_str().ok_or_else(|| {
            (
                String::new(),
                "exclude keys must be dotted paths".to_string(),
            )
        })?;
        let want = serde_json::to_value(v).map_err(|e| (path.to_string(), e.to_string()))?;
        let have = path.split('.').try_fold(&tree, |n, s| n.get(s));
        match have {
            None => return Err((path.to_string(), "no such field in the run config".into())),
            Some(h) if !json_eq(h, &want) => return Ok(false),
            Some(_) => {}
        }
    }
    Ok(true)
}

/// Equality that treats 1 and 1.0 as the same number.
fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The axis (by source) that set `field`, if any: for attributing a typing error.
pub(crate) fn axis_setting<'a>(axes: &'a [Axis], field: &str) -> Option<(&'a Axis, &'a str)> {
    axes.iter().find_map(|a| {
        a.paths
            .iter()
            .find(|p| {
                field == p.as_str()
                    || field.starts_with(&format!("{p}."))
                    || p.starts_with(&format!("{field}."))
            })
            .map(|p| (a, p.as_str()))
    })
}

/// True when `field` was written in `tree`.
pub(crate) fn written_in(tree: Option<&Value>, field: &str) -> bool {
    tree.is_some_and(|t| get_path(t, field).is_some())
}
