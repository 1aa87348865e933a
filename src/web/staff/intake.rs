//! Window intake (窗口受理): a clerk receives an application on the applicant's behalf,
//! with the files handed over, through the same form and the same engine call as online;
//! the case records the window as its channel and the clerk as who received it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use guichet_core::guide::{localized, ServiceGuide};
use serde::Serialize;

use super::super::apply;
use super::super::page::{self, Page};
use super::super::public::{not_found, refused, PageQuery};
use super::staff;
use crate::api::{AppState, Permission};

#[derive(Serialize)]
struct Service {
    id: String,
    name: String,
    /// The clerk is in the group that accepts it.
    mine: bool,
}

#[derive(Serialize)]
struct Department {
    name: String,
    services: Vec<Service>,
}

/// The services a clerk may receive, by department; those whose acceptance is theirs are
/// marked.
pub(in crate::web) async fn intake_list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lang = p.lang;
    let rules = s.engine.rules();
    let me = actor.name();
    let departments: Vec<Department> = rules
        .departments
        .values()
        .filter_map(|d| {
            let services: Vec<Service> = rules
                .procedures
                .values()
                .filter(|p| p.department == d.id)
                .map(|p| Service {
                    id: p.id.clone(),
                    name: localized(&p.name, &p.names, lang).to_string(),
                    mine: rules.is_member(&me, &p.intake),
                })
                .collect();
            (!services.is_empty()).then(|| Department {
                name: localized(&d.name, &d.names, lang).to_string(),
                services,
            })
        })
        .collect();
    Page {
        template: "intake.html",
        ..p
    }
    .with("departments", departments)
    .into_response()
}

/// The application form, for the clerk to fill in with the applicant.
pub(in crate::web) async fn intake_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    // Checked as the sending will be: readers (auditors) are not offered a form they
    // could not send.
    let (_, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::POST).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let rules = s.engine.rules();
    let Some(proc) = rules.procedures.get(&id) else {
        return not_found(p);
    };
    let (csrf, _) = page::csrf_token(&headers);
    let lang = p.lang;
    let p = p
        .with("g", ServiceGuide::of(proc, &rules, lang))
        .with("window", true);
    apply::form(p, proc, &apply::Sent::default(), &[], csrf).into_response()
}

/// Receives the application at the window: the receipt to print for the applicant, or
/// the form again with every problem.
pub(in crate::web) async fn intake_send(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    req: axum::extract::Request,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::POST).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let rules = s.engine.rules();
    let Some(proc) = rules.procedures.get(&id).cloned() else {
        return not_found(p);
    };
    let sent = match apply::read(req, &s).await {
        Ok(sent) => sent,
        Err(status) => return refused(p, status),
    };
    if !page::csrf_ok(&headers, &sent.get("csrf")) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let p = p
        .with("g", ServiceGuide::of(&proc, &rules, lang))
        .with("window", true);
    apply::receive(&s, &headers, p, proc, sent, actor).await
}
