//! JSON schemas of request bodies, derived from the very types the handlers deserialize
//! (so the OpenAPI document cannot drift from what the server accepts), and the OpenAPI
//! document itself, generated from the route table.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use super::routes::{Permission, Route};

/// The schema of what the server sends: fields skipped when empty are optional.
fn sent<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut v = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(json!({}));
    if let Value::Object(m) = &mut v {
        m.remove("$schema");
        m.remove("title");
    }
    v
}

/// A case as the API sends it: the stored case and where it is.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CaseShape {
    #[serde(flatten)]
    case: guichet_core::case::Case,
    current_steps: Vec<String>,
}

/// The answer of an action on a case.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CaseAnswer {
    case: CaseShape,
}

/// The answer to a submission.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Submitted {
    case: CaseShape,
    query_code: String,
    applicant_token: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Health {
    status: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Ready {
    ready: bool,
    checks: guichet_core::engine::Readiness,
}

pub(super) fn health() -> Value {
    sent::<Health>()
}

/// A page of the worklist.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Worklist {
    tasks: Vec<guichet_core::engine::WorkItem>,
    offset: usize,
    total: usize,
    counts: guichet_core::tasks::LevelCounts,
}

pub(super) fn worklist() -> Value {
    sent::<Worklist>()
}
pub(super) fn search_page() -> Value {
    sent::<guichet_core::search::SearchPage>()
}
pub(super) fn case_answer() -> Value {
    sent::<CaseAnswer>()
}
pub(super) fn submitted() -> Value {
    sent::<Submitted>()
}
pub(super) fn readiness() -> Value {
    sent::<Ready>()
}

// --- answers of the other routes: shapes of what the handlers build -------------------
// (Each mirrors a handler's `json!`; tests/procedures.rs and the API fuzzer check real
// answers against them.)

use guichet_core::case::{HistoryEvent, Task};
use guichet_core::notice::Notice;
use guichet_core::store::{Incident, TokenRecord};

/// Who a token stands for (`kind`: staff, applicant or admin).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Me {
    kind: String,
    /// The staff id, or `admin`; absent for an applicant.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// A staff member's name (null for an id the office does not list).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supervises: Option<Vec<String>>,
    /// Whose work the staff member does as a deputy (delegations).
    #[serde(skip_serializing_if = "Option::is_none")]
    deputy_for: Option<Vec<String>>,
    /// An applicant token's case id.
    #[serde(skip_serializing_if = "Option::is_none")]
    case: Option<u64>,
    roles: Vec<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ProcedureItem {
    id: String,
    name: String,
    department: String,
    promised_days: u32,
    statutory_days: u32,
    version: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Procedures {
    procedures: Vec<ProcedureItem>,
}

/// A procedure's definition, as staff read it.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Definition {
    #[serde(flatten)]
    procedure: guichet_core::procedure::Procedure,
    version: String,
    file: String,
    department_name: Option<String>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Bundles {
    bundles: Vec<guichet_core::office::Bundle>,
}

/// A bundle submitted: its reference, one query code and one applicant token for all its
/// cases.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct BundleSubmitted {
    bundle: Option<String>,
    query_code: String,
    applicant_token: String,
    cases: Vec<CaseShape>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Cases {
    cases: Vec<CaseShape>,
}

/// A case as staff read it: the case, its level, what the caller may do on it, its closed
/// tasks, history and notices.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CaseRead {
    #[serde(flatten)]
    case: CaseShape,
    level: Option<guichet_core::limits::Level>,
    offers: Option<guichet_core::offers::Offers>,
    closed_tasks: Vec<Task>,
    history: Vec<HistoryEvent>,
    notices: Vec<Notice>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Progress {
    at: chrono::DateTime<chrono::Utc>,
    action: String,
    step: Option<String>,
    outcome: Option<String>,
}

/// What an applicant sees of a case.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ApplicantView {
    number: String,
    procedure: String,
    procedure_name: String,
    status: guichet_core::case::CaseStatus,
    current_steps: Vec<String>,
    submitted_at: chrono::DateTime<chrono::Utc>,
    accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    decided_at: Option<chrono::DateTime<chrono::Utc>>,
    bundle: Option<String>,
    /// What the office waits for from the applicant, if anything.
    requested: Option<Vec<String>>,
    promised_by: Option<chrono::DateTime<chrono::Utc>>,
    progress: Vec<Progress>,
}

