//! `sweep serve` over HTTP on a store filled by a tiny sweep: each page's status and
//! content, escaping of hostile strings that reach the store (a failure reason, a cell
//! value, the spec's path and text), 404s, and two workers writing while pages are
//! served (nothing lost, nothing blocked).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use simclr_sweep::store::{LeaseHolder, NewStage, NewSweep, StageKind, Store};

use crate::common::{text, tiny_spec, Env};

const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_CELL: &str = "<img src=x onerror=alert(2)>";

/// Pretrain ids of a sweep, from `sweep status --json`.
fn stage_ids(env: &Env, sweep: &str, stage: &str) -> Vec<String> {
    let o = env.run(&["status", sweep, "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["stage"] == stage)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// A sweep registered through the store's own API whose one stage failed with a hostile
/// reason and has a hostile cell value (a reason quotes an error message, which may hold
/// any text, such as a file name).
fn add_hostile_sweep(env: &Env) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(env.db().to_str().unwrap()).await.unwrap();
        let sweep = NewSweep {
            name: "hostile".into(),
            spec_path: format!("/tmp/{HOSTILE}.yaml"),
            spec_text: format!("# {HOSTILE}\nname: hostile\n"),
            profile: None,
            overrides: vec![],
        };
        let stage = NewStage {
            id: "f".repeat(64),
            stage: StageKind::Pretrain,
            parent_id: None,
            label: "pretrain".into(),
            config: "{}".into(),
            dataset_fingerprint: "x".into(),
            semantics_version: 1,
            cell: serde_json::json!({ "note": HOSTILE_CELL }).to_string(),
        };
        store.register(&sweep, &[stage]).await.unwrap();
        let me = LeaseHolder {
            id: "w".into(),
            host: "h".into(),
            pid: 1,
        };
        let c = store.claim(Some("hostile"), &me, 60_000, 3).await.unwrap();
        assert!(c.is_some());
        store
            .fail(&"f".repeat(64), &me, HOSTILE, 0.0)
            .await
            .unwrap();
        store.close().await;
    });
}

