//! The supervisor's board: the open work of the groups they supervise, worst level and
//! earliest due first, and the cards waiting for an answer.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use guichet_core::guide::localized;
use serde::Serialize;

use super::super::page::{self, Page};
use super::super::public::refused;
use super::worklist::ListQuery;
use super::{staff, text};
use crate::api::{AppState, Permission};
use crate::web::public::PageQuery;

#[derive(Serialize)]
struct Row {
    case_number: String,
    procedure_name: String,
    step_name: String,
    group: String,
    holder: Option<String>,
    due: String,
    level: String,
}

#[derive(Serialize)]
struct CardRow {
    id: String,
    case_number: String,
    procedure_name: String,
    step: Option<String>,
    threshold: String,
    issued_at: String,
    holders: Vec<String>,
}

#[derive(Serialize)]
struct DelegationLine {
    id: String,
    from: String,
    to: String,
    starts: String,
    ends: String,
    reason: String,
    revoked: bool,
}

#[derive(Serialize)]
struct Person {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct BoardView {
    delegations: Vec<DelegationLine>,
    /// Whose tasks may be delegated from here: the members of the groups supervised.
    members: Vec<Person>,
    /// Who may deputise: every staff member.
    staff: Vec<Person>,
    groups: Vec<String>,
    rows: Vec<Row>,
    counts: guichet_core::tasks::LevelCounts,
    page: usize,
    pages: usize,
    cards: Vec<CardRow>,
}

/// Rows of the board a page.
const PAGE_SIZE: usize = 100;

/// Builds the board on the engine thread.
fn board_view(
    e: &guichet_core::Engine,
    actor: &guichet_core::Actor,
    lang: &str,
    page: usize,
) -> guichet_core::Result<BoardView> {
    let b = e.board(actor, (page - 1).saturating_mul(PAGE_SIZE), PAGE_SIZE)?;
    let page = b.tasks.offset / PAGE_SIZE + 1;
    let pages = b.tasks.total.div_ceil(PAGE_SIZE).max(1);
    let rules = e.rules();
    let cal = &rules.calendar;
    let group_name = |g: &str| {
        rules
            .groups
            .get(g)
            .map_or_else(|| g.to_string(), |g| g.name.clone())
    };
    let staff_name = |id: &str| {
        rules
            .staff
            .get(id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let procedure_name = |id: &str, fallback: &str| {
        rules
            .procedures
            .get(id)
            .map(|p| localized(&p.name, &p.names, lang).to_string())
            .unwrap_or_else(|| fallback.to_string())
    };
    let step_name = |procedure: &str, step: &str, fallback: &str| {
        rules
            .procedures
            .get(procedure)
            .and_then(|p| p.step(step))
            .map(|s| localized(&s.name, &s.names, lang).to_string())
            .unwrap_or_else(|| fallback.to_string())
    };
    let rows = b
        .tasks
        .items
        .iter()
        .map(|i| {
            let level = text(i.level);
            Row {
                case_number: i.case_number.clone(),
                procedure_name: procedure_name(&i.procedure, &i.procedure_name),
                step_name: step_name(&i.procedure, &i.task.step, &i.task.step_name),
                group: group_name(&i.task.group),
                holder: i
                    .task
                    .claimed_by
                    .as_deref()
                    .or(i.task.assignee.as_deref())
                    .map(staff_name),
                due: i
                    .task
                    .due
                    .map(|d| cal.local_time_text(d))
                    .unwrap_or_default(),
                level,
            }
        })
        .collect();
    let cards = b
        .cards
        .iter()
        .map(|c| CardRow {
            id: c.card.id.clone(),
            case_number: c.case_number.clone(),
            procedure_name: procedure_name(&c.procedure, &c.procedure_name),
            step: c
                .card
                .step
                .as_deref()
                .map(|s| step_name(&c.procedure, s, s)),
            threshold: c.card.threshold.clone(),
            issued_at: cal.local_time_text(c.card.issued_at),
            holders: c.card.holders.iter().map(|g| group_name(g)).collect(),
        })
        .collect();
    let mut members: Vec<String> = b
        .groups
        .iter()
        .filter_map(|g| rules.groups.get(g))
        .flat_map(|g| g.members.clone())
        .collect();
    members.sort();
    members.dedup();
    let person = |id: &String| Person {
        id: id.clone(),
        name: staff_name(id),
    };
    Ok(BoardView {
        delegations: e
            .delegations_for(actor)
            .into_iter()
            .map(|d| DelegationLine {
                from: staff_name(&d.from),
                to: staff_name(&d.to),
                starts: d.starts.to_string(),
                ends: d.ends.to_string(),
                revoked: d.revoked_at.is_some(),
                reason: d.reason,
                id: d.id,
            })
            .collect(),
        members: members.iter().map(person).collect(),
        staff: rules.staff.keys().map(person).collect(),
        groups: b.groups.iter().map(|g| group_name(g)).collect(),
        rows,
        counts: b.tasks.counts,
        page,
        pages,
        cards,
    })
}

/// The board of the signed-in supervisor.
pub(in crate::web) async fn board(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(l): Query<ListQuery>,
) -> Response {
    let q = PageQuery::lang(l.lang.clone());
    let (actor, p) = match staff(&s, &headers, &q, Permission::Supervisor, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let flash = l.done.is_some().then(|| page::label(p.lang, "staff.done"));
    let p = p.with("flash", flash);
    show_board(&s, actor, p, l.page.unwrap_or(1).max(1), None).await
}

/// Renders the board's `page`, with what was refused, if anything.
async fn show_board(
    s: &AppState,
    actor: guichet_core::Actor,
    p: Page,
    page: usize,
    refused_because: Option<String>,
) -> Response {
    let lang = p.lang;
    let status = if refused_because.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    match s
        .pool
        .call(move |e| board_view(e, &actor, lang, page))
        .await
    {
        Ok(view) => Page {
            template: "board.html",
            ..p
        }
        .status(status)
        .with("b", view)
        .with("refused", refused_because)
        .into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            refused(p, e.status)
        }
    }
}

/// A supervisor hands a member's tasks to a deputy between two dates, or ends a
/// delegation: the engine's `delegate` and `revoke_delegation`, as on the API.
pub(in crate::web) async fn board_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(action): axum::extract::Path<String>,
    Query(q): Query<PageQuery>,
    axum::Form(f): axum::Form<Vec<(String, String)>>,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Supervisor, &Method::POST).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |name: &str| {
        f.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    if !page::csrf_ok(&headers, &get("csrf")) {
        return refused(p, axum::http::StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let done = match action.as_str() {
        "delegate" => {
            let day = |name: &str| chrono::NaiveDate::parse_from_str(&get(name), "%Y-%m-%d");
            let (Ok(starts), Ok(ends)) = (day("starts"), day("ends")) else {
                return show_board(&s, actor, p, 1, Some(page::label(lang, "board.dates"))).await;
            };
            let req = guichet_core::access::DelegationRequest {
                from: get("from"),
                to: get("to"),
                starts,
                ends,
                reason: get("reason"),
            };
            let who = actor.clone();
            s.pool
                .commit(move |e| e.delegate(&who, req), |r| r.1)
                .await
                .map(|_| ())
        }
        "revoke" => {
            let (who, id) = (actor.clone(), get("delegation"));
            s.pool
                .commit(move |e| e.revoke_delegation(&who, &id), |r| r.1)
                .await
                .map(|_| ())
        }
        _ => return super::super::public::not_found(p),
    };
    match done {
        Ok(()) => axum::response::Redirect::to("/staff/board?done=1").into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            let message = page::refusal(lang, e.code, &e.message);
            show_board(&s, actor, p, 1, Some(message)).await
        }
    }
}
