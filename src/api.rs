//! The HTTP API: routes, JSON extractors, and the wire shapes of responses. Handlers are
//! thin: authenticate, call the engine on the engine threads (scripts may run), wait for
//! the commit to be durable, answer.

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

mod audit;
mod external;
mod guard;
mod notify;
mod routes;
mod schema;

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

pub use guard::Client;
pub(crate) use routes::check as permitted;
pub use routes::{table, Caller, Permission, Route};

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

pub fn router(state: AppState) -> Router {
    // `guard::admit` has read every body within its own limit (larger for uploads).
    let max_body = state.limits.max_upload;
    let routes = table();
    let perms = routes::permissions(&routes);
    let mut r = Router::new();
    for route in routes {
        r = r.route(route.path, route.handler);
    }
    r.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), perms),
        routes::authorize,
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
    .with_state(state)
}

// --- extractors ----------------------------------------------------------------------

/// A JSON body whose every rejection is a JSON error. Nesting deeper than the configured
/// depth is refused before parsing.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body is too large",
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
                }
            })?;
        parse_json(&bytes, state.max_json_depth).map(Body)
    }
}

/// A JSON text as `T`: nesting deeper than `max_depth` refused before parsing; a malformed
/// text is 400, a well-formed one of the wrong shape 422.
fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if let Some(depth) = guard::too_deep(bytes, max_depth) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            format!("JSON nested deeper than {depth} levels"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("invalid body: {e}"),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("malformed JSON: {e}"),
            ),
        }
    })
}

/// An application: a JSON [`Submission`], or `multipart/form-data` with the same JSON in
/// a part named `submission` and one file per material in parts named `material.<id>`.
pub struct Application {
    pub submission: Submission,
    pub uploads: Vec<guichet_core::files::Upload>,
}

impl FromRequest<AppState> for Application {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        if !multipart {
            let Body(submission) = Body::from_request(req, state).await?;
            return Ok(Application {
                submission,
                uploads: Vec::new(),
            });
        }
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
        let mut form = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| bad(e.body_text()))?;
        let mut submission = None;
        let mut uploads = Vec::new();
        while let Some(part) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
            let name = part.name().unwrap_or_default().to_string();
            if name == "submission" {
                let bytes = part.bytes().await.map_err(|e| bad(e.body_text()))?;
                submission = Some(parse_json::<Submission>(&bytes, state.max_json_depth)?);
            } else if let Some(material) = name.strip_prefix("material.") {
                let file = part.file_name().unwrap_or_default().to_string();
                let material = material.to_string();
                let bytes = part.bytes().await.map_err(|e| bad(e.body_text()))?;
                // A file input left empty sends a part without a file.
                if file.is_empty() && bytes.is_empty() {
                    continue;
                }
                uploads.push(guichet_core::files::Upload {
                    material,
                    name: file,
                    bytes: bytes.to_vec(),
                });
            } else {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("unknown part '{name}': send `submission` and `material.<id>` parts"),
                ));
            }
        }
        let submission = submission.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the `submission` part is missing",
            )
        })?;
        Ok(Application {
            submission,
            uploads,
        })
    }
}

/// Query parameters whose rejection is a JSON error.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Set by the permission middleware on every route of the table.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "route without a declared permission",
            )
        })
    }
}

impl Caller {
    /// The staff member or administrator (the route's permission already required one).
    pub(crate) fn staff_or_admin(&self) -> ApiResult<&Actor> {
        match &self.0 {
            Actor::Public => Err(ApiError::unauthorized()),
            Actor::Applicant(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a staff token is required",
            )),
            a => Ok(a),
        }
    }
}

/// Runs engine work on the engine threads: scripts are CPU-bound and sled is synchronous.
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

// --- wire shapes ---------------------------------------------------------------------

/// A case on the wire: the stored case plus where it is, serialized in one pass.
#[derive(serde::Serialize)]
struct CaseView<'a> {
    #[serde(flatten)]
    case: &'a Case,
    current_steps: Vec<String>,
}

/// The answer to an action on a case.
#[derive(serde::Serialize)]
struct CaseBody<'a> {
    case: CaseView<'a>,
}

fn case_body(c: &Case) -> Json<CaseBody<'_>> {
    Json(CaseBody {
        case: CaseView {
            case: c,
            current_steps: c.current_steps(),
        },
    })
}

