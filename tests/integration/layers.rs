//! The module graph of docs/ARCHITECTURE.md#layers, held against the code: every
//! `crate::X` path in a layer's files must name a layer it may import, so a forbidden
//! import (`ml` reaching for the store, `report` for the scheduler, `serve` for Slurm) fails
//! here, with the file and line, before it can grow roots.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may import (`test_support` is test-only and
/// allowed everywhere). Everything not listed as allowed is forbidden.
const LAYERS: &[(&str, &[&str])] = &[
    ("vocab", &[]),
    ("exit", &[]),
    ("units", &[]),
    ("slurm", &[]),
    ("ml", &[]),
    ("store", &["ml", "vocab"]),
    ("spec", &["ml", "vocab"]),
    ("fetch", &["ml"]),
    ("report", &["ml", "spec", "store", "units", "vocab"]),
    ("sched", &["exit", "ml", "slurm", "spec", "store", "vocab"]),
    ("overview", &["slurm", "store", "units", "vocab"]),
    (
        "serve",
        &[
            "exit", "ml", "overview", "report", "store", "units", "vocab",
        ],
    ),
    ("cli", &["exit", "report"]),
    (
        "app",
        &[
            "cli", "exit", "fetch", "ml", "overview", "report", "sched", "serve", "slurm", "spec",
            "store", "units", "vocab",
        ],
    ),
];

/// The floors of `ml`: each sub-module and the sub-modules of `ml` it must never import
/// (a lower floor never reaches up).
const ML_FLOORS: &[(&str, &[&str])] = &[
    ("kernels", &["model", "training", "eval", "augment", "data"]),
    ("cuda", &["model", "training", "eval", "augment", "data"]),
    ("augment", &["model", "training", "eval"]),
    ("data", &["model", "training", "eval"]),
    ("model", &["training", "eval"]),
    ("training", &["eval"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files of top-level module `m`: `src/m.rs` and everything under `src/m/`.
fn files_of(m: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src().join(format!("{m}.rs"));
    if single.exists() {
        files.push(single);
    }
    rust_files(&src().join(m), &mut files);
    files
}

/// The first path segment after each `prefix` in `code` (comment lines skipped), with its
/// line number; a `prefix{a, b::c}` group yields each of its top-level names. A file's
/// tests (its `mod tests`, at the end of the file where this crate keeps them) are not read:
/// a test may drive a layer above the code it checks.
fn segments_after(code: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_group = false;
    let mut depth = 0usize;
    for (i, raw) in code.lines().enumerate() {
        let line = raw.trim_start();
        if line.starts_with("mod tests") {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        let line = match line.find(" //") {
            Some(k) => &line[..k],
            None => line,
        };
        let mut rest = line;
        if in_group {
            group_names(rest, &mut depth, &mut in_group, i + 1, &mut out);
            continue;
        }
        while let Some(k) = rest.find(prefix) {
            let after = &rest[k + prefix.len()..];
            let boundary = k == 0 || !is_ident(rest.as_bytes()[k - 1] as char);
            if boundary {
                if let Some(group) = after.strip_prefix('{') {
                    depth = 1;
                    in_group = true;
                    group_names(group, &mut depth, &mut in_group, i + 1, &mut out);
                    break;
                }
                let name: String = after.chars().take_while(|&c| is_ident(c)).collect();
                if !name.is_empty() {
                    out.push((i + 1, name));
                }
            }
            rest = after;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Names at depth 1 of a `{...}` use group that continues over lines.
fn group_names(
    text: &str,
    depth: &mut usize,
    in_group: &mut bool,
    line: usize,
    out: &mut Vec<(usize, String)>,
) {
    let mut expect_name = *depth == 1;
    let mut name = String::new();
    for c in text.chars() {
        match c {
            '{' => {
                *depth += 1;
                expect_name = false;
            }
            '}' => {
                *depth -= 1;
                if *depth == 0 {
                    *in_group = false;
                    break;
                }
            }
            ',' if *depth == 1 => expect_name = true,
            c if is_ident(c) && expect_name => name.push(c),
            _ => {
                if !name.is_empty() {
                    out.push((line, std::mem::take(&mut name)));
                }
                if !c.is_whitespace() {
                    expect_name = false;
                }
            }
        }
    }
    if !name.is_empty() {
        out.push((line, name));
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(src().parent().unwrap())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// The imports of `code`, a file of `layer`, that the layer table forbids: (line, target).
fn forbidden(layer: &str, code: &str) -> Vec<(usize, String)> {
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let allowed = LAYERS
        .iter()
        .find(|(m, _)| *m == layer)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("layer {layer} is not in the table"));
    segments_after(code, "crate::")
        .into_iter()
        .filter(|(_, target)| {
            target != layer
                && target != "test_support"
                && known.contains(target.as_str())
                && !allowed.contains(&target.as_str())
        })
        .collect()
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let mut violations = Vec::new();
    let mut files_read = 0;
    for (layer, _) in LAYERS {
        for file in files_of(layer) {
            files_read += 1;
            let code = std::fs::read_to_string(&file).unwrap();
            for (line, target) in forbidden(layer, &code) {
                violations.push(format!(
                    "{}:{line}: `{layer}` imports `{target}`",
                    rel(&file)
                ));
            }
        }
    }
    assert!(
        files_read > 50,
        "the scan read the crate's files ({files_read})"
    );
    assert!(
        violations.is_empty(),
        "imports against docs/ARCHITECTURE.md#layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn a_forbidden_import_is_caught_and_every_module_has_a_row() {
    assert_eq!(
        forbidden("ml", "use crate::store::Store;\nuse crate::ml::config;\n"),
        vec![(1, "store".to_string())]
    );
    assert_eq!(
        forbidden("serve", "use crate::{report, sched::slurm_array};").len(),
        1
    );
    assert!(forbidden("app", "use crate::sched::Worker;").is_empty());
    // A new top-level module must be placed in the table before it can import anything.
    let mut modules: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|m| !["lib", "main", "test_support"].contains(&m.as_str()))
        .collect();
    modules.sort();
    modules.dedup();
    for m in modules {
        assert!(
            LAYERS.iter().any(|(l, _)| *l == m),
            "src/{m} has no row in the layer table"
        );
    }
}

#[test]
fn the_store_takes_only_the_checkpoint_record_from_ml() {
    let mut violations = Vec::new();
    for file in files_of("store") {
        let code = std::fs::read_to_string(&file).unwrap();
        for (line, name) in segments_after(&code, "ml::") {
            if name != "Checkpoint" {
                violations.push(format!("{}:{line}: ml::{name}", rel(&file)));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn ml_floors_never_import_a_floor_above() {
    let mut violations = Vec::new();
    for (floor, above) in ML_FLOORS {
        let dir = src().join("ml").join(floor);
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        assert!(!files.is_empty(), "src/ml/{floor}/ exists");
        for file in files {
            let code = std::fs::read_to_string(&file).unwrap();
            for (line, target) in segments_after(&code, "ml::") {
                if above.contains(&target.as_str()) {
                    violations.push(format!(
                        "{}:{line}: ml::{floor} imports ml::{target}",
                        rel(&file)
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_and_nested_imports() {
    let code = "use crate::{\n    store::Store,\n    ml::{config, Checkpoint},\n};\n// crate::sched in a comment\nlet x = crate::vocab::short_id(a); // crate::serve\n";
    let got: Vec<String> = segments_after(code, "crate::")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(got, ["store", "ml", "vocab"]);
}
