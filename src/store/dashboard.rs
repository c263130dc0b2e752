//! Read-only queries for `sweep serve`: one stage by id, a sweep's stages without their
//! configs and its distinct configs apart, a sweep's metrics in one query, every sweep's
//! stages in brief, the stages of a sweep that changed since a version, and the change
//! tokens the dashboard polls. A change token is one small indexed query
//! whose result changes whenever anything the page shows changes (a state, an attempt, a
//! finished stage, a metric): the store's change counters (migrations/*/..._change_counters.sql),
//! which triggers stamp on every such write.

use std::collections::HashMap;

use serde::Deserialize;
use sqlx::Row;

use super::bulk::{real, Col};
use super::error::Result;
use super::records::*;
use super::runs::{parse_stage, parse_state, run_record, RUN_COLUMNS, RUN_COLUMNS_WITHOUT_CONFIG};
use super::{AnyQuery, Backend, Store, IDS_PER_QUERY};

impl Store {
    /// One stage by id, with its place in the first sweep (by name) that contains it;
    /// `None` when no stage has that id.
    pub async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS}, COALESCE(m.position, 0), COALESCE(m.cell, '{{}}') FROM runs r \
             LEFT JOIN sweep_runs m ON m.run_id = r.id AND m.sweep = \
               (SELECT MIN(sweep) FROM sweep_runs WHERE run_id = r.id) \
             WHERE r.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_record).transpose()
    }

    /// The sweeps that contain stage `id`, by name.
    pub async fn sweeps_of_run(&self, id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT sweep FROM sweep_runs WHERE run_id = $1 ORDER BY sweep")
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The evaluation stages of pretrain `id`.
    pub async fn evaluations_of(&self, id: &str) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS}, CAST(0 AS BIGINT), CAST('{{}}' AS TEXT) FROM runs r \
             WHERE r.parent_id = $1 ORDER BY r.label, r.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_record).collect()
    }

    /// The stages of `sweep` in grid order, each with an empty `config`: a reader that
    /// keeps configs reads them apart ([`Store::sweep_configs`]). Empty when there is
    /// no such sweep.
    pub async fn sweep_stages(&self, sweep: &str) -> Result<Vec<RunRecord>> {
        self.member_stages(sweep, RUN_COLUMNS_WITHOUT_CONFIG).await
    }

    /// The distinct configs of the stages of `sweep`, each with the stages that have it:
    /// the texts a sweep's evaluations share are read once. Pretrains are not grouped:
    /// a pretrain's id is the hash of its config, so they share none (and sorting their
    /// long texts to find that out would cost more than reading them).
    pub async fn sweep_configs(&self, sweep: &str) -> Result<Vec<SharedConfig>> {
        let sql = format!(
            "SELECT r.stage, r.config, r.id FROM sweep_runs m JOIN runs r ON r.id = m.run_id \
             WHERE m.sweep = $1 AND r.stage = 'pretrain' \
             UNION ALL \
             SELECT r.stage, r.config, {} FROM sweep_runs m JOIN runs r ON r.id = m.run_id \
             WHERE m.sweep = $1 AND r.stage <> 'pretrain' GROUP BY r.stage, r.config",
            self.id_list()
        );
        self.shared_configs(&sql, |q| q.bind(sweep)).await
    }

    /// [`Store::sweep_configs`] for the stages `ids` (any sweep): a few queries of at
    /// most [`IDS_PER_QUERY`] ids each. Ids of no stage are absent.
    pub async fn configs_of_stages(&self, ids: &[&str]) -> Result<Vec<SharedConfig>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT r.stage, r.config, {} FROM runs r WHERE r.id IN ({}) \
                 GROUP BY r.stage, r.config",
                self.id_list(),
                ph.join(",")
            );
            out.extend(self.shared_configs(&sql, binding(chunk, &[])).await?);
        }
        Ok(out)
    }

    /// The configs `sql` selects as rows of (stage kind, config text, comma-joined ids),
    /// its parameters bound by `bind`, in one bulk read.
    async fn shared_configs<'q>(
        &self,
        sql: &str,
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> Result<Vec<SharedConfig>> {
        let rows: Vec<(String, String, String)> =
            self.fetch_bulk(sql, &[Col::Value; 3], bind).await?;
        (rows.into_iter())
            .map(|(stage, text, ids)| {
                Ok(SharedConfig {
                    stage: parse_stage(&stage)?,
                    text,
                    ids: ids.split(',').map(String::from).collect(),
                })
            })
            .collect()
    }

    /// The aggregate that joins a group's stage ids with commas (hex ids hold none).
    fn id_list(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "group_concat(r.id, ',')",
            Backend::Postgres => "string_agg(r.id, ',')",
        }
    }

    /// Every metric of every stage of `sweep` (only those named in `names`, when given),
    /// by stage id, in (name, step) order: one query instead of one per stage.
    pub async fn sweep_metrics(
        &self,
        sweep: &str,
        names: Option<&[&str]>,
    ) -> Result<HashMap<String, Vec<MetricRecord>>> {
        let filter = match names {
            Some(names) => {
                let ph: Vec<String> = (0..names.len()).map(|i| format!("${}", i + 2)).collect();
                format!(" AND x.name IN ({})", ph.join(","))
            }
            None => String::new(),
        };
        let sql = format!(
            "SELECT x.run_id, x.name, x.step, x.value FROM sweep_runs m JOIN metrics x ON x.run_id = m.run_id \
             WHERE m.sweep = $1{filter}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(sweep);
        for n in names.unwrap_or_default() {
            q = q.bind(*n);
        }
        let mut out = HashMap::new();
        collect_metrics(q.fetch_all(&self.pool).await?, &mut out);
        in_order(&mut out);
        Ok(out)
    }

    /// [`Store::sweep_metrics`] for the stages `ids` only (any sweep), by stage id: a few
    /// queries of at most [`IDS_PER_QUERY`] ids each. Stages without metrics are absent.
    pub async fn metrics_of_stages(
        &self,
        ids: &[&str],
        names: Option<&[&str]>,
    ) -> Result<HashMap<String, Vec<MetricRecord>>> {
        let names = names.unwrap_or_default();
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let ph = |from: usize, n: usize| {
                (from..from + n)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let filter = if names.is_empty() {
                String::new()
            } else {
                format!(" AND name IN ({})", ph(chunk.len() + 1, names.len()))
            };
            let sql = format!(
                "SELECT run_id, name, step, value FROM metrics WHERE run_id IN ({}){filter}",
                ph(1, chunk.len()),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in chunk.iter().chain(names) {
                q = q.bind(*v);
            }
            collect_metrics(q.fetch_all(&self.pool).await?, &mut out);
        }
        in_order(&mut out);
        Ok(out)
    }

    /// The last value of each metric named in `names` of each stage of `sweep` (at its
    /// highest step), with how many steps it has, by stage id in name order: what a page
    /// that draws no curves shows (the last loss, the epochs done, a top-1), one row per
    /// metric of a stage instead of one per step. Stages without any are absent.
    pub async fn sweep_last_metrics<'q>(
        &self,
        sweep: &'q str,
        names: &[&'q str],
    ) -> Result<HashMap<String, Vec<LastMetric>>> {
        let sql = self.last_metrics_sql(
            "(SELECT run_id FROM sweep_runs WHERE sweep = $1)",
            2,
            names.len(),
        );
        let bind = |mut q: AnyQuery<'q>| {
            q = q.bind(sweep);
            for n in names {
                q = q.bind(*n);
            }
            q
        };
        let mut out = HashMap::new();
        self.collect_last(&sql, bind, &mut out).await?;
        by_name(&mut out);
        Ok(out)
    }

    /// [`Store::sweep_last_metrics`] for the stages `ids` only (any sweep): a few queries
    /// of at most [`IDS_PER_QUERY`] ids each.
    pub async fn last_metrics_of_stages<'q>(
        &self,
        ids: &[&'q str],
        names: &[&'q str],
    ) -> Result<HashMap<String, Vec<LastMetric>>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                self.last_metrics_sql(&format!("({})", ph.join(",")), chunk.len() + 1, names.len());
            self.collect_last(&sql, binding(chunk, names), &mut out)
                .await?;
        }
        by_name(&mut out);
        Ok(out)
    }

    /// The query of the last value of `names` metrics (placeholders from `$first`) of the
    /// stages whose ids are in `stages` (a list or a subquery): rows of (stage id, name,
    /// step, value, steps). SQLite takes a bare column from the row where `MAX` found its
    /// maximum; PostgreSQL keeps each group's first row by step, descending.
    fn last_metrics_sql(&self, stages: &str, first: usize, names: usize) -> String {
        let ph: Vec<String> = (first..first + names).map(|i| format!("${i}")).collect();
        let ph = ph.join(",");
        match self.backend {
            Backend::Sqlite => format!(
                "SELECT x.run_id, x.name, MAX(x.step), x.value, COUNT(*) FROM metrics x \
                 WHERE x.run_id IN {stages} AND x.name IN ({ph}) GROUP BY x.run_id, x.name"
            ),
            Backend::Postgres => format!(
                "SELECT DISTINCT ON (x.run_id, x.name) x.run_id, x.name, x.step, x.value, \
                 COUNT(*) OVER (PARTITION BY x.run_id, x.name) FROM metrics x \
                 WHERE x.run_id IN {stages} AND x.name IN ({ph}) \
                 ORDER BY x.run_id, x.name, x.step DESC"
            ),
        }
    }

    /// Every sweep's stages in brief (how many of each kind in each state, their compute,
    /// who holds them), for the list of sweeps: one grouped query, a few rows per sweep.
    pub async fn stage_briefs(&self) -> Result<Vec<StageBrief>> {
        let rows = sqlx::query(
            "SELECT m.sweep, r.stage, r.state, COUNT(*), SUM(r.compute_seconds), r.lease_owner, r.lease_host \
             FROM sweep_runs m JOIN runs r ON r.id = m.run_id \
             GROUP BY m.sweep, r.stage, r.state, r.lease_owner, r.lease_host \
             ORDER BY m.sweep, r.stage, r.state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let stage: String = r.get(1);
                let state: String = r.get(2);
                Ok(StageBrief {
                    sweep: r.get(0),
                    stage: parse_stage(&stage)?,
                    state: parse_state(&state)?,
                    count: r.get(3),
                    compute_seconds: r.get(4),
                    lease_owner: r.get(5),
                    lease_host: r.get(6),
                })
            })
            .collect()
    }

    /// Changes whenever a sweep is registered or one of its stages changes or records a
    /// metric (the list of sweeps): one row per sweep, no stage read.
    pub async fn change_token(&self) -> Result<String> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(updated_at), 0), COALESCE(MAX(changed_seq), 0) FROM sweeps",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(token(&row, 3))
    }

    /// Where `sweep` stands (its change token): one row by primary key; `None` when there
    /// is no such sweep.
    pub async fn sweep_version(&self, sweep: &str) -> Result<Option<SweepVersion>> {
        let row = sqlx::query("SELECT updated_at, changed_seq FROM sweeps WHERE name = $1")
            .bind(sweep)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| SweepVersion {
            membership: r.get(0),
            changed: r.get(1),
        }))
    }

    /// The stages of `sweep` that changed (or recorded a metric) since a read made under
    /// version `changed = since`, with every `config` empty (a stage's config never
    /// changes), in no particular order: a range of the change counter's index, each
    /// stage then checked for membership (not a pass over the sweep's stages).
    pub async fn sweep_stages_changed_since(
        &self,
        sweep: &str,
        since: i64,
    ) -> Result<Vec<RunRecord>> {
        // CROSS JOIN: SQLite's planner then walks the counter's index first (PostgreSQL
        // plans it as a plain join).
        let sql = format!(
            "SELECT {RUN_COLUMNS_WITHOUT_CONFIG}, m.position, m.cell FROM runs r CROSS JOIN sweep_runs m \
             WHERE r.changed_seq > $2 AND m.sweep = $1 AND m.run_id = r.id"
        );
        self.stage_rows(&sql, |q| q.bind(sweep).bind(since)).await
    }

    /// Changes whenever stage `id` or one of its evaluations changes, or records a metric
    /// or checkpoint; `None` when there is no such stage.
    pub async fn run_change_token(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT r.state, r.attempts, COALESCE(r.heartbeat_at, 0), COALESCE(r.finished_at, 0), \
               (SELECT COUNT(*) FROM metrics x WHERE x.run_id = r.id), \
               (SELECT COUNT(*) FROM checkpoints c WHERE c.run_id = r.id), \
               (SELECT COUNT(*) FROM runs e WHERE e.parent_id = r.id AND e.state IN ('done', 'failed')) \
             FROM runs r WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let state: String = r.get(0);
            format!("{state}-{}", token_from(&r, 1, 7))
        }))
    }
}

