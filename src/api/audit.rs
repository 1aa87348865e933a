//! Routes of the audit log, for auditors: entries page by page, the whole log as JSON
//! lines for an external archive, and a verification of the chain.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{call, AppState, Query};
use crate::error::ApiResult;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    /// First sequence number.
    #[serde(default)]
    from: u64,
    #[serde(default = "hundred")]
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

fn hundred() -> usize {
    100
}

pub(super) async fn entries(
    State(s): State<AppState>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let limit = p.limit.clamp(1, 1000);
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

/// Every entry, one JSON object per line, oldest first.
pub(super) async fn export(State(s): State<AppState>) -> ApiResult<impl IntoResponse> {
    let body = call(&s, |e| e.audit_export()).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body))
}

pub(super) async fn verify(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let verdict = call(&s, |e| e.verify_audit()).await?;
    Ok(Json(json!({ "ok": verdict.ok(), "verdict": verdict })))
}
