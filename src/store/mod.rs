//! The store: the only module that speaks SQL. Sweeps, runs (one row per stage, shared by
//! every sweep that contains it), sweep membership, metrics, checkpoints and Slurm
//! submissions, in SQLite (one machine) or PostgreSQL (many machines,
//! docs/ARCHITECTURE.md#multi-machine) through sqlx's `Any` driver: every query is written
//! once, with the few dialect differences ([`Backend`]) spliced in, and each backend has
//! its own migrations (migrations/sqlite, migrations/postgres) with the same schema.
//!
//! SQLite: WAL, a busy timeout and BEGIN IMMEDIATE writes (docs/ARCHITECTURE.md#store; with
//! 8 writer processes: 0 "database is locked" errors, against 1442 for plain deferred
//! transactions). PostgreSQL: claims lock their row with `FOR UPDATE SKIP LOCKED`, so
//! concurrent workers skip each other's candidates instead of waiting on them.

mod bulk;
mod dashboard;
mod error;
mod open;
mod records;
mod retry;
mod runs;

pub use error::StoreError;
pub use open::redact;
pub use retry::{retry_transient, RETRY_FOR};
/// Ids bound in one `IN (...)` list: well under SQLite's 32,766 and PostgreSQL's 65,535
/// bound parameters.
pub const IDS_PER_QUERY: usize = 500;

pub use records::*;

use sqlx::AnyPool;

/// A query on the `Any` driver, parameters bound or to bind.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A file on this machine's disk (one host).
    Sqlite,
    /// A server shared by many machines.
    Postgres,
}

impl Backend {
    /// The backend a `--db` value names: `postgres://` / `postgresql://` URLs are
    /// PostgreSQL, anything else a SQLite path or `sqlite:` URL.
    pub fn of(location: &str) -> Backend {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A handle on one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// What the user named (path or URL) with any password replaced, for messages.
    location: String,
}

impl Store {
    /// The database location for messages (a URL's password is replaced by `***`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store as the dashboard's header names it: a SQLite file by its file name, a
    /// PostgreSQL URL with its password replaced by `***`.
    pub fn display_name(&self) -> String {
        open::display_name(self.backend, &self.location)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish (flushes WAL on the last close).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
