//! The route table: every route with the permission it needs, in one place. The router is
//! built from this table and one middleware enforces the permissions before any handler
//! runs, so a route cannot exist without a declared permission. `tests/access.rs` walks
//! the table with every role; `docs/openapi` is generated from it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use guichet_core::audit::Record;
use guichet_core::Actor;
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;

/// What a caller must be to reach a route. Finer rules (member of the task's group, the
/// approver group of an extension) are the engine's, and answer 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Anyone, no token needed: the service guide, submission, health.
    Public,
    /// Anyone; what they reach is then proven with the case's number and query code (or
    /// the case's applicant token). Wrong guesses are rate-limited.
    Applicant,
    /// Any valid token.
    Authenticated,
    /// Staff or the administrator. A case or task named in the path must be one the caller
    /// may see, or the answer is 404, as for a case that does not exist.
    Staff,
    /// Staff who supervise a group or head a department (same path rule as `Staff`).
    Supervisor,
    /// The administrator or an auditor: reading the office's administration.
    Oversight,
    /// The administrator token.
    Admin,
    /// Staff with the auditor role.
    Auditor,
}

/// One route: method, path, permission, and what it is for (the OpenAPI summary).
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub permission: Permission,
    pub summary: &'static str,
    /// The JSON body's schema, for the OpenAPI document.
    pub body: Option<fn() -> serde_json::Value>,
    /// The query string's schema (an object whose properties are the parameters).
    pub query: Option<fn() -> serde_json::Value>,
    /// The success answer's schema, for the OpenAPI document (none: not described yet).
    pub answers: Option<fn() -> serde_json::Value>,
    /// Answers 201 (it creates something) rather than 200 on success.
    pub created: bool,
    /// The media type of a success.
    pub produces: &'static str,
    /// Also takes `multipart/form-data`: the JSON body in a part of this name (required
    /// or not) beside files.
    pub uploads: Option<(&'static str, bool)>,
    pub(super) handler: MethodRouter<AppState>,
}

impl Route {
    fn new<H, T>(
        method: Method,
        path: &'static str,
        permission: Permission,
        summary: &'static str,
        handler: H,
    ) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        Route {
            method,
            path,
            permission,
            summary,
            body: None,
            query: None,
            answers: None,
            created: false,
            produces: "application/json",
            uploads: None,
            handler: on(filter, handler),
        }
    }

    fn body(mut self, schema: fn() -> serde_json::Value) -> Route {
        self.body = Some(schema);
        self
    }

    fn created(mut self) -> Route {
        self.created = true;
        self
    }

    fn uploads(mut self, part: &'static str, required: bool) -> Route {
        self.uploads = Some((part, required));
        self
    }

    fn produces(mut self, media_type: &'static str) -> Route {
        self.produces = media_type;
        self
    }

    fn query(mut self, schema: fn() -> serde_json::Value) -> Route {
        self.query = Some(schema);
        self
    }

    fn answers(mut self, schema: fn() -> serde_json::Value) -> Route {
        self.answers = Some(schema);
        self
    }
}