fn case_json(c: &Case) -> Value {
    serde_json::to_value(CaseView {
        case: c,
        current_steps: c.current_steps(),
    })
    .unwrap_or(Value::Null)
}

/// What an applicant sees: where the case is, not who holds it internally.
fn applicant_view(c: &Case, history: &[HistoryEvent]) -> Value {
    json!({
        "number": c.number,
        "procedure": c.procedure,
        "procedure_name": c.procedure_name,
        "status": c.status,
        "current_steps": c.current_steps(),
        "submitted_at": c.submitted_at,
        "accepted_at": c.accepted_at,
        "decided_at": c.decided_at,
        "bundle": c.bundle,
        // What the office waits for from the applicant, if anything.
        "requested": c.supplement.as_ref().map(|r| r.items.clone())
            .or_else(|| c.commitment.as_ref().map(|m| m.items.clone())),
        "promised_by": c.commitment.as_ref().map(|m| m.due),
        "progress": history.iter().map(|e| json!({
            "at": e.at, "action": e.action, "step": e.step, "outcome": e.outcome,
        })).collect::<Vec<_>>(),
    })
}

// --- handlers ------------------------------------------------------------------------

/// Liveness: the process answers.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the store is open and a rule set is live (a load balancer sends no traffic
/// to a node that answers 503 here).
async fn ready(State(s): State<AppState>) -> axum::response::Response {
    let r = s.engine.readiness();
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": r.ready(), "checks": r }))).into_response()
}

async fn me(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let rules = s.engine.rules();
    let roles = s.engine.roles(&caller.0);
    Ok(Json(match &caller.0 {
        Actor::Staff(id) => json!({
            "kind": "staff", "id": id,
            "name": rules.staff.get(id).map(|x| x.name.clone()),
            "groups": rules.groups_of(id),
            "supervises": rules.supervised_by(id),
            "deputy_for": s.engine.principals_of(id),
            "roles": roles,
        }),
        Actor::Applicant(case) => json!({ "kind": "applicant", "case": case, "roles": roles }),
        _ => json!({ "kind": "admin", "id": "admin", "roles": roles }),
    }))
}

/// The OpenAPI document, generated from the route table.
async fn openapi() -> Json<Value> {
    Json(schema::openapi(&table()))
}

async fn procedures(State(s): State<AppState>) -> Json<Value> {
    let rules = s.engine.rules();
    let list: Vec<Value> = rules
        .procedures
        .values()
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "department": p.department,
                "promised_days": p.promised_days, "statutory_days": p.statutory_days,
                "version": p.version,
            })
        })
        .collect();
    Json(json!({ "procedures": list }))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LangQuery {
    /// A language tag (`zh`, `en`): names the script gives in that language.
    #[serde(default)]
    lang: Option<String>,
}

/// The service guide (办事指南) of a procedure: what the public may know of it (see
/// `guichet_core::guide`), in the language asked for.
async fn procedure(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> ApiResult<Json<guichet_core::guide::ServiceGuide>> {
    let rules = s.engine.rules();
    let p = rules
        .procedures
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("procedure '{id}' does not exist")))?;
    let lang = q
        .lang
        .as_deref()
        .or(rules.office.language.as_deref())
        .unwrap_or("zh");
    Ok(Json(guichet_core::guide::ServiceGuide::of(p, &rules, lang)))
}

/// The whole definition of a procedure's live version, for staff: steps with their
/// groups, routes and conditions, hooks, notices, the file it comes from.
async fn procedure_definition(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let rules = s.engine.rules();
    let p = rules
        .procedures
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("procedure '{id}' does not exist")))?;
    let mut v = serde_json::to_value(&**p).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("version".into(), json!(p.version));
        m.insert("file".into(), json!(p.file));
        m.insert(
            "department_name".into(),
            json!(rules.departments.get(&p.department).map(|d| d.name.clone())),
        );
    }
    Ok(Json(v))
}

async fn bundles(State(s): State<AppState>) -> Json<Value> {
    let rules = s.engine.rules();
    Json(json!({ "bundles": rules.bundles.values().collect::<Vec<_>>() }))
}

