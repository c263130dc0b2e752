//! Store tests, one suite for both backends: each test runs on a fresh SQLite file in a
//! temp dir and, when `SWEEP_TEST_PG_URL` names a PostgreSQL database, on a fresh schema
//! of it (dropped afterwards). Without that variable the PostgreSQL half prints why it
//! skips; with `SWEEP_REQUIRE_CLUSTER=1` (CI) the skip is a failure. Migrations,
//! idempotent registration, shared runs, claims and leases (also under concurrency),
//! metric upserts, refusing foreign databases.

use std::future::Future;
use std::path::PathBuf;

use super::*;
use crate::ml::Checkpoint;
use crate::vocab::StageKind;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One test's database.
struct Db {
    /// What `Store::open` takes.
    location: String,
    backend: Backend,
    /// The SQLite file (SQLite only).
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn open(&self) -> Store {
        Store::open(&self.location).await.unwrap()
    }

    /// Runs `sql` on a connection of its own (not the store's), e.g. to fake another
    /// application's table or a newer schema.
    async fn raw(&self, sql: &str) {
        sqlx::any::install_default_drivers();
        let url = match self.backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", self.file.display()),
            Backend::Postgres => self.location.clone(),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// Changes whenever a write was committed: the SQLite file's bytes (after close), or
    /// the PostgreSQL rows' creating transaction ids.
    async fn written(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => std::fs::read(&self.file).unwrap(),
            Backend::Postgres => {
                let pool = sqlx::AnyPool::connect(&self.location).await.unwrap();
                let v: Option<String> = sqlx::query_scalar(
                    "SELECT string_agg(x, ',') FROM (SELECT xmin::text AS x FROM sweeps \
                     UNION ALL SELECT xmin::text FROM runs UNION ALL SELECT xmin::text FROM sweep_runs) t",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                pool.close().await;
                v.unwrap_or_default().into_bytes()
            }
        }
    }
}

/// Runs `test` on a fresh SQLite database.
fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sweeps.db");
    let db = Db {
        location: file.to_string_lossy().into_owned(),
        backend: Backend::Sqlite,
        file,
        _dir: dir,
    };
    rt().block_on(test(db));
}

/// Runs `test` on a fresh schema of the PostgreSQL database `SWEEP_TEST_PG_URL` names;
/// skips (saying why) when it is unset, unless `SWEEP_REQUIRE_CLUSTER=1`.
fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(url) = std::env::var("SWEEP_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("SWEEP_REQUIRE_CLUSTER").as_deref() != Ok("1"),
            "SWEEP_REQUIRE_CLUSTER=1 but SWEEP_TEST_PG_URL is unset: start one with \
             `eval \"$(bash .ci/pg_up.sh)\"`"
        );
        eprintln!(
            "skipped {name} on PostgreSQL: SWEEP_TEST_PG_URL is unset \
             (`eval \"$(bash .ci/pg_up.sh)\"` starts a throwaway server)"
        );
        return;
    };
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("t_{name}_{}_{nanos}", std::process::id());
    let schema: String = schema.chars().take(63).collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = Db {
        location: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        backend: Backend::Postgres,
        file: PathBuf::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let rt = rt();
    rt.block_on(async {
        let admin = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
    rt.block_on(test(db));
    rt.block_on(async {
        let admin = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    });
}

/// Declares a test of the suite: `NAME::sqlite` and `NAME::postgres`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::on_sqlite(super::$name);
            }
            #[test]
            fn postgres() {
                super::on_postgres(stringify!($name), super::$name);
            }
        }
    )*};
}

both_backends!(
    migrations_apply_to_an_empty_database_and_reopen_an_existing_one,
    registering_the_same_sweep_twice_changes_nothing,
    two_sweeps_share_a_run_stored_once,
    claims_respect_dependencies_leases_and_attempt_caps,
    a_released_run_keeps_its_attempts_and_is_claimed_again,
    metrics_written_twice_are_stored_once,
    concurrent_claims_hand_out_each_run_exactly_once,
    foreign_and_newer_databases_are_refused,
    read_only_open_of_a_missing_database_creates_nothing,
    slurm_jobs_are_recorded_per_sweep,
    dashboard_queries_follow_the_store,
    a_sweep_version_moves_with_each_change_and_names_the_stages_that_moved,
    bulk_reads_return_every_value_exactly_as_a_row_read_does,
    concurrent_writers_stamp_changes_in_commit_order,
    a_first_view_reads_stages_and_each_distinct_config_once,
);

