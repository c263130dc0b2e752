//! Opening a database: creating it with the embedded migrations of its backend, refusing
//! databases that are not ours or come from a newer version, and a read-only mode that
//! writes nothing. Two processes opening a new database at once never both migrate it:
//! SQLite files are flocked, PostgreSQL takes an advisory lock.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Row};

use super::error::{Result, StoreError};
use super::{Backend, Store};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a SQLite writer waits for the lock before "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Advisory lock key serialising check-and-migrate on one PostgreSQL database
/// ("simclr-s" in ASCII).
const PG_OPEN_LOCK: i64 = 0x73696d636c722d73;

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATOR,
        Backend::Postgres => &POSTGRES_MIGRATOR,
    }
}

impl Store {
    /// Opens (creating if needed) the database at `location` (a SQLite path or
    /// `sqlite://` URL, or a `postgres://` URL) and brings its schema up to date.
    pub async fn open(location: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(location);
        let shown = redact(location);
        match backend {
            Backend::Sqlite => {
                let (opts, path) = sqlite_options(location, true)?;
                // flock the file while checking and migrating (SQLite's own locks are
                // fcntl locks, unaffected by flock).
                let _guard = lock_file(&shown, &path)?;
                let store = Store {
                    pool: sqlite_pool(&shown, opts, 8, true).await?,
                    backend,
                    location: shown,
                };
                let mut conn = store.acquire().await?;
                store.check_and_migrate(&mut conn).await?;
                drop(conn);
                Ok(store)
            }
            Backend::Postgres => {
                let store = Store {
                    pool: pg_pool(location, &shown, 4, false).await?,
                    backend,
                    location: shown,
                };
                let mut conn = store.acquire().await?;
                sqlx::query("SELECT 1 FROM pg_advisory_lock($1)")
                    .bind(PG_OPEN_LOCK)
                    .execute(&mut *conn)
                    .await?;
                let migrated = store.check_and_migrate(&mut conn).await;
                sqlx::query("SELECT 1 FROM pg_advisory_unlock($1)")
                    .bind(PG_OPEN_LOCK)
                    .execute(&mut *conn)
                    .await?;
                migrated?;
                drop(conn);
                Ok(store)
            }
        }
    }

