//! Routes of the audit log, for auditors: entries page by page, the whole log as JSON
//! lines for an external archive, and a verification of the chain.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{call, AppState, Query};
use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use futures_util::StreamExt;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    /// First sequence number.
    #[serde(default)]
    from: u64,
    /// Entries per page, 1 to 1000.
    #[serde(default = "hundred")]
    #[schemars(range(min = 1, max = 1000))]
    limit: usize,
    /// Exactly this actor.
    #[serde(default)]
    actor: Option<String>,
    /// Actions starting with this.
    #[serde(default)]
    action: Option<String>,
    /// Exactly this target.
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    until: Option<chrono::DateTime<chrono::Utc>>,
}

const MAX_PAGE: usize = 1000;

fn hundred() -> usize {
    100
}

pub(super) async fn entries(
    State(s): State<AppState>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    if !(1..=MAX_PAGE).contains(&p.limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let limit = p.limit;
    let filter = guichet_core::audit::Filter {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since: p.since,
        until: p.until,
    };
    let found = call(&s, move |e| e.audit_search(&filter, p.from, limit)).await?;
    Ok(Json(json!(found)))
}

/// Every entry, one JSON object per line, oldest first, streamed a page at a time (one
/// engine call per page), so the log is never held whole in memory.
pub(super) async fn export(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    // The first page before the answer starts, so a failing store is still a JSON error.
    let (first, next) = call(&s, |e| e.audit_export_page(0)).await?;
    let rest = futures_util::stream::unfold((s, next), |(s, from)| async move {
        let from = from?;
        match call(&s, move |e| e.audit_export_page(from)).await {
            Ok((lines, next)) => Some((Ok(lines), (s, next))),
            // Headers are gone: the client sees a cut connection, not a short log.
            Err(e) => Some((Err(std::io::Error::other(e.message)), (s, None))),
        }
    });
    let pages =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(pages),
    ))
}

pub(super) async fn verify(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let verdict = call(&s, |e| e.verify_audit()).await?;
    Ok(Json(json!({ "ok": verdict.ok(), "verdict": verdict })))
}
