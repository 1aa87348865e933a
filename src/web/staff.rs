//! Staff pages: signing in with a password, the worklist, a case with the actions its
//! open tasks offer, files as attachments. The pages call the same engine functions as
//! the API and pass the same permission check (`api::permitted`); the engine then checks
//! what only it can (group membership, signers), and a case the staff member may not see
//! does not exist for them.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use guichet_core::engine::WorkFilter;
use guichet_core::guide::localized;
use guichet_core::Actor;
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use super::public::{page_for, refused, PageQuery};
use crate::api::{AppState, Client, Permission};

/// Cookie of a browser's session (HttpOnly: scripts never see it; SameSite=Lax: sent when
/// following a link from elsewhere, never with a form posted from elsewhere).
const SESSION_COOKIE: &str = "guichet_session";
/// Tasks per worklist page.
const PAGE_SIZE: usize = 50;

/// The signed-in actor of a request, if its session is valid.
async fn who(s: &AppState, headers: &HeaderMap) -> Option<Actor> {
    let secret = page::cookie(headers, SESSION_COOKIE)?;
    let known = match s.engine.authenticate_cached(&secret) {
        Some(known) => known,
        None => s.pool.call(move |e| e.authenticate(&secret)).await.ok()?,
    };
    known.filter(|a| matches!(a, Actor::Staff(_)))
}

/// The staff member a page is for, who must hold `permission`: otherwise the sign-in page
/// (no session) or a refusal.
async fn staff(
    s: &AppState,
    headers: &HeaderMap,
    q: &PageQuery,
    permission: Permission,
    method: &Method,
) -> Result<(Actor, Page), Response> {
    let Some(actor) = who(s, headers).await else {
        return Err(Redirect::to("/staff/sign-in").into_response());
    };
    if let Err(e) = crate::api::permitted(s, &actor, permission, method) {
        return Err(refused(page_for(s, q, headers, "error.html"), e.status));
    }
    let name = match &actor {
        Actor::Staff(id) => s
            .engine
            .rules()
            .staff
            .get(id)
            .map_or_else(|| id.clone(), |st| st.name.clone()),
        _ => String::new(),
    };
    let (csrf, new) = page::csrf_token(headers);
    let mut p = page_for(s, q, headers, "worklist.html")
        .with("staff_name", name)
        .with("csrf", csrf.clone());
    if new {
        p.set_csrf = Some(csrf);
    }
    Ok((actor, p))
}

/// The sign-in form.
pub(super) async fn sign_in_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut p = page_for(&s, &q, &headers, "signin.html");
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    p.with("csrf", csrf).into_response()
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    staff: String,
    #[serde(default)]
    password: String,
}

/// Signs in: a session cookie and the worklist, or the form again. Wrong attempts count
/// against the address and the staff id, as wrong query codes do.
pub(super) async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    Form(f): Form<SignIn>,
) -> Response {
    let p = page_for(&s, &q, &headers, "signin.html");
    if !page::csrf_ok(&headers, &f.csrf) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let staff_id = f.staff.trim().to_string();
    let key = format!("staff:{staff_id}");
    let (csrf, _) = page::csrf_token(&headers);
    let lang = p.lang;
    let again = |p: Page, message: String| {
        p.status(StatusCode::UNAUTHORIZED)
            .with("csrf", csrf.clone())
            .with("staff", staff_id.clone())
            .with("error", message)
            .into_response()
    };
    if s.guesses.check(&client.0, &key).is_err() {
        return again(p, page::label(lang, "track.too_many"));
    }
    let (id, password) = (staff_id.clone(), f.password);
    // Hashing a password takes a while: on an engine thread, never on the async ones.
    let opened = s.pool.call_heavy(move |e| e.sign_in(&id, &password)).await;
    match opened {
        Ok(Some((_, secret))) => {
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let cookie = format!(
                "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
                guichet_core::sessions::SESSION_HOURS * 3600,
                if secure { "; Secure" } else { "" }
            );
            let mut r = Redirect::to("/staff").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Ok(None) => {
            s.guesses.failed(&client.0, &key);
            again(p, page::label(lang, "staff.wrong"))
        }
        Err(_) => again(p, page::label(lang, "error.busy")),
    }
}

#[derive(Deserialize)]
pub(super) struct Posted {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    items: Option<String>,
    /// `list` to come back to the worklist rather than the case.
    #[serde(default)]
    back: Option<String>,
}

/// Signs out: the session is revoked and its cookie cleared.
pub(super) async fn sign_out(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    Form(f): Form<Posted>,
) -> Response {
    if !page::csrf_ok(&headers, &f.csrf) {
        return refused(
            page_for(&s, &q, &headers, "error.html"),
            StatusCode::FORBIDDEN,
        );
    }
    if let Some(secret) = page::cookie(&headers, SESSION_COOKIE) {
        let _ = s.pool.call(move |e| e.end_session(&secret)).await;
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("guichet_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    r
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    procedure: Option<String>,
    #[serde(default)]
    mine: Option<String>,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    done: Option<String>,
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
pub(super) async fn worklist(
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
        level: l
            .level
            .as_deref()
            .and_then(|v| serde_json::from_value(serde_json::json!(v)).ok()),
        ..WorkFilter::default()
    };
    let items = match s
        .pool
        .call(move |e| {
            let items = e.worklist(&actor, &filter)?;
            let cal = e.rules().calendar.clone();
            Ok((items, cal))
        })
        .await
    {
        Ok(x) => x,
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            return refused(p, e.status);
        }
    };
    let (mut items, calendar) = items;
    let level_of = |i: &guichet_core::engine::WorkItem| {
        serde_json::to_value(i.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut counts = std::collections::BTreeMap::from([("green", 0), ("yellow", 0), ("red", 0)]);
    for i in &items {
        if let Some(n) = counts.get_mut(level_of(i).as_str()) {
            *n += 1;
        }
    }
    // Worst first, then the oldest.
    items.sort_by_key(|i| (std::cmp::Reverse(i.level), i.task.created_at));
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page_no = l.page.unwrap_or(1).clamp(1, pages);
    let rules = s.engine.rules();
    let rows: Vec<TaskRow> = items
        .iter()
        .skip((page_no - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
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
            level: level_of(i),
        })
        .collect();
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
    ]
    .iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| format!("{k}={v}")))
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
                "mine": l.mine.as_deref() == Some("true"),
            }),
        )
        .with("flash", flash)
        .into_response()
}

