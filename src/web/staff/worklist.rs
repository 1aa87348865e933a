//! The worklist: the tasks of my groups with their levels, counted, filtered, paged.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use guichet_core::engine::WorkFilter;
use guichet_core::guide::localized;
use serde::{Deserialize, Serialize};

use super::super::page;
use super::super::public::{refused, PageQuery};
use super::{staff, text};
use crate::api::{AppState, Permission};
use guichet_core::tasks::WorkOrder;

/// Tasks per worklist page.
const PAGE_SIZE: usize = 50;

#[derive(Deserialize, Default)]
pub(in crate::web) struct ListQuery {
    #[serde(default)]
    pub(super) lang: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    mine: Option<String>,
    /// A bundle's reference: its cases' tasks only.
    #[serde(default)]
    bundle: Option<String>,
    #[serde(default)]
    pub(super) page: Option<usize>,
    #[serde(default)]
    pub(super) done: Option<String>,
}

#[derive(Serialize)]
struct TaskRow {
    id: String,
    case_number: String,
    procedure_name: String,
    step_name: String,
    applicant: String,
    due_text: String,
    claimed_by: Option<String>,
    level: String,
}

#[derive(Serialize)]
struct Choice {
    id: String,
    name: String,
}

/// The worklist: the tasks of my groups, worst level first, filtered and paged.
pub(in crate::web) async fn worklist(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(l): Query<ListQuery>,
) -> Response {
    let q = PageQuery::lang(l.lang.clone());
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lang = p.lang;
    let filter = WorkFilter {
        procedure: l.procedure.clone().filter(|v| !v.is_empty()),
        state: l
            .state
            .as_deref()
            .and_then(|v| serde_json::from_value(serde_json::json!(v)).ok()),
        mine: l.mine.as_deref() == Some("true"),
        bundle: l.bundle.clone().filter(|v| !v.trim().is_empty()),
        level: l
            .level
            .as_deref()
            .and_then(|v| serde_json::from_value(serde_json::json!(v)).ok()),
        ..WorkFilter::default()
    };
    let asked = l.page.unwrap_or(1).max(1);
    let found = s
        .pool
        .call(move |e| {
            let found = e.worklist_page(
                &actor,
                &filter,
                WorkOrder::WorstOldest,
                (asked - 1).saturating_mul(PAGE_SIZE),
                PAGE_SIZE,
            )?;
            let cal = e.rules().calendar.clone();
            // Past the end (the list got shorter), the engine gives the last page.
            let page_no = found.offset / PAGE_SIZE + 1;
            Ok((found, cal, page_no))
        })
        .await;
    let (found, calendar, page_no) = match found {
        Ok(x) => x,
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            return refused(p, e.status);
        }
    };
    let pages = found.total.div_ceil(PAGE_SIZE).max(1);
    let rules = s.engine.rules();
    let rows: Vec<TaskRow> = found
        .items
        .iter()
        .map(|i| TaskRow {
            id: i.task.id.clone(),
            case_number: i.case_number.clone(),
            procedure_name: rules
                .procedures
                .get(&i.procedure)
                .map(|p| localized(&p.name, &p.names, lang).to_string())
                .unwrap_or_else(|| i.procedure_name.clone()),
            step_name: i.task.step_name.clone(),
            applicant: i.applicant.clone(),
            due_text: i
                .task
                .due
                .map(|d| calendar.local_time_text(d))
                .unwrap_or_default(),
            claimed_by: i.task.claimed_by.clone(),
            level: text(i.level),
        })
        .collect();
    let counts = found.counts;
    let procedures: Vec<Choice> = rules
        .procedures
        .values()
        .map(|p| Choice {
            id: p.id.clone(),
            name: localized(&p.name, &p.names, lang).to_string(),
        })
        .collect();
    let query = [
        ("level", l.level.as_deref()),
        ("state", l.state.as_deref()),
        ("procedure", l.procedure.as_deref()),
        ("mine", l.mine.as_deref()),
        ("bundle", l.bundle.as_deref()),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.filter(|v| !v.is_empty())
            .map(|v| format!("{k}={}", page::url_encode(v)))
    })
    .collect::<Vec<_>>()
    .join("&");
    let flash = l.done.is_some().then(|| page::label(lang, "staff.done"));
    p.with("tasks", rows)
        .with("counts", counts)
        .with("page", page_no)
        .with("pages", pages)
        .with("query", query)
        .with("procedures", procedures)
        .with(
            "filter",
            serde_json::json!({
                "level": l.level, "state": l.state, "procedure": l.procedure,
                "mine": l.mine.as_deref() == Some("true"), "bundle": l.bundle,
            }),
        )
        .with("flash", flash)
        .into_response()
}
