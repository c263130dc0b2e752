//! Queries: registering sweeps, reading state, claiming and leasing runs, recording
//! metrics, checkpoints and Slurm submissions. Each query is written once for both
//! backends (portable SQL; the one dialect piece is the claim's row lock). Every write is
//! one transaction: BEGIN IMMEDIATE on SQLite, a plain BEGIN on PostgreSQL.

use std::collections::HashMap;

use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::bulk::{real, Col};
use super::error::{Result, StoreError};
use super::records::*;
use super::{now_ms, AnyQuery, Backend, Store};
use crate::ml::Checkpoint;
use crate::vocab::StageKind;

/// The columns `run_record` reads, with `$config` for the config column.
macro_rules! run_columns {
    ($config:literal) => {
        concat!(
            "r.id, r.stage, r.parent_id, r.label, ",
            $config,
            ", r.dataset_fingerprint, r.state, r.attempts, r.lease_owner, r.lease_host, \
             r.heartbeat_at, r.started_at, r.finished_at, r.compute_seconds, r.failure"
        )
    };
}

pub(super) const RUN_COLUMNS: &str = run_columns!("r.config");
/// [`RUN_COLUMNS`] with an empty config: the bulk of a stage row, for readers that keep
/// configs (which never change) from an earlier read.
pub(super) const RUN_COLUMNS_WITHOUT_CONFIG: &str = run_columns!("CAST('' AS TEXT)");

