//! Routes of notices: a case's notices with their delivery status, the staff inbox, and
//! the administrator's retry of a failed notice.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{call, commit, AppState, Caller, Query};
use crate::error::ApiResult;
use crate::pool::NEXT_FLUSH;

/// Every notice a case caused, with channel, recipient and delivery status.
pub(super) async fn case_notices(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let list = call(&s, move |e| {
        let case = e.visible_case(&actor, &reference)?;
        e.notices(&case)
    })
    .await?;
    Ok(Json(json!({ "notices": list })))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InboxQuery {
    #[serde(default)]
    unread: bool,
}

/// The caller's in-app inbox, newest first.
pub(super) async fn inbox(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<InboxQuery>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let list = call(&s, move |e| e.inbox(&actor, q.unread)).await?;
    Ok(Json(json!({ "notices": list })))
}

pub(super) async fn mark_read(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let n = commit(&s, move |e| e.mark_read(&actor, &id), |_| NEXT_FLUSH).await?;
    Ok(Json(json!({ "notice": n })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FailedQuery {
    /// Notices to list, 1 to 1000.
    #[serde(default = "hundred")]
    #[schemars(range(min = 1, max = 1000))]
    limit: usize,
}

fn hundred() -> usize {
    100
}

/// Notices that failed for good, the latest failure first.
pub(super) async fn failed_notices(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<FailedQuery>,
) -> ApiResult<Json<Value>> {
    super::check_limit(q.limit)?;
    let actor = caller.0;
    let list = call(&s, move |e| e.failed_notices(&actor, q.limit)).await?;
    Ok(Json(json!({ "notices": list })))
}

/// Queues a failed notice again, e.g. after the channel's configuration was fixed.
pub(super) async fn retry_notice(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let n = commit(&s, move |e| e.retry_notice(&actor, &id), |_| NEXT_FLUSH).await?;
    Ok(Json(json!({ "notice": n })))
}