/// A notice the office sent the applicant, and whether it arrived.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct SentNotice {
    id: String,
    event: String,
    channel: String,
    to: String,
    status: guichet_core::notice::NoticeStatus,
    at: chrono::DateTime<chrono::Utc>,
    subject: String,
    body: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Tracking {
    #[serde(flatten)]
    view: ApplicantView,
    notices: Vec<SentNotice>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct BundleTracking {
    bundle: String,
    /// Every case decided.
    complete: bool,
    cases: Vec<ApplicantView>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct StatsAnswer {
    report: guichet_core::stats::Report,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Cards {
    cards: Vec<guichet_core::supervision::CardItem>,
    total: usize,
    offset: usize,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Notices {
    notices: Vec<Notice>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct OneNotice {
    notice: Notice,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Locked {
    tasks: Vec<guichet_core::external::Locked>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ExternalIncident {
    task: Task,
    case_id: u64,
    case_number: String,
    procedure: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct ExternalIncidents {
    tasks: Vec<ExternalIncident>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Delegations {
    delegations: Vec<guichet_core::access::Delegation>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct OneDelegation {
    delegation: guichet_core::access::Delegation,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Tokens {
    tokens: Vec<TokenRecord>,
}

/// A new token: the secret, shown this once, and its record.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct IssuedToken {
    token: String,
    record: TokenRecord,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct OneToken {
    record: TokenRecord,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct PasswordSet {
    staff: String,
    password: String,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct PasswordLink {
    staff: String,
    /// The page where the staff member sets their password (hand it over in person).
    link: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Incidents {
    incidents: Vec<Incident>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Reloaded {
    /// The procedures whose version changed.
    changed: Vec<String>,
    status: guichet_core::reload::ReloadStatus,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct BackupDone {
    backup: guichet_core::store::BackupReport,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Versions {
    versions: Vec<guichet_core::reload::VersionInfo>,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct Migrated {
    report: guichet_core::migrate::MigrationReport,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct AuditVerdict {
    ok: bool,
    verdict: guichet_core::audit::Verdict,
}

/// This document (described by the OpenAPI 3.1 schema itself, not repeated here).
pub(super) fn openapi_document() -> Value {
    json!({
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "properties": {
            "openapi": { "type": "string" },
            "info": { "type": "object" },
            "paths": { "type": "object" },
            "components": { "type": "object" },
        },
    })
}

pub(super) fn me() -> Value {
    sent::<Me>()
}
pub(super) fn procedures() -> Value {
    sent::<Procedures>()
}
pub(super) fn guide() -> Value {
    sent::<guichet_core::guide::ServiceGuide>()
}
pub(super) fn definition() -> Value {
    sent::<Definition>()
}
pub(super) fn bundles() -> Value {
    sent::<Bundles>()
}
pub(super) fn bundle_submitted() -> Value {
    sent::<BundleSubmitted>()
}
pub(super) fn cases() -> Value {
    sent::<Cases>()
}
pub(super) fn case_read() -> Value {
    sent::<CaseRead>()
}
pub(super) fn applicant_view() -> Value {
    sent::<ApplicantView>()
}
pub(super) fn tracking() -> Value {
    sent::<Tracking>()
}
pub(super) fn bundle_tracking() -> Value {
    sent::<BundleTracking>()
}
pub(super) fn stats() -> Value {
    sent::<StatsAnswer>()
}
pub(super) fn board() -> Value {
    sent::<guichet_core::tasks::Board>()
}
pub(super) fn cards() -> Value {
    sent::<Cards>()
}
pub(super) fn notices() -> Value {
    sent::<Notices>()
}
pub(super) fn one_notice() -> Value {
    sent::<OneNotice>()
}
pub(super) fn locked() -> Value {
    sent::<Locked>()
}
pub(super) fn external_incidents() -> Value {
    sent::<ExternalIncidents>()
}
pub(super) fn delegations() -> Value {
    sent::<Delegations>()
}
pub(super) fn one_delegation() -> Value {
    sent::<OneDelegation>()
}
pub(super) fn tokens() -> Value {
    sent::<Tokens>()
}
pub(super) fn issued_token() -> Value {
    sent::<IssuedToken>()
}
pub(super) fn one_token() -> Value {
    sent::<OneToken>()
}
pub(super) fn password_set() -> Value {
    sent::<PasswordSet>()
}
pub(super) fn link_issued() -> Value {
    sent::<PasswordLink>()
}
pub(super) fn incidents() -> Value {
    sent::<Incidents>()
}
pub(super) fn reload_status() -> Value {
    sent::<guichet_core::reload::ReloadStatus>()
}
pub(super) fn reloaded() -> Value {
    sent::<Reloaded>()
}
pub(super) fn backup_done() -> Value {
    sent::<BackupDone>()
}
pub(super) fn versions() -> Value {
    sent::<Versions>()
}
pub(super) fn migrated() -> Value {
    sent::<Migrated>()
}
pub(super) fn audit_found() -> Value {
    sent::<guichet_core::audit::Found>()
}
pub(super) fn audit_verdict() -> Value {
    sent::<AuditVerdict>()
}

fn of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut v = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(json!({}));
    if let Value::Object(m) = &mut v {
        m.remove("$schema");
        m.remove("title");
    }
    v
}

pub(super) fn submission() -> Value {
    of::<guichet_core::engine::Submission>()
}
pub(super) fn bundle_submission() -> Value {
    of::<super::BundleSubmission>()
}
pub(super) fn withdraw() -> Value {
    of::<super::WithdrawBody>()
}
pub(super) fn signer() -> Value {
    of::<super::tasks::SignerBody>()
}
pub(super) fn backup() -> Value {
    of::<super::admin::BackupBody>()
}
pub(super) fn take_back() -> Value {
    of::<super::tasks::TakeBackBody>()
}
pub(super) fn rating() -> Value {
    of::<super::cases::RatingBody>()
}
pub(super) fn supply() -> Value {
    of::<super::SupplyBody>()
}
pub(super) fn reason_required() -> Value {
    of::<super::AnswerBody>()
}
pub(super) fn reason() -> Value {
    of::<super::ReasonBody>()
}
pub(super) fn complete() -> Value {
    of::<super::CompleteBody>()
}
pub(super) fn return_to() -> Value {
    of::<super::ReturnBody>()
}
pub(super) fn transfer() -> Value {
    of::<super::TransferBody>()
}
pub(super) fn supplement() -> Value {
    of::<super::SupplementBody>()
}
pub(super) fn commitment() -> Value {
    of::<super::CommitmentBody>()
}
pub(super) fn fetch() -> Value {
    of::<super::external::FetchBody>()
}
pub(super) fn external_complete() -> Value {
    of::<super::external::CompleteBody>()
}
pub(super) fn external_failure() -> Value {
    of::<super::external::FailureBody>()
}
pub(super) fn delegation() -> Value {
    of::<guichet_core::access::DelegationRequest>()
}
pub(super) fn issue_token() -> Value {
    of::<super::IssueBody>()
}
pub(super) fn track_query() -> Value {
    of::<super::TrackQuery>()
}
pub(super) fn work_filter() -> Value {
    of::<super::tasks::TaskQuery>()
}
pub(super) fn board_query() -> Value {
    of::<super::tasks::BoardQuery>()
}
pub(super) fn card_query() -> Value {
    of::<super::CardQuery>()
}
pub(super) fn inbox_query() -> Value {
    of::<super::notify::InboxQuery>()
}
pub(super) fn failed_query() -> Value {
    of::<super::notify::FailedQuery>()
}
pub(super) fn case_search() -> Value {
    of::<guichet_core::search::CaseSearch>()
}
pub(super) fn stats_query() -> Value {
    of::<super::stats::StatsParams>()
}
pub(super) fn password() -> Value {
    of::<super::PasswordBody>()
}
pub(super) fn password_link() -> Value {
    of::<super::PasswordLinkBody>()
}
pub(super) fn lang_query() -> Value {
    of::<super::LangQuery>()
}
pub(super) fn audit_query() -> Value {
    of::<super::audit::Page>()
}
pub(super) fn migration() -> Value {
    of::<guichet_core::migrate::MigrationPlan>()
}

/// The schema of an optional value without its `null` alternative.
fn not_null(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        if let Some(Value::Array(types)) = m.get("type").cloned() {
            let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
            m.insert(
                "type".into(),
                if rest.len() == 1 {
                    rest[0].clone()
                } else {
                    Value::Array(rest)
                },
            );
        }
        if let Some(Value::Array(values)) = m.get("enum").cloned() {
            m.insert(
                "enum".into(),
                Value::Array(values.into_iter().filter(|x| !x.is_null()).collect()),
            );
        }
        if m.get("default").is_some_and(Value::is_null) {
            m.remove("default");
        }
    }
    v
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// OpenAPI links from a submission's answer to every route naming a case, its number or
/// one of its tasks.
fn links(routes: &[Route]) -> Value {
    let mut out = Map::new();
    for r in routes {
        let mut params = Map::new();
        for (name, at) in [
            ("case", "$response.body#/case/id"),
            ("number", "$response.body#/case/number"),
            ("task", "$response.body#/case/tasks/0/id"),
        ] {
            if r.path.contains(&format!("{{{name}}}")) {
                params.insert(name.into(), json!(at));
            }
        }
        if params.is_empty() || r.path.contains("{card}") {
            continue;
        }
        let id = operation_id(r);
        out.insert(
            id.replace(['/', '{', '}', ' '], "_"),
            json!({ "operationId": id, "parameters": params }),
        );
    }
    Value::Object(out)
}

fn operation_id(r: &Route) -> String {
    format!("{} {}", r.method, r.path)
}

/// The OpenAPI 3.1 document of `routes`.
pub fn openapi(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let mut params = Vec::new();
        for seg in r.path.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                params.push(json!({
                    "name": name, "in": "path", "required": true,
                    "schema": { "type": "string", "minLength": 1, "maxLength": 200 }
                }));
            }
        }
        if let Some(query) = r.query {
            let schema = query();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = schema["properties"].as_object() {
                for (name, prop) in props {
                    // A query parameter is absent rather than null.
                    let mut prop = not_null(prop.clone());
                    let description = prop.as_object_mut().and_then(|m| m.remove("description"));
                    let mut p = json!({
                        "name": name, "in": "query",
                        "required": required.contains(&name.as_str()),
                        "schema": prop,
                    });
                    if let Some(d) = description {
                        p["description"] = d;
                    }
                    params.push(p);
                }
            }
        }
        let mut responses = Map::new();
        let ok = if r.created { "201" } else { "200" };
        let schema = r.answers.map_or(json!({}), |f| f());
        let mut success =
            json!({ "description": "success", "content": { r.produces: { "schema": schema } } });
        if r.method == axum::http::Method::POST && r.path == "/api/cases" {
            // Where a new case's id, number and first task lead: lets a fuzzer (and a
            // reader) follow a submission into the routes that act on it.
            success["links"] = links(routes);
        }
        responses.insert(ok.into(), success);
        responses.insert("400".into(), error_response("malformed request"));
        // Public routes too: a token that is sent must be valid.
        responses.insert(
            "401".into(),
            error_response("a token is required, or the one sent is not valid"),
        );
        // Read-only staff (auditors) are refused every change, public routes included.
        if r.permission != Permission::Public || r.method != axum::http::Method::GET {
            responses.insert(
                "403".into(),
                error_response("the token's role may not do this"),
            );
        }
        responses.insert(
            "404".into(),
            error_response("not found, or not visible to the caller"),
        );
        if r.body.is_some() || r.method != axum::http::Method::GET {
            responses.insert(
                "409".into(),
                error_response("conflict with the current state"),
            );
            responses.insert("415".into(), error_response("not JSON"));
            responses.insert(
                "422".into(),
                error_response("invalid input; nothing changed"),
            );
        }
        // Every request's body is read against the limit, and a request may outlive its
        // time (an empty answer).
        responses.insert("413".into(), error_response("body too large"));
        responses.insert(
            "408".into(),
            json!({ "description": "the request took longer than limits.request_timeout_ms" }),
        );
        responses.insert(
            "429".into(),
            error_response(if r.permission == Permission::Applicant {
                "too many wrong query codes, or requests in progress from this address"
            } else {
                "too many requests in progress from this address"
            }),
        );
        responses.insert(
            "503".into(),
            error_response("busy or shutting down; retry later"),
        );
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r),
            "x-permission": r.permission,
            "parameters": params,
            "responses": responses,
        });
        if r.permission != Permission::Public {
            op["security"] = json!([{ "bearer": [] }, {}]);
        }
        if let Some(body) = r.body {
            let mut media = json!({ "schema": body() });
            if r.method == axum::http::Method::POST && r.path == "/api/cases" {
                // A valid submission, so tools that follow links reach real cases.
                if let Ok(example) =
                    serde_json::from_str::<Value>(include_str!("../../examples/power_case.json"))
                {
                    media["example"] = example;
                }
            }
            let mut content = json!({ "application/json": media });
            if let Some((part, required)) = r.uploads {
                let required: Vec<&str> = if required { vec![part] } else { vec![] };
                content["multipart/form-data"] = json!({
                    "schema": {
                        "type": "object",
                        "required": required,
                        "properties": {
                            part: { "type": "string", "description": "the JSON body" }
                        },
                        "additionalProperties": {
                            "type": "string", "format": "binary",
                            "description": "a file, in a part named `material.<id>`"
                        }
                    }
                });
            }
            op["requestBody"] = json!({ "required": true, "content": content });
        }
        let item = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        item[r.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Guichet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Workflow server for offices that serve the public. Each operation's `x-permission` names who may call it (see docs/security.md)."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } }
                }
            }
        }
    })
}