async fn submit(
    State(s): State<AppState>,
    caller: Caller,
    app: Application,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let (done, token) = commit(
        &s,
        move |e| {
            let done = e.submit_with_files(&actor, app.submission, app.uploads)?;
            let token = e.applicant_token(done.case().id)?;
            Ok((done, token))
        },
        |(done, _)| done.ticket,
    )
    .await?;
    /// Serialized straight from the case, without an intermediate JSON tree.
    #[derive(serde::Serialize)]
    struct Submitted<'a> {
        case: CaseView<'a>,
        query_code: &'a str,
        applicant_token: String,
    }
    let c = done.case();
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            case: CaseView {
                case: c,
                current_steps: c.current_steps(),
            },
            query_code: &c.query_code,
            applicant_token: token,
        }),
    )
        .into_response())
}

/// A file of a case, for staff who may see the case: as an attachment, never rendered in
/// the browser.
async fn case_file(
    State(s): State<AppState>,
    caller: Caller,
    Path((reference, sha256)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let (material, bytes) = call(&s, move |e| e.material_file(&actor, &reference, &sha256)).await?;
    Ok(attachment(&material.file, bytes))
}

/// A file as an attachment, never rendered in the browser: its media type from its name,
/// `nosniff`, and a sandboxing CSP.
pub(crate) fn attachment(name: &str, bytes: Vec<u8>) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(guichet_core::files::media_type(name)),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    r
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct BundleSubmission {
    applicant: Applicant,
    items: Vec<BundleItem>,
}

async fn submit_bundle(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<BundleSubmission>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let done = mutate(&s, move |e| {
        e.submit_bundle(&actor, &id, b.applicant, b.items)
    })
    .await?;
    let reference = done.case().bundle.clone();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "bundle": reference,
            "cases": done.cases.iter().map(case_json).collect::<Vec<_>>(),
        })),
    ))
}

async fn bundle_cases(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let cases = call(&s, move |e| {
        let all = e.bundle_cases(&reference)?;
        Ok(all
            .into_iter()
            .filter(|c| e.can_see(&actor, c))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(case_json).collect::<Vec<_>>() }),
    ))
}

