//! The public pages: services by department and service guides.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use guichet_core::guide::{localized, ServiceGuide};
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use crate::api::AppState;

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
    /// Search text on the services page.
    #[serde(default)]
    q: Option<String>,
    /// What the action that led here did (`password`: a password was just set).
    #[serde(default)]
    pub(super) done: Option<String>,
}

impl PageQuery {
    /// A query that only chooses the language.
    pub(super) fn lang(lang: Option<String>) -> PageQuery {
        PageQuery {
            lang,
            ..PageQuery::default()
        }
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
    id: String,
    name: String,
    procedures: Vec<ServiceLink>,
}

/// Services by department, bundles, a search box and the way to tracking.
pub(super) async fn home(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut p = page_for(&s, &q, &headers, "home.html");
    let rules = s.engine.rules();
    let search = q.q.as_deref().unwrap_or_default().trim().to_lowercase();
    let lang = p.lang;
    let link = |id: &str| {
        rules
            .procedures
            .get(id)
            .filter(|p| p.window)
            .map(|p| ServiceLink {
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
            id: b.id.clone(),
            name: b.name.clone(),
            procedures: b.procedures.iter().filter_map(|id| link(id)).collect(),
        })
        .filter(|b| search.is_empty() || b.name.to_lowercase().contains(&search))
        .collect();
    // The tracking box posts its form as the tracking page does.
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    p.with("departments", departments)
        .with("bundles", bundles)
        .with("q", q.q.unwrap_or_default())
        .with("csrf", csrf)
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
    match rules.procedures.get(&id).filter(|p| p.window) {
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

/// A page the signed-in reader's role does not open (403), or a refusal of another kind.
pub(super) fn denied(p: Page, status: StatusCode) -> Response {
    if status != StatusCode::FORBIDDEN {
        return refused(p, status);
    }
    let message = label(p.lang, "error.not_allowed");
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
