//! Store errors, each saying what to do.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location}: not a simclr-sweep database ({reason}); point --db at a new file or at one `sweep` created")]
    NotOurs { location: String, reason: String },
    #[error("{location}: the database has schema version {found}, newer than this `sweep` knows ({known}); upgrade simclr-sweep")]
    NewerSchema {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("{location}: cannot open the database: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },
    #[error("{location}: migration failed: {source}")]
    Migrate {
        location: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("no sweep named `{0}` in the store; `sweep ls` lists the sweeps")]
    NoSuchSweep(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