#[test]
fn pages_show_a_finished_sweep_escape_hostile_strings_and_404_the_unknown() {
    let env = Env::new(2);
    let spec = env.write("t.yaml", &tiny_spec("t", &[0.5, 0.2], 1));
    let o = env.run(&["run", spec.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    add_hostile_sweep(&env);
    let mut server = env.serve();

    let (code, body) = server.get("/");
    assert_eq!(code, 200);
    assert!(body.contains("href=\"/sweep/t\""), "{body}");
    assert!(body.contains("6/6"), "all 6 stages of t done: {body}");
    assert!(body.contains("finished"), "no time left: {body}");
    // The header names the store by its file, never by where it sits on the disk.
    let file = env.db().file_name().unwrap().to_string_lossy().into_owned();
    assert!(body.contains(&format!("store: {file}<")), "{body}");
    let dir = env.db().parent().unwrap().display().to_string();
    assert!(!body.contains(&dir), "the store's directory is not shown");
    // `sweep status NAME` prints the overview the list of sweeps shows.
    let o = env.run(&["status", "t"]);
    assert!(o.status.success(), "{}", text(&o));
    for line in [
        "progress:  6 of 6 stages done, 0 running, 0 queued, 0 failed",
        "time left: finished",
        "workers:   none running",
    ] {
        assert!(text(&o).contains(line), "no {line:?} in\n{}", text(&o));
    }

    let (code, body) = server.get("/sweep/t");
    assert_eq!(code, 200);
    assert!(body.contains("<svg"), "the report's figure inline");
    assert!(body.contains("Table 5"), "the temperature sweep's table");
    assert!(body.contains("All cells"));
    assert!(body.contains("linear@h") && body.contains("knn@h"));
    let pretrains = stage_ids(&env, "t", "pretrain");
    assert_eq!(pretrains.len(), 2);
    for id in &pretrains {
        assert!(body.contains(&format!("href=\"/run/{id}\"")), "{id} linked");
    }
    assert!(body.contains("st-done"), "states shown");
    assert!(body.contains("1/1"), "epochs done/planned");
    assert!(
        body.contains("data-version=\"/sweep/t/version\""),
        "self-refresh"
    );

    let (code, body) = server.get(&format!("/run/{}", pretrains[0]));
    assert_eq!(code, 200);
    for part in [
        "Training curves",
        "<svg",
        "learning rate",
        "throughput",
        "Checkpoints",
        "Evaluations",
        "temperature",
    ] {
        assert!(body.contains(part), "run page has {part}");
    }
    let evals = stage_ids(&env, "t", "eval");
    let (code, body) = server.get(&format!("/run/{}", evals[0]));
    assert_eq!(code, 200);
    assert!(body.contains("eval/top1"), "an evaluation's results");

    // The live parts: a version token that moves only when the store does, a fragment.
    let (code, v1) = server.get("/sweep/t/version");
    assert_eq!(code, 200);
    assert_eq!(
        server.get("/sweep/t/version").1,
        v1,
        "stable while nothing changes"
    );
    let (code, frag) = server.get("/sweep/t/live");
    assert_eq!(code, 200);
    assert!(frag.contains("Runs") && !frag.contains("<html"));
    assert_eq!(server.get("/version").0, 200);
    assert_eq!(server.get(&format!("/run/{}/version", pretrains[0])).0, 200);

    // Hostile strings reach the pages only escaped.
    for path in [
        "/",
        "/sweep/hostile",
        "/sweep/hostile/live",
        &format!("/run/{}", "f".repeat(64)),
    ] {
        let (code, body) = server.get(path);
        assert_eq!(code, 200, "{path}");
        assert!(!body.contains(HOSTILE), "{path} leaks markup");
        assert!(!body.contains(HOSTILE_CELL), "{path} leaks markup");
    }
    let (_, body) = server.get("/sweep/hostile");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(body.contains("st-failed"));
    let (_, body) = server.get(&format!("/run/{}", "f".repeat(64)));
    assert!(
        body.contains("note=&lt;img src=x onerror=alert(2)&gt;"),
        "{body}"
    );

    for path in [
        "/nope",
        "/sweep/nope",
        "/sweep/nope/live",
        "/sweep/nope/version",
        "/run/nope",
        "/run/nope/version",
        "/sweep/t/extra/x",
        &format!("/sweep/{}", "%3Cscript%3E"),
    ] {
        let (code, body) = server.get(path);
        assert_eq!(code, 404, "{path}");
        assert!(body.contains("Not found"), "{path}: {body}");
        assert!(!body.contains("<script>alert"), "{path}");
    }

    // SIGTERM (as Ctrl-C) stops the dashboard with the interrupted exit code.
    assert_eq!(server.stop(), Some(130));
}

#[test]
fn two_workers_writing_while_pages_are_served_lose_nothing() {
    let env = Env::new(2);
    let spec = env.write("w.yaml", &tiny_spec("w", &[0.5, 0.4, 0.3, 0.2], 2));
    let server = env.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, served, base) = (stop.clone(), served.clone(), server.base.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for path in ["/sweep/w", "/sweep/w/version", "/", "/sweep/w/live"] {
                    if let Ok(r) = ureq::get(&format!("{base}{path}")).call() {
                        assert_eq!(r.status(), 200);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let o = env.run(&["run", spec.to_str().unwrap(), "--workers", "2", "--quiet"]);
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        served.load(Ordering::SeqCst) > 10,
        "pages were served meanwhile"
    );
    let o = env.run(&["status", "w", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 12);
    for r in rows {
        assert_eq!(r["state"], "done", "{r}");
        assert_eq!(r["attempts"], 1, "no lease lost, no retry: {r}");
    }
    // Every step's metrics are there: 40 images / batch 10 = 4 steps x 2 epochs per run.
    let n: i64 = env.query(async |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM metrics WHERE name = 'train/loss'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(n, 4 * 4 * 2, "no metric lost");
    let (code, body) = server.get("/sweep/w");
    assert_eq!(code, 200);
    assert!(body.contains("12 of 12 stages done"), "{body}");
}
