//! Retrying a store call that failed on reaching the database rather than on what it
//! asked: a worker under load must not fail a run, or die, because the pool or the SQLite
//! lock was busy for a moment.

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::{Result, StoreError};

/// How long a call keeps retrying transient failures. Longer than a lease (60 s by
/// default): when the database comes back within it, a run is kept; when it does not,
/// another worker reclaims the lease and the run resumes from its checkpoint there.
pub const RETRY_FOR: Duration = Duration::from_secs(120);

const FIRST_WAIT: Duration = Duration::from_millis(200);
const LONGEST_WAIT: Duration = Duration::from_secs(10);

impl StoreError {
    /// A failure to reach the database (the pool timed out, the connection broke, the
    /// database stayed locked past the busy timeout, PostgreSQL shut down or aborted a
    /// transaction for a conflict); the same call can succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sql(e) | StoreError::Open { source: e, .. } => transient_sql(e),
            _ => false,
        }
    }
}

fn transient_sql(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let msg = d.message();
            // SQLite: SQLITE_BUSY / SQLITE_LOCKED. PostgreSQL: serialization failure,
            // deadlock, admin shutdown, and the connection-exception class 08.
            msg.contains("database is locked")
                || msg.contains("database table is locked")
                || msg.contains("database is busy")
                || d.code().is_some_and(|c| {
                    matches!(c.as_ref(), "40001" | "40P01" | "57P01") || c.starts_with("08")
                })
        }
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails for a reason that retrying cannot fix, or
/// [`RETRY_FOR`] has passed; waits 0.2 s, 0.4 s, ... up to 10 s between tries.
pub async fn retry_transient<T, F, Fut>(call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_transient_for(RETRY_FOR, call).await
}

async fn retry_transient_for<T, F, Fut>(budget: Duration, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + budget;
    let mut wait = FIRST_WAIT;
    loop {
        match call().await {
            Err(e) if e.is_transient() && Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_WAIT);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_pool_timeout_is_retried_until_the_call_succeeds() {
        let calls = Cell::new(0);
        let got = rt().block_on(retry_transient(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(StoreError::Sql(sqlx::Error::PoolTimedOut))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(got.unwrap(), 3);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn an_error_in_what_was_asked_is_not_retried() {
        let calls = Cell::new(0);
        let got: Result<()> = rt().block_on(retry_transient(|| {
            calls.set(calls.get() + 1);
            async { Err(StoreError::NoSuchSweep("x".into())) }
        }));
        assert!(matches!(got, Err(StoreError::NoSuchSweep(_))));
        assert_eq!(calls.get(), 1);
        let corrupt = StoreError::Corrupt("bad json".into());
        assert!(!corrupt.is_transient());
        assert!(!StoreError::Sql(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn a_database_that_stays_away_fails_once_the_budget_is_spent() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let got: Result<()> =
            rt().block_on(retry_transient_for(Duration::from_millis(700), || {
                calls.set(calls.get() + 1);
                async { Err(StoreError::Sql(sqlx::Error::PoolTimedOut)) }
            }));
        assert!(got.unwrap_err().is_transient());
        // 0.2 + 0.4 s of waiting fit in 0.7 s; the next 0.8 s wait does not.
        assert_eq!(calls.get(), 3);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
