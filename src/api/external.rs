//! Routes of external tasks: workers in any language fetch and lock tasks of their topics
//! with a lease, then complete them or report a failure; the administrator lists and
//! retries incidents.

use axum::extract::{Path, State};
use axum::Json;
use guichet_core::case::Data;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{call, case_body, commit, mutate, AppState, Body, Caller};
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FetchBody {
    /// The worker's own name (a process, a host): who holds the lease.
    worker: String,
    topics: Vec<String>,
    #[serde(default = "one")]
    max_tasks: usize,
    /// How long the tasks stay locked for this worker.
    lease_ms: i64,
}

/// A duration from the wire. Clamped first: chrono panics on milliseconds it cannot hold
/// (found by fuzzing), and the engine refuses anything outside its limits anyway.
fn millis(ms: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms.clamp(-1, 30 * 24 * 3600 * 1000))
}

fn one() -> usize {
    1
}

pub(super) async fn fetch_and_lock(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<FetchBody>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    if b.max_tasks == 0 || b.max_tasks > 100 {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "max_tasks must be between 1 and 100",
        ));
    }
    let (tasks, _) = commit(
        &s,
        move |e| {
            e.fetch_and_lock(
                &actor,
                &b.worker,
                &b.topics,
                b.max_tasks,
                millis(b.lease_ms),
            )
        },
        |r| r.1,
    )
    .await?;
    Ok(Json(json!({ "tasks": tasks })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CompleteBody {
    worker: String,
    /// The step's outcome; `approve` if absent.
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    data: Data,
}

pub(super) async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<CompleteBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.complete_external(&actor, &b.worker, &task, b.outcome, b.data)
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(case_body(
        done.case(),
    )))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FailureBody {
    worker: String,
    message: String,
    /// Attempts left; one less than before if absent. 0 makes the task an incident.
    #[serde(default)]
    retries: Option<u32>,
    /// Wait before the task may be fetched again.
    #[serde(default)]
    retry_in_ms: i64,
}

pub(super) async fn failure(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<FailureBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.fail_external(
            &actor,
            &b.worker,
            &task,
            &b.message,
            b.retries,
            millis(b.retry_in_ms),
        )
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(case_body(
        done.case(),
    )))
}

/// External tasks whose retries ran out, waiting for the administrator.
pub(super) async fn incidents(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.external_incidents()).await?;
    let items: Vec<Value> = list
        .iter()
        .map(|(c, t)| {
            json!({
                "task": t, "case_id": c.id, "case_number": c.number, "procedure": c.procedure,
            })
        })
        .collect();
    Ok(Json(json!({ "tasks": items })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryBody {
    #[serde(default = "three")]
    retries: u32,
}

fn three() -> u32 {
    3
}

pub(super) async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<RetryBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.0;
    let done = mutate(&s, move |e| e.retry_external(&actor, &task, b.retries)).await?;
    Ok(axum::response::IntoResponse::into_response(case_body(
        done.case(),
    )))
}
