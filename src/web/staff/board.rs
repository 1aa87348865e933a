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
struct BoardView {
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
    Ok(BoardView {
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
    let lang = p.lang;
    let page = l.page.unwrap_or(1).max(1);
    match s
        .pool
        .call(move |e| board_view(e, &actor, lang, page))
        .await
    {
        Ok(view) => Page {
            template: "board.html",
            ..p
        }
        .with("b", view)
        .with(
            "flash",
            l.done.is_some().then(|| page::label(lang, "staff.done")),
        )
        .into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            refused(p, e.status)
        }
    }
}