fn sweep(name: &str, text: &str) -> NewSweep {
    NewSweep {
        name: name.into(),
        spec_path: format!("sweeps/{name}.yaml"),
        spec_text: text.into(),
        profile: None,
        overrides: vec![],
    }
}

fn pretrain(id: &str) -> NewStage {
    NewStage {
        id: id.into(),
        stage: StageKind::Pretrain,
        parent_id: None,
        label: "pretrain".into(),
        config: "{}".into(),
        dataset_fingerprint: "fp".into(),
        semantics_version: 1,
        cell: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn eval(id: &str, parent: &str) -> NewStage {
    NewStage {
        stage: StageKind::Eval,
        parent_id: Some(parent.into()),
        label: "linear@h".into(),
        ..pretrain(id)
    }
}

fn worker(id: &str) -> LeaseHolder {
    LeaseHolder {
        id: id.into(),
        host: "localhost".into(),
        pid: 1,
    }
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        step: 1,
        epoch: 1,
        path: "c".into(),
        sha256: "h".into(),
    }
}

async fn migrations_apply_to_an_empty_database_and_reopen_an_existing_one(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1")])
        .await
        .unwrap();
    s.close().await;
    let s = db.open().await;
    assert_eq!(
        s.sweeps().await.unwrap().len(),
        1,
        "data survives reopening"
    );
    s.close().await;
}

async fn registering_the_same_sweep_twice_changes_nothing(db: Db) {
    let stages = [pretrain("p1"), eval("e1", "p1"), pretrain("p2")];
    let s = db.open().await;
    let first = s.register(&sweep("a", "x"), &stages).await.unwrap();
    assert_eq!((first.new_stages, first.changed), (3, true));
    s.close().await;
    let before = db.written().await;
    let s = db.open().await;
    let again = s.register(&sweep("a", "x"), &stages).await.unwrap();
    assert_eq!(
        again,
        Registered {
            new_stages: 0,
            existing_stages: 3,
            changed: false
        }
    );
    s.close().await;
    assert!(before == db.written().await, "nothing was written");
    // An edited spec is a change.
    let s = db.open().await;
    assert!(s.register(&sweep("a", "y"), &stages).await.unwrap().changed);
    // So is a new set of stages under the same spec (new data: new ids), and it moves the
    // sweep's version, which the dashboard keeps stage rows under.
    let version = s.sweep("a").await.unwrap().updated_at;
    let fewer = [pretrain("p1"), eval("e1", "p1")];
    assert!(s.register(&sweep("a", "y"), &fewer).await.unwrap().changed);
    assert!(s.sweep("a").await.unwrap().updated_at > version);
    s.close().await;
    assert!(before != db.written().await);
}

async fn two_sweeps_share_a_run_stored_once(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1"), pretrain("p2")])
        .await
        .unwrap();
    let b = s
        .register(&sweep("b", "y"), &[pretrain("p2"), pretrain("p3")])
        .await
        .unwrap();
    assert_eq!((b.new_stages, b.existing_stages), (1, 1));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
    // Finishing the shared run in one sweep finishes it in the other.
    let w = worker("w");
    let c = s.claim(Some("b"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p2");
    s.record_checkpoint("p2", &checkpoint()).await.unwrap();
    assert!(s.finish("p2", &w, 1.0).await.unwrap());
    let a = s.sweep_runs("a").await.unwrap();
    assert_eq!(a[1].state, RunState::Done);
    assert_eq!(
        a[1].lease_host.as_deref(),
        Some("localhost"),
        "the finishing host is kept"
    );
    assert_eq!(a[1].lease_owner, None, "the lease itself is released");
    let summary = s.sweeps().await.unwrap();
    let a = summary.iter().find(|x| x.name == "a").unwrap();
    assert_eq!((a.done, a.queued, a.running, a.failed), (1, 1, 0, 0));
    s.close().await;
}

async fn claims_respect_dependencies_leases_and_attempt_caps(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1"), eval("e1", "p1")])
        .await
        .unwrap();
    let (w1, w2) = (worker("w1"), worker("w2"));
    let c = s.claim(None, &w1, 60_000, 2).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p1");
    assert!(
        s.claim(None, &w2, 60_000, 2).await.unwrap().is_none(),
        "eval waits for its pretrain"
    );
    // A pretrain without a checkpoint cannot be done.
    assert!(!s.finish("p1", &w1, 1.0).await.unwrap());
    // w1 dies: its lease expires (lease 0 ms) and w2 takes the run over.
    assert!(s.heartbeat("p1", &w1, -1).await.unwrap());
    let c = s.claim(None, &w2, 60_000, 2).await.unwrap().unwrap();
    assert_eq!((c.run.id.as_str(), c.run.attempts), ("p1", 2));
    assert!(
        !s.heartbeat("p1", &w1, 60_000).await.unwrap(),
        "w1 lost its lease"
    );
    // w2 dies too: the attempt cap turns the run (and its eval) failed.
    assert!(s.heartbeat("p1", &w2, -1).await.unwrap());
    assert!(s.claim(None, &w1, 60_000, 2).await.unwrap().is_none());
    let runs = s.sweep_runs("a").await.unwrap();
    assert_eq!(runs[0].state, RunState::Failed);
    assert!(runs[0].failure.as_deref().unwrap().contains("heartbeat"));
    assert_eq!(
        runs[1].state,
        RunState::Failed,
        "the eval cannot run without its pretrain"
    );
    assert_eq!(s.retry_failed("a").await.unwrap(), 2);
    let c = s.claim(None, &w1, 60_000, 2).await.unwrap().unwrap();
    assert_eq!((c.run.id.as_str(), c.run.attempts), ("p1", 1));
    // Once the pretrain is done, its eval is claimable, with the pretrain's config.
    s.record_checkpoint("p1", &checkpoint()).await.unwrap();
    assert!(s.finish("p1", &w1, 1.0).await.unwrap());
    let c = s.claim(Some("a"), &w2, 60_000, 2).await.unwrap().unwrap();
    assert_eq!(c.run.id, "e1");
    assert_eq!(c.parent_config.as_deref(), Some("{}"));
    assert!(
        s.claim(Some("other"), &w1, 60_000, 2)
            .await
            .unwrap()
            .is_none(),
        "the sweep filter holds"
    );
    s.close().await;
}

async fn a_released_run_keeps_its_attempts_and_is_claimed_again(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1")])
        .await
        .unwrap();
    let w = worker("w");
    s.claim(None, &w, 60_000, 3).await.unwrap().unwrap();
    s.release("p1", &w, 2.5).await.unwrap();
    let c = s.claim(None, &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.attempts, 1, "a graceful stop does not use an attempt");
    assert_eq!(c.run.compute_seconds, 2.5);
    s.close().await;
}

async fn metrics_written_twice_are_stored_once(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1")])
        .await
        .unwrap();
    let m = |step, value| MetricRecord {
        name: "train/loss".into(),
        step,
        value,
    };
    s.record_metrics("p1", &[m(0, 5.0), m(1, 4.0)])
        .await
        .unwrap();
    s.record_metrics("p1", &[m(1, 4.0), m(2, 3.0)])
        .await
        .unwrap(); // replay after a crash
    let got = s.metrics("p1").await.unwrap();
    assert_eq!(
        got.iter().map(|m| (m.step, m.value)).collect::<Vec<_>>(),
        [(0, 5.0), (1, 4.0), (2, 3.0)]
    );
    s.close().await;
}

/// Eight workers, each with its own connection pool, drain 24 runs at once: every run
/// is handed out exactly once.
async fn concurrent_claims_hand_out_each_run_exactly_once(db: Db) {
    let s = db.open().await;
    let stages: Vec<NewStage> = (0..24).map(|i| pretrain(&format!("p{i:02}"))).collect();
    s.register(&sweep("a", "x"), &stages).await.unwrap();
    s.close().await;
    // Eight stores opened one after the other (opening a SQLite file takes a blocking
    // flock), then draining concurrently as local tasks on this thread.
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(Store::open(&db.location).await.unwrap());
    }
    let local = tokio::task::LocalSet::new();
    let all = local
        .run_until(async {
            let handles: Vec<_> = stores
                .into_iter()
                .enumerate()
                .map(|(w, s)| {
                    tokio::task::spawn_local(async move {
                        let me = worker(&format!("w{w}"));
                        let mut got = Vec::new();
                        while let Some(c) = s.claim(Some("a"), &me, 60_000, 3).await.unwrap() {
                            s.record_checkpoint(&c.run.id, &checkpoint()).await.unwrap();
                            assert!(s.finish(&c.run.id, &me, 0.1).await.unwrap());
                            got.push(c.run.id);
                            tokio::task::yield_now().await;
                        }
                        s.close().await;
                        got
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.extend(h.await.unwrap());
            }
            all
        })
        .await;
    let mut all = all;
    all.sort();
    let want: Vec<String> = stages.iter().map(|s| s.id.clone()).collect();
    assert_eq!(all, want, "each run claimed exactly once");
    let s = db.open().await;
    let runs = s.sweep_runs("a").await.unwrap();
    assert!(runs
        .iter()
        .all(|r| r.state == RunState::Done && r.attempts == 1));
    s.close().await;
}

async fn foreign_and_newer_databases_are_refused(db: Db) {
    // Another application's tables: refused, and left alone.
    db.raw("CREATE TABLE users (id INTEGER)").await;
    let e = Store::open(&db.location).await.unwrap_err();
    assert!(e.to_string().contains("not a simclr-sweep database"), "{e}");
    db.raw("DROP TABLE users").await;
    // Ours, but migrated by a newer `sweep`.
    let s = db.open().await;
    s.close().await;
    db.raw(match db.backend {
        Backend::Sqlite => "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (99990101000000, 'future', '2099-01-01', 1, x'00', 0)",
        Backend::Postgres => "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'future', TRUE, '\\x00', 0)",
    })
    .await;
    let e = Store::open(&db.location).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 99990101000000,
                ..
            }
        ),
        "{e}"
    );
    let e = Store::open_read_only(&db.location).await.unwrap_err();
    assert!(matches!(e, StoreError::NewerSchema { .. }), "{e}");
}

async fn read_only_open_of_a_missing_database_creates_nothing(db: Db) {
    assert!(Store::open_read_only(&db.location).await.unwrap().is_none());
    match db.backend {
        Backend::Sqlite => assert!(!db.file.exists()),
        Backend::Postgres => {
            let pool = sqlx::AnyPool::connect(&db.location).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            assert_eq!(n, 0);
        }
    }
    // And a read-only store cannot write.
    db.open().await.close().await;
    let ro = Store::open_read_only(&db.location).await.unwrap().unwrap();
    assert!(ro.register(&sweep("a", "x"), &[]).await.is_err());
    ro.close().await;
}

async fn slurm_jobs_are_recorded_per_sweep(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1")])
        .await
        .unwrap();
    let job = SlurmJobRecord {
        job_id: "42".into(),
        sweep: "a".into(),
        workers: 4,
        log_dir: "/shared/runs/slurm-logs".into(),
        submitted_at: 7,
    };
    s.record_slurm_job(&job).await.unwrap();
    s.record_slurm_job(&job).await.unwrap();
    assert_eq!(s.slurm_jobs("a").await.unwrap(), [job]);
    assert!(s.slurm_jobs("b").await.unwrap().is_empty());
    s.close().await;
}

/// SQLite only: files that are not databases, or databases of other programs, are
/// refused and left byte-identical.
#[test]
fn foreign_files_are_refused_without_being_touched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let content = "hello, this is not a database at all, just some text......";
    std::fs::write(&text, content).unwrap();
    rt().block_on(async {
        let e = Store::open(text.to_str().unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::NotOurs { .. }), "{e}");
    });
    assert_eq!(std::fs::read_to_string(&text).unwrap(), content);
}

