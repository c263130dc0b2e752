//! `sweep plan`, `status`, `ls` and bad input at the command line.

use crate::common::{text, Env};

fn spec_path(name: &str) -> String {
    format!("{}/sweeps/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `sweep plan SPEC [ARGS] --json` on a committed spec, which must succeed; its JSON.
fn plan_json(env: &Env, spec: &str, args: &[&str]) -> serde_json::Value {
    let path = spec_path(spec);
    let mut all = vec!["plan", path.as_str()];
    all.extend_from_slice(args);
    all.push("--json");
    let o = env.run(&all);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (pretrain runs, random-weights controls) of a plan's JSON.
fn counts(v: &serde_json::Value) -> (Option<u64>, Option<u64>) {
    (v["pretrain_runs"].as_u64(), v["controls"].as_u64())
}

#[test]
fn plan_lists_the_49_figure_5_cells_and_the_15_heads_and_writes_nothing() {
    let env = Env::new(2);
    let o = env.run(&["plan", &spec_path("augment_pairs.yaml")]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // The 49 cells and the random-weights control.
    assert!(out.contains("50 pretrain runs, 150 stages"), "{out}");
    assert!(out.contains("1 random-weights control run(s)"), "{out}");
    assert!(
        out.contains("[crop,cutout]") && out.contains("linear-aug@h new, knn@h new"),
        "{out}"
    );
    let v = plan_json(&env, "head_dims.yaml", &["--profile", "smoke"]);
    // 15 heads; controls: one per head for z (the random head is read), the default head's
    // also carrying every head's h evaluations (one untrained pretrain, one stage).
    assert_eq!(v["controls"], 15);
    assert_eq!(v["pretrain_runs"], 30);
    assert_eq!(v["runs"].as_array().unwrap().len(), 30);
    // `--set control=false` drops them for this invocation; anything but a bool is refused.
    let v = plan_json(
        &env,
        "head_dims.yaml",
        &["--profile", "smoke", "--set", "control=false"],
    );
    assert_eq!(counts(&v), (Some(15), Some(0)));
    let o = env.run(&["plan", &spec_path("head_dims.yaml"), "--set", "control=off"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--set control=off: control must be true or false"),
        "{}",
        text(&o)
    );
    // Table 7's spec: one SimCLR pretrain per seed and its control ("from scratch"),
    // each evaluated by linear and by fine-tuning at 1% and 10% of the labels.
    let v = plan_json(&env, "few_labels.yaml", &["--profile", "smoke"]);
    assert_eq!(counts(&v), (Some(6), Some(3)));
    let o = env.run(&["plan", &spec_path("few_labels.yaml"), "--profile", "smoke"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("fine_tune-1%@h new, fine_tune-10%@h new"),
        "{}",
        text(&o)
    );
    // Every spec with a GPU smoke profile (the five paper specs) plans at that size.
    let dir = format!("{}/sweeps", env!("CARGO_MANIFEST_DIR"));
    let mut planned = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !std::fs::read_to_string(&path)
            .unwrap()
            .contains("\n  gpu_smoke:")
        {
            continue;
        }
        let o = env.run(&["plan", path.to_str().unwrap(), "--profile", "gpu_smoke"]);
        assert!(o.status.success(), "{}: {}", path.display(), text(&o));
        planned += 1;
    }
    assert_eq!(planned, 5, "the five paper specs have gpu_smoke");
    assert!(!env.db().exists(), "plan must not create the database");
}

#[test]
fn plan_lists_figure_7s_encoders_with_a_control_per_encoder() {
    let env = Env::new(2);
    let v = plan_json(&env, "model_size.yaml", &["--profile", "smoke"]);
    // 3 depths x 2 widths x 2 methods, and one untrained encoder per depth and width.
    assert_eq!(counts(&v), (Some(18), Some(6)));
    assert!(!env.db().exists(), "plan must not create the database");
}

#[test]
fn plan_lists_table_3s_probes_for_both_pretrainings() {
    let env = Env::new(2);
    let spec = spec_path("what_to_predict.yaml");
    let o = env.run(&["plan", &spec, "--profile", "smoke"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    // 2 pretrainings x 3 seeds and a control per seed, each with the linear probe and the
    // 8 transformation probes.
    assert!(out.contains("9 pretrain runs, 90 stages"), "{out}");
    assert!(
        out.contains("probe-rotation@h new, probe-rotation@z new"),
        "{out}"
    );
    assert!(out.contains("op=rotate p=0.75"), "{out}");
    let v = plan_json(&env, "what_to_predict.yaml", &[]);
    assert_eq!(counts(&v), (Some(3), Some(1)));
    assert!(!env.db().exists(), "plan must not create the database");
}

#[test]
fn planning_twice_leaves_an_existing_database_byte_identical() {
    let env = Env::new(2);
    let spec = env.write("t.yaml", &crate::common::tiny_spec("t", &[0.5], 1));
    let o = env.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let before = std::fs::read(env.db()).unwrap();
    for _ in 0..2 {
        let o = env.run(&["plan", spec.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("3 done"), "{}", text(&o));
    }
    assert_eq!(before, std::fs::read(env.db()).unwrap());
}

#[test]
fn bad_specs_and_flags_exit_2_with_file_line_and_field_and_write_nothing() {
    let env = Env::new(2);
    let bad = env.write("bad.yaml", "name: bad\nbase:\n  optimizer:\n    lr: -1\n");
    let o = env.run(&["run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("bad.yaml:4:5: base.optimizer.lr: must be a positive number"),
        "{err}"
    );
    assert!(!env.db().exists(), "a rejected spec writes nothing");

    let o = env.run(&[
        "plan",
        bad.to_str().unwrap(),
        "--set",
        "optimizer.lr=0.1",
        "--profile",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no profile `nope`"), "{}", text(&o));

    let o = env.run(&["run", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = env.run(&["run", bad.to_str().unwrap(), "--workers", "0"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap rejects a bad flag: {}",
        text(&o)
    );
}

#[test]
fn reduced_precision_on_cpu_workers_is_refused_before_anything_is_written() {
    let env = Env::new(2);
    let spec = env.write("t.yaml", &crate::common::tiny_spec("t", &[0.5], 1));
    for p in ["bf16", "tf32"] {
        let set = format!("precision={p}");
        let o = env.run(&["run", spec.to_str().unwrap(), "--set", &set, "--quiet"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = text(&o);
        assert!(
            err.contains(&format!("precision: {p} needs a CUDA device"))
                && err.contains("--set precision=f32"),
            "{err}"
        );
        assert!(!env.db().exists(), "refused before the store is created");
    }
    // Planning it is fine (it may run elsewhere), and so is an unknown precision not.
    let o = env.run(&["plan", spec.to_str().unwrap(), "--set", "precision=bf16"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = env.run(&["plan", spec.to_str().unwrap(), "--set", "precision=fp16"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("precision"), "{}", text(&o));
}

#[test]
fn a_database_that_is_not_ours_is_refused_and_left_untouched() {
    let env = Env::new(2);
    std::fs::write(
        env.db(),
        b"not a database, just text that someone saved here by mistake",
    )
    .unwrap();
    let spec = env.write("t.yaml", &crate::common::tiny_spec("t", &[0.5], 1));
    let o = env.run(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("not a simclr-sweep database"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(env.db()).unwrap(),
        b"not a database, just text that someone saved here by mistake"
    );
}

#[test]
fn missing_data_names_the_fetch_command() {
    let env = Env::new(2);
    std::fs::remove_dir_all(env.path().join("data")).unwrap();
    let spec = env.write("t.yaml", &crate::common::tiny_spec("t", &[0.5], 1));
    let o = env.run(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("sweep data fetch cifar10"),
        "{}",
        text(&o)
    );
    assert!(!env.db().exists(), "refused before the database is created");
    // Nothing to resume without a database: refused, and still no file.
    let o = env.run(&["resume", "t"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!env.db().exists(), "resume creates no database");
}

#[test]
fn a_huge_name_and_deep_nesting_are_refused_fast_and_short_and_write_nothing() {
    let env = Env::new(2);
    let long = env.write("long.yaml", &format!("name: {}\n", "n".repeat(100_000)));
    let deep = env.write(
        "deep.yaml",
        &format!(
            "name: t\nbase: {}1{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    );
    for (spec, expected) in [
        (
            long,
            "long.yaml:1:1: name: is 100000 characters long; at most 64 are allowed",
        ),
        (deep, "deep.yaml:2:70: nesting deeper than 64 levels"),
    ] {
        let started = std::time::Instant::now();
        let o = env.run(&["run", spec.to_str().unwrap()]);
        let took = started.elapsed();
        let err = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(err.len() < 1000, "a short message, not {} bytes", err.len());
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        assert!(!env.db().exists(), "a rejected spec writes nothing");
    }
}