/// Binds `ids`, then `names`.
fn binding<'q>(
    ids: &'q [&'q str],
    names: &'q [&'q str],
) -> impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q> {
    move |mut q| {
        for v in ids.iter().chain(names) {
            q = q.bind(*v);
        }
        q
    }
}

/// A last-metric row: stage id, name, highest step, its value, steps.
#[derive(Deserialize)]
struct LastRow(
    String,
    String,
    i64,
    #[serde(deserialize_with = "real")] f64,
    usize,
);

impl Store {
    /// The rows of (stage id, name, step, value, steps) `sql` selects into `out`, by
    /// stage id: one bulk read.
    async fn collect_last<'q>(
        &self,
        sql: &str,
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
        out: &mut HashMap<String, Vec<LastMetric>>,
    ) -> Result<()> {
        let cols = [Col::Value, Col::Value, Col::Value, Col::Real, Col::Value];
        let rows: Vec<LastRow> = self.fetch_bulk(sql, &cols, bind).await?;
        for LastRow(id, name, step, value, steps) in rows {
            let last = MetricRecord { name, step, value };
            out.entry(id).or_default().push(LastMetric { last, steps });
        }
        Ok(())
    }
}

/// Rows of (stage id, name, step, value) into `out`, by stage id, in row order. Row by
/// row, not a bulk read: a sweep's every-step metrics grow with its steps (a long run
/// records a few per step), past what one value may hold.
fn collect_metrics(rows: Vec<sqlx::any::AnyRow>, out: &mut HashMap<String, Vec<MetricRecord>>) {
    for row in rows {
        out.entry(row.get(0)).or_default().push(MetricRecord {
            name: row.get(1),
            step: row.get(2),
            value: row.get(3),
        });
    }
}

/// Each stage's last metrics in name order, sorted once after every read.
fn by_name(last: &mut HashMap<String, Vec<LastMetric>>) {
    for m in last.values_mut() {
        m.sort_unstable_by(|a, b| a.last.name.cmp(&b.last.name));
    }
}

/// Each stage's metrics in (name, step) order, sorted here rather than in SQL, where the
/// sort would pass every row through a temporary b-tree.
fn in_order(metrics: &mut HashMap<String, Vec<MetricRecord>>) {
    for m in metrics.values_mut() {
        m.sort_unstable_by(|a, b| (&a.name, a.step).cmp(&(&b.name, b.step)));
    }
}

/// The integer columns of a token row, joined.
fn token(row: &sqlx::any::AnyRow, n: usize) -> String {
    token_from(row, 0, n)
}

fn token_from(row: &sqlx::any::AnyRow, from: usize, to: usize) -> String {
    (from..to)
        .map(|i| row.get::<i64, _>(i).to_string())
        .collect::<Vec<_>>()
        .join("-")
}