#[derive(Serialize)]
struct OutcomeView {
    id: String,
    label: String,
}

#[derive(Serialize)]
struct OpenTask {
    id: String,
    step_name: String,
    due: Option<String>,
    claimed_by: Option<String>,
    /// Whether the signed-in staff member may act on it.
    mine: bool,
    outcomes: Vec<OutcomeView>,
}

#[derive(Serialize)]
struct Line {
    label: String,
    value: String,
}

#[derive(Serialize)]
struct MaterialLine {
    name: String,
    file: String,
    sha256: Option<String>,
}

#[derive(Serialize)]
struct CardLine {
    issued_at: String,
    threshold: String,
    holders: Vec<String>,
    answer: Option<String>,
}

#[derive(Serialize)]
struct EventLine {
    at: String,
    actor: String,
    action: String,
    step: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
}

#[derive(Serialize)]
struct CaseView {
    number: String,
    procedure_name: String,
    status: String,
    level: String,
    applicant: guichet_core::case::Applicant,
    submitted_at: String,
    promised_due: Option<String>,
    statutory_due: Option<String>,
    clock_stopped: Option<String>,
    tasks: Vec<OpenTask>,
    data: Vec<Line>,
    materials: Vec<MaterialLine>,
    cards: Vec<CardLine>,
    history: Vec<EventLine>,
}

