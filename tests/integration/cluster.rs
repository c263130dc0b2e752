//! Many machines: a PostgreSQL store and Slurm workers. A tiny sweep submitted
//! as a 4-worker job array, one worker killed in the middle of a pretrain (as a node
//! failure would), and every stage still done exactly once, the killed run continued from
//! its checkpoint. Also: `submit --dry-run`, the SQLite refusal, and that the database
//! password never reaches Slurm's job records.
//!
//! Needs `SWEEP_TEST_PG_URL` (a PostgreSQL database: `eval "$(bash .ci/pg_up.sh)"`) and a
//! Slurm that answers `sinfo` (`bash .ci/slurm_up.sh`, as root). Without them the tests
//! print why they skip; with `SWEEP_REQUIRE_CLUSTER=1` (CI) a skip is a failure.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{text, tiny_spec, Env};

fn required() -> bool {
    std::env::var("SWEEP_REQUIRE_CLUSTER").as_deref() == Ok("1")
}

/// Skips (returns None) or fails when `what` is missing, per SWEEP_REQUIRE_CLUSTER.
fn need<T>(test: &str, what: Result<T, String>) -> Option<T> {
    match what {
        Ok(v) => Some(v),
        Err(why) if required() => panic!("{test}: SWEEP_REQUIRE_CLUSTER=1 but {why}"),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

fn pg_url() -> Result<String, String> {
    std::env::var("SWEEP_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            "SWEEP_TEST_PG_URL is unset (`eval \"$(bash .ci/pg_up.sh)\"` starts a throwaway PostgreSQL)"
                .to_string()
        })
}

fn slurm() -> Result<(), String> {
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => Ok(()),
        Ok(o) => Err(format!(
            "sinfo does not answer ({}): start Slurm with `bash .ci/slurm_up.sh` (root)",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "no Slurm here (sinfo: {e}); `bash .ci/slurm_up.sh` installs and starts one (root)"
        )),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh schema of the test database; the URL that selects it.
fn fresh_schema(url: &str, name: &str) -> String {
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("it_{name}_{}_{nanos}", std::process::id());
    rt().block_on(async {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// The password in a postgres:// URL.
fn password(url: &str) -> Option<String> {
    let auth = url.split("://").nth(1)?.split('/').next()?;
    let userinfo = &auth[..auth.rfind('@')?];
    Some(userinfo.split_once(':')?.1.to_string())
}

#[derive(Debug, Clone)]
struct Stage {
    id: String,
    stage: String,
    state: String,
    attempts: i64,
    lease_pid: Option<i64>,
    checkpoints: i64,
}

fn stages(db: &str) -> Vec<Stage> {
    rt().block_on(async {
        let pool = sqlx::AnyPool::connect(db).await.unwrap();
        let rows: Vec<(String, String, String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT r.id, r.stage, r.state, r.attempts, r.lease_pid, \
             (SELECT COUNT(*) FROM checkpoints c WHERE c.run_id = r.id) FROM runs r ORDER BY r.id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter()
            .map(
                |(id, stage, state, attempts, lease_pid, checkpoints)| Stage {
                    id,
                    stage,
                    state,
                    attempts,
                    lease_pid,
                    checkpoints,
                },
            )
            .collect()
    })
}

fn metric_count(db: &str, name: &str) -> i64 {
    rt().block_on(async {
        let pool = sqlx::AnyPool::connect(db).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM metrics WHERE name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    })
}

/// The array task a process runs in, as `ARRAYJOB_TASK` (what `scancel` takes for one
/// task: the bare job id of task 0 equals the array's id and would cancel them all).
fn slurm_task_of(pid: i64) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let vars: Vec<&str> = env
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .collect();
    let get = |k: &str| {
        vars.iter()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(format!(
        "{}_{}",
        get("SLURM_ARRAY_JOB_ID")?,
        get("SLURM_ARRAY_TASK_ID")?
    ))
}

fn squeue_job(job: &str) -> String {
    let o = Command::new("squeue")
        .args(["-h", "--array", "-j", job, "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read_logs(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The whole many-machine story: submit, lose workers, every stage still done once.
#[test]
fn a_slurm_array_drains_a_sweep_on_postgres_despite_cancelled_and_killed_workers() {
    let test = "a_slurm_array_drains_a_sweep_on_postgres";
    let Some(url) = need(test, pg_url()) else {
        return;
    };
    let Some(()) = need(test, slurm()) else {
        return;
    };
    let t0 = Instant::now();
    let db = fresh_schema(&url, "array");
    let env = Env::new(2);
    // 4 pretrains x (linear + kNN): 12 stages; long enough pretrains to kill one mid-run.
    let spec = env.write("t.yaml", &tiny_spec("t", &[0.5, 0.3, 0.2, 0.1], 60));
    let submit = |extra: &[&str]| {
        let mut c = env.sweep();
        // The URL (with its password) only in the environment, as a user would.
        c.env("SWEEP_DB", &db).env_remove("DATABASE_URL");
        c.args([
            "submit",
            spec.to_str().unwrap(),
            "--slurm",
            "--workers",
            "4",
        ])
        .args(["--lease-secs", "3", "--idle-exit", "8"])
        .args(extra);
        c.output().unwrap()
    };
    let o = submit(&["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert!(script.contains("#SBATCH --signal=B:USR1@90"), "{script}");
    assert!(script.contains("exec "), "{script}");
    let pw = password(&url);
    if let Some(pw) = &pw {
        assert!(
            !text(&o).contains(pw.as_str()),
            "dry run leaks the password"
        );
    }
    let tables: i64 = rt().block_on(async {
        let pool = sqlx::AnyPool::connect(&db).await.unwrap();
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    });
    assert_eq!(tables, 0, "a dry run writes nothing, not even the schema");

    let o = submit(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()),
        "submit prints the job id: {}",
        text(&o)
    );
    let cleanup = Scancel(job.clone());
    // Slurm's record of the job holds no password (scontrol shows it to every user).
    let shown = Command::new("scontrol")
        .args(["show", "job", &job])
        .output()
        .unwrap();
    if let Some(pw) = &pw {
        assert!(!text(&shown).contains(pw.as_str()), "{}", text(&shown));
    }

    // Wait for two pretrains that have checkpointed and are still running. Cancel one
    // worker with `scancel` (Slurm sends SIGTERM: the worker checkpoints and gives its
    // run back) and kill the other outright (SIGKILL, as a node failure or the OOM killer
    // would: no checkpoint, no release; its run comes back when its lease expires).
    let deadline = Instant::now() + Duration::from_secs(90);
    let victims: Vec<(String, String, i64)> = loop {
        assert!(
            Instant::now() < deadline,
            "no two pretrains got going: {:?}",
            stages(&db)
        );
        let found: Vec<_> = stages(&db)
            .into_iter()
            .filter_map(|s| {
                if s.stage == "pretrain" && s.state == "running" && s.checkpoints >= 2 {
                    let pid = s.lease_pid?;
                    let job = slurm_task_of(pid)?;
                    Some((s.id, job, pid))
                } else {
                    None
                }
            })
            .collect();
        if found.len() >= 2 {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (cancelled_run, cancelled_job, cancelled_pid) = victims[0].clone();
    let (killed_run, _, killed_pid) = victims[1].clone();
    let k = Command::new("scancel")
        .arg(&cancelled_job)
        .output()
        .unwrap();
    assert!(k.status.success(), "{}", text(&k));
    // SAFETY: SIGKILL to a worker process this test's Slurm job started.
    assert_eq!(
        unsafe { libc::kill(killed_pid as libc::pid_t, libc::SIGKILL) },
        0
    );
    let gone = Instant::now() + Duration::from_secs(15);
    for pid in [cancelled_pid, killed_pid] {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < gone, "worker {pid} survived");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "scancelled task {cancelled_job} (running {}), SIGKILLed pid {killed_pid} (running {}) at {:.1}s",
        &cancelled_run[..12],
        &killed_run[..12],
        t0.elapsed().as_secs_f64()
    );

    // Everything finishes: the killed run comes back through its expired lease.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let st = stages(&db);
        if st.len() == 12 && st.iter().all(|s| s.state == "done") {
            break;
        }
        assert!(
            st.iter().all(|s| s.state != "failed"),
            "a stage failed: {st:?}\n{:?}",
            read_logs(&env.path().join("runs/slurm-logs"))
        );
        assert!(
            Instant::now() < deadline,
            "not done in time: {st:?}\n{:?}",
            read_logs(&env.path().join("runs/slurm-logs"))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let st = stages(&db);
    for s in &st {
        // A graceful stop does not use an attempt; a death does.
        let want = if s.id == killed_run { 2 } else { 1 };
        assert_eq!(
            s.attempts,
            want,
            "attempts of {s:?}\n{:?}",
            read_logs(&env.path().join("runs/slurm-logs"))
        );
    }
    // All results: top-1 of each of the 8 evaluations.
    assert_eq!(metric_count(&db, "eval/top1"), 8);
    // Workers exit on their own once nothing is left.
    let deadline = Instant::now() + Duration::from_secs(40);
    while !squeue_job(&job).trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "workers still queued: {}",
            squeue_job(&job)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(cleanup);
    // Logs in the shared directory, one per array task; each stage done exactly once, the
    // killed run resumed from its checkpoint by another worker.
    let logs = read_logs(&env.path().join("runs/slurm-logs"));
    for i in 0..4 {
        assert!(
            logs.contains_key(&format!("{job}_{i}.out")),
            "log of task {i}: {:?}",
            logs.keys()
        );
    }
    let all: String = logs.values().cloned().collect();
    for s in &st {
        let done = all
            .lines()
            .filter(|l| l.starts_with(&format!("{} done", &s.id[..12])))
            .count();
        assert_eq!(done, 1, "{} done {done} times:\n{all}", s.id);
    }
    assert!(
        all.contains(&format!(
            "{} released: stopped by signal",
            &cancelled_run[..12]
        )),
        "the cancelled worker checkpointed and released its run:\n{all}"
    );
    for (run, attempt) in [(&cancelled_run, 1), (&killed_run, 2)] {
        let resumed = format!(
            "{} pretrain: started (attempt {attempt}, from step",
            &run[..12]
        );
        assert!(all.contains(&resumed), "no `{resumed}` in\n{all}");
    }
    // `sweep status` shows the workers' Slurm state.
    let o = env
        .sweep()
        .env("SWEEP_DB", &db)
        .args(["status", "t"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("slurm job {job} (4 workers)")),
        "{}",
        text(&o)
    );
    eprintln!("cluster test: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Cancels a job when a test ends early (panics included).
struct Scancel(String);

impl Drop for Scancel {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.0).output();
    }
}

#[test]
fn slurm_with_a_sqlite_store_is_refused_with_the_reason() {
    let env = Env::new(1);
    let spec = env.write("t.yaml", &tiny_spec("t", &[0.5], 1));
    let o = env.run(&["submit", spec.to_str().unwrap(), "--slurm", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("SQLite") && t.contains("--allow-sqlite") && t.contains("postgres"),
        "{t}"
    );
    assert!(!env.db().exists(), "nothing written");
    // Allowed explicitly: the script runs workers on the absolute database path, given
    // through the environment.
    let o = env.run(&[
        "submit",
        spec.to_str().unwrap(),
        "--slurm",
        "--allow-sqlite",
        "--dry-run",
        "--workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("#SBATCH --array=0-1") && t.contains("worker --sweep t"),
        "{t}"
    );
    assert!(!env.db().exists(), "a dry run writes nothing");
}
