//! From a spec to registered stages: load and expand the spec, resolve and fingerprint its
//! data, compute every stage's id, and register the sweep in the store. The data is checked
//! here, before any database is opened, so bad data writes nothing; so is a precision the
//! workers' devices cannot run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::UserError;
use crate::cli::SpecArgs;
use crate::ml::config::Precision;
use crate::sched::DeviceName;
use crate::spec::{self, LoadOptions, Plan};
use crate::store::{NewStage, NewSweep, Store};

/// Loads and expands the spec named on the command line.
pub(super) fn load_plan(args: &SpecArgs) -> Result<Plan> {
    let opts = LoadOptions {
        profile: args.profile.clone(),
        overrides: args.overrides.clone(),
    };
    Ok(spec::load(&args.spec, &opts)?)
}

/// A plan's stages and the dataset fingerprints they were computed with.
pub(super) struct Staged {
    pub stages: Vec<NewStage>,
    /// Per planned run: (pretrain id, [(eval id, eval label)]).
    pub per_run: Vec<(String, Vec<(String, String)>)>,
    /// Each dataset location with its fingerprint.
    pub datasets: Vec<(PathBuf, String)>,
}

/// Resolves data locations, fingerprints them, and computes every stage's id. Missing or
/// unreadable data is bad input.
pub(super) fn stage(plan: &Plan, data_dir: &Path) -> Result<Staged> {
    let mut fingerprints: HashMap<PathBuf, String> = HashMap::new();
    let mut out = Staged {
        stages: Vec::new(),
        per_run: Vec::new(),
        datasets: Vec::new(),
    };
    for r in &plan.runs {
        let ds = &r.config.pretrain.dataset;
        let path =
            crate::ml::data::resolve_path(ds, data_dir).map_err(|e| UserError(e.to_string()))?;
        let fp = match fingerprints.get(&path) {
            Some(f) => f.clone(),
            None => {
                let f =
                    crate::ml::data::fingerprint(&path).map_err(|e| UserError(e.to_string()))?;
                fingerprints.insert(path.clone(), f.clone());
                out.datasets.push((path.clone(), f.clone()));
                f
            }
        };
        let cell: serde_json::Map<String, serde_json::Value> = r.cell.iter().cloned().collect();
        let cell = serde_json::Value::Object(cell).to_string();
        let stages = spec::stages(&r.config, &fp);
        let evals = stages[1..]
            .iter()
            .map(|s| (s.id.0.clone(), s.label.clone()))
            .collect();
        out.per_run.push((stages[0].id.0.clone(), evals));
        for s in stages {
            out.stages.push(NewStage {
                id: s.id.0.clone(),
                stage: s.kind,
                parent_id: s.parent.map(|p| p.0),
                label: s.label,
                config: spec::canonical_json(&s.config),
                dataset_fingerprint: fp.clone(),
                semantics_version: spec::SEMANTICS_VERSION as i64,
                cell: cell.clone(),
            });
        }
    }
    Ok(out)
}

/// Registers the plan's sweep with its already staged stages.
pub(super) fn register(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    plan: &Plan,
    staged: &Staged,
    quiet: bool,
) -> Result<()> {
    let sweep = NewSweep {
        name: plan.name.clone(),
        spec_path: plan.spec_path.to_string_lossy().into_owned(),
        spec_text: plan.spec_text.clone(),
        profile: plan.options.profile.clone(),
        overrides: plan.options.overrides.clone(),
    };
    let reg = rt.block_on(store.register(&sweep, &staged.stages))?;
    if !quiet {
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        eprintln!(
            "sweep {}: {} stages ({} new, {} already in the store)",
            plan.name,
            staged.stages.len(),
            reg.new_stages,
            reg.existing_stages
        );
    }
    Ok(())
}

/// Refuses, before anything is written, a plan with reduced-precision runs for CPU workers:
/// tf32 and bf16 are CUDA arithmetic (`PretrainConfig::precision`).
pub(super) fn check_precision(plan: &Plan, devices: &[String]) -> Result<()> {
    let on_cpu = devices.is_empty()
        || devices
            .iter()
            .any(|d| DeviceName::parse(d) == Some(DeviceName::Cpu));
    let Some(run) = plan
        .runs
        .iter()
        .find(|r| r.config.pretrain.precision != Precision::F32)
    else {
        return Ok(());
    };
    if !on_cpu {
        return Ok(());
    }
    let p = run.config.pretrain.precision.name();
    Err(UserError(format!(
        "precision: {p} needs a CUDA device, and these workers run on the CPU; give them \
         GPUs (`sweep run --devices cuda:0[,cuda:1...]`, `sweep submit --gres gpu:1`) on a \
         `--features cuda` build, or train in float32 (remove `precision` from the spec or \
         add --set precision=f32)"
    ))
    .into())
}
