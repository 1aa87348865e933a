//! The permission check every request passes before its handler: the caller
//! authenticated (token or session), the route's declared permission enforced, refusals
//! audited. The permissions come from the route table (`routes`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use guichet_core::audit::Record;
use guichet_core::Actor;

use super::routes::{Permission, Route};
use super::AppState;
use crate::error::ApiError;

pub(super) type Permissions = Arc<HashMap<(Method, &'static str), Permission>>;

pub(super) fn permissions(routes: &[Route]) -> Permissions {
    Arc::new(
        routes
            .iter()
            .map(|r| ((r.method.clone(), r.path), r.permission))
            .collect(),
    )
}

/// The caller, as the permission middleware established it.
#[derive(Clone)]
pub struct Caller(pub Actor);

/// Authenticates the caller and enforces the route's permission before the handler runs.
/// Memory only (a token's first use since start reads the store on an engine thread):
/// whether the caller may see a case or a task named in the path is the engine's to say,
/// inside the handler's engine call, which answers 404 for a case the caller may not see.
pub(super) async fn authorize(
    State((state, perms)): State<(AppState, Permissions)>,
    matched: MatchedPath,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(&permission) = perms.get(&(req.method().clone(), matched.as_str())) else {
        // Cannot happen: the router is built from the same table.
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "route without a declared permission",
        )
        .into_response();
    };
    let credentials = req.headers().get(header::AUTHORIZATION).cloned();
    let actor = match authenticate(&state, credentials).await {
        Ok(a) => a,
        Err(e) => {
            refused(&state, "anonymous", &req, &e);
            return e.into_response();
        }
    };
    if let Err(e) = check(&state, &actor, permission, req.method()) {
        refused(&state, &actor_name(&actor), &req, &e);
        return e.into_response();
    }
    // Kept for the audit record of a refusal; cloning a `Uri` shares its bytes.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    req.extensions_mut().insert(Caller(actor.clone()));
    let response = next.run(req).await;
    if response.status() == StatusCode::FORBIDDEN {
        // Refused by the engine's finer rules (group membership, signer, approver group).
        audit_refusal(
            &state,
            &actor_name(&actor),
            &method,
            uri.path(),
            "refused by the engine",
        );
    }
    response
}

async fn authenticate(
    state: &AppState,
    credentials: Option<header::HeaderValue>,
) -> Result<Actor, ApiError> {
    let Some(value) = credentials else {
        return Ok(Actor::Public);
    };
    // The scheme is case-insensitive (RFC 9110, 11.1).
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .ok_or_else(ApiError::unauthorized)?;
    let known = match state.engine.authenticate_cached(secret) {
        Some(known) => known,
        None => {
            let secret = secret.to_string();
            state.pool.call(move |e| e.authenticate(&secret)).await?
        }
    };
    known.ok_or_else(ApiError::unauthorized)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

pub(crate) fn check(
    state: &AppState,
    actor: &Actor,
    permission: Permission,
    method: &Method,
) -> Result<(), ApiError> {
    use Permission::*;
    let rules = state.engine.rules();
    let staff = |a: &Actor| matches!(a, Actor::Staff(_) | Actor::Admin);
    let ok = match permission {
        Public | Applicant => true,
        Authenticated => !matches!(actor, Actor::Public),
        Staff => staff(actor),
        Supervisor => matches!(actor, Actor::Staff(s)
            if !rules.supervised_by(s).is_empty()),
        Oversight => {
            matches!(actor, Actor::Admin) || matches!(actor, Actor::Staff(s) if rules.is_auditor(s))
        }
        Admin => matches!(actor, Actor::Admin),
        Auditor => matches!(actor, Actor::Staff(s) if rules.is_auditor(s)),
    };
    // Staff who neither belong to a group nor supervise one (auditors) only read: they
    // submit no case either (a submission with a staff token is made at the window).
    if ok && *method != Method::GET && matches!(permission, Staff | Applicant | Public) {
        if let Actor::Staff(s) = actor {
            let member = rules
                .groups
                .values()
                .any(|g| g.members.iter().any(|m| m == s));
            if !member
                && rules.supervised_by(s).is_empty()
                && state.engine.principals_of(s).is_empty()
            {
                return Err(forbidden(
                    "read-only: this staff member belongs to no group",
                ));
            }
        }
    }
    if !ok {
        return Err(match (actor, permission) {
            (Actor::Public, _) => ApiError::unauthorized(),
            (_, Supervisor) => forbidden("a supervisor or department head is required"),
            (_, Oversight) => forbidden("the administrator or an auditor is required"),
            (_, Admin) => forbidden("administrator token required"),
            (_, Auditor) => forbidden("an auditor is required"),
            _ => forbidden("a staff token is required"),
        });
    }
    Ok(())
}

fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Public => "anonymous".to_string(),
        Actor::Applicant(id) => format!("applicant:{id}"),
        a => a.name(),
    }
}

/// Refused authentications and authorizations go to the audit log.
fn refused(state: &AppState, who: &str, req: &Request, e: &ApiError) {
    if e.status != StatusCode::UNAUTHORIZED && e.status != StatusCode::FORBIDDEN {
        return;
    }
    audit_refusal(state, who, req.method(), req.uri().path(), &e.message);
}

/// Records a refusal in the audit log on an engine thread; the answer does not wait.
fn audit_refusal(state: &AppState, who: &str, method: &Method, path: &str, why: &str) {
    let record = Record::new(
        state.engine.now(),
        who,
        "authorization.refused",
        format!("{method} {path}"),
    )
    .with_detail(why.to_string());
    super::audit_later(state, record);
}
