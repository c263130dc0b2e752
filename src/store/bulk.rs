//! Reading many rows at once: the database folds a query's rows into one JSON array of
//! arrays (`json_group_array` on SQLite, `json_agg` on PostgreSQL), which serde decodes
//! here in one pass. sqlx's row path sends each row through a channel and copies each of
//! its values; on a 30,000-stage sweep that cost four to five times the query itself
//! (the dashboard's first view of a 10,000-run sweep, bench/serve.rs).
//!
//! Only for reads that grow with a sweep's stages (their rows, configs, last metrics),
//! never with its steps: SQLite caps one value at 1 GB, which a sweep reaches at about
//! 800,000 stages with their configs, but every-step metrics of a few long runs.
//!
//! REALs travel as text that round-trips exactly: SQLite's JSON writes only 15
//! significant digits, `printf('%!.17g')` writes 17 (enough for any double); PostgreSQL
//! writes the shortest exact text (sqlx connects with `extra_float_digits = 2`).

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use sqlx::Row;

use super::error::{Result, StoreError};
use super::{AnyQuery, Backend, Store};

/// How a column travels in the folded text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Col {
    /// Text, integer or NULL: as JSON writes it.
    Value,
    /// A double, as exact text (decode it with [`real`]).
    Real,
}

impl Store {
    /// The rows `query` selects (`cols.len()` columns, its parameters bound by `bind`),
    /// folded by the database into one JSON text, decoded as `T`s (a tuple struct whose
    /// fields follow the columns).
    pub(super) async fn fetch_bulk<'q, T: DeserializeOwned>(
        &self,
        query: &str,
        cols: &[Col],
        bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
    ) -> Result<Vec<T>> {
        let sql = self.bulk_sql(query, cols);
        let text: String = bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("a row of unexpected shape: {e}")))
    }

    /// `query` folded into one row of one JSON text: an array with one array per row, in
    /// row order.
    fn bulk_sql(&self, query: &str, cols: &[Col]) -> String {
        let names: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
        let values: Vec<String> = (cols.iter().zip(&names))
            .map(|(col, name)| match (col, self.backend) {
                (Col::Value, _) => name.clone(),
                (Col::Real, Backend::Sqlite) => format!("printf('%!.17g', {name})"),
                (Col::Real, Backend::Postgres) => format!("CAST({name} AS TEXT)"),
            })
            .collect();
        let values = values.join(", ");
        let fold = match self.backend {
            Backend::Sqlite => format!("json_group_array(json_array({values}))"),
            Backend::Postgres => {
                format!("CAST(COALESCE(json_agg(json_build_array({values})), '[]') AS TEXT)")
            }
        };
        format!(
            "WITH folded ({}) AS ({query}) SELECT {fold} FROM folded",
            names.join(", ")
        )
    }
}

/// Decodes a [`Col::Real`] column: the exact text of a double.
pub(super) fn real<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    struct Exact;
    impl Visitor<'_> for Exact {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number as text")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<f64, E> {
            s.parse()
                .map_err(|_| E::custom(format!("`{s}` is not a number")))
        }
    }
    d.deserialize_str(Exact)
}
