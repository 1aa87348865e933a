//! The public pages: services, service guides, tracking.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use guichet_core::guide::{localized, ServiceGuide};
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use crate::api::{AppState, Client};

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
    /// Search text on the services page.
    #[serde(default)]
    q: Option<String>,
}

impl PageQuery {
    /// A query that only chooses the language.
    pub(super) fn lang(lang: Option<String>) -> PageQuery {
        PageQuery { lang, q: None }
    }
}

/// The page's language and office name.
fn reader(s: &AppState, q: &PageQuery, headers: &HeaderMap) -> (&'static str, String, bool) {
    let rules = s.engine.rules();
    let office_lang = rules.office.language.as_deref().unwrap_or("zh");
    let lang = page::language(q.lang.as_deref(), headers, office_lang);
    (lang, rules.office.name.clone(), q.lang.is_some())
}

pub(super) fn page_for(
    s: &AppState,
    q: &PageQuery,
    headers: &HeaderMap,
    template: &'static str,
) -> Page {
    let (lang, office, remember) = reader(s, q, headers);
    let mut p = Page::new(template, lang, &office);
    p.remember_lang = remember;
    p
}

#[derive(Serialize)]
struct ServiceLink {
    id: String,
    name: String,
    promised_days: u32,
}

#[derive(Serialize)]
struct DepartmentServices {
    id: String,
    name: String,
    procedures: Vec<ServiceLink>,
}

#[derive(Serialize)]
struct BundleLink {
    name: String,
    procedures: Vec<ServiceLink>,
}

/// Services by department, bundles, a search box and the way to tracking.
pub(super) async fn home(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let p = page_for(&s, &q, &headers, "home.html");
    let rules = s.engine.rules();
    let search = q.q.as_deref().unwrap_or_default().trim().to_lowercase();
    let lang = p.lang;
    let link = |id: &str| {
        rules.procedures.get(id).map(|p| ServiceLink {
            id: p.id.clone(),
            name: localized(&p.name, &p.names, lang).to_string(),
            promised_days: p.promised_days,
        })
    };
    let departments: Vec<DepartmentServices> = rules
        .departments
        .values()
        .map(|d| DepartmentServices {
            id: d.id.clone(),
            name: localized(&d.name, &d.names, lang).to_string(),
            procedures: rules
                .procedures
                .values()
                .filter(|p| p.department == d.id)
                .filter_map(|p| link(&p.id))
                .filter(|l| {
                    search.is_empty()
                        || l.name.to_lowercase().contains(&search)
                        || l.id.contains(&search)
                })
                .collect(),
        })
        .filter(|d| !d.procedures.is_empty())
        .collect();
    let bundles: Vec<BundleLink> = rules
        .bundles
        .values()
        .map(|b| BundleLink {
            name: b.name.clone(),
            procedures: b.procedures.iter().filter_map(|id| link(id)).collect(),
        })
        .filter(|b| search.is_empty() || b.name.to_lowercase().contains(&search))
        .collect();
    p.with("departments", departments)
        .with("bundles", bundles)
        .with("q", q.q.unwrap_or_default())
        .into_response()
}

/// A procedure's service guide (办事指南), printable.
pub(super) async fn guide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let p = page_for(&s, &q, &headers, "guide.html");
    let rules = s.engine.rules();
    match rules.procedures.get(&id) {
        Some(proc) => {
            let g = ServiceGuide::of(proc, &rules, p.lang);
            p.with("g", g).into_response()
        }
        None => not_found(p),
    }
}

/// Any other address outside `/api`: the page that says so.
pub(super) async fn missing(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    not_found(page_for(&s, &q, &headers, "error.html"))
}

pub(super) fn not_found(p: Page) -> Response {
    let message = label(p.lang, "error.not_found");
    Page {
        template: "error.html",
        ..p
    }
    .status(StatusCode::NOT_FOUND)
    .with("message", message)
    .into_response()
}

/// The page of a form refused before it was read: without the browser's CSRF token
/// (403), or not a form at all (400).
pub(super) fn refused(p: Page, status: StatusCode) -> Response {
    let message = label(
        p.lang,
        if status == StatusCode::FORBIDDEN {
            "error.forbidden"
        } else {
            "error.title"
        },
    );
    Page {
        template: "error.html",
        ..p
    }
    .status(status)
    .with("message", message)
    .into_response()
}

/// One label in a language (for messages built in code).
fn label(lang: &str, key: &str) -> String {
    page::label(lang, key)
}

/// The tracking form.
pub(super) async fn track_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut p = page_for(&s, &q, &headers, "track.html");
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    p.with("csrf", csrf).into_response()
}

#[derive(Deserialize)]
pub(super) struct TrackForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    code: String,
}

#[derive(Serialize)]
struct FormError {
    field: &'static str,
    message: String,
}

#[derive(Serialize)]
struct TimelineEntry {
    at: String,
    action: String,
    step: Option<String>,
}

#[derive(Serialize)]
struct NoticeLine {
    at: String,
    subject: String,
}

