//! Administration: tokens and passwords, scripts and versions, migrations, incidents,
//! delegations.

use super::*;

pub(super) async fn tokens(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.tokens()).await?;
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueBody {
    /// A staff id, or `admin` for another administrator token.
    subject: String,
    #[serde(default)]
    label: String,
    /// Days the token lives (default 90, at most 366).
    #[serde(default)]
    expires_in_days: Option<u32>,
}

pub(super) async fn issue_token(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<IssueBody>,
) -> ApiResult<impl IntoResponse> {
    let by = caller.0.name();
    let (rec, secret, _) = commit(
        &s,
        move |e| e.issue_token(&by, &b.subject, &b.label, b.expires_in_days),
        |r| r.2,
    )
    .await?;
    tracing::info!(message = "token issued", id = %rec.id, subject = %rec.subject);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": secret, "record": rec })),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    staff: String,
    /// At least 10 characters.
    password: String,
}

/// Sets a staff member's password for the web pages (the administrator's act).
pub(super) async fn set_password(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<PasswordBody>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let staff = b.staff.clone();
    commit(
        &s,
        move |e| e.set_password(&actor, &b.staff, &b.password),
        |t| *t,
    )
    .await?;
    Ok(Json(json!({ "staff": staff, "password": "set" })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordLinkBody {
    staff: String,
}

/// A one-time link for a staff member to set their own password (valid three days; only
/// the newest of theirs works). The link is shown once: hand it over in person.
pub(super) async fn password_link(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<PasswordLinkBody>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let staff = b.staff.clone();
    let (secret, expires_at, _) = commit(
        &s,
        move |e| e.password_link(&actor, &b.staff),
        |(_, _, t)| *t,
    )
    .await?;
    Ok(Json(json!({
        "staff": staff,
        "link": format!("/password/{secret}"),
        "expires_at": expires_at,
    })))
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let (rec, _) = commit(&s, move |e| e.revoke_token(&actor, &id), |r| r.1).await?;
    tracing::info!(message = "token revoked", id = %rec.id, subject = %rec.subject);
    Ok(Json(json!({ "record": rec })))
}

/// Script failures that were refused without changing a case, newest first.
pub(super) async fn incidents(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.incidents(200)).await?;
    Ok(Json(json!({ "incidents": list })))
}

/// The live rule set and the outcome of the last reload attempt (with its problems).
pub(super) async fn scripts_status(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.reload_status())))
}

/// Reloads now, without waiting for the watcher. Refused scripts answer 422 with the
/// problems; the live rule set stays.
pub(super) async fn scripts_reload(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let who = caller.0.name();
    let outcome = s.pool.call_heavy(move |e| e.reload_as(&who)).await?;
    let changed = match outcome {
        guichet_core::reload::ReloadOutcome::Unchanged => Vec::new(),
        guichet_core::reload::ReloadOutcome::Live { changed } => changed,
    };
    Ok(Json(
        json!({ "changed": changed, "status": s.engine.reload_status() }),
    ))
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupBody {
    /// A new (or empty) folder on the server's machine, as an absolute path.
    to: String,
}

/// A consistent copy of the store while the office works (`guichet backup`).
pub(super) async fn backup(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<BackupBody>,
) -> ApiResult<Json<Value>> {
    let who = caller.0.name();
    let report = s
        .pool
        .call_heavy(move |e| e.backup(&who, std::path::Path::new(&b.to)))
        .await?;
    Ok(Json(json!({ "backup": report })))
}

/// Every procedure version ever loaded: since when, whether live, open cases on it.
pub(super) async fn versions(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.versions()).await?;
    Ok(Json(json!({ "versions": list })))
}

/// Moves open cases between procedure versions (or reports, with `dry_run`).
pub(super) async fn migrate(
    State(s): State<AppState>,
    caller: Caller,
    Body(plan): Body<guichet_core::migrate::MigrationPlan>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.0;
    let report = commit(
        &s,
        move |e| e.migrate(&actor, plan),
        |r| if r.applied { r.ticket } else { 0 },
    )
    .await?;
    let refused = !report.dry_run && !report.applied;
    let body = if refused {
        json!({ "code": "migration_refused", "message": "some cases cannot move; nothing was changed", "report": report })
    } else {
        json!({ "report": report })
    };
    let status = if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// Delegations the caller gave or received, or may manage (every one for the
/// administrator and auditors).
pub(super) async fn delegations(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let list = s.engine.delegations_for(&caller.0);
    Ok(Json(json!({ "delegations": list })))
}

pub(super) async fn delegate(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<guichet_core::access::DelegationRequest>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let (d, _) = commit(&s, move |e| e.delegate(&actor, b), |r| r.1).await?;
    Ok((StatusCode::CREATED, Json(json!({ "delegation": d }))))
}

pub(super) async fn revoke_delegation(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let (d, _) = commit(&s, move |e| e.revoke_delegation(&actor, &id), |r| r.1).await?;
    Ok(Json(json!({ "delegation": d })))
}