/// The dashboard's read-only queries: change tokens move with what the pages show (a
/// claim, a metric, a finish) and stay put otherwise; a sweep's metrics in one query.
async fn dashboard_queries_follow_the_store(db: Db) {
    let s = db.open().await;
    s.register(&sweep("a", "x"), &[pretrain("p1"), eval("e1", "p1")])
        .await
        .unwrap();
    let all0 = s.change_token().await.unwrap();
    let sweep0 = s.sweep_version("a").await.unwrap().unwrap();
    let run0 = s.run_change_token("p1").await.unwrap().unwrap();
    assert_eq!(
        s.change_token().await.unwrap(),
        all0,
        "stable while nothing changes"
    );
    assert_eq!(s.sweep_version("nope").await.unwrap(), None);
    assert_eq!(s.run_change_token("nope").await.unwrap(), None);
    assert!(s.run("nope").await.unwrap().is_none());

    let w = worker("w1");
    let c = s.claim(Some("a"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p1");
    let sweep1 = s.sweep_version("a").await.unwrap().unwrap();
    assert_ne!(sweep1, sweep0, "a claim moves the sweep's token");
    assert_ne!(s.change_token().await.unwrap(), all0);
    let m = |name: &str, step| MetricRecord {
        name: name.into(),
        step,
        value: 1.5,
    };
    s.record_metrics("p1", &[m("train/loss", 0), m("epoch/loss", 0)])
        .await
        .unwrap();
    assert_ne!(s.run_change_token("p1").await.unwrap().unwrap(), run0);
    let only = s.sweep_metrics("a", Some(&["epoch/loss"])).await.unwrap();
    assert_eq!(only["p1"], [m("epoch/loss", 0)]);
    let every = s.sweep_metrics("a", None).await.unwrap();
    assert_eq!(every["p1"].len(), 2);
    assert!(!every.contains_key("e1"));
    // Each metric's last step only, with how many steps it has: three epochs recorded,
    // the last one first (a replay may write out of order).
    let loss = |step, value| MetricRecord {
        value,
        ..m("epoch/loss", step)
    };
    s.record_metrics("p1", &[loss(2, 0.25), loss(1, 0.5)])
        .await
        .unwrap();
    let names = ["epoch/loss", "train/loss", "eval/top1"];
    let last = s.sweep_last_metrics("a", &names).await.unwrap();
    let shown = |m: &LastMetric| (m.last.clone(), m.steps);
    assert_eq!(
        last["p1"].iter().map(shown).collect::<Vec<_>>(),
        [(loss(2, 0.25), 3), (m("train/loss", 0), 1)]
    );
    assert!(!last.contains_key("e1"));
    let of = s
        .last_metrics_of_stages(&["p1", "e1"], &names)
        .await
        .unwrap();
    assert_eq!(of, last);
    assert!(s.sweep_last_metrics("b", &names).await.unwrap().is_empty());

    s.record_checkpoint("p1", &checkpoint()).await.unwrap();
    assert!(s.finish("p1", &w, 2.0).await.unwrap());
    assert_ne!(s.sweep_version("a").await.unwrap().unwrap(), sweep1);
    let briefs = s.stage_briefs().await.unwrap();
    assert_eq!(briefs.len(), 2);
    let pre = briefs.iter().find(|b| b.stage == StageKind::Pretrain);
    assert_eq!(
        pre.map(|b| (b.state, b.count, b.compute_seconds)),
        Some((RunState::Done, 1, 2.0))
    );
    let r = s.run("p1").await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.cell.as_str()),
        (RunState::Done, "{\"id\":\"p1\"}")
    );
    assert_eq!(s.sweeps_of_run("p1").await.unwrap(), ["a"]);
    let evals = s.evaluations_of("p1").await.unwrap();
    assert_eq!(evals.len(), 1);
    assert_eq!(evals[0].id, "e1");
    s.close().await;
}

