//! The HTTP side: URLs, status codes and headers. Each page has three URLs: the page,
//! its live fragment (the part that refreshes) and its version (a change token, one
//! small query; the page's script polls it and fetches the fragment only when it
//! changed). Unknown URLs, sweeps and runs get a 404 page; a store error a 500 page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::overview;
use crate::store::Store;

use super::cache::Cache;
use super::html::{page, Live};
use super::{gather, pages};

type Params = Query<HashMap<String, String>>;

/// What every handler gets: the store, and what is kept between requests.
#[derive(Clone)]
struct Dashboard {
    store: Store,
    cache: Arc<Cache>,
}

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/live", get(index_live))
        .route("/version", get(index_version))
        .route("/sweep/{name}", get(sweep_page))
        .route("/sweep/{name}/live", get(sweep_live))
        .route("/sweep/{name}/version", get(sweep_version))
        .route("/run/{id}", get(run_page))
        .route("/run/{id}/live", get(run_live))
        .route("/run/{id}/version", get(run_version))
        .fallback(unknown_url)
        .with_state(Dashboard {
            store,
            cache: Arc::new(Cache::default()),
        })
}

fn no_store(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn full(
    store: &Store,
    status: StatusCode,
    title: &str,
    live: Option<&Live>,
    body: &str,
) -> Response {
    (status, Html(page(title, &store.display_name(), live, body))).into_response()
}

fn fragment(body: String) -> Response {
    no_store(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn token(t: String) -> Response {
    no_store(StatusCode::OK, "text/plain; charset=utf-8", t)
}

fn missing(store: &Store, what: &str) -> Response {
    full(
        store,
        StatusCode::NOT_FOUND,
        "not found",
        None,
        &pages::not_found(what),
    )
}

fn failed(store: &Store, e: anyhow::Error) -> Response {
    full(
        store,
        StatusCode::INTERNAL_SERVER_ERROR,
        "error",
        None,
        &pages::error(&format!("{e:#}")),
    )
}

async fn unknown_url(
    State(Dashboard { store, .. }): State<Dashboard>,
    uri: axum::http::Uri,
) -> Response {
    missing(&store, &format!("No page at {}.", uri.path()))
}

async fn index(State(Dashboard { store, .. }): State<Dashboard>) -> Response {
    let (list, tok) = match tokio::try_join!(overview::sweeps(&store), async {
        Ok::<_, anyhow::Error>(store.change_token().await?)
    }) {
        Ok(x) => x,
        Err(e) => return failed(&store, e),
    };
    let live = Live {
        version_url: "/version",
        token: &tok,
        fragment_url: "/live",
    };
    full(
        &store,
        StatusCode::OK,
        "sweeps",
        Some(&live),
        &pages::sweeps(&list),
    )
}

async fn index_live(State(Dashboard { store, .. }): State<Dashboard>) -> Response {
    match overview::sweeps(&store).await {
        Ok(list) => fragment(pages::sweeps(&list)),
        Err(e) => failed(&store, e),
    }
}

async fn index_version(State(Dashboard { store, .. }): State<Dashboard>) -> Response {
    match store.change_token().await {
        Ok(t) => token(t),
        Err(e) => failed(&store, e.into()),
    }
}

/// `?page=N` (1-based) as a 0-based index; anything else is the first page.
fn page_of(q: &Params) -> usize {
    q.get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .map_or(0, |p| p.saturating_sub(1))
}

/// The sweep's change token and the body of page `page_no` under it: kept from an
/// earlier request while the token is unchanged, else rendered from what the cache keeps
/// of the sweep, brought up to date. `None`: no such sweep.
async fn sweep_body(
    store: &Store,
    cache: &Cache,
    name: &str,
    page_no: usize,
) -> anyhow::Result<Option<(String, Arc<String>)>> {
    // The version first: a change between it and the reads is read again next time.
    let Some(version) = store.sweep_version(name).await? else {
        return Ok(None);
    };
    let tok = version.to_string();
    let key = format!("{}?page={page_no}", pages::sweep_url(name));
    if let Some(body) = cache.body(&key, &tok) {
        return Ok(Some((tok, body)));
    }
    // One request at a time reads and renders a sweep; one that waited here likely finds
    // the body the other rendered.
    let slot = cache.sweep(name);
    let mut kept = slot.lock().await;
    if let Some(body) = cache.body(&key, &tok) {
        return Ok(Some((tok, body)));
    }
    let Some(view) = gather::sweep(store, cache, &mut kept, name, version, page_no).await? else {
        return Ok(None);
    };
    let body = Arc::new(pages::sweep(&view));
    cache.keep_body(&key, &tok, body.clone());
    Ok(Some((tok, body)))
}

async fn sweep_page(
    State(Dashboard { store, cache }): State<Dashboard>,
    Path(name): Path<String>,
    q: Params,
) -> Response {
    let page_no = page_of(&q);
    let (tok, body) = match sweep_body(&store, &cache, &name, page_no).await {
        Ok(Some(x)) => x,
        Ok(None) => return missing(&store, &format!("No sweep named {name} in this store.")),
        Err(e) => return failed(&store, e),
    };
    let version_url = format!("{}/version", pages::sweep_url(&name));
    let fragment_url = format!("{}/live?page={}", pages::sweep_url(&name), page_no + 1);
    let live = Live {
        version_url: &version_url,
        token: &tok,
        fragment_url: &fragment_url,
    };
    full(&store, StatusCode::OK, &name, Some(&live), &body)
}

async fn sweep_live(
    State(Dashboard { store, cache }): State<Dashboard>,
    Path(name): Path<String>,
    q: Params,
) -> Response {
    match sweep_body(&store, &cache, &name, page_of(&q)).await {
        Ok(Some((_, body))) => fragment(body.as_ref().clone()),
        Ok(None) => missing(&store, &format!("No sweep named {name} in this store.")),
        Err(e) => failed(&store, e),
    }
}

async fn sweep_version(
    State(Dashboard { store, .. }): State<Dashboard>,
    Path(name): Path<String>,
) -> Response {
    match store.sweep_version(&name).await {
        Ok(Some(v)) => token(v.to_string()),
        Ok(None) => missing(&store, &format!("No sweep named {name} in this store.")),
        Err(e) => failed(&store, e.into()),
    }
}

async fn run_page(
    State(Dashboard { store, .. }): State<Dashboard>,
    Path(id): Path<String>,
) -> Response {
    let tok = match store.run_change_token(&id).await {
        Ok(Some(t)) => t,
        Ok(None) => return missing(&store, &format!("No run with id {id} in this store.")),
        Err(e) => return failed(&store, e.into()),
    };
    let view = match gather::run(&store, &id).await {
        Ok(Some(v)) => v,
        Ok(None) => return missing(&store, &format!("No run with id {id} in this store.")),
        Err(e) => return failed(&store, e),
    };
    let version_url = format!("{}/version", pages::run_url(&id));
    let fragment_url = format!("{}/live", pages::run_url(&id));
    let live = Live {
        version_url: &version_url,
        token: &tok,
        fragment_url: &fragment_url,
    };
    let title = format!("{} {}", view.run.label, crate::vocab::short_id(&id));
    full(
        &store,
        StatusCode::OK,
        &title,
        Some(&live),
        &pages::run(&view),
    )
}

async fn run_live(
    State(Dashboard { store, .. }): State<Dashboard>,
    Path(id): Path<String>,
) -> Response {
    match gather::run(&store, &id).await {
        Ok(Some(v)) => fragment(pages::run(&v)),
        Ok(None) => missing(&store, &format!("No run with id {id} in this store.")),
        Err(e) => failed(&store, e),
    }
}

async fn run_version(
    State(Dashboard { store, .. }): State<Dashboard>,
    Path(id): Path<String>,
) -> Response {
    match store.run_change_token(&id).await {
        Ok(Some(t)) => token(t),
        Ok(None) => missing(&store, &format!("No run with id {id} in this store.")),
        Err(e) => failed(&store, e.into()),
    }
}