impl Store {
    async fn write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            // Take the write lock up front: a deferred transaction that reads then writes
            // fails with "database is locked" under concurrency (docs/ARCHITECTURE.md#store).
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Registers a sweep and its stages. Idempotent: registering the same sweep again
    /// writes nothing; a stage another sweep already holds is shared, not duplicated.
    /// Membership follows the latest registration (an edited spec replaces it).
    pub async fn register(&self, sweep: &NewSweep, stages: &[NewStage]) -> Result<Registered> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let overrides = serde_json::to_string(&sweep.overrides).expect("strings serialise");
        let existing = sqlx::query(
            "SELECT spec_path, spec_text, profile, overrides FROM sweeps WHERE name = $1",
        )
        .bind(&sweep.name)
        .fetch_optional(&mut *tx)
        .await?;
        let same_sweep = existing.as_ref().is_some_and(|r| {
            r.get::<String, _>(0) == sweep.spec_path
                && r.get::<String, _>(1) == sweep.spec_text
                && r.get::<Option<String>, _>(2) == sweep.profile
                && r.get::<String, _>(3) == overrides
        });
        let mut out = Registered::default();
        if !same_sweep {
            sqlx::query(
                "INSERT INTO sweeps (name, spec_path, spec_text, profile, overrides, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (name) DO UPDATE SET spec_path = excluded.spec_path, spec_text = excluded.spec_text, \
                 profile = excluded.profile, overrides = excluded.overrides, updated_at = excluded.updated_at",
            )
            .bind(&sweep.name)
            .bind(&sweep.spec_path)
            .bind(&sweep.spec_text)
            .bind(&sweep.profile)
            .bind(&overrides)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            out.changed = true;
        }
        for s in stages {
            let inserted = sqlx::query(
                "INSERT INTO runs (id, stage, parent_id, label, config, dataset_fingerprint, semantics_version, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&s.id)
            .bind(s.stage.as_str())
            .bind(&s.parent_id)
            .bind(&s.label)
            .bind(&s.config)
            .bind(&s.dataset_fingerprint)
            .bind(s.semantics_version)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                out.new_stages += 1;
            } else {
                out.existing_stages += 1;
            }
        }
        let members: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT run_id, position, cell FROM sweep_runs WHERE sweep = $1 ORDER BY position",
        )
        .bind(&sweep.name)
        .fetch_all(&mut *tx)
        .await?;
        let wanted: Vec<(String, i64, String)> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i as i64, s.cell.clone()))
            .collect();
        if members != wanted {
            sqlx::query("DELETE FROM sweep_runs WHERE sweep = $1")
                .bind(&sweep.name)
                .execute(&mut *tx)
                .await?;
            for (id, pos, cell) in &wanted {
                sqlx::query("INSERT INTO sweep_runs (sweep, run_id, position, cell) VALUES ($1, $2, $3, $4)")
                    .bind(&sweep.name)
                    .bind(id)
                    .bind(pos)
                    .bind(cell)
                    .execute(&mut *tx)
                    .await?;
            }
            // The sweep's version moves with its membership (readers keep stage rows by it).
            sqlx::query(
                "UPDATE sweeps SET updated_at = CASE WHEN updated_at >= $2 THEN updated_at + 1 ELSE $2 END \
                 WHERE name = $1",
            )
            .bind(&sweep.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            out.changed = true;
        }
        if out.changed || out.new_stages > 0 {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(out)
    }

    /// States of the given stage ids that exist in the store.
    pub async fn states(&self, ids: &[String]) -> Result<HashMap<String, RunState>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(super::IDS_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, state FROM runs WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let state: String = row.get(1);
                out.insert(row.get(0), parse_state(&state)?);
            }
        }
        Ok(out)
    }

    pub async fn sweep(&self, name: &str) -> Result<SweepRecord> {
        let row = sqlx::query(
            "SELECT name, spec_path, spec_text, profile, overrides, created_at, updated_at FROM sweeps WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NoSuchSweep(name.to_string()))?;
        let overrides: String = row.get(4);
        Ok(SweepRecord {
            name: row.get(0),
            spec_path: row.get(1),
            spec_text: row.get(2),
            profile: row.get(3),
            overrides: serde_json::from_str(&overrides)
                .map_err(|e| StoreError::Corrupt(format!("sweep {name}: overrides: {e}")))?,
            created_at: row.get(5),
            updated_at: row.get(6),
        })
    }

    /// All sweeps with their state counts, most recently updated first.
    pub async fn sweeps(&self) -> Result<Vec<SweepSummary>> {
        let rows = sqlx::query(
            "SELECT s.name, s.profile, s.updated_at, \
               COUNT(CASE WHEN r.state = 'queued' THEN 1 END), COUNT(CASE WHEN r.state = 'running' THEN 1 END), \
               COUNT(CASE WHEN r.state = 'done' THEN 1 END), COUNT(CASE WHEN r.state = 'failed' THEN 1 END) \
             FROM sweeps s LEFT JOIN sweep_runs m ON m.sweep = s.name LEFT JOIN runs r ON r.id = m.run_id \
             GROUP BY s.name ORDER BY s.updated_at DESC, s.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SweepSummary {
                name: r.get(0),
                profile: r.get(1),
                updated_at: r.get(2),
                queued: r.get(3),
                running: r.get(4),
                done: r.get(5),
                failed: r.get(6),
            })
            .collect())
    }

    /// The stages of a sweep in grid order.
    pub async fn sweep_runs(&self, sweep: &str) -> Result<Vec<RunRecord>> {
        self.sweep(sweep).await?;
        self.member_stages(sweep, RUN_COLUMNS).await
    }

    /// The stages of `sweep` in grid order, with `columns` (one of the `RUN_COLUMNS`), in
    /// one bulk read. Sorted here: in SQL the sort would carry every row, config text and
    /// all, through a temporary b-tree (twice the time of the read on a 30,000-stage sweep).
    pub(super) async fn member_stages(&self, sweep: &str, columns: &str) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {columns}, m.position, m.cell FROM sweep_runs m JOIN runs r ON r.id = m.run_id \
             WHERE m.sweep = $1"
        );
        let mut out = self.stage_rows(&sql, |q| q.bind(sweep)).await?;
        out.sort_by_key(|r| r.position);
        Ok(out)
    }

    /// The stage rows `sql` selects (one of the `RUN_COLUMNS`, then position and cell),
    /// its parameters bound by `bind`, in one bulk read.
    pub(super) async fn stage_rows<'q>(
        &self,
        sql: &str,
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> Result<Vec<RunRecord>> {
        let rows: Vec<RunRow> = self.fetch_bulk(sql, &RUN_ROW, bind).await?;
        rows.into_iter().map(RunRecord::try_from).collect()
    }

    /// Claims one runnable stage for `worker`: a queued stage whose parent (if any) is
    /// done, or a running one whose lease expired (its worker died); evaluations first,
    /// then grid order. One statement, `UPDATE ... WHERE id = (SELECT ... LIMIT 1)
    /// RETURNING id`, in one write transaction, so two workers never get the same run; on
    /// PostgreSQL the candidate row is locked `FOR UPDATE SKIP LOCKED`, so concurrent
    /// claims skip each other's candidates instead of queueing behind them. Stages whose
    /// attempts reached `max_attempts` through expired leases are marked failed instead,
    /// with their evaluations.
    pub async fn claim(
        &self,
        sweep: Option<&str>,
        worker: &LeaseHolder,
        lease_ms: i64,
        max_attempts: i64,
    ) -> Result<Option<Claimed>> {
        let mut tx = self.write().await?;
        let now = now_ms();
        // Dead workers' runs that used up their attempts: failed, with the reason.
        let exhausted: Vec<String> = sqlx::query_scalar(
            "UPDATE runs SET state = 'failed', failure = $3, finished_at = $1, lease_owner = NULL, \
             lease_host = NULL, lease_pid = NULL, lease_expires_at = NULL \
             WHERE state = 'running' AND lease_expires_at < $1 AND attempts >= $2 RETURNING id",
        )
        .bind(now)
        .bind(max_attempts)
        .bind(format!(
            "its worker stopped heartbeating {max_attempts} times (killed or lost machine)"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for id in &exhausted {
            fail_dependents(&mut tx, id, now).await?;
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF r SKIP LOCKED",
            Backend::Sqlite => "", // BEGIN IMMEDIATE already holds the write lock
        };
        let member = "m.run_id = r.id AND ($3 IS NULL OR m.sweep = $3)";
        let sql = format!(
            "UPDATE runs SET state = 'running', attempts = attempts + 1, lease_owner = $4, lease_host = $5, \
             lease_pid = $6, heartbeat_at = $1, lease_expires_at = $7, started_at = COALESCE(started_at, $1), \
             failure = NULL \
             WHERE id = (SELECT r.id FROM runs r \
                 WHERE (r.state = 'queued' OR (r.state = 'running' AND r.lease_expires_at < $1)) \
                   AND r.attempts < $2 \
                   AND (r.parent_id IS NULL OR EXISTS (SELECT 1 FROM runs p WHERE p.id = r.parent_id AND p.state = 'done')) \
                   AND EXISTS (SELECT 1 FROM sweep_runs m WHERE {member}) \
                 ORDER BY CASE WHEN r.stage = 'eval' THEN 0 ELSE 1 END, \
                   (SELECT MIN(m.position) FROM sweep_runs m WHERE {member}), r.id \
                 LIMIT 1{lock}) \
               AND (state = 'queued' OR (state = 'running' AND lease_expires_at < $1)) \
             RETURNING id"
        );
        let claimed: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(max_attempts)
            .bind(sweep)
            .bind(&worker.id)
            .bind(&worker.host)
            .bind(worker.pid)
            .bind(now + lease_ms)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = claimed else {
            tx.commit().await?;
            return Ok(None);
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS}, CAST(0 AS BIGINT), CAST('{{}}' AS TEXT) FROM runs r WHERE r.id = $1"
        );
        let run = run_record(
            &sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let parent_config = match &run.parent_id {
            Some(p) => Some(
                sqlx::query_scalar::<_, String>("SELECT config FROM runs WHERE id = $1")
                    .bind(p)
                    .fetch_one(&mut *tx)
                    .await?,
            ),
            None => None,
        };
        tx.commit().await?;
        Ok(Some(Claimed { run, parent_config }))
    }

    /// Whether any stage of `sweep` (all sweeps: None) is still queued or running.
    pub async fn unfinished(&self, sweep: Option<&str>) -> Result<i64> {
        let n: i64 = match sweep {
            Some(s) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM runs r JOIN sweep_runs m ON m.run_id = r.id \
                 WHERE m.sweep = $1 AND r.state IN ('queued', 'running')",
                )
                .bind(s)
                .fetch_one(&self.pool)
                .await?
            }
            None => {
                sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE state IN ('queued', 'running')")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(n)
    }

    /// Extends `worker`'s lease on `run_id`. `false`: the lease was lost (expired and
    /// claimed by another worker): stop working on it.
    pub async fn heartbeat(
        &self,
        run_id: &str,
        worker: &LeaseHolder,
        lease_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE runs SET heartbeat_at = $3, lease_expires_at = $4 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(run_id)
        .bind(&worker.id)
        .bind(now)
        .bind(now + lease_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Leases held on `host`: (run id, lease owner, pid), to find workers that died there.
    pub async fn leases_on_host(&self, host: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, lease_owner, lease_pid FROM runs WHERE state = 'running' AND lease_host = $1 \
             AND lease_owner IS NOT NULL AND lease_pid IS NOT NULL",
        )
        .bind(host)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends the lease of a worker known to be dead (its process is gone): the run becomes
    /// claimable at once instead of after the lease time.
    pub async fn expire_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE id = $1 AND lease_owner = $2 AND state = 'running'")
            .bind(run_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a stage done. A pretrain is done only with a recorded checkpoint.
    pub async fn finish(
        &self,
        run_id: &str,
        worker: &LeaseHolder,
        compute_seconds: f64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            // lease_host stays: the machine that finished the run, for reports' provenance.
            "UPDATE runs SET state = 'done', finished_at = $3, compute_seconds = compute_seconds + $4, \
             lease_owner = NULL, lease_pid = NULL, lease_expires_at = NULL, failure = NULL \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running' \
             AND (stage = 'eval' OR EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = $1))",
        )
        .bind(run_id)
        .bind(&worker.id)
        .bind(now_ms())
        .bind(compute_seconds)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Marks a stage failed with `reason`; its evaluations fail with it.
    pub async fn fail(
        &self,
        run_id: &str,
        worker: &LeaseHolder,
        reason: &str,
        compute_seconds: f64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let owned: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE id = $1 AND lease_owner = $2")
                .bind(run_id)
                .bind(&worker.id)
                .fetch_one(&mut *tx)
                .await?;
        if owned == 1 {
            sqlx::query("UPDATE runs SET compute_seconds = compute_seconds + $2 WHERE id = $1")
                .bind(run_id)
                .bind(compute_seconds)
                .execute(&mut *tx)
                .await?;
            fail_with_dependents(&mut tx, run_id, reason, now_ms()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives a stage back (graceful stop: Ctrl-C, SIGTERM): queued again, the attempt not
    /// counted, its checkpoints kept for the next worker.
    pub async fn release(
        &self,
        run_id: &str,
        worker: &LeaseHolder,
        compute_seconds: f64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE runs SET state = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, lease_owner = NULL, \
             lease_host = NULL, lease_pid = NULL, lease_expires_at = NULL, \
             compute_seconds = compute_seconds + $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(run_id)
        .bind(&worker.id)
        .bind(compute_seconds)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Requeues a sweep's failed stages with fresh attempts.
    pub async fn retry_failed(&self, sweep: &str) -> Result<u64> {
        self.sweep(sweep).await?;
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE runs SET state = 'queued', attempts = 0, failure = NULL, finished_at = NULL \
             WHERE state = 'failed' AND id IN (SELECT run_id FROM sweep_runs WHERE sweep = $1)",
        )
        .bind(sweep)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Records metrics; a (run, name, step) written again overwrites, never duplicates.
    pub async fn record_metrics(&self, run_id: &str, metrics: &[MetricRecord]) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for m in metrics {
            sqlx::query(
                "INSERT INTO metrics (run_id, name, step, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, name, step) DO UPDATE SET value = excluded.value",
            )
            .bind(run_id)
            .bind(&m.name)
            .bind(m.step)
            .bind(m.value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn metrics(&self, run_id: &str) -> Result<Vec<MetricRecord>> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT name, step, value FROM metrics WHERE run_id = $1 ORDER BY name, step",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, step, value)| MetricRecord { name, step, value })
            .collect())
    }

    /// Records a durable checkpoint of `run_id` (idempotent per step).
    pub async fn record_checkpoint(&self, run_id: &str, c: &Checkpoint) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO checkpoints (run_id, step, epoch, path, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (run_id, step) DO UPDATE SET epoch = excluded.epoch, path = excluded.path, \
             sha256 = excluded.sha256, created_at = excluded.created_at",
        )
        .bind(run_id)
        .bind(c.step as i64)
        .bind(c.epoch as i64)
        .bind(c.path.to_string_lossy().into_owned())
        .bind(&c.sha256)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A run's checkpoints, newest first.
    pub async fn checkpoints(&self, run_id: &str) -> Result<Vec<Checkpoint>> {
        let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT step, epoch, path, sha256 FROM checkpoints WHERE run_id = $1 ORDER BY step DESC",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(step, epoch, path, sha256)| Checkpoint {
                path: path.into(),
                epoch: epoch as usize,
                step: step as usize,
                sha256,
            })
            .collect())
    }

    /// Records a submitted Slurm job array of workers for `sweep status`.
    pub async fn record_slurm_job(&self, job: &SlurmJobRecord) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO slurm_jobs (job_id, sweep, workers, log_dir, submitted_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(&job.job_id)
        .bind(&job.sweep)
        .bind(job.workers)
        .bind(&job.log_dir)
        .bind(job.submitted_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The Slurm job arrays submitted for `sweep`, oldest first.
    pub async fn slurm_jobs(&self, sweep: &str) -> Result<Vec<SlurmJobRecord>> {
        let rows: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT job_id, sweep, workers, log_dir, submitted_at FROM slurm_jobs WHERE sweep = $1 \
             ORDER BY submitted_at, job_id",
        )
        .bind(sweep)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(job_id, sweep, workers, log_dir, submitted_at)| SlurmJobRecord {
                    job_id,
                    sweep,
                    workers,
                    log_dir,
                    submitted_at,
                },
            )
            .collect())
    }
}

async fn fail_with_dependents(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE runs SET state = 'failed', failure = $2, finished_at = $3, lease_owner = NULL, \
         lease_host = NULL, lease_pid = NULL, lease_expires_at = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    fail_dependents(tx, id, now).await
}

/// The queued evaluations of a failed pretrain fail with it.
async fn fail_dependents(tx: &mut Transaction<'static, Any>, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE runs SET state = 'failed', failure = $2, finished_at = $3 WHERE parent_id = $1 AND state = 'queued'",
    )
    .bind(id)
    .bind(format!("its pretrain {} failed", crate::vocab::short_id(id)))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) fn parse_state(s: &str) -> Result<RunState> {
    RunState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown run state `{s}`")))
}

pub(super) fn parse_stage(s: &str) -> Result<StageKind> {
    StageKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown stage kind `{s}`")))
}

pub(super) fn run_record(r: &AnyRow) -> Result<RunRecord> {
    let state: String = r.get(6);
    let stage: String = r.get(1);
    Ok(RunRecord {
        id: r.get(0),
        stage: parse_stage(&stage)?,
        parent_id: r.get(2),
        label: r.get(3),
        config: r.get(4),
        dataset_fingerprint: r.get(5),
        state: parse_state(&state)?,
        attempts: r.get(7),
        lease_owner: r.get(8),
        lease_host: r.get(9),
        heartbeat_at: r.get(10),
        started_at: r.get(11),
        finished_at: r.get(12),
        compute_seconds: r.get(13),
        failure: r.get(14),
        position: r.get(15),
        cell: r.get(16),
    })
}

/// How the columns of a stage row travel in a bulk read: all as they are but
/// `compute_seconds`.
const RUN_ROW: [Col; 17] = {
    let mut cols = [Col::Value; 17];
    cols[13] = Col::Real;
    cols
};

/// A stage row of a bulk read, in `run_record`'s column order.
#[derive(Deserialize)]
struct RunRow(
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    #[serde(deserialize_with = "real")] f64,
    Option<String>,
    i64,
    String,
);

impl TryFrom<RunRow> for RunRecord {
    type Error = StoreError;

    fn try_from(r: RunRow) -> Result<RunRecord> {
        Ok(RunRecord {
            id: r.0,
            stage: parse_stage(&r.1)?,
            parent_id: r.2,
            label: r.3,
            config: r.4,
            dataset_fingerprint: r.5,
            state: parse_state(&r.6)?,
            attempts: r.7,
            lease_owner: r.8,
            lease_host: r.9,
            heartbeat_at: r.10,
            started_at: r.11,
            finished_at: r.12,
            compute_seconds: r.13,
            failure: r.14,
            position: r.15,
            cell: r.16,
        })
    }
}