/// What the applicant sees of a case: where it is, in plain words; never who holds it.
#[derive(Serialize)]
struct Tracked {
    number: String,
    procedure_name: String,
    status: String,
    current: Vec<String>,
    submitted_at: String,
    accepted_at: Option<String>,
    decided_at: Option<String>,
    promised_by: Option<String>,
    requested: Vec<String>,
    history: Vec<TimelineEntry>,
    notices: Vec<NoticeLine>,
}

/// Answers the tracking form: the case's page, or the form again with what is wrong.
pub(super) async fn track(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    Form(form): Form<TrackForm>,
) -> Response {
    let p = page_for(&s, &q, &headers, "track.html");
    if !page::csrf_ok(&headers, &form.csrf) {
        let message = label(p.lang, "error.forbidden");
        return Page {
            template: "error.html",
            ..p
        }
        .status(StatusCode::FORBIDDEN)
        .with("message", message)
        .into_response();
    }
    let number = form.number.trim().to_string();
    let code = form.code.trim().to_string();
    let lang = p.lang;
    let mut errors = Vec::new();
    if number.is_empty() {
        errors.push(FormError {
            field: "number",
            message: label(lang, "track.missing_number"),
        });
    }
    if code.is_empty() {
        errors.push(FormError {
            field: "code",
            message: label(lang, "track.missing_code"),
        });
    }
    if errors.is_empty() {
        match crate::api::applicant_lookup(&s, &client, &number, &code, move |e, case| {
            tracked(e, case, lang)
        })
        .await
        {
            Ok(view) => {
                return Page {
                    template: "tracked.html",
                    ..p
                }
                .with("c", view)
                .into_response()
            }
            Err(e) => {
                let key = match e.status {
                    StatusCode::TOO_MANY_REQUESTS => "track.too_many",
                    StatusCode::NOT_FOUND => "track.not_found",
                    _ => "error.busy",
                };
                errors.push(FormError {
                    field: "code",
                    message: label(lang, key),
                });
            }
        }
    }
    let field_errors: std::collections::HashMap<&str, &str> = errors
        .iter()
        .map(|e| (e.field, e.message.as_str()))
        .collect();
    let field_errors = serde_json::json!(field_errors);
    let (csrf, _) = page::csrf_token(&headers);
    p.status(StatusCode::UNPROCESSABLE_ENTITY)
        .with("csrf", csrf)
        .with("number", number)
        .with("field_errors", field_errors)
        .with("errors", errors)
        .into_response()
}

/// Builds the applicant's view of `case` on the engine thread (its procedure version
/// names the steps).
fn tracked(
    e: &guichet_core::Engine,
    case: guichet_core::case::Case,
    lang: &str,
) -> guichet_core::Result<Tracked> {
    let history = e.history(case.id)?;
    let notices = e.notices(&case)?;
    let proc = e.procedure_of(&case).ok();
    let step_name = |id: &str| -> String {
        proc.as_ref()
            .and_then(|p| p.step(id))
            .map(|s| localized(&s.name, &s.names, lang).to_string())
            .unwrap_or_else(|| id.to_string())
    };
    let calendar = e.rules().calendar.clone();
    let when = |t: chrono::DateTime<chrono::Utc>| calendar.local_time_text(t);
    Ok(Tracked {
        number: case.number.clone(),
        procedure_name: proc
            .as_ref()
            .map(|p| localized(&p.name, &p.names, lang).to_string())
            .unwrap_or_else(|| case.procedure_name.clone()),
        status: serde_json::to_value(case.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        current: {
            let mut steps: Vec<String> = case
                .open_tasks()
                .filter(|t| t.step != guichet_core::procedure::INTAKE_STEP)
                .map(|t| step_name(&t.step))
                .collect();
            steps.dedup();
            steps
        },
        submitted_at: when(case.submitted_at),
        accepted_at: case.accepted_at.map(when),
        decided_at: case.decided_at.map(when),
        promised_by: case.promised_due.map(when),
        requested: case
            .supplement
            .as_ref()
            .map(|r| r.items.clone())
            .or_else(|| case.commitment.as_ref().map(|m| m.items.clone()))
            .unwrap_or_default(),
        history: history
            .iter()
            // The office's internal moves are not the applicant's business.
            .filter(|ev| {
                ![
                    "claimed",
                    "released",
                    "transferred",
                    "reassigned",
                    "card_issued",
                    "card_answered",
                ]
                .contains(&ev.action.as_str())
            })
            .map(|ev| TimelineEntry {
                at: when(ev.at),
                action: ev.action.clone(),
                step: ev
                    .step
                    .as_deref()
                    .filter(|s| *s != guichet_core::procedure::INTAKE_STEP)
                    .map(step_name),
            })
            .collect(),
        notices: notices
            .iter()
            .filter(|n| n.recipient == "applicant")
            .map(|n| NoticeLine {
                at: when(n.created_at),
                // A text message has no subject: its text says it all.
                subject: if n.subject.is_empty() {
                    n.body.clone()
                } else {
                    n.subject.clone()
                },
            })
            .collect(),
    })
}

/// The stylesheet, at its fingerprinted address: cached for a year, never stale.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    if format!("/static/{file}") != page::css_path() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let mut r = page::CSS.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    page::secure(h);
    r
}
