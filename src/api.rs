//! The HTTP API: the server's shared state, the router, and the helpers every handler
//! uses (one engine call on the engine threads; a commit answered once durable). Handlers
//! are thin and grouped by what they act on: `public`, `cases`, `tasks`, `admin`,
//! `notify`, `external`, `audit`; `extract` holds the extractors, `routes` the route table
//! and its permission middleware, `schema` the OpenAPI document, `guard` the request
//! limits.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use guichet_core::case::{Applicant, Case, Data, HistoryEvent};
use guichet_core::engine::{BundleItem, Committed, Submission, WorkFilter};
use guichet_core::{Actor, Engine};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

mod admin;
mod audit;
mod authorize;
mod cases;
mod external;
mod extract;
mod guard;
mod notify;
mod public;
mod routes;
mod schema;
pub(crate) mod stats;
mod tasks;

// The handlers, for the route table.
pub(crate) use self::cases::attachment;
pub use self::extract::{Application, Body, Query};
use self::{admin::*, cases::*, public::*, tasks::*};

/// What every handler shares; cloned for each request (one reference count).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub engine: Arc<Engine>,
    /// Wrong query codes per client and per case (see `guard`).
    pub guesses: guard::Guesses,
    /// Deadline, share per address and body limit of every request (see `guard::admit`).
    pub limits: guard::RequestLimits,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// The engine threads every engine call runs on; they also group commits' flushes.
    pub pool: Arc<crate::pool::Pool>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server with `limits` and a body limit of `max_body` bytes.
    pub fn new(
        engine: Arc<Engine>,
        pool: Arc<crate::pool::Pool>,
        limits: &crate::config::LimitsConfig,
        max_body: usize,
        max_upload: usize,
    ) -> AppState {
        AppState(Arc::new(Shared {
            engine,
            pool,
            guesses: guard::Guesses::default(),
            limits: guard::RequestLimits::new(limits, max_body, max_upload),
            max_json_depth: limits.max_json_depth,
        }))
    }
}

pub(crate) use authorize::check as permitted;
pub use authorize::Caller;
pub use guard::Client;
pub use routes::{table, Permission, Route};

/// Finds a case for the public by its number and query code, under the guess limits,
/// and runs `view` on it in the same engine call (the web pages' tracking).
pub(crate) async fn applicant_lookup<T: Send + 'static>(
    s: &AppState,
    client: &Client,
    number: &str,
    code: &str,
    view: impl FnOnce(&Engine, Case) -> guichet_core::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let caller = Caller(Actor::Public);
    s.guesses.check(&client.0, number)?;
    let (n, c) = (number.to_string(), code.to_string());
    let answer = call(s, move |e| {
        let case = e.applicant_access(&Actor::Public, &n, Some(&c))?;
        view(e, case)
    })
    .await;
    after_code(s, &caller, client, number, answer)
}

/// As [`applicant_lookup`], for a change the applicant makes: `change` commits, and the
/// answer waits until it is durable.
pub(crate) async fn applicant_commit<T: Send + 'static>(
    s: &AppState,
    client: &Client,
    number: &str,
    code: &str,
    change: impl FnOnce(&Engine, Case) -> guichet_core::Result<(Committed, T)> + Send + 'static,
) -> ApiResult<T> {
    let caller = Caller(Actor::Public);
    s.guesses.check(&client.0, number)?;
    let (n, c) = (number.to_string(), code.to_string());
    let answer = commit(
        s,
        move |e| {
            let case = e.applicant_access(&Actor::Public, &n, Some(&c))?;
            change(e, case)
        },
        |(done, _)| done.ticket,
    )
    .await
    .map(|(_, t)| t);
    after_code(s, &caller, client, number, answer)
}

pub fn router(state: AppState) -> Router {
    // `guard::admit` has read every body within its own limit (larger for uploads).
    let max_body = state.limits.max_upload;
    let routes = table();
    let perms = authorize::permissions(&routes);
    let mut r = Router::new();
    for route in routes {
        r = r.route(route.path, route.handler);
    }
    r.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), perms),
        authorize::authorize,
    ))
    // The web pages, outside `/api`, under the same request limits.
    .merge(crate::web::router())
    .fallback(crate::web::fallback)
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::admit,
    ))
    .layer(axum::extract::DefaultBodyLimit::max(max_body))
    // Outermost: the request's id, span, log line and metrics cover all of the above.
    .layer(axum::middleware::from_fn(crate::telemetry::observe))
    .with_state(state)
}

/// Runs engine work on the engine threads: scripts are CPU-bound and sled is synchronous.
/// Most items a paged list answers at once.
const MAX_LIMIT: usize = 1000;

/// A page size as the paged lists take it (1 to [`MAX_LIMIT`]), or the 400 that says so.
fn check_limit(limit: usize) -> ApiResult<()> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

async fn call<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
) -> ApiResult<T> {
    Ok(state.pool.call(f).await?)
}

/// Appends an audit record on an engine thread without waiting for it (a refusal, a wrong
/// query code: the answer does not depend on it).
pub(crate) fn audit_later(state: &AppState, record: guichet_core::audit::Record) {
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Err(e) = pool.call(move |e| e.audit(vec![record])).await {
            tracing::error!(message = "audit entry not written", error = %e);
        }
    });
}

/// Runs engine work that commits, and answers only once the write is on disk.
async fn commit<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> guichet_core::Result<T> + Send + 'static,
    ticket: impl FnOnce(&T) -> u64 + Send + 'static,
) -> ApiResult<T> {
    Ok(state.pool.commit(f, ticket).await?)
}

/// Commits a transition through the engine and answers only once it is on disk.
async fn mutate(
    state: &AppState,
    f: impl FnOnce(&Engine) -> guichet_core::Result<Committed> + Send + 'static,
) -> ApiResult<Committed> {
    commit(state, f, |c| c.ticket).await
}
