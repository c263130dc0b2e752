//! The store: the only module that speaks SQL. Sweeps, runs (one row per stage, shared
//! by every sweep that contains it), sweep membership, metrics and checkpoints, in SQLite
//! through sqlx with embedded migrations, WAL, a busy timeout and BEGIN IMMEDIATE writes
//! (DESIGN.md section 5: 0 "database is locked" errors with 8 writers, against 1442 for
//! plain deferred transactions).

mod error;
mod open;
mod records;
mod runs;

pub use error::StoreError;
pub use records::*;

use sqlx::SqlitePool;

/// A handle on one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// What the user named (path or URL), for messages.
    location: String,
}

impl Store {
    pub fn location(&self) -> &str {
        &self.location
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
