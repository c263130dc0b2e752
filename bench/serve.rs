//! Dashboard bench, run on demand, not in CI:
//!
//! ```text
//! cargo bench --bench serve -- render [--runs 10000] [--reps 7] [--store PATH]
//! cargo bench --bench serve -- step [--rounds 2]
//! ```
//!
//! `render`: a synthetic Figure 5 sweep of `--runs` pretrain runs (49 cells x seeds, each
//! with linear and kNN evaluations: 3 x runs stages; 60% done with their metrics, 4
//! running, the rest queued) in a SQLite store; the dashboard served in-process on
//! 127.0.0.1; prints the median wall time of each page over HTTP (the sweep page, its
//! live fragment, its version token, the list of sweeps, a run page) and the page size.
//! `--store PATH` fills the store at PATH once (the fill takes about a minute) and runs on
//! a copy of it, so that two builds can be compared on the same rows.
//!
//! `step`: the same small sweep trained three times from scratch by `sweep run` (one
//! worker, one compute thread): with no dashboard, with a dashboard open (a client that
//! does what the page's script does: polls the version every 2 s and fetches the
//! fragment when it moved), and with the sweep page requested back to back (a stress far
//! above any open page). Prints the median training step time of each, from the
//! throughput the worker recorded per step.

#[path = "../tests/integration/common.rs"]
#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use simclr_sweep::ml::config::{AugOp, EvalConfig, PretrainConfig};
use simclr_sweep::store::{MetricRecord, NewStage, NewSweep, StageKind, Store};
use simclr_sweep::vocab::metric;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.iter().find(|a| *a == "render" || *a == "step");
    match what.map(String::as_str) {
        Some("render") => {
            let store = args.windows(2).find(|w| w[0] == "--store").map(|w| &w[1]);
            let (runs, reps) = (arg(&args, "--runs", 10_000), arg(&args, "--reps", 7));
            render(runs, reps, store.map(std::path::Path::new))
        }
        Some("step") => step(arg(&args, "--rounds", 2)),
        _ => {
            render(10_000, 7, None);
            step(2);
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn id(n: usize) -> String {
    format!("{n:064x}")
}

/// Fills a store with a synthetic Figure 5 sweep of `runs` pretrains.
async fn fill(db: &str, runs: usize) {
    let store = Store::open(db).await.unwrap();
    let mut stages = Vec::with_capacity(runs * 3);
    let evals = [
        ("linear@h", EvalConfig::default()),
        ("knn@h", EvalConfig::knn()),
    ];
    for i in 0..runs {
        let (cell, seed) = (i % 49, i / 49);
        let (a, b) = (AugOp::FIGURE5[cell / 7], AugOp::FIGURE5[cell % 7]);
        let ops = if a == b { vec![a] } else { vec![a, b] };
        let mut c = PretrainConfig {
            epochs: 3,
            seed: seed as u64,
            ..Default::default()
        };
        c.augment.ops = ops.clone();
        let names: Vec<&str> = ops.iter().map(|o| o.name()).collect();
        let coords = serde_json::json!({"augment.ops": names, "seed": seed});
        stages.push(NewStage {
            id: id(i),
            stage: StageKind::Pretrain,
            parent_id: None,
            label: "pretrain".into(),
            config: serde_json::to_string(&c).unwrap(),
            dataset_fingerprint: "bench".into(),
            semantics_version: 1,
            cell: coords.to_string(),
        });
        for (k, (label, e)) in evals.iter().enumerate() {
            stages.push(NewStage {
                id: id(runs + 2 * i + k),
                stage: StageKind::Eval,
                parent_id: Some(id(i)),
                label: label.to_string(),
                config: serde_json::to_string(&e).unwrap(),
                dataset_fingerprint: "bench".into(),
                semantics_version: 1,
                cell: coords.to_string(),
            });
        }
    }
    let sweep = NewSweep {
        name: "bench".into(),
        spec_path: "sweeps/augment_pairs.yaml".into(),
        spec_text: "name: bench\n".into(),
        profile: None,
        overrides: vec![],
    };
    store.register(&sweep, &stages).await.unwrap();
    store.close().await;
    // States straight in the table (claiming 30,000 stages one by one would only slow
    // the set-up): 60% done, 4 running on two hosts, the rest queued.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}"))
        .await
        .unwrap();
    let done = runs * 6 / 10;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..runs {
        let (state, host) = if i < done {
            ("done", Some("node1"))
        } else if i < done + 4 {
            ("running", Some(if i % 2 == 0 { "node1" } else { "node2" }))
        } else {
            ("queued", None)
        };
        let mut ids = vec![id(i)];
        if i < done {
            ids.extend([id(runs + 2 * i), id(runs + 2 * i + 1)]);
        }
        for (k, s) in ids.iter().enumerate() {
            sqlx::query(
                "UPDATE runs SET state = ?1, attempts = ?2, lease_host = ?3, lease_owner = ?4, \
                 compute_seconds = ?5, finished_at = ?6 WHERE id = ?7",
            )
            .bind(if k == 0 { state } else { "done" })
            .bind(i64::from(state != "queued"))
            .bind(host)
            .bind((state == "running").then(|| format!("w{i}")))
            .bind(if k == 0 { 30.0 } else { 5.0 })
            .bind((state == "done").then_some(i as i64))
            .bind(s)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    pool.close().await;
    let store = Store::open(db).await.unwrap();
    for i in 0..done {
        let mut m = Vec::new();
        for e in 0..3 {
            m.push(MetricRecord {
                name: metric::EPOCH_LOSS.into(),
                step: e,
                value: 5.0 - e as f64 * 0.3,
            });
            m.push(MetricRecord {
                name: metric::EPOCH_CONTRASTIVE_ACC.into(),
                step: e,
                value: 0.2 + e as f64 * 0.1,
            });
        }
        for s in 0..12 {
            for (n, v) in [
                (metric::TRAIN_LOSS, 5.0),
                (metric::TRAIN_LR, 0.1),
                (metric::TRAIN_CONTRASTIVE_ACC, 0.3),
                (metric::TRAIN_IMAGES_PER_SEC, 900.0),
            ] {
                m.push(MetricRecord {
                    name: n.into(),
                    step: s,
                    value: v - s as f64 * 0.01,
                });
            }
        }
        store.record_metrics(&id(i), &m).await.unwrap();
        for k in 0..2 {
            let top1 = 0.3 + (i % 49) as f64 / 200.0 + k as f64 * 0.01;
            store
                .record_metrics(
                    &id(runs + 2 * i + k),
                    &[
                        MetricRecord {
                            name: metric::EVAL_TOP1.into(),
                            step: 0,
                            value: top1,
                        },
                        MetricRecord {
                            name: metric::EVAL_TOP5.into(),
                            step: 0,
                            value: top1 + 0.3,
                        },
                    ],
                )
                .await
                .unwrap();
        }
    }
    store.close().await;
}

/// Milliseconds of one GET of `url`, and the body size.
fn get(url: &str) -> (f64, usize) {
    let t = Instant::now();
    let body = ureq::get(url).call().unwrap().into_string().unwrap();
    (t.elapsed().as_secs_f64() * 1e3, body.len())
}

/// Median milliseconds of GET `url` over `reps`, each after `before(rep)`, and the size.
fn time_get(url: &str, reps: usize, mut before: impl FnMut(usize) -> String) -> (f64, usize) {
    let mut size = 0;
    let times = (0..reps)
        .map(|rep| {
            let url = format!("{url}{}", before(rep));
            let (ms, n) = get(&url);
            size = n;
            ms
        })
        .collect();
    (median(times), size)
}

/// Starts a dashboard (with nothing kept yet) on `store`; its base URL.
fn start_dashboard(rt: &tokio::runtime::Runtime, store: &Store) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(simclr_sweep::serve::serve(store.clone(), listener));
    base
}

/// What a worker does when a pretrain finishes: its last epoch's metrics, then done.
async fn finish_one(db: &str, runs: usize, k: usize) {
    let i = runs * 6 / 10 + 4 + k;
    let store = Store::open(db).await.unwrap();
    let m = MetricRecord {
        name: metric::EPOCH_LOSS.into(),
        step: 0,
        value: 4.0,
    };
    store.record_metrics(&id(i), &[m]).await.unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}"))
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET state = 'done', attempts = 1, finished_at = ?1 WHERE id = ?2")
        .bind(1_000_000 + k as i64)
        .bind(id(i))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// `kept`: a store filled by an earlier call with the same `runs`, used through a copy.
fn render(runs: usize, reps: usize, kept: Option<&std::path::Path>) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let db = db.to_str().unwrap();
    let rt = rt();
    let fill_into = |path: &str| {
        let t = Instant::now();
        rt.block_on(fill(path, runs));
        println!(
            "filled a store with {runs} pretrain runs ({} stages) in {:.1} s",
            runs * 3,
            t.elapsed().as_secs_f64()
        );
    };
    match kept {
        Some(kept) => {
            if !kept.exists() {
                fill_into(kept.to_str().expect("a UTF-8 path"));
            }
            // One file: the fill closed every connection, so the WAL is checkpointed.
            std::fs::copy(kept, db).unwrap();
        }
        None => fill_into(db),
    }
    let store = rt.block_on(Store::open_read_only(db)).unwrap().unwrap();
    let report = |what: &str, (ms, size): (f64, usize)| {
        println!(
            "RESULT render runs={runs} page=\"{what}\" median_ms={ms:.1} bytes={size} reps={reps}"
        );
    };
    // Cold: a dashboard just started, nothing kept (each rep a new one).
    report(
        "sweep page, cold (dashboard just started)",
        time_get("", reps, |_| start_dashboard(&rt, &store) + "/sweep/bench"),
    );
    let base = start_dashboard(&rt, &store);
    let _ = get(&format!("{base}/sweep/bench"));
    // What an open page sees while a sweep runs: a stage finished since the last view.
    let finished = std::cell::Cell::new(0);
    let after_change = |path: &'static str| {
        let (rt, base, finished) = (&rt, base.clone(), &finished);
        move |_| {
            rt.block_on(finish_one(db, runs, finished.get()));
            finished.set(finished.get() + 1);
            format!("{base}{path}")
        }
    };
    report(
        "sweep page, a stage finished since the last view",
        time_get("", reps, after_change("/sweep/bench")),
    );
    report(
        "sweep live fragment, a stage finished since the last view",
        time_get("", reps, after_change("/sweep/bench/live")),
    );
    report(
        "sweep page 40 of the runs table, a stage finished since the last view",
        time_get("", reps, after_change("/sweep/bench?page=40")),
    );
    let unchanged = |path: String| move |_| path.clone();
    for (what, path) in [
        (
            "sweep live fragment, unchanged",
            "/sweep/bench/live".to_string(),
        ),
        ("sweep version token", "/sweep/bench/version".to_string()),
        ("list of sweeps", "/".to_string()),
        ("run page", format!("/run/{}", id(0))),
    ] {
        report(what, time_get("", reps, unchanged(format!("{base}{path}"))));
    }
}

/// What runs beside the worker.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    None,
    /// What an open page does: the version every 2 s, the fragment when it moved.
    OpenPage,
    /// The sweep page back to back.
    Hammer,
}

