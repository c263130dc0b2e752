//! Opening a database: creating it with the embedded migrations, refusing files that are
//! not ours or come from a newer version, and a read-only mode that writes nothing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::error::{Result, StoreError};
use super::Store;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for the lock before "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Opens (creating if needed) the database at `location` (a path or `sqlite://` URL)
    /// and brings its schema up to date.
    pub async fn open(location: &str) -> Result<Store> {
        let opts = connect_options(location)?.create_if_missing(true);
        // Two processes opening a new database at once must not both migrate it (the
        // second would see a half-built schema): an exclusive flock on the file while
        // checking and migrating. SQLite's own locks are fcntl locks, unaffected by flock.
        let _guard = lock_file(location, opts.get_filename())?;
        let pool = pool(location, opts, 8, true).await?;
        let store = Store {
            pool,
            location: location.to_string(),
        };
        store.check_ours().await?;
        MIGRATOR
            .run(&store.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: location.to_string(),
                source,
            })?;
        Ok(store)
    }

    /// Opens an existing database read-only (`sweep plan`, `status`, `report`): writes
    /// nothing, creates nothing. `Ok(None)` when there is no database yet.
    pub async fn open_read_only(location: &str) -> Result<Option<Store>> {
        let path = sqlite_path(location);
        if !Path::new(&path).exists() {
            return Ok(None);
        }
        let opts = connect_options(location)?.read_only(true);
        let pool = pool(location, opts, 2, false).await?;
        let store = Store {
            pool,
            location: location.to_string(),
        };
        store.check_ours().await?;
        Ok(Some(store))
    }

    /// Refuses files that are not SQLite, SQLite files of another application, and
    /// databases migrated by a newer version of `sweep`.
    async fn check_ours(&self) -> Result<()> {
        let not_ours = |reason: String| StoreError::NotOurs {
            location: self.location.clone(),
            reason,
        };
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| not_ours(e.to_string()))?;
        if tables.is_empty() {
            return Ok(()); // a new, empty database
        }
        if !tables.iter().any(|t| t == "meta") {
            return Err(not_ours(format!(
                "it has tables ({}) but no `meta` table",
                tables.join(", ")
            )));
        }
        let app: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'application'")
                .fetch_optional(&self.pool)
                .await?;
        if app.as_deref() != Some("simclr-sweep") {
            return Err(not_ours(format!("its application is {app:?}")));
        }
        if tables.iter().any(|t| t == "_sqlx_migrations") {
            let rows = sqlx::query("SELECT version FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await?;
            let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
            let newest_known = known.iter().copied().max().unwrap_or(0);
            for r in rows {
                let v: i64 = r.get(0);
                if !known.contains(&v) {
                    return Err(StoreError::NewerSchema {
                        location: self.location.clone(),
                        found: v,
                        known: newest_known,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Holds an exclusive flock on the database file until dropped.
struct FileLock(std::fs::File);

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn lock_file(location: &str, path: &Path) -> Result<Option<FileLock>> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
        return Ok(None); // in-memory database
    }
    let open_err = |e: std::io::Error| StoreError::Open {
        location: location.to_string(),
        source: sqlx::Error::Io(e),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_err)?;
    // SAFETY: flock on a descriptor we own; blocks until the other opener is done.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(open_err(std::io::Error::last_os_error()));
    }
    Ok(Some(FileLock(file)))
}

/// The file path inside a `sqlite://` URL, or the location itself.
fn sqlite_path(location: &str) -> String {
    let s = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    s.split('?').next().unwrap_or(s).to_string()
}

fn connect_options(location: &str) -> Result<SqliteConnectOptions> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return Err(StoreError::Open {
            location: location.to_string(),
            source: sqlx::Error::Configuration(
                "PostgreSQL stores are not supported by this build yet; use a SQLite file".into(),
            ),
        });
    }
    let opts = if location.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(location).map_err(|source| StoreError::Open {
            location: location.to_string(),
            source,
        })?
    } else {
        SqliteConnectOptions::new().filename(location)
    };
    Ok(opts.foreign_keys(true).busy_timeout(BUSY_TIMEOUT))
}

async fn pool(
    location: &str,
    opts: SqliteConnectOptions,
    max: u32,
    writable: bool,
) -> Result<SqlitePool> {
    // WAL only for writers: setting it is itself a write.
    let opts = if writable {
        opts.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    } else {
        opts
    };
    SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(opts)
        .await
        .map_err(|source| match &source {
            sqlx::Error::Database(d) if d.message().contains("not a database") => {
                StoreError::NotOurs {
                    location: location.to_string(),
                    reason: "the file is not an SQLite database".into(),
                }
            }
            _ => StoreError::Open {
                location: location.to_string(),
                source,
            },
        })
}