/// What the dashboard's first view of a sweep reads: the stages in grid order without
/// their configs, the distinct configs with the stages that have each (evaluations that
/// share a text share one entry; the grouping is the database's, so both backends must
/// agree), and the metrics of each stage in (name, step) order, whatever order they
/// were recorded in.
async fn a_first_view_reads_stages_and_each_distinct_config_once(db: Db) {
    let s = db.open().await;
    let with = |mut st: NewStage, config: &str| {
        st.config = config.into();
        st
    };
    let stages = [
        with(pretrain("p1"), "{\"seed\":1}"),
        with(eval("e1", "p1"), "{\"kind\":\"linear\"}"),
        with(eval("k1", "p1"), "{\"kind\":\"knn\"}"),
        with(pretrain("p2"), "{\"seed\":2}"),
        with(eval("e2", "p2"), "{\"kind\":\"linear\"}"),
        with(eval("k2", "p2"), "{\"kind\":\"knn\"}"),
    ];
    s.register(&sweep("a", "x"), &stages).await.unwrap();
    let rows = s.sweep_stages("a").await.unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["p1", "e1", "k1", "p2", "e2", "k2"], "grid order");
    assert!(rows.iter().all(|r| r.config.is_empty()));
    assert!(s.sweep_stages("nope").await.unwrap().is_empty());

    let sorted = |mut configs: Vec<SharedConfig>| {
        for c in &mut configs {
            c.ids.sort();
        }
        configs.sort_by(|a, b| a.ids.cmp(&b.ids));
        configs
            .into_iter()
            .map(|c| (c.stage, c.text, c.ids.join(" ")))
            .collect::<Vec<_>>()
    };
    let text = |t: &str| t.to_string();
    assert_eq!(
        sorted(s.sweep_configs("a").await.unwrap()),
        [
            (
                StageKind::Eval,
                text("{\"kind\":\"linear\"}"),
                text("e1 e2")
            ),
            (StageKind::Eval, text("{\"kind\":\"knn\"}"), text("k1 k2")),
            (StageKind::Pretrain, text("{\"seed\":1}"), text("p1")),
            (StageKind::Pretrain, text("{\"seed\":2}"), text("p2")),
        ]
    );
    assert_eq!(
        sorted(s.configs_of_stages(&["e2", "p1", "nope"]).await.unwrap()),
        [
            (StageKind::Eval, text("{\"kind\":\"linear\"}"), text("e2")),
            (StageKind::Pretrain, text("{\"seed\":1}"), text("p1")),
        ]
    );

    let m = |name: &str, step| MetricRecord {
        name: name.into(),
        step,
        value: step as f64,
    };
    let recorded = [m("train/loss", 1), m("epoch/loss", 1), m("train/loss", 0)];
    s.record_metrics("p1", &recorded).await.unwrap();
    s.record_metrics("p1", &[m("epoch/loss", 0)]).await.unwrap();
    let in_order = [
        m("epoch/loss", 0),
        m("epoch/loss", 1),
        m("train/loss", 0),
        m("train/loss", 1),
    ];
    assert_eq!(s.sweep_metrics("a", None).await.unwrap()["p1"], in_order);
    assert_eq!(
        s.metrics_of_stages(&["p1"], None).await.unwrap()["p1"],
        in_order
    );
    s.close().await;
}