fn text(v: impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Builds the staff view of a case on the engine thread.
fn case_view(
    e: &guichet_core::Engine,
    actor: &Actor,
    reference: &str,
    lang: &str,
) -> guichet_core::Result<CaseView> {
    let case = e.visible_case(actor, reference)?;
    let history = e.history(case.id)?;
    let proc = e.procedure_of(&case).ok();
    let rules = e.rules();
    let cal = &rules.calendar;
    let when = |t: chrono::DateTime<chrono::Utc>| cal.local_time_text(t);
    let me = match actor {
        Actor::Staff(s) => s.clone(),
        _ => String::new(),
    };
    let level = proc
        .as_ref()
        .map(|p| text(e.case_level(&rules, p, &case)))
        .unwrap_or_else(|| "green".into());
    let mut principals = e.principals_of(&me);
    principals.push(me.clone());
    let tasks = case
        .open_tasks()
        .filter(|t| t.external.is_none())
        .map(|t| {
            let mine = principals.iter().any(|p| rules.is_member(p, &t.group))
                && t.assignee
                    .as_deref()
                    .is_none_or(|a| principals.iter().any(|p| p == a));
            OpenTask {
                id: t.id.clone(),
                step_name: proc
                    .as_ref()
                    .and_then(|p| p.step(&t.step))
                    .map(|s| localized(&s.name, &s.names, lang).to_string())
                    .unwrap_or_else(|| t.step_name.clone()),
                due: t.due.map(when),
                claimed_by: t.claimed_by.clone(),
                mine,
                outcomes: proc
                    .as_ref()
                    .map(|p| p.task_outcomes(&t.step))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|o| OutcomeView {
                        label: super::page::label_or(lang, &format!("staff.outcome.{o}"), &o),
                        id: o,
                    })
                    .collect(),
            }
        })
        .collect();
    let field_label = |id: &str| {
        proc.as_ref()
            .and_then(|p| p.field(id))
            .map(|f| localized(&f.label, &f.labels, lang).to_string())
            .unwrap_or_else(|| id.to_string())
    };
    Ok(CaseView {
        number: case.number.clone(),
        procedure_name: proc
            .as_ref()
            .map(|p| localized(&p.name, &p.names, lang).to_string())
            .unwrap_or_else(|| case.procedure_name.clone()),
        status: text(case.status),
        level,
        applicant: case.applicant.clone(),
        submitted_at: when(case.submitted_at),
        promised_due: case.promised_due.map(when),
        statutory_due: case.statutory_due.map(when),
        clock_stopped: case
            .clock_stop
            .as_ref()
            .map(|s| format!("{} ({})", s.reason, when(s.since))),
        tasks,
        data: case
            .data
            .iter()
            .map(|(k, v)| Line {
                label: field_label(k),
                value: match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect(),
        materials: case
            .materials
            .iter()
            .map(|m| MaterialLine {
                name: proc
                    .as_ref()
                    .and_then(|p| p.materials.iter().find(|d| d.id == m.id))
                    .map(|d| localized(&d.name, &d.names, lang).to_string())
                    .unwrap_or_else(|| m.id.clone()),
                file: m.file.clone(),
                sha256: m.sha256.clone(),
            })
            .collect(),
        cards: case
            .cards
            .iter()
            .map(|c| CardLine {
                issued_at: when(c.issued_at),
                threshold: c.threshold.clone(),
                holders: c.holders.clone(),
                answer: c.answer.as_ref().map(|a| a.reason.clone()),
            })
            .collect(),
        history: history
            .iter()
            .map(|ev| EventLine {
                at: when(ev.at),
                actor: ev.actor.clone(),
                action: ev.action.clone(),
                step: ev.step.clone(),
                outcome: ev.outcome.clone(),
                comment: ev.comment.clone(),
            })
            .collect(),
    })
}

/// A case, with the actions its open tasks offer to the signed-in staff member.
pub(super) async fn case_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    Query(l): Query<ListQuery>,
) -> Response {
    let q = PageQuery::lang(l.lang.clone());
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let flash = l.done.is_some().then(|| page::label(p.lang, "staff.done"));
    show_case(&s, actor, p, reference, flash, None, StatusCode::OK).await
}

async fn show_case(
    s: &AppState,
    actor: Actor,
    p: Page,
    reference: String,
    flash: Option<String>,
    refused_because: Option<String>,
    status: StatusCode,
) -> Response {
    let lang = p.lang;
    match s
        .pool
        .call(move |e| case_view(e, &actor, &reference, lang))
        .await
    {
        Ok(view) => Page {
            template: "case.html",
            ..p
        }
        .status(status)
        .with("c", view)
        .with("flash", flash)
        .with(
            "refused",
            refused_because.map(|r| page::label(lang, "staff.refused").replace("{reason}", &r)),
        )
        .into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::NOT_FOUND {
                super::public::not_found(p)
            } else {
                refused(p, e.status)
            }
        }
    }
}

/// An action on a task from a page: the same engine call as the API's, then back to the
/// case (or the worklist) with what happened.
pub(super) async fn task_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((task, action)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
    Form(f): Form<Posted>,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::POST).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !page::csrf_ok(&headers, &f.csrf) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let case_id = task
        .split_once('-')
        .map_or(task.clone(), |(c, _)| c.to_string());
    let who = actor.clone();
    let comment = f.comment.filter(|c| !c.trim().is_empty());
    let done = match action.as_str() {
        "claim" => {
            s.pool
                .commit(move |e| e.claim(&who, &task), |c| c.ticket)
                .await
        }
        "release" => {
            s.pool
                .commit(move |e| e.release(&who, &task), |c| c.ticket)
                .await
        }
        "complete" => {
            let outcome = f.outcome.unwrap_or_default();
            s.pool
                .commit(
                    move |e| e.complete(&who, &task, &outcome, comment, Default::default()),
                    |c| c.ticket,
                )
                .await
        }
        "supplement" => {
            let items: Vec<String> = f
                .items
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            s.pool
                .commit(
                    move |e| e.request_supplement(&who, &task, items, comment),
                    |c| c.ticket,
                )
                .await
        }
        _ => return super::public::not_found(p),
    };
    match done {
        Ok(c) if f.back.as_deref() == Some("list") => {
            let _ = c;
            Redirect::to("/staff?done=1").into_response()
        }
        Ok(c) => Redirect::to(&format!("/staff/cases/{}?done=1", c.case().number)).into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::NOT_FOUND {
                return super::public::not_found(p);
            }
            show_case(&s, actor, p, case_id, None, Some(e.message), e.status).await
        }
    }
}

/// A file of a case, for signed-in staff who may see the case: as an attachment.
pub(super) async fn case_file(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((reference, sha256)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s
        .pool
        .call(move |e| e.material_file(&actor, &reference, &sha256))
        .await
    {
        Ok((material, bytes)) => crate::api::attachment(&material.file, bytes),
        Err(_) => super::public::not_found(p),
    }
}
