//! The route table: every route with the permission it needs, in one place. The router is
//! built from this table and one middleware (`authorize`) enforces the permissions before
//! any handler runs, so a route cannot exist without a declared permission. `tests/access.rs` walks
//! the table with every role; `docs/openapi` is generated from it.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use serde::Serialize;

use super::AppState;

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