async fn case(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let (case, closed, history, notices, level) = call(&s, move |e| {
        let case = e.visible_case(&actor, &reference)?;
        let id = case.id;
        let notices = e.notices(&case)?;
        let level = e
            .procedure_of(&case)
            .ok()
            .map(|p| e.case_level(&e.rules(), &p, &case));
        Ok((case, e.closed_tasks(id)?, e.history(id)?, notices, level))
    })
    .await?;
    let mut v = case_json(&case);
    if let Value::Object(m) = &mut v {
        m.insert("level".into(), json!(level));
        m.insert("closed_tasks".into(), json!(closed));
        m.insert("history".into(), json!(history));
        m.insert("notices".into(), json!(notices));
    }
    Ok(Json(v))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TrackQuery {
    #[serde(default)]
    code: Option<String>,
}

/// Whether a request reaches its case with a query code, whose wrong guesses count (an
/// applicant token reaches its own case without one).
fn guesses_code(caller: &Caller) -> bool {
    !matches!(caller.0, Actor::Applicant(_))
}

/// What an applicant route's engine call answered; a `not_found` that may have come from a
/// wrong query code is counted against the client and the case (past the limit the answer
/// is 429 until the window passes) and audited.
fn after_code<T>(
    s: &AppState,
    caller: &Caller,
    client: &guard::Client,
    reference: &str,
    answer: ApiResult<T>,
) -> ApiResult<T> {
    match answer {
        Err(e) if e.status == StatusCode::NOT_FOUND && guesses_code(caller) => {
            s.guesses.failed(&client.0, reference);
            audit_later(
                s,
                guichet_core::audit::Record::new(
                    s.engine.now(),
                    caller.0.name(),
                    "applicant.code_refused",
                    format!(
                        "case-number:{}",
                        reference.chars().take(64).collect::<String>()
                    ),
                )
                .with_detail(format!("client {}", client.0)),
            );
            tracing::warn!(message = "wrong query code", client = %client.0);
            Err(ApiError::not_found("no such case with that query code"))
        }
        other => other,
    }
}

async fn track(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(number): Path<String>,
    Query(q): Query<TrackQuery>,
) -> ApiResult<Json<Value>> {
    if guesses_code(&caller) {
        s.guesses.check(&client.0, &number)?;
    }
    let (actor, n) = (caller.0.clone(), number.clone());
    let answer = call(&s, move |e| {
        let case = e.applicant_access(&actor, &n, q.code.as_deref())?;
        let h = e.history(case.id)?;
        let n = e.notices(&case)?;
        Ok((case, h, n))
    })
    .await;
    let (case, history, notices) = after_code(&s, &caller, &client, &number, answer)?;
    let mut v = applicant_view(&case, &history);
    if let Value::Object(m) = &mut v {
        // What the office sent the applicant, and whether it arrived.
        let mine: Vec<Value> = notices
            .iter()
            .filter(|n| n.recipient == "applicant")
            .map(|n| {
                json!({
                    "id": n.id, "event": n.event, "channel": n.channel, "to": n.address,
                    "status": n.status, "at": n.created_at, "subject": n.subject, "body": n.body,
                })
            })
            .collect();
        m.insert("notices".into(), json!(mine));
    }
    Ok(Json(v))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WithdrawBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn withdraw(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(reference): Path<String>,
    Body(b): Body<WithdrawBody>,
) -> ApiResult<axum::response::Response> {
    if guesses_code(&caller) {
        s.guesses.check(&client.0, &reference)?;
    }
    let (actor, r) = (caller.0.clone(), reference.clone());
    let answer = mutate(&s, move |e| {
        let case = e.applicant_access(&actor, &r, b.code.as_deref())?;
        e.withdraw(&actor, case.id, b.code.as_deref(), b.reason)
    })
    .await;
    let done = after_code(&s, &caller, &client, &reference, answer)?;
    Ok(case_body(done.case()).into_response())
}

async fn applicant_cases(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let cases = call(&s, move |e| {
        let all = e.applicant_cases(&id)?;
        Ok(all
            .into_iter()
            .filter(|c| e.can_see(&actor, c))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        json!({ "cases": cases.iter().map(case_json).collect::<Vec<_>>() }),
    ))
}

async fn worklist(
    State(s): State<AppState>,
    caller: Caller,
    Query(f): Query<WorkFilter>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let items = call(&s, move |e| e.worklist(&actor, &f)).await?;
    Ok(Json(json!({ "tasks": items })))
}

async fn claim(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.claim(&actor, &task)).await?;
    Ok(case_body(done.case()).into_response())
}

async fn release(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.release(&actor, &task)).await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    outcome: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    data: Data,
}

async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<CompleteBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.complete(&actor, &task, &b.outcome, b.comment, b.data)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    to: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn return_to(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<ReturnBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| e.return_to(&actor, &task, &b.to, b.comment)).await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    staff: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

async fn transfer(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<TransferBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.transfer(&actor, &task, b.group, b.staff, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

async fn tokens(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.tokens()).await?;
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    /// A staff id, or `admin` for another administrator token.
    subject: String,
    #[serde(default)]
    label: String,
    /// Days the token lives (default 90, at most 366).
    #[serde(default)]
    expires_in_days: Option<u32>,
}

async fn issue_token(
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
struct PasswordBody {
    staff: String,
    /// At least 10 characters.
    password: String,
}

/// Sets a staff member's password for the web pages (the administrator's act).
async fn set_password(
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

async fn revoke_token(
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
async fn incidents(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.incidents(200)).await?;
    Ok(Json(json!({ "incidents": list })))
}

/// The live rule set and the outcome of the last reload attempt (with its problems).
async fn scripts_status(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.reload_status())))
}

/// Reloads now, without waiting for the watcher. Refused scripts answer 422 with the
/// problems; the live rule set stays.
async fn scripts_reload(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
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

/// Every procedure version ever loaded: since when, whether live, open cases on it.
async fn versions(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let list = call(&s, |e| e.versions()).await?;
    Ok(Json(json!({ "versions": list })))
}

/// Moves open cases between procedure versions (or reports, with `dry_run`).
async fn migrate(
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CardQuery {
    /// `true`: answered cards only; `false`: open cards only.
    #[serde(default)]
    answered: Option<bool>,
}

/// Supervision and overdue cards addressed to the caller's groups.
async fn cards(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<CardQuery>,
) -> ApiResult<Json<Value>> {
    let actor = caller.staff_or_admin()?.clone();
    let list = call(&s, move |e| e.cards(&actor, q.answered)).await?;
    Ok(Json(json!({ "cards": list })))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    reason: String,
}

async fn answer_card(
    State(s): State<AppState>,
    caller: Caller,
    Path((reference, card)): Path<(String, String)>,
    Body(b): Body<AnswerBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        e.answer_card(&actor, id, &card, &b.reason)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SupplementBody {
    /// Everything missing, in one notice.
    items: Vec<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// Asks the applicant for supplementary materials (补正): at intake, before the clock
/// starts; later, with the clock stopped until the applicant answers.
async fn request_supplement(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<SupplementBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.request_supplement(&actor, &task, b.items, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SupplyBody {
    /// The query code (not needed with the applicant token).
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    data: Data,
    #[serde(default)]
    materials: Vec<guichet_core::case::MaterialRef>,
}

/// The applicant answers a supplement request with the case number and query code.
async fn supply(
    State(s): State<AppState>,
    caller: Caller,
    client: guard::Client,
    Path(number): Path<String>,
    Body(b): Body<SupplyBody>,
) -> ApiResult<Json<Value>> {
    if guesses_code(&caller) {
        s.guesses.check(&client.0, &number)?;
    }
    let (actor, n) = (caller.0.clone(), number.clone());
    let answer = commit(
        &s,
        move |e| {
            let case = e.applicant_access(&actor, &n, b.code.as_deref())?;
            let done = e.supply(&case.number, &case.query_code, b.data, b.materials)?;
            let history = e.history(done.case().id)?;
            Ok((done, history))
        },
        |(done, _)| done.ticket,
    )
    .await;
    let (done, history) = after_code(&s, &caller, &client, &number, answer)?;
    Ok(Json(applicant_view(done.case(), &history)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Stops the clock with a reason (a suspension declared by staff).
async fn suspend(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        e.suspend(&actor, id, b.reason.as_deref().unwrap_or_default())
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// Restarts the clock after a suspension; every deadline moves by the working days lost.
async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        e.resume(&actor, id, b.reason)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// Extends the statutory limit once (approver group only), with a reason.
async fn extend(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<ReasonBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        e.extend(&actor, id, b.reason.as_deref().unwrap_or_default())
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CommitmentBody {
    /// The minor items the applicant promises.
    items: Vec<String>,
    /// The promised date, YYYY-MM-DD.
    by: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Accepts at intake with a commitment (容缺受理): the clock waits for the promised items;
/// the case is terminated if they are not there by the date.
async fn accept_with_commitment(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<CommitmentBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let done = mutate(&s, move |e| {
        e.accept_with_commitment(&actor, &task, b.items, &b.by, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// A supervisor issues a supervision card by hand, with the reason.
async fn issue_card(
    State(s): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Body(b): Body<AnswerBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.0;
    let done = mutate(&s, move |e| {
        let id = e.visible_case_id(&actor, &reference)?;
        e.issue_card(&actor, id, &b.reason)
    })
    .await?;
    Ok((StatusCode::CREATED, case_body(done.case())).into_response())
}

/// A supervisor moves a task of a group they supervise to a member or another group.
async fn reassign(
    State(s): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    Body(b): Body<TransferBody>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.0;
    let done = mutate(&s, move |e| {
        e.reassign(&actor, &task, b.group, b.staff, b.comment)
    })
    .await?;
    Ok(case_body(done.case()).into_response())
}

/// Delegations the caller gave or received, or may manage (every one for the
/// administrator and auditors).
async fn delegations(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let rules = s.engine.rules();
    let list: Vec<_> = s
        .engine
        .delegations()
        .into_iter()
        .filter(|d| match &caller.0 {
            Actor::Staff(me) => {
                d.from == *me
                    || d.to == *me
                    || rules.is_auditor(me)
                    || rules
                        .groups_of(&d.from)
                        .iter()
                        .any(|g| rules.supervises(me, g))
            }
            _ => true,
        })
        .collect();
    Ok(Json(json!({ "delegations": list })))
}

async fn delegate(
    State(s): State<AppState>,
    caller: Caller,
    Body(b): Body<guichet_core::access::DelegationRequest>,
) -> ApiResult<impl IntoResponse> {
    let actor = caller.0;
    let (d, _) = commit(&s, move |e| e.delegate(&actor, b), |r| r.1).await?;
    Ok((StatusCode::CREATED, Json(json!({ "delegation": d }))))
}

async fn revoke_delegation(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = caller.0;
    let (d, _) = commit(&s, move |e| e.revoke_delegation(&actor, &id), |r| r.1).await?;
    Ok(Json(json!({ "delegation": d })))
}
