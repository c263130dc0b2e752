//! `sweep serve`: a read-only web dashboard over the store (SQLite or PostgreSQL) to keep
//! open while a sweep runs: the list of sweeps, one sweep with its live report (the
//! report module's own figures, inline SVG), one run with its curves. Pages are rendered
//! on the server (axum on the tokio runtime the store already uses); a small inline
//! script refreshes a page when its change token moves. No JavaScript build step, no CDN.
//!
//! Safe by default: loopback unless `--bind` says otherwise (with a warning), the store
//! opened read-only (SQLite WAL readers never block the workers' writes; the one write is
//! bringing a store an older `sweep` wrote up to date, at start), the password of a
//! database URL never shown, every stored string escaped, unknown URLs a 404 page.

mod cache;
mod gather;
mod html;
mod pages;
mod routes;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::store::{redact, Store};

/// Serves the dashboard of the store at `db` on `bind` until the process is stopped.
pub fn main(db: &str, bind: &str) -> Result<i32> {
    let addr: SocketAddr = bind
        .parse()
        .with_context(|| format!("--bind {bind}: not an address and port like 127.0.0.1:8080"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            eprintln!(
                "warning: serving on {local}, which is not loopback: anyone who can reach this \
                 machine can read the sweeps (there is no login); use --bind 127.0.0.1:PORT to \
                 keep it local"
            );
        }
        // Listening already: requests made while the store is awaited wait in the backlog.
        println!("serving {} on http://{local}/ (Ctrl-C stops)", redact(db));
        let store = wait_for_store(db).await?;
        serve(store, listener).await?;
        Ok::<_, anyhow::Error>(0)
    })
}

/// Serves the dashboard of `store` on `listener` until the process is stopped (what
/// `sweep serve` runs; the benchmark starts it in-process).
pub async fn serve(store: Store, listener: tokio::net::TcpListener) -> Result<()> {
    axum::serve(listener, routes::router(store))
        .await
        .context("serving")
}

/// Opens the store read-only, waiting for it to be created (`sweep run` creates it). A
/// store an older `sweep` wrote is first brought up to date (its change counters, which
/// the pages poll), as any writing command of this version would.
async fn wait_for_store(db: &str) -> Result<Store> {
    let mut said = false;
    loop {
        if let Some(store) = Store::open_read_only(db).await? {
            if store.schema_is_current().await? {
                return Ok(store);
            }
            store.close().await;
            eprintln!(
                "{}: bringing the store's schema up to date (the change counters the pages poll)",
                redact(db)
            );
            Store::open(db).await?.close().await;
            continue;
        }
        if !said {
            eprintln!(
                "no database at {} yet; waiting for `sweep run` to create it",
                redact(db)
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