fn step(rounds: usize) {
    let spec = "name: s
dataset: {name: cifar10, train_subset: 1000}
base:
  encoder: {arch: convnet}
  batch_size: 64
  epochs: 3
  optimizer: {kind: sgd, lr: 0.05, lr_scaling: none, warmup_epochs: 0}
  evals:
    - {kind: knn, train_subset: 100, test_subset: 20, k: 10}
grid:
  loss.temperature: [0.5, 0.2]
";
    let mut results: Vec<(Load, Vec<f64>, usize)> = vec![
        (Load::None, vec![], 0),
        (Load::OpenPage, vec![], 0),
        (Load::Hammer, vec![], 0),
    ];
    for round in 0..rounds {
        for (load, times, requests) in results.iter_mut() {
            let env = common::Env::new(20);
            let path = env.write("s.yaml", spec);
            let server = (*load != Load::None).then(|| env.serve());
            let stop = Arc::new(AtomicBool::new(false));
            let served = Arc::new(AtomicUsize::new(0));
            let client = server.as_ref().map(|s| {
                let (stop, served, base, load) =
                    (stop.clone(), served.clone(), s.base.clone(), *load);
                std::thread::spawn(move || {
                    let mut token = String::new();
                    while !stop.load(Ordering::SeqCst) {
                        if load == Load::Hammer {
                            if ureq::get(&format!("{base}/sweep/s")).call().is_ok() {
                                served.fetch_add(1, Ordering::SeqCst);
                            }
                            continue;
                        }
                        if let Ok(r) = ureq::get(&format!("{base}/sweep/s/version")).call() {
                            served.fetch_add(1, Ordering::SeqCst);
                            let t = r.into_string().unwrap_or_default();
                            if t != token
                                && ureq::get(&format!("{base}/sweep/s/live")).call().is_ok()
                            {
                                served.fetch_add(1, Ordering::SeqCst);
                                token = t;
                            }
                        }
                        std::thread::sleep(Duration::from_secs(2));
                    }
                })
            });
            let o = env.run(&["run", path.to_str().unwrap(), "--quiet"]);
            stop.store(true, Ordering::SeqCst);
            if let Some(c) = client {
                c.join().unwrap();
            }
            assert!(o.status.success(), "{}", common::text(&o));
            *requests += served.load(Ordering::SeqCst);
            // Step time from the throughput each step recorded (N = 64 images per step).
            let rt = rt();
            let ips: Vec<f64> = rt.block_on(async {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.db().display()))
                    .await
                    .unwrap();
                let v = sqlx::query_scalar(
                    "SELECT value FROM metrics WHERE name = 'train/images_per_sec'",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                pool.close().await;
                v
            });
            let round_times: Vec<f64> = ips.iter().map(|v| 64.0 / v * 1e3).collect();
            println!(
                "round {} {load:?}: median step {:.2} ms over {} steps",
                round + 1,
                median(round_times.clone()),
                round_times.len()
            );
            times.extend(round_times);
        }
    }
    for (load, times, requests) in results {
        println!(
            "RESULT step load={load:?} median_step_ms={:.2} steps={} requests_served={requests}",
            median(times.clone()),
            times.len()
        );
    }
}