/// The bulk reads (one JSON text per query) against the row-by-row reads: every string
/// as stored (quotes, backslashes, newlines, non-ASCII, text that looks like JSON), every
/// double bit for bit (SQLite's JSON writes only 15 digits: 0.1 + 0.2 would come back
/// 0.3), infinities too (a diverged loss). Not -0.0: SQLite stores it as 0.
async fn bulk_reads_return_every_value_exactly_as_a_row_read_does(db: Db) {
    let s = db.open().await;
    let hostile = "lab\"el\\ \n\t é 漢 {\"a\": [1]}";
    let mut p1 = pretrain("p1");
    p1.label = hostile.into();
    p1.config = format!("{{\"note\": {}}}", serde_json::json!(hostile));
    p1.cell = serde_json::json!({ "label": hostile }).to_string();
    s.register(&sweep("a", "x"), &[p1, eval("e1", "p1"), pretrain("p2")])
        .await
        .unwrap();
    let w = worker("w1");
    let claim = || async {
        s.claim(Some("a"), &w, 60_000, 3)
            .await
            .unwrap()
            .unwrap()
            .run
            .id
    };
    assert_eq!(claim().await, "p1");
    let values = [
        0.1 + 0.2,
        1.0 / 3.0,
        -1.234_567_890_123_456_7e-5,
        5e-324,
        1e-310,
        f64::MAX,
        f64::MIN_POSITIVE,
        2.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let metrics: Vec<MetricRecord> = (values.iter().enumerate())
        .map(|(step, &value)| MetricRecord {
            name: "epoch/loss".into(),
            step: step as i64,
            value,
        })
        .collect();
    s.record_metrics("p1", &metrics).await.unwrap();
    s.record_checkpoint("p1", &checkpoint()).await.unwrap();
    assert!(s.finish("p1", &w, 0.1 + 0.2).await.unwrap());
    assert_eq!(claim().await, "e1");
    s.fail("e1", &w, hostile, 1.0 / 3.0).await.unwrap();

    let bits = |m: &[MetricRecord]| {
        m.iter()
            .map(|m| (m.step, m.value.to_bits()))
            .collect::<Vec<_>>()
    };
    let by_row = s.metrics("p1").await.unwrap();
    assert_eq!(bits(&by_row), bits(&metrics), "the row read as recorded");
    let bulk = s.sweep_metrics("a", None).await.unwrap();
    assert_eq!(bits(&bulk["p1"]), bits(&metrics));
    let of = s.metrics_of_stages(&["p1"], None).await.unwrap();
    assert_eq!(bits(&of["p1"]), bits(&metrics));
    let last = s.sweep_last_metrics("a", &["epoch/loss"]).await.unwrap();
    let last = &last["p1"][0];
    assert_eq!((last.last.step, last.steps), (9, values.len()));
    assert_eq!(last.last.value, f64::NEG_INFINITY);

    let bulk = s.sweep_runs("a").await.unwrap();
    assert_eq!(bulk.len(), 3);
    for r in &bulk {
        let by_row = s.run(&r.id).await.unwrap().unwrap();
        assert_eq!(r, &by_row, "stage {}", r.id);
        assert_eq!(
            r.compute_seconds.to_bits(),
            by_row.compute_seconds.to_bits()
        );
    }
    assert_eq!(bulk[0].label, hostile);
    assert_eq!(bulk[0].compute_seconds.to_bits(), (0.1f64 + 0.2).to_bits());
    assert_eq!(bulk[1].failure.as_deref(), Some(hostile));
    let configs = s.configs_of_stages(&["p1"]).await.unwrap();
    assert_eq!(configs[0].text, bulk[0].config);
    s.close().await;
}

/// The change counters: every write a sweep's page shows moves the sweep's version, and
/// the stages changed since a version are exactly those it touched (a failed pretrain's
/// evaluations with it); a heartbeat moves nothing; a stage shared by two sweeps moves
/// both; a stage of another sweep moves only that one.
async fn a_sweep_version_moves_with_each_change_and_names_the_stages_that_moved(db: Db) {
    let s = db.open().await;
    s.register(
        &sweep("a", "x"),
        &[pretrain("p1"), eval("e1", "p1"), pretrain("p2")],
    )
    .await
    .unwrap();
    s.register(&sweep("b", "y"), &[pretrain("p2"), pretrain("q")])
        .await
        .unwrap();
    let version = |name: &'static str| {
        let s = &s;
        async move { s.sweep_version(name).await.unwrap().unwrap() }
    };
    // The ids that moved in sweep `name` since `v`, sorted, and its version now.
    let moved = |name: &'static str, v: SweepVersion| {
        let s = &s;
        async move {
            let now = s.sweep_version(name).await.unwrap().unwrap();
            assert_eq!(now.membership, v.membership);
            let mut ids: Vec<String> = s
                .sweep_stages_changed_since(name, v.changed)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            ids.sort();
            assert_eq!(
                ids.is_empty(),
                now.changed == v.changed,
                "{ids:?} {v:?} {now:?}"
            );
            (ids, now)
        }
    };
    let a0 = version("a").await;
    let b0 = version("b").await;
    let w = worker("w1");
    let c = s.claim(Some("a"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p1");
    let (ids, a1) = moved("a", a0).await;
    assert_eq!(ids, ["p1"]);
    assert_eq!(moved("b", b0).await.0, Vec::<String>::new());
    assert!(s.heartbeat("p1", &w, 60_000).await.unwrap());
    assert_eq!(
        moved("a", a1).await.0,
        Vec::<String>::new(),
        "a heartbeat shows nothing"
    );
    let m = MetricRecord {
        name: "epoch/loss".into(),
        step: 0,
        value: 1.5,
    };
    s.record_metrics("p1", std::slice::from_ref(&m))
        .await
        .unwrap();
    let (ids, a2) = moved("a", a1).await;
    assert_eq!(ids, ["p1"], "a metric moves its stage");
    s.record_metrics("p1", std::slice::from_ref(&m))
        .await
        .unwrap();
    assert_eq!(
        moved("a", a2).await.0,
        Vec::<String>::new(),
        "the same value again"
    );
    // The pretrain fails: its queued evaluation fails with it.
    s.fail("p1", &w, "boom", 1.0).await.unwrap();
    let (ids, a3) = moved("a", a2).await;
    assert_eq!(ids, ["e1", "p1"]);
    // Requeued by a retry.
    assert_eq!(s.retry_failed("a").await.unwrap(), 2);
    let (ids, a4) = moved("a", a3).await;
    assert_eq!(ids, ["e1", "p1"]);
    // p2 is in both sweeps: both move; q only in b.
    let c = s.claim(Some("b"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p2");
    let (ids, a5) = moved("a", a4).await;
    assert_eq!(ids, ["p2"]);
    let (ids, b1) = moved("b", b0).await;
    assert_eq!(ids, ["p2"]);
    s.release("p2", &w, 0.5).await.unwrap();
    assert_eq!(moved("a", a5).await.0, ["p2"]);
    let c = s.claim(Some("b"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(c.run.id, "p2", "grid order");
    s.record_checkpoint("p2", &checkpoint()).await.unwrap();
    assert!(s.finish("p2", &w, 1.0).await.unwrap());
    let q = s.claim(Some("b"), &w, 60_000, 3).await.unwrap().unwrap();
    assert_eq!(q.run.id, "q");
    let (_, a6) = moved("a", a5).await;
    let (ids, _) = moved("b", b1).await;
    assert_eq!(ids, ["p2", "q"]);
    assert_eq!(moved("a", a6).await.0, Vec::<String>::new());
    // The list's token moves with any sweep.
    let all = s.change_token().await.unwrap();
    s.record_metrics("q", &[m]).await.unwrap();
    assert_ne!(s.change_token().await.unwrap(), all);
    s.close().await;
}

/// Writers on several connections at once: each change's stamp is above every version a
/// reader saw before it committed, so a reader that follows the versions misses nothing.
async fn concurrent_writers_stamp_changes_in_commit_order(db: Db) {
    let s = db.open().await;
    let ids: Vec<String> = (0..24).map(|i| format!("p{i:02}")).collect();
    let stages: Vec<NewStage> = ids.iter().map(|id| pretrain(id)).collect();
    s.register(&sweep("a", "x"), &stages).await.unwrap();
    let writers: Vec<_> = ids
        .chunks(6)
        .map(|chunk| {
            let (s, chunk) = (s.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for id in chunk {
                    for step in 0..3 {
                        let m = MetricRecord {
                            name: "train/loss".into(),
                            step,
                            value: 1.0,
                        };
                        s.record_metrics(&id, &[m]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    // A reader that follows the versions, reading the stages that moved and keeping
    // what it read of each (its metrics), as the dashboard does.
    let mut seen = s.sweep_version("a").await.unwrap().unwrap();
    let mut kept: std::collections::BTreeMap<String, usize> = Default::default();
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let now = s.sweep_version("a").await.unwrap().unwrap();
        for r in s
            .sweep_stages_changed_since("a", seen.changed)
            .await
            .unwrap()
        {
            let n = s.metrics(&r.id).await.unwrap().len();
            kept.insert(r.id, n);
        }
        seen = now;
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    // What the reader kept is what the store holds: it missed no stage's last change.
    let all: Vec<(String, usize)> = ids.iter().map(|id| (id.clone(), 3)).collect();
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), all);
    s.close().await;
}

/// A store an older `sweep` wrote (before the change counters) is behind: a read-only
/// open says so (the dashboard then brings it up to date), and opening it for writing
/// migrates it: its sweeps' versions then move with their stages.
#[test]
fn a_store_from_before_the_change_counters_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for f in [
        "20261128000001_initial.sql",
        "20261201000002_slurm_jobs.sql",
    ] {
        std::fs::copy(ours.join(f), old.join(f)).unwrap();
    }
    let db = dir.path().join("old.db");
    let location = db.to_str().unwrap();
    rt().block_on(async {
        let url = format!("sqlite://{location}?mode=rwc");
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.unwrap();
        migrator.run(&pool).await.unwrap();
        pool.close().await;
        let ro = Store::open_read_only(location).await.unwrap().unwrap();
        assert!(!ro.schema_is_current().await.unwrap());
        ro.close().await;
        let s = Store::open(location).await.unwrap();
        assert!(s.schema_is_current().await.unwrap());
        s.register(&sweep("a", "x"), &[pretrain("p1")])
            .await
            .unwrap();
        let v = s.sweep_version("a").await.unwrap().unwrap();
        s.claim(Some("a"), &worker("w"), 60_000, 3)
            .await
            .unwrap()
            .unwrap();
        let moved = s.sweep_stages_changed_since("a", v.changed).await.unwrap();
        assert_eq!(moved.len(), 1);
        s.close().await;
    });
}
