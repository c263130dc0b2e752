//! Store tests on real SQLite files in temp dirs: migrations, idempotent registration,
//! shared runs, claims and leases, metric upserts, refusing foreign databases.

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
        stage: "pretrain".into(),
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
        stage: "eval".into(),
        parent_id: Some(parent.into()),
        label: "linear@h".into(),
        ..pretrain(id)
    }
}

fn worker(id: &str) -> Worker {
    Worker {
        id: id.into(),
        host: "localhost".into(),
        pid: 1,
    }
}

fn db(dir: &tempfile::TempDir) -> String {
    dir.path().join("sweeps.db").to_string_lossy().into_owned()
}

#[test]
fn migrations_apply_to_an_empty_database_and_reopen_an_existing_one() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
        s.register(&sweep("a", "x"), &[pretrain("p1")])
            .await
            .unwrap();
        s.close().await;
        let s = Store::open(&db(&dir)).await.unwrap();
        assert_eq!(
            s.sweeps().await.unwrap().len(),
            1,
            "data survives reopening"
        );
        s.close().await;
    });
}

#[test]
fn registering_the_same_sweep_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stages = [pretrain("p1"), eval("e1", "p1"), pretrain("p2")];
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
        let first = s.register(&sweep("a", "x"), &stages).await.unwrap();
        assert_eq!((first.new_stages, first.changed), (3, true));
        s.close().await;
    });
    let before = std::fs::read(dir.path().join("sweeps.db")).unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
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
    });
    assert_eq!(
        before,
        std::fs::read(dir.path().join("sweeps.db")).unwrap(),
        "file byte-identical"
    );
}

#[test]
fn two_sweeps_share_a_run_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
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
        s.record_checkpoint(&CheckpointRecord {
            run_id: "p2".into(),
            step: 1,
            epoch: 1,
            path: "c".into(),
            sha256: "h".into(),
        })
        .await
        .unwrap();
        assert!(s.finish("p2", &w, 1.0).await.unwrap());
        let a = s.sweep_runs("a").await.unwrap();
        assert_eq!(a[1].state, RunState::Done);
        s.close().await;
    });
}

#[test]
fn claims_respect_dependencies_leases_and_attempt_caps() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
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
        assert_eq!(
            s.claim(None, &w1, 60_000, 2).await.unwrap().unwrap().run.id,
            "p1"
        );
        s.close().await;
    });
}

#[test]
fn a_released_run_keeps_its_attempts_and_is_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
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
    });
}

#[test]
fn metrics_written_twice_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = Store::open(&db(&dir)).await.unwrap();
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
    });
}

#[test]
fn foreign_and_newer_databases_are_refused_without_being_touched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "hello, this is not a database at all, just some text......",
    )
    .unwrap();
    let other = dir.path().join("other.db");
    rt().block_on(async {
        let e = Store::open(text.to_str().unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::NotOurs { .. }), "{e}");
        let conn = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(&other).create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE users (id INTEGER)").execute(&conn).await.unwrap();
        conn.close().await;
        let e = Store::open(other.to_str().unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("not a simclr-sweep database"), "{e}");

        let ours = db(&dir);
        let s = Store::open(&ours).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99990101000000, 'future', '2099-01-01', 1, x'00', 0)")
            .execute(&s.pool)
            .await
            .unwrap();
        s.close().await;
        let e = Store::open(&ours).await.unwrap_err();
        assert!(matches!(e, StoreError::NewerSchema { found: 99990101000000, .. }), "{e}");
    });
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "hello, this is not a database at all, just some text......"
    );
}

#[test]
fn read_only_open_of_a_missing_database_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        assert!(Store::open_read_only(&db(&dir)).await.unwrap().is_none());
    });
    assert!(!dir.path().join("sweeps.db").exists());
}