/// Every route of the API.
pub fn table() -> Vec<Route> {
    use super::schema as s;
    use super::*;
    use Permission::*;
    let get = Method::GET;
    let post = Method::POST;
    let routes = vec![
        Route::new(get.clone(), "/api/health", Public, "Liveness", health).answers(s::health),
        Route::new(
            get.clone(),
            "/metrics",
            Public,
            "Metrics in the Prometheus text format (keep it off the public side of the proxy)",
            crate::telemetry::render,
        )
        .produces("text/plain"),
        Route::new(
            get.clone(),
            "/api/ready",
            Public,
            "Readiness: store open and a rule set live (503 otherwise)",
            ready,
        )
        .answers(s::readiness),
        Route::new(
            get.clone(),
            "/api/openapi.json",
            Public,
            "This API as an OpenAPI 3.1 document",
            openapi,
        )
        .answers(s::openapi_document),
        Route::new(
            get.clone(),
            "/api/me",
            Authenticated,
            "Who the token stands for, with roles and groups",
            me,
        )
        .answers(s::me),
        Route::new(
            get.clone(),
            "/api/procedures",
            Public,
            "Procedures on offer",
            procedures,
        )
        .answers(s::procedures),
        Route::new(
            get.clone(),
            "/api/procedures/{id}",
            Public,
            "A procedure's service guide (public information only)",
            procedure,
        )
        .answers(s::guide)
        .query(s::lang_query),
        Route::new(
            get.clone(),
            "/api/procedures/{id}/definition",
            Staff,
            "A procedure's whole definition: steps, groups, routes, hooks, notices",
            procedure_definition,
        )
        .answers(s::definition),
        Route::new(
            get.clone(),
            "/api/bundles",
            Public,
            "Bundles (one application, several cases)",
            bundles,
        )
        .answers(s::bundles),
        Route::new(
            post.clone(),
            "/api/bundles/{id}/cases",
            Public,
            "Submit a bundle",
            submit_bundle,
        )
        .answers(s::bundle_submitted)
        .created()
        .body(s::bundle_submission)
        .uploads("bundle", true),
        Route::new(
            get.clone(),
            "/api/bundle-cases/{reference}",
            Staff,
            "Cases of a submitted bundle",
            bundle_cases,
        )
        .answers(s::cases),
        Route::new(
            get.clone(),
            "/api/cases",
            Staff,
            "Search the cases I may see, a page at a time",
            search_cases,
        )
        .query(s::case_search)
        .answers(s::search_page),
        Route::new(post.clone(), "/api/cases", Public, "Submit a case", submit)
            .created()
            .body(s::submission)
            .uploads("submission", true)
            .answers(s::submitted),
        Route::new(
            get.clone(),
            "/api/cases/{case}/files/{sha256}",
            Staff,
            "A file of a case's materials, as an attachment",
            case_file,
        )
        .produces("application/octet-stream"),
        Route::new(
            get.clone(),
            "/api/cases/{case}",
            Staff,
            "A case with tasks, history and notices",
            case,
        )
        .answers(s::case_read),
        Route::new(
            post.clone(),
            "/api/cases/{case}/withdraw",
            Applicant,
            "Withdraw a case",
            withdraw,
        )
        .answers(s::case_answer)
        .body(s::withdraw),
        Route::new(
            post.clone(),
            "/api/cases/{case}/rating",
            Applicant,
            "Rate a decided case (好差评), once",
            rate,
        )
        .answers(s::case_answer)
        .body(s::rating),
        Route::new(
            get.clone(),
            "/api/track/{number}",
            Applicant,
            "Track a case with its query code or applicant token",
            track,
        )
        .answers(s::tracking)
        .query(s::track_query),
        Route::new(
            get.clone(),
            "/api/track/bundle/{reference}",
            Public,
            "Follow a bundle as one, with the query code of any of its cases",
            track_bundle,
        )
        .answers(s::bundle_tracking)
        .query(s::track_query),
        Route::new(
            post.clone(),
            "/api/track/{number}/supplement",
            Applicant,
            "Supply what the office asked for",
            supply,
        )
        .answers(s::applicant_view)
        .body(s::supply)
        .uploads("supplement", false),
        Route::new(
            get.clone(),
            "/api/applicants/{id}/cases",
            Staff,
            "An applicant's cases",
            applicant_cases,
        )
        .answers(s::cases),
        Route::new(get.clone(), "/api/tasks", Staff, "Worklist", worklist)
            .query(s::work_filter)
            .answers(s::worklist),
        Route::new(
            get.clone(),
            "/api/stats",
            Staff,
            "Statistics of a period (JSON, or CSV with format=csv)",
            super::stats::statistics,
        )
        .answers(s::stats)
        .query(s::stats_query),
        Route::new(
            get.clone(),
            "/api/board",
            Supervisor,
            "Open tasks of the groups I supervise, worst first, and their open cards",
            board,
        )
        .answers(s::board)
        .query(s::board_query),
        Route::new(
            get.clone(),
            "/api/cards",
            Staff,
            "Supervision cards for my groups",
            cards,
        )
        .answers(s::cards)
        .query(s::card_query),
        Route::new(
            post.clone(),
            "/api/cases/{case}/cards",
            Supervisor,
            "Issue a supervision card",
            issue_card,
        )
        .answers(s::case_answer)
        .created()
        .body(s::reason_required),
        Route::new(
            post.clone(),
            "/api/cases/{case}/cards/{card}/answer",
            Staff,
            "Answer a card",
            answer_card,
        )
        .answers(s::case_answer)
        .body(s::reason_required),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/claim",
            Staff,
            "Claim a task",
            claim,
        ),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/release",
            Staff,
            "Release a claimed task",
            release,
        ),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/complete",
            Staff,
            "Complete a task with an outcome",
            complete,
        )
        .body(s::complete),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/return",
            Staff,
            "Return the case to an earlier step",
            return_to,
        )
        .body(s::return_to),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/transfer",
            Staff,
            "Transfer a task",
            transfer,
        )
        .body(s::transfer),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/add-signer",
            Staff,
            "Add a signer to a countersign step (加签)",
            add_signer,
        )
        .body(s::signer),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/take-back",
            Staff,
            "Take back a step you completed, while the next handler has not acted (撤回)",
            take_back,
        )
        .body(s::take_back),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/reassign",
            Supervisor,
            "Reassign a task of a supervised group",
            reassign,
        )
        .body(s::transfer),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/supplement",
            Staff,
            "Ask the applicant for more",
            request_supplement,
        )
        .body(s::supplement),
        Route::new(
            post.clone(),
            "/api/tasks/{task}/accept-with-commitment",
            Staff,
            "Accept with a commitment",
            accept_with_commitment,
        )
        .body(s::commitment),
        Route::new(
            post.clone(),
            "/api/cases/{case}/suspend",
            Staff,
            "Stop the clock",
            suspend,
        )
        .answers(s::case_answer)
        .body(s::reason),
        Route::new(
            post.clone(),
            "/api/cases/{case}/resume",
            Staff,
            "Restart the clock",
            resume,
        )
        .answers(s::case_answer)
        .body(s::reason),
        Route::new(
            post.clone(),
            "/api/cases/{case}/extend",
            Staff,
            "Extend the statutory limit",
            extend,
        )
        .answers(s::case_answer)
        .body(s::reason),
        Route::new(
            get.clone(),
            "/api/cases/{case}/notices",
            Staff,
            "Notices of a case",
            notify::case_notices,
        )
        .answers(s::notices),
        Route::new(get.clone(), "/api/inbox", Staff, "My inbox", notify::inbox)
            .answers(s::notices)
            .query(s::inbox_query),
        Route::new(
            post.clone(),
            "/api/inbox/{id}/read",
            Staff,
            "Mark an inbox notice read",
            notify::mark_read,
        )
        .answers(s::one_notice),
        Route::new(
            get.clone(),
            "/api/admin/notices/failed",
            Admin,
            "Notices that failed for good",
            notify::failed_notices,
        )
        .answers(s::notices)
        .query(s::failed_query),
        Route::new(
            post.clone(),
            "/api/admin/notices/{id}/retry",
            Admin,
            "Queue a failed notice again",
            notify::retry_notice,
        )
        .answers(s::one_notice),
        Route::new(
            post.clone(),
            "/api/external-tasks/fetch-and-lock",
            Staff,
            "Fetch and lock external tasks",
            external::fetch_and_lock,
        )
        .answers(s::locked)
        .body(s::fetch),
        Route::new(
            post.clone(),
            "/api/external-tasks/{task}/complete",
            Staff,
            "Complete an external task",
            external::complete,
        )
        .answers(s::case_answer)
        .body(s::external_complete),
        Route::new(
            post.clone(),
            "/api/external-tasks/{task}/failure",
            Staff,
            "Report an external task's failure",
            external::failure,
        )
        .answers(s::case_answer)
        .body(s::external_failure),
        Route::new(
            get.clone(),
            "/api/admin/external-tasks/incidents",
            Oversight,
            "External tasks out of retries",
            external::incidents,
        )
        .answers(s::external_incidents),
        Route::new(
            post.clone(),
            "/api/admin/external-tasks/{task}/retry",
            Admin,
            "Retry an external-task incident",
            external::retry,
        )
        .answers(s::case_answer),
        Route::new(
            get.clone(),
            "/api/delegations",
            Staff,
            "Delegations I gave, received or may manage",
            delegations,
        )
        .answers(s::delegations),
        Route::new(
            post.clone(),
            "/api/delegations",
            Staff,
            "Hand a staff member's tasks to a deputy",
            delegate,
        )
        .answers(s::one_delegation)
        .created()
        .body(s::delegation),
        Route::new(
            Method::DELETE,
            "/api/delegations/{id}",
            Staff,
            "End a delegation",
            revoke_delegation,
        )
        .answers(s::one_delegation),
        Route::new(
            get.clone(),
            "/api/admin/tokens",
            Oversight,
            "Tokens (never secrets)",
            tokens,
        )
        .answers(s::tokens),
        Route::new(
            post.clone(),
            "/api/admin/tokens",
            Admin,
            "Issue a token",
            issue_token,
        )
        .answers(s::issued_token)
        .created()
        .body(s::issue_token),
        Route::new(
            post.clone(),
            "/api/admin/passwords",
            Admin,
            "Set a staff member's password for the web pages",
            set_password,
        )
        .answers(s::password_set)
        .body(s::password),
        Route::new(
            post.clone(),
            "/api/admin/password-links",
            Admin,
            "Make a one-time link for a staff member to set their password",
            password_link,
        )
        .answers(s::link_issued)
        .body(s::password_link),
        Route::new(
            Method::DELETE,
            "/api/admin/tokens/{id}",
            Admin,
            "Revoke a token",
            revoke_token,
        )
        .answers(s::one_token),
        Route::new(
            get.clone(),
            "/api/admin/incidents",
            Oversight,
            "Script failures that changed nothing",
            incidents,
        )
        .answers(s::incidents),
        Route::new(
            get.clone(),
            "/api/admin/scripts",
            Oversight,
            "The live rule set and the last reload",
            scripts_status,
        )
        .answers(s::reload_status),
        Route::new(
            post.clone(),
            "/api/admin/scripts/reload",
            Admin,
            "Reload the scripts now",
            scripts_reload,
        )
        .answers(s::reloaded),
        Route::new(
            post.clone(),
            "/api/admin/backup",
            Admin,
            "A consistent copy of the store while it serves",
            backup,
        )
        .answers(s::backup_done)
        .body(s::backup),
        Route::new(
            get.clone(),
            "/api/admin/versions",
            Oversight,
            "Every procedure version",
            versions,
        )
        .answers(s::versions),
        Route::new(
            post.clone(),
            "/api/admin/migrations",
            Admin,
            "Move open cases between versions",
            migrate,
        )
        .answers(s::migrated)
        .body(s::migration),
        Route::new(
            get.clone(),
            "/api/audit",
            Auditor,
            "Audit entries",
            audit::entries,
        )
        .answers(s::audit_found)
        .query(s::audit_query),
        Route::new(
            get.clone(),
            "/api/audit/export",
            Auditor,
            "The audit log as JSON lines",
            audit::export,
        )
        .produces("application/x-ndjson"),
        Route::new(
            get.clone(),
            "/api/audit/verify",
            Auditor,
            "Check the audit chain",
            audit::verify,
        )
        .answers(s::audit_verdict),
    ];
    // Every action on a task answers with its case.
    routes
        .into_iter()
        .map(|r| {
            if r.method == Method::POST && r.path.starts_with("/api/tasks/{task}/") {
                r.answers(s::case_answer)
            } else {
                r
            }
        })
        .collect()
}

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
