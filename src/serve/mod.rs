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
//! Ctrl-C or SIGTERM stops it: the requests in flight finish, then it exits with
//! [`crate::exit::INTERRUPTED`]. What a sweep's progress is comes from `crate::overview`,
//! shared with `sweep status`.

mod cache;
mod gather;
mod html;
mod pages;
mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::exit;
use crate::store::{redact, Store};

/// Serves the dashboard of the store at `db` on `bind` until Ctrl-C or SIGTERM, then
/// lets the requests in flight finish, closes the store and returns
/// [`exit::INTERRUPTED`] (a second signal exits at once with it).
pub fn main(db: &str, bind: &str) -> Result<i32> {
    let addr: SocketAddr = bind
        .parse()
        .with_context(|| format!("--bind {bind}: not an address and port like 127.0.0.1:8080"))?;
    let stop = stop_on_signal().context("installing the Ctrl-C handler")?;
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
        let store = tokio::select! {
            store = wait_for_store(db) => store?,
            () = stopped(&stop) => return Ok(exit::INTERRUPTED),
        };
        serve_until(store.clone(), listener, stopped(&stop)).await?;
        store.close().await;
        Ok::<_, anyhow::Error>(exit::INTERRUPTED)
    })
}

/// Serves the dashboard of `store` on `listener` until the process is stopped (the
/// benchmark starts it in-process this way).
pub async fn serve(store: Store, listener: tokio::net::TcpListener) -> Result<()> {
    serve_until(store, listener, std::future::pending()).await
}

/// Serves until `stop` resolves, then lets the requests in flight finish.
async fn serve_until(
    store: Store,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, routes::router(store))
        .with_graceful_shutdown(stop)
        .await
        .context("serving")
}

/// A flag the first SIGINT or SIGTERM sets; the second exits at once with
/// [`exit::INTERRUPTED`] (the dashboard holds nothing that needs saving).
fn stop_on_signal() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it runs when the flag is already set: the second signal.
        signal_hook::flag::register_conditional_shutdown(sig, exit::INTERRUPTED, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Resolves once `flag` is set (checked ten times a second).
fn stopped(flag: &Arc<AtomicBool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let flag = flag.clone();
    async move {
        while !flag.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
