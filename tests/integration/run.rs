//! `sweep run`: a tiny sweep to the end, status, resume after SIGKILL at several moments,
//! graceful Ctrl-C, and two processes sharing one database.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{ctrl_c_at, text, tiny_spec, Env};

/// Every stored metric of every stage, by (stage id, metric name, step).
fn all_metrics(env: &Env) -> BTreeMap<(String, String, i64), f64> {
    let rows: Vec<(String, String, i64, f64)> = env.query(async |pool| {
        sqlx::query_as("SELECT run_id, name, step, value FROM metrics")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    rows.into_iter()
        .filter(|(_, n, _, _)| !n.contains("images_per_sec") && !n.contains("seconds"))
        .map(|(r, n, s, v)| ((r, n, s), v))
        .collect()
}

/// (id, state, attempts) of every stage.
fn stages(env: &Env) -> Vec<(String, String, i64)> {
    env.query(async |pool| {
        sqlx::query_as("SELECT id, state, attempts FROM runs ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

#[test]
fn a_tiny_sweep_runs_to_the_end_and_a_second_run_skips_everything() {
    let env = Env::new(2);
    let spec = env.write("t.yaml", &tiny_spec("t", &[0.5, 0.2], 2));
    let o = env.run(&["run", spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let st = stages(&env);
    assert_eq!(st.len(), 6);
    assert!(st.iter().all(|(_, s, a)| s == "done" && *a == 1), "{st:?}");
    let m = all_metrics(&env);
    let top1: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.1 == "eval/top1")
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(top1.len(), 4);
    assert!(top1.iter().all(|t| (0.0..=1.0).contains(t)));

    let o = env.run(&["status", "t", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    // Each evaluation's top-1 as the store holds it (its last step); pretrains have none.
    for r in rows.as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let stored = (m.iter().rev())
            .find(|(k, _)| k.0 == id && k.1 == "eval/top1")
            .map(|(_, v)| *v);
        assert_eq!(r["top1"].as_f64(), stored, "{r}");
        assert_eq!(stored.is_some(), r["stage"] == "eval", "{r}");
    }

    let again = env.run(&["run", spec.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(stages(&env), st, "nothing rerun");
    assert_eq!(all_metrics(&env), m);
}

/// Starts `sweep run`, SIGKILLs it (and its workers, which die with it) when a log line
/// contains `needle`; returns whether it was killed before finishing.
fn run_and_kill_at(env: &Env, spec: &str, needle: &str) -> bool {
    let mut child = env
        .sweep()
        .args(["run", spec])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(needle) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    // The workers die with their parent (PR_SET_PDEATHSIG); give them a moment.
    std::thread::sleep(Duration::from_millis(300));
    killed
}

#[test]
fn sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_results_exactly_once() {
    let reference = Env::new(2);
    let spec_text = tiny_spec("k", &[0.5, 0.2], 3);
    let spec = reference.write("k.yaml", &spec_text);
    let o = reference.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = all_metrics(&reference);

    let env = Env::new(2);
    let spec = env.write("k.yaml", &spec_text);
    let spec = spec.to_str().unwrap();
    // During the first pretrain (after an epoch), between runs (a pretrain just done),
    // during an evaluation (it started), during the second pretrain's checkpointing.
    for needle in [
        "epoch 1:",
        "pretrain: started",
        "linear@h: started",
        "checkpoint at epoch 2",
    ] {
        assert!(run_and_kill_at(&env, spec, needle), "never saw `{needle}`");
    }
    let o = env.run(&["run", spec]);
    assert!(o.status.success(), "{}", text(&o));
    let st = stages(&env);
    assert!(st.iter().all(|(_, s, _)| s == "done"), "{st:?}");
    let got = all_metrics(&env);
    assert_eq!(got.len(), expected.len(), "no metric missing or duplicated");
    for (k, v) in &expected {
        assert_eq!(
            got.get(k),
            Some(v),
            "metric {k:?} differs from the uninterrupted run"
        );
    }
}

#[test]
fn ctrl_c_checkpoints_releases_and_exits_130_then_resume_finishes() {
    let env = Env::new(2);
    let spec = env.write("c.yaml", &tiny_spec("c", &[0.5], 4));
    let (code, rest) = ctrl_c_at(&env, &spec, "epoch 1:");
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("released")), "{rest:?}");
    let st = stages(&env);
    assert!(
        st.iter().all(|(_, s, _)| s == "queued"),
        "released, not running: {st:?}"
    );

    let o = env.run(&["resume", "c"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = stages(&env);
    assert!(st.iter().all(|(_, s, a)| s == "done" && *a == 1), "{st:?}");
}

#[test]
fn ctrl_c_during_an_evaluation_releases_it_and_resume_completes_it_in_one_attempt() {
    let env = Env::new(2);
    // A linear evaluation long enough (thousands of classifier epochs) to be stopped in
    // the middle; it reports progress after every epoch.
    let spec_text = tiny_spec("e", &[0.5], 1)
        .replace("epochs: 3, batch_size: 25", "epochs: 3000, batch_size: 25");
    let spec = env.write("e.yaml", &spec_text);
    let (code, rest) = ctrl_c_at(&env, &spec, "linear@h: started");
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("released")),
        "the evaluation is released, not failed: {rest:?}"
    );
    let st = stages(&env);
    assert!(
        st.iter().all(|(_, s, _)| s != "failed" && s != "running"),
        "{st:?}"
    );
    assert_eq!(
        st.iter().filter(|(_, s, _)| s == "done").count(),
        1,
        "only the pretrain finished: {st:?}"
    );

    let o = env.run(&["resume", "e"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = stages(&env);
    assert!(st.iter().all(|(_, s, a)| s == "done" && *a == 1), "{st:?}");
}

#[test]
fn the_papers_linear_protocol_checkpoints_on_ctrl_c_and_resumes_to_the_same_numbers() {
    // Augmented crops through the encoder every step: long enough to stop in the middle.
    let spec_text = tiny_spec("a", &[0.5], 1).replace(
        "{kind: linear, train_subset: 100, test_subset: 20, epochs: 3, batch_size: 25}",
        "{kind: linear, protocol: augmented, train_subset: 100, test_subset: 20, epochs: 200, \
         batch_size: 25}",
    );
    let reference = Env::new(2);
    let spec = reference.write("a.yaml", &spec_text);
    let o = reference.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = all_metrics(&reference);
    assert!(expected.keys().any(|k| k.1 == "eval/train_top1"));

    let env = Env::new(2);
    let spec = env.write("a.yaml", &spec_text);
    let (code, rest) = ctrl_c_at(&env, &spec, "linear-aug@h: started");
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("released")), "{rest:?}");
    // The stopped evaluation recorded its own checkpoint, under its own id.
    let eval_checkpoints: Vec<(String,)> = env.query(async |pool| {
        sqlx::query_as(
            "SELECT c.path FROM checkpoints c JOIN runs r ON r.id = c.run_id \
             WHERE r.stage = 'eval'",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert!(!eval_checkpoints.is_empty(), "{rest:?}");
    assert!(eval_checkpoints.iter().all(|(p,)| p.contains("/eval-")));

    let o = env.run(&["resume", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    // It continued from its checkpoint rather than starting over.
    assert!(
        text(&o).contains("linear-aug@h: started") && text(&o).contains(", from step "),
        "{}",
        text(&o)
    );
    let st = stages(&env);
    assert!(st.iter().all(|(_, s, a)| s == "done" && *a == 1), "{st:?}");
    assert_eq!(
        all_metrics(&env),
        expected,
        "same numbers as the uninterrupted run"
    );
}

#[test]
fn two_processes_on_one_database_run_each_stage_once() {
    let env = Env::new(2);
    let spec = env.write("p.yaml", &tiny_spec("p", &[0.5, 0.4, 0.3, 0.2], 1));
    let spec = spec.to_str().unwrap();
    // Register first so both processes see the same sweep.
    let o = env.run(&["plan", spec]);
    assert!(o.status.success());
    let start = Instant::now();
    let a = env.sweep().args(["run", spec, "--quiet"]).spawn().unwrap();
    let b = env.sweep().args(["run", spec, "--quiet"]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        text(&a),
        text(&b)
    );
    let st = stages(&env);
    assert_eq!(st.len(), 12);
    assert!(
        st.iter().all(|(_, s, a)| s == "done" && *a == 1),
        "each stage claimed once: {st:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(300));
}

#[test]
fn a_failing_run_is_marked_failed_the_sweep_goes_on_and_retry_requeues_it() {
    let env = Env::new(2);
    // Temperature 1e-30 makes the logits overflow: NaN loss in that run only.
    let spec = env.write("f.yaml", &tiny_spec("f", &[0.5, 1e-30], 1));
    let o = env.run(&["run", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "some runs failed: {}", text(&o));
    let o = env.run(&["status", "f", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == "done").count(),
        3,
        "{states:?}"
    );
    let failed: Vec<&serde_json::Value> = rows.iter().filter(|r| r["state"] == "failed").collect();
    assert_eq!(failed.len(), 3, "the pretrain and its two evaluations");
    let reason = failed[0]["failure"].as_str().unwrap();
    assert!(reason.contains("non-finite loss"), "{reason}");

    let o = env.run(&["retry", "f", "--failed"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 failed stage(s)"), "{}", text(&o));
}

#[test]
fn the_control_is_one_untrained_run_per_seed_and_the_report_shows_it() {
    let env = Env::new(2);
    let text_of = tiny_spec("c", &[0.5, 0.2], 1).replace("control: false", "control: true");
    let spec = env.write("c.yaml", &text_of);
    let o = env.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        stages(&env).len(),
        9,
        "2 temperatures and 1 control, each with 2 evaluations"
    );
    let m = all_metrics(&env);
    assert_eq!(m.keys().filter(|k| k.1 == "eval/top1").count(), 6);
    // Every sweep's report and an index with one line per sweep.
    let root = env.path().join("reports");
    let o = env.run(&[
        "report",
        "--all",
        "--out",
        root.to_str().unwrap(),
        "--format",
        "md",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let index = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(index.contains("- [c](c/README.md)"), "{index}");
    assert!(
        index.contains("random-weights control"),
        "the headline: {index}"
    );
    let md = std::fs::read_to_string(root.join("c").join("README.md")).unwrap();
    assert!(md.contains("| random-weights control |"), "{md}");
    let o = env.run(&["report"]);
    assert_eq!(o.status.code(), Some(2), "a sweep or --all: {}", text(&o));
}

#[test]
fn zero_epochs_is_the_random_weights_baseline() {
    let env = Env::new(2);
    let spec = env.write("z.yaml", &tiny_spec("z", &[0.5], 0));
    let o = env.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let m = all_metrics(&env);
    assert_eq!(m.keys().filter(|k| k.1 == "eval/top1").count(), 2);
    assert_eq!(
        m.keys().filter(|k| k.1 == "train/loss").count(),
        0,
        "nothing trained"
    );
}

/// A tiny sweep of the supervised baseline: two colour strengths, each a supervised
/// pretrain + linear + kNN on the same 40 images as [`tiny_spec`], no control.
fn supervised_spec(name: &str, epochs: usize) -> String {
    tiny_spec(name, &[0.5], epochs)
        .replace("  epochs:", "  method: supervised\n  epochs:")
        .replace(
            "  loss.temperature: [0.5]",
            "  augment.color_strength: [0.5, 1.0]",
        )
}

#[test]
fn a_supervised_pretrain_killed_anywhere_resumes_to_the_uninterrupted_metrics_once() {
    let reference = Env::new(2);
    let spec_text = supervised_spec("s", 3);
    let spec = reference.write("s.yaml", &spec_text);
    let o = reference.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = all_metrics(&reference);
    // Its own names: classification top-1, not the contrastive accuracies.
    assert_eq!(
        expected.keys().filter(|k| k.1 == "epoch/top1").count(),
        6,
        "2 runs x 3 epochs"
    );
    assert!(expected.keys().all(|k| !k.1.contains("contrastive")));
    assert_eq!(expected.keys().filter(|k| k.1 == "eval/top1").count(), 4);

    let env = Env::new(2);
    let spec = env.write("s.yaml", &spec_text);
    let spec = spec.to_str().unwrap();
    // Started again from scratch after the fault (nothing was recorded), killed once its
    // epoch-2 checkpoint is recorded; the third attempt continues from that checkpoint.
    let out = fault_kill_then_finish(&env, spec, 8);
    assert!(
        out.contains("pretrain: started (attempt 3, from step 8)"),
        "{out}"
    );
    assert!(stages(&env).iter().all(|(_, s, _)| s == "done"));
    let got = all_metrics(&env);
    assert_eq!(got.len(), expected.len(), "no metric missing or duplicated");
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "metric {k:?} differs");
    }
}

/// Kills a worker of `sweep run SPEC` twice, then runs the sweep to the end, and returns
/// the output of the second and the last invocation: first a worker dies while writing its
/// first checkpoint (`SWEEP_FAULT` `checkpoint_write`: temp file written and fsynced, not
/// renamed; SIGKILL from inside, like a lost machine), then a worker dies right after it
/// records the checkpoint of global step `step` (`checkpoint_recorded@STEP`); so the stage
/// that died there ends on its third attempt, the most `--max-attempts` allows by default.
/// Faults from inside, not a kill on a log line: a tiny stage can finish before a kill sent
/// from outside lands.
fn fault_kill_then_finish(env: &Env, spec: &str, step: usize) -> String {
    let run_with_fault = |point: String, marker: &str| {
        let marker = env.path().join(marker);
        let o = env
            .sweep()
            .args(["run", spec])
            .env("SWEEP_FAULT", format!("{point}:{}", marker.display()))
            .output()
            .unwrap();
        assert!(marker.exists(), "{point} was reached: {}", text(&o));
        text(&o)
    };
    run_with_fault("checkpoint_write".into(), "fault-write");
    let second = run_with_fault(format!("checkpoint_recorded@{step}"), "fault-recorded");
    let o = env.run(&["run", spec]);
    assert!(o.status.success(), "{}", text(&o));
    format!("{second}{}", text(&o))
}

/// A tiny sweep whose one evaluation fine-tunes on 40% of the 100 fixture labels (4 per
/// class, 4 steps an epoch, 5 epochs); `pre_` is the same pretrain under kNN only.
fn fine_tune_specs() -> (String, String) {
    let evals =
        "    - {kind: linear, train_subset: 100, test_subset: 20, epochs: 3, batch_size: 25}\n    \
                 - {kind: knn, train_subset: 100, test_subset: 20, k: 10}\n";
    let base = tiny_spec("f", &[0.5], 2);
    assert!(base.contains(evals), "tiny_spec changed: {base}");
    let fine = base.replace(
        evals,
        "    - {kind: fine_tune, label_fraction: 0.4, test_subset: 20, epochs: 5, batch_size: 10}\n",
    );
    let pre = base.replace("name: f", "name: pre").replace(
        evals,
        "    - {kind: knn, train_subset: 100, test_subset: 20, k: 10}\n",
    );
    (fine, pre)
}

#[test]
fn fine_tuning_killed_anywhere_resumes_to_the_uninterrupted_metrics_once() {
    let (fine, pre) = fine_tune_specs();
    let reference = Env::new(2);
    let spec = reference.write("f.yaml", &fine);
    let o = reference.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = all_metrics(&reference);
    assert!(expected.keys().any(|k| k.1 == "eval/train_top1"));

    let env = Env::new(2);
    // The pretrain first, through another sweep (the same run id): then the first
    // checkpoint the fault point meets is the fine-tuning's own.
    let pre = env.write("pre.yaml", &pre);
    let o = env.run(&["run", pre.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let spec = env.write("f.yaml", &fine);
    let spec = spec.to_str().unwrap();
    // A worker dies writing its first fine-tuning checkpoint, then the run is killed once
    // a later one is recorded; the third attempt continues from the newest recorded one,
    // not from the start.
    let out = fault_kill_then_finish(&env, spec, 12);
    assert!(
        out.contains("fine_tune-40%@h: started (attempt 3, from step "),
        "{out}"
    );
    assert!(stages(&env).iter().all(|(_, s, _)| s == "done"));
    let got = all_metrics(&env);
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "metric {k:?} differs");
    }
    let evals =
        |m: &BTreeMap<(String, String, i64), f64>| m.keys().filter(|k| k.1 == "eval/top1").count();
    // The reference's one evaluation, and the kNN of the pretrain-only sweep.
    assert_eq!((evals(&expected), evals(&got)), (1, 2));
}

#[test]
fn a_probe_killed_after_a_checkpoint_resumes_to_the_uninterrupted_metrics_once() {
    // One pretrain epoch, then Table 3's rotation probe on h for 40 epochs: the probe's
    // checkpoints are the only ones past epoch 1.
    const PROBE: &str = "    - {kind: probe, task: rotation, hidden: 16, train_subset: 100, \
                         test_subset: 20, epochs: 40, batch_size: 25}\n";
    let spec_text = tiny_spec("p", &[0.5], 1)
        .replace(
            "    - {kind: linear, train_subset: 100, test_subset: 20, epochs: 3, batch_size: 25}\n",
            PROBE,
        )
        .replace(
            "  loss.temperature: [0.5]",
            "  augment.extra: [[], [{op: rotate, p: 0.75}]]",
        );
    assert!(spec_text.contains(PROBE), "tiny_spec changed: {spec_text}");
    let reference = Env::new(2);
    let spec = reference.write("p.yaml", &spec_text);
    let o = reference.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let expected = all_metrics(&reference);
    assert_eq!(
        expected.keys().filter(|k| k.1 == "eval/top1").count(),
        4,
        "2 pretrainings x (probe + kNN)"
    );

    let env = Env::new(2);
    // The pretrains (and their kNN) first, through a sweep without the probe (the same run
    // ids): then the first checkpoint recorded in the probe's sweep is a probe's.
    let pre = env.write(
        "pre.yaml",
        &spec_text.replace(PROBE, "").replace("name: p", "name: pre"),
    );
    let o = env.run(&["run", pre.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let spec = env.write("p.yaml", &spec_text);
    let spec = spec.to_str().unwrap();
    // A worker dies (SIGKILL) right after it records a probe's epoch-1 checkpoint. Whoever
    // takes the probe next, in this invocation or the rerun, continues from that
    // checkpoint rather than from the start, and every metric is stored once, as in the
    // uninterrupted run. (A fault point, not a kill on a log line: 40 tiny epochs can end
    // before a kill sent from outside lands.)
    let marker = env.path().join("fault-marker");
    let first = env
        .sweep()
        .args(["run", spec])
        .env(
            "SWEEP_FAULT",
            format!("checkpoint_recorded@4:{}", marker.display()),
        )
        .output()
        .unwrap();
    assert!(
        marker.exists(),
        "the fault point was reached: {}",
        text(&first)
    );
    let o = env.run(&["run", spec]);
    assert!(o.status.success(), "{}", text(&o));
    let out = format!("{}{}", text(&first), text(&o));
    assert!(out.contains(": started (attempt 2, from step 4)"), "{out}");
    assert!(stages(&env).iter().all(|(_, s, _)| s == "done"));
    assert_eq!(all_metrics(&env), expected);
    // 40 probe checkpoints were written; each stage keeps only its two newest recorded.
    let mut dirs = vec![env.path().join("runs")];
    let mut probe_dirs = 0;
    while let Some(dir) = dirs.pop() {
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "safetensors") {
                files += 1;
            }
        }
        assert!(files <= 2, "{} holds {files} checkpoints", dir.display());
        probe_dirs += usize::from(files == 2 && dir.to_string_lossy().contains("/eval-"));
    }
    assert_eq!(probe_dirs, 2, "each probe kept its two newest checkpoints");
}
