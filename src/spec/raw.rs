//! The sweep spec as written in YAML (serde, unknown keys rejected), before expansion.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// A sweep spec file. Everything but `name` is optional.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Merged into the run's `dataset` (DatasetConfig).
    #[serde(default)]
    pub dataset: Option<Value>,
    /// The base run: any field of the run config; unlisted fields keep their defaults.
    #[serde(default)]
    pub base: Option<Value>,
    /// Axis path -> list of values or a generator; the grid is their product.
    #[serde(default)]
    pub grid: Option<Mapping>,
    /// Groups of axes that vary together (equal-length lists), each one axis of the product.
    #[serde(default)]
    pub zip: Option<Vec<Mapping>>,
    /// A run is dropped when it matches every `path: value` of one rule.
    #[serde(default)]
    pub exclude: Option<Vec<Mapping>>,
    /// Outermost axis: each seed repeats the whole grid.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Add the random-weights control (the same encoders untrained, under the same
    /// evaluations, one per seed); on when left out.
    #[serde(default)]
    pub control: Option<bool>,
    /// Named variants, e.g. `smoke`, that override parts of the spec.
    #[serde(default)]
    pub profiles: Option<Mapping>,
}

/// A profile: the same sections as the spec, each overriding the spec's when present
/// (`dataset` and `base` merge key by key, `grid` replaces axis by axis, the rest replace).
/// The sections are listed again rather than shared with `RawSpec` through
/// `#[serde(flatten)]`, which serde cannot combine with `deny_unknown_fields`.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    /// Shown by `sweep plan`; appended to the sweep's description.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub dataset: Option<Value>,
    #[serde(default)]
    pub base: Option<Value>,
    #[serde(default)]
    pub grid: Option<Mapping>,
    #[serde(default)]
    pub zip: Option<Vec<Mapping>>,
    #[serde(default)]
    pub exclude: Option<Vec<Mapping>>,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    #[serde(default)]
    pub control: Option<bool>,
}

/// Deep merge: mappings merge key by key, anything else is replaced by `over`.
pub(crate) fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Sets `value` at dotted `path` inside `tree`, creating mappings on the way; a mapping
/// value merges into an existing mapping.
pub(crate) fn set_path(tree: &mut Value, path: &str, value: &Value) {
    let mut node = tree;
    for seg in path.split('.') {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let map = node.as_mapping_mut().expect("just made a mapping");
        let key = Value::String(seg.to_string());
        if !map.contains_key(&key) {
            map.insert(key.clone(), Value::Null);
        }
        node = map.get_mut(&key).expect("just inserted");
    }
    if node.is_mapping() && value.is_mapping() {
        merge(node, value);
    } else {
        *node = value.clone();
    }
}

/// The value at dotted `path`, if any.
pub(crate) fn get_path<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |node, seg| node.get(seg))
}