    /// Opens an existing database read-only (`sweep plan`, `status`, `report`): writes
    /// nothing, creates nothing. `Ok(None)` when there is no database yet (no SQLite file,
    /// or a PostgreSQL database without our tables).
    pub async fn open_read_only(location: &str) -> Result<Option<Store>> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(location);
        let shown = redact(location);
        // Three connections: a dashboard's first view of a sweep makes three reads at once.
        let pool = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(location);
                if !Path::new(&path).exists() {
                    return Ok(None);
                }
                let (opts, _) = sqlite_options(location, false)?;
                sqlite_pool(&shown, opts.read_only(true), 3, false).await?
            }
            Backend::Postgres => pg_pool(location, &shown, 3, true).await?,
        };
        let store = Store {
            pool,
            backend,
            location: shown,
        };
        let mut conn = store.acquire().await?;
        if store.tables(&mut conn).await?.is_empty() {
            return Ok(None);
        }
        store.check_ours(&mut conn).await?;
        drop(conn);
        Ok(Some(store))
    }

    /// Whether every migration this version of `sweep` knows is applied: a store last
    /// opened for writing by an older version is behind (a read-only open migrates nothing).
    pub async fn schema_is_current(&self) -> Result<bool> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&self.pool)
            .await?;
        Ok(migrator(self.backend)
            .iter()
            .all(|m| applied.contains(&m.version)))
    }

    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.pool
            .acquire()
            .await
            .map_err(|source| StoreError::Open {
                location: self.location.clone(),
                source,
            })
    }

    async fn check_and_migrate(&self, conn: &mut AnyConnection) -> Result<()> {
        self.check_ours(conn).await?;
        migrator(self.backend)
            .run(&mut *conn)
            .await
            .map_err(|source| StoreError::Migrate {
                location: self.location.clone(),
                source,
            })
    }

    /// The tables of our schema (SQLite: the file; PostgreSQL: the current schema).
    async fn tables(&self, conn: &mut AnyConnection) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => {
                "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
            }
        };
        sqlx::query_scalar(sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| StoreError::NotOurs {
                location: self.location.clone(),
                reason: e.to_string(),
            })
    }

    /// Refuses databases of another application and databases migrated by a newer
    /// version of `sweep`.
    async fn check_ours(&self, conn: &mut AnyConnection) -> Result<()> {
        let not_ours = |reason: String| StoreError::NotOurs {
            location: self.location.clone(),
            reason,
        };
        let tables = self.tables(conn).await?;
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
                .fetch_optional(&mut *conn)
                .await?;
        if app.as_deref() != Some("simclr-sweep") {
            return Err(not_ours(format!("its application is {app:?}")));
        }
        if tables.iter().any(|t| t == "_sqlx_migrations") {
            let rows = sqlx::query("SELECT version FROM _sqlx_migrations")
                .fetch_all(&mut *conn)
                .await?;
            let known: Vec<i64> = migrator(self.backend).iter().map(|m| m.version).collect();
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

/// A database location fit for messages and logs: the password of a URL
/// (`postgres://user:secret@host/db`, or a `password=` parameter) becomes `***`.
pub fn redact(location: &str) -> String {
    let Some(scheme_end) = location.find("://") else {
        return location.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &location[rest_start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let mut out = location[..rest_start].to_string();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[auth_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
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

/// How a page names the store at `location` (already redacted): a SQLite file by its
/// file name (its directories tell where it sits on someone's disk, nothing about the
/// sweeps), a PostgreSQL URL whole (its password already `***`).
pub(super) fn display_name(backend: Backend, location: &str) -> String {
    match backend {
        Backend::Postgres => location.to_string(),
        Backend::Sqlite => {
            let path = sqlite_path(location);
            std::path::Path::new(&path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(path)
        }
    }
}

/// The file path inside a `sqlite://` URL, or the location itself.
fn sqlite_path(location: &str) -> String {
    let s = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
        .unwrap_or(location);
    s.split('?').next().unwrap_or(s).to_string()
}

/// Options for a SQLite file, with its path made absolute (the `Any` driver takes a URL,
/// where a relative path would read as a host name).
fn sqlite_options(location: &str, create: bool) -> Result<(SqliteConnectOptions, PathBuf)> {
    let open_err = |source| StoreError::Open {
        location: location.to_string(),
        source,
    };
    let opts = if location.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(location).map_err(open_err)?
    } else {
        SqliteConnectOptions::new().filename(location)
    };
    let file = opts.get_filename().to_path_buf();
    check_sqlite_header(location, &file)?;
    let file = if file.is_absolute() || file.to_string_lossy().starts_with("file:") {
        file
    } else {
        std::path::absolute(&file).map_err(|e| open_err(sqlx::Error::Io(e)))?
    };
    Ok((
        opts.filename(&file)
            .create_if_missing(create)
            .foreign_keys(true),
        file,
    ))
}

/// Refuses an existing, non-empty file that is not SQLite before connecting (the pool
/// would otherwise retry the failing connection until its timeout).
fn check_sqlite_header(location: &str, file: &Path) -> Result<()> {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(file) else {
        return Ok(()); // missing (created later) or unreadable (the connect says why)
    };
    let mut head = Vec::with_capacity(16);
    if let Err(e) = f.by_ref().take(16).read_to_end(&mut head) {
        return Err(StoreError::Open {
            location: location.to_string(),
            source: sqlx::Error::Io(e),
        });
    }
    if !head.is_empty() && head != b"SQLite format 3\0" {
        return Err(StoreError::NotOurs {
            location: location.to_string(),
            reason: "the file is not an SQLite database".into(),
        });
    }
    Ok(())
}

async fn sqlite_pool(
    location: &str,
    opts: SqliteConnectOptions,
    max: u32,
    writable: bool,
) -> Result<AnyPool> {
    let any = AnyConnectOptions::from_str(opts.to_url_lossy().as_str()).map_err(|source| {
        StoreError::Open {
            location: location.to_string(),
            source,
        }
    })?;
    // WAL only for writers: setting it is itself a write.
    let pragmas: &'static [&'static str] = if writable {
        &[
            "PRAGMA busy_timeout = 10000",
            "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
        ]
    } else {
        // A reader (the dashboard) reads whole sweeps: the file mapped rather than read a
        // page at a time, and a page cache that holds a 10,000-run sweep's rows (64 MiB,
        // used only as filled).
        &[
            "PRAGMA busy_timeout = 10000",
            "PRAGMA mmap_size = 1073741824",
            "PRAGMA cache_size = -65536",
        ]
    };
    debug_assert_eq!(BUSY_TIMEOUT, Duration::from_millis(10_000));
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                for p in pragmas {
                    sqlx::query(*p).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(any)
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

async fn pg_pool(location: &str, shown: &str, max: u32, read_only: bool) -> Result<AnyPool> {
    let open_err = |source| StoreError::Open {
        location: shown.to_string(),
        source,
    };
    let opts = AnyConnectOptions::from_str(location).map_err(open_err)?;
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if read_only {
                    sqlx::query("SET default_transaction_read_only = on")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(open_err)
}

#[cfg(test)]
mod tests {
    use super::{display_name, redact};
    use crate::store::Backend;

    #[test]
    fn a_page_names_a_sqlite_store_by_its_file_and_a_postgres_store_by_its_redacted_url() {
        for (location, shown) in [
            ("/srv/experiments/runs/sweeps.db", "sweeps.db"),
            ("runs/sweeps.db", "sweeps.db"),
            ("sweeps.db", "sweeps.db"),
            ("sqlite:///srv/runs/s.db?mode=rwc", "s.db"),
        ] {
            assert_eq!(display_name(Backend::Sqlite, location), shown);
        }
        let url = redact("postgres://sweep:hunter2@db.example/sweeps");
        assert_eq!(
            display_name(Backend::Postgres, &url),
            "postgres://sweep:***@db.example/sweeps"
        );
    }

    #[test]
    fn redact_hides_passwords_and_nothing_else() {
        assert_eq!(
            redact("postgres://sweep:s3cr:et@db.example:5432/sweeps?sslmode=require"),
            "postgres://sweep:***@db.example:5432/sweeps?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://u@h/d?password=x&application_name=a"),
            "postgresql://u@h/d?password=***&application_name=a"
        );
        assert_eq!(redact("runs/sweeps.db"), "runs/sweeps.db");
        assert_eq!(redact("sqlite://a/b.db"), "sqlite://a/b.db");
    }
}
