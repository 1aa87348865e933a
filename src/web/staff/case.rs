//! A case as staff see it, with the actions the engine offers them on it (`Engine::offers`:
//! the same checks the actions run), the actions themselves, and its files as
//! attachments.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use guichet_core::engine::Committed;
use guichet_core::guide::localized;
use guichet_core::procedure::Procedure;
use guichet_core::{Actor, Engine};
use serde::Serialize;

use super::super::page::{self, Page};
use super::super::public::{not_found, refused, PageQuery};
use super::worklist::ListQuery;
use super::{staff, text};
use crate::api::{AppState, Permission};

#[derive(Serialize)]
struct Choice {
    id: String,
    label: String,
}

#[derive(Serialize)]
struct FieldInput {
    name: String,
    label: String,
    kind: &'static str,
    values: Vec<String>,
    value: String,
}

#[derive(Serialize)]
struct OpenTask {
    id: String,
    step_name: String,
    group: String,
    due: Option<String>,
    claimed_by: Option<String>,
    assignee: Option<String>,
    /// The signed-in staff member may act on it.
    act: bool,
    intake: bool,
    reassign: bool,
    outcomes: Vec<Choice>,
    returns: Vec<Choice>,
    members: Vec<Choice>,
    add_signers: Vec<Choice>,
    /// The staff's own fields, filled when completing.
    fields: Vec<FieldInput>,
    /// What a supplement request may name: the procedure's materials.
    materials: Vec<Choice>,
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
    id: String,
    issued_at: String,
    threshold: String,
    step: Option<String>,
    holders: Vec<String>,
    answer: Option<String>,
    answerable: bool,
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
struct NoticeLine {
    at: String,
    recipient: String,
    channel: String,
    subject: String,
    status: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct CaseActions {
    suspend: bool,
    resume: bool,
    extend: bool,
    issue_card: bool,
    withdraw: bool,
    rate: bool,
    /// 撤回: the task this staff member may still take back.
    take_back: Option<String>,
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
    extension: Option<String>,
    requested: Vec<String>,
    tasks: Vec<OpenTask>,
    actions: CaseActions,
    rating: Option<guichet_core::rating::Rating>,
    data: Vec<Line>,
    materials: Vec<MaterialLine>,
    cards: Vec<CardLine>,
    history: Vec<EventLine>,
    notices: Vec<NoticeLine>,
}

/// The name of step `id` of `p` in `lang`.
fn step_name(p: &Procedure, id: &str, lang: &str) -> String {
    p.step(id)
        .map(|s| localized(&s.name, &s.names, lang).to_string())
        .unwrap_or_else(|| page::label_or(lang, &format!("staff.step_name.{id}"), id))
}

/// Builds the staff view of a case on the engine thread.
fn case_view(
    e: &Engine,
    actor: &Actor,
    reference: &str,
    lang: &str,
) -> guichet_core::Result<CaseView> {
    let case = e.visible_case(actor, reference)?;
    let history = e.history(case.id)?;
    let notices = e.notices(&case)?;
    let proc = e.procedure_of(&case)?;
    let offers = e.offers(actor, &case, &proc);
    let rules = e.rules();
    let cal = &rules.calendar;
    let when = |t: chrono::DateTime<chrono::Utc>| cal.local_time_text(t);
    let staff_name = |id: &str| {
        rules
            .staff
            .get(id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let materials: Vec<Choice> = proc
        .materials
        .iter()
        .map(|m| Choice {
            id: m.id.clone(),
            label: localized(&m.name, &m.names, lang).to_string(),
        })
        .collect();
    let internal: Vec<&guichet_core::procedure::Field> =
        proc.fields.iter().filter(|f| f.internal).collect();
    let tasks = case
        .open_tasks()
        .filter_map(|t| {
            let o = offers.tasks.iter().find(|o| o.task == t.id)?;
            Some(OpenTask {
                id: t.id.clone(),
                step_name: step_name(&proc, &t.step, lang),
                group: rules
                    .groups
                    .get(&t.group)
                    .map_or_else(|| t.group.clone(), |g| g.name.clone()),
                due: t.due.map(when),
                claimed_by: t.claimed_by.as_deref().map(staff_name),
                assignee: t.assignee.as_deref().map(staff_name),
                act: o.act,
                intake: o.intake,
                reassign: o.reassign,
                outcomes: o
                    .outcomes
                    .iter()
                    .map(|id| Choice {
                        label: page::label_or(lang, &format!("staff.outcome.{id}"), id),
                        id: id.clone(),
                    })
                    .collect(),
                returns: o
                    .returns
                    .iter()
                    .map(|id| Choice {
                        label: step_name(&proc, id, lang),
                        id: id.clone(),
                    })
                    .collect(),
                members: o
                    .members
                    .iter()
                    .map(|id| Choice {
                        label: staff_name(id),
                        id: id.clone(),
                    })
                    .collect(),
                add_signers: o
                    .add_signers
                    .iter()
                    .map(|id| Choice {
                        label: staff_name(id),
                        id: id.clone(),
                    })
                    .collect(),
                fields: internal
                    .iter()
                    .map(|f| FieldInput {
                        name: format!("field.{}", f.id),
                        label: localized(&f.label, &f.labels, lang).to_string(),
                        kind: super::super::apply::kind(f.kind),
                        values: f.values.clone(),
                        value: case
                            .data
                            .get(&f.id)
                            .map(|v| match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .unwrap_or_default(),
                    })
                    .collect(),
                materials: if o.act {
                    materials
                        .iter()
                        .map(|m| Choice {
                            id: m.id.clone(),
                            label: m.label.clone(),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            })
        })
        .collect();
    let field_label = |id: &str| {
        proc.field(id)
            .map(|f| localized(&f.label, &f.labels, lang).to_string())
            .unwrap_or_else(|| id.to_string())
    };
    Ok(CaseView {
        number: case.number.clone(),
        procedure_name: localized(&proc.name, &proc.names, lang).to_string(),
        status: text(case.status),
        level: text(e.case_level(&rules, &proc, &case)),
        applicant: case.applicant.clone(),
        submitted_at: when(case.submitted_at),
        promised_due: case.promised_due.map(when),
        statutory_due: case.statutory_due.map(when),
        clock_stopped: case
            .clock_stop
            .as_ref()
            .map(|s| format!("{} ({})", s.reason, when(s.since))),
        extension: case
            .extension
            .as_ref()
            .map(|x| format!("+{} ({})", x.days, x.reason)),
        requested: case
            .supplement
            .as_ref()
            .map(|r| r.items.clone())
            .or_else(|| case.commitment.as_ref().map(|c| c.items.clone()))
            .unwrap_or_default(),
        tasks,
        actions: CaseActions {
            suspend: offers.suspend,
            resume: offers.resume,
            extend: offers.extend,
            issue_card: offers.issue_card,
            withdraw: offers.withdraw,
            rate: offers.rate,
            take_back: offers.take_back.clone(),
        },
        rating: case.rating.clone(),
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
                    .materials
                    .iter()
                    .find(|d| d.id == m.id)
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
                id: c.id.clone(),
                issued_at: when(c.issued_at),
                threshold: c.threshold.clone(),
                step: c.step.as_deref().map(|s| step_name(&proc, s, lang)),
                holders: c
                    .holders
                    .iter()
                    .map(|g| {
                        rules
                            .groups
                            .get(g)
                            .map_or_else(|| g.clone(), |g| g.name.clone())
                    })
                    .collect(),
                answer: c.answer.as_ref().map(|a| a.reason.clone()),
                answerable: offers.answer_cards.contains(&c.id),
            })
            .collect(),
        notices: notices
            .iter()
            .map(|n| NoticeLine {
                at: when(n.created_at),
                recipient: n.recipient.clone(),
                channel: n.channel.clone(),
                // A text message has no subject: its text says it all.
                subject: if n.subject.is_empty() {
                    n.body.clone()
                } else {
                    n.subject.clone()
                },
                status: text(n.status),
                error: n.error.clone(),
            })
            .collect(),
        history: history
            .iter()
            .map(|ev| EventLine {
                at: when(ev.at),
                actor: staff_name(&ev.actor),
                action: page::label_or(lang, &format!("action.{}", ev.action), &ev.action),
                step: ev.step.as_deref().map(|s| step_name(&proc, s, lang)),
                outcome: ev.outcome.clone(),
                comment: ev.comment.clone(),
            })
            .collect(),
    })
}

/// A case, with the actions open to the signed-in staff member.
pub(in crate::web) async fn case_page(
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
    refused_because: Option<(&'static str, String)>,
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
            refused_because.map(|(code, message)| page::refusal(lang, code, &message)),
        )
        .into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::NOT_FOUND {
                not_found(p)
            } else {
                refused(p, e.status)
            }
        }
    }
}

/// A posted form, by name (a name given twice, as checkboxes are, keeps every value).
struct Posted(HashMap<String, Vec<String>>);

impl Posted {
    fn new(pairs: Vec<(String, String)>) -> Posted {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k).or_default().push(v);
        }
        Posted(m)
    }

    fn get(&self, name: &str) -> String {
        self.0
            .get(name)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    }

    /// A value, or none if blank.
    fn some(&self, name: &str) -> Option<String> {
        Some(self.get(name)).filter(|v| !v.trim().is_empty())
    }

    /// Every value of `name`, then each line of `more`: a list of items.
    fn items(&self, name: &str, more: &str) -> Vec<String> {
        let mut items: Vec<String> = self.0.get(name).cloned().unwrap_or_default();
        items.extend(
            self.get(more)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        );
        items
    }
}

/// The signed-in staff member, their page, and a form whose CSRF token checked out.
async fn posted(
    s: &AppState,
    headers: &HeaderMap,
    q: &PageQuery,
    pairs: Vec<(String, String)>,
) -> Result<(Actor, Page, Posted), Response> {
    let (actor, p) = staff(s, headers, q, Permission::Staff, &Method::POST).await?;
    let f = Posted::new(pairs);
    if !page::csrf_ok(headers, &f.get("csrf")) {
        return Err(refused(p, StatusCode::FORBIDDEN));
    }
    Ok((actor, p, f))
}

/// Where an action leads: back to the case (or the list) saying it was done, or the case
/// again with the engine's reason for refusing.
async fn after(
    s: &AppState,
    actor: Actor,
    p: Page,
    reference: String,
    to_list: bool,
    done: Result<Committed, impl Into<crate::error::ApiError>>,
) -> Response {
    match done {
        Ok(_) if to_list => Redirect::to("/staff?done=1").into_response(),
        Ok(c) => Redirect::to(&format!("/staff/cases/{}?done=1", c.case().number)).into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::NOT_FOUND {
                return not_found(p);
            }
            show_case(
                s,
                actor,
                p,
                reference,
                None,
                Some((e.code, e.message)),
                e.status,
            )
            .await
        }
    }
}

/// An action on a task from a page: the same engine call as the API's.
pub(in crate::web) async fn task_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((task, action)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (actor, p, f) = match posted(&s, &headers, &q, pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let case_id = task
        .split_once('-')
        .map_or(task.clone(), |(c, _)| c.to_string());
    let who = actor.clone();
    let comment = f.some("comment");
    let to_list = f.get("back") == "list";
    let call = move |e: &Engine| -> guichet_core::Result<Committed> {
        match action.as_str() {
            "claim" => e.claim(&who, &task),
            "release" => e.release(&who, &task),
            "complete" => {
                let case = e.case(guichet_core::engine::task_case_id(&task)?)?;
                let proc = e.procedure_of(&case)?;
                let data = super::super::apply::data_of(&proc, true, |n| f.get(n));
                e.complete(&who, &task, &f.get("outcome"), comment, data)
            }
            "return" => e.return_to(&who, &task, &f.get("to"), comment),
            "transfer" => e.transfer(&who, &task, None, f.some("staff"), comment),
            "reassign" => e.reassign(&who, &task, None, f.some("staff"), comment),
            "add-signer" => e.add_signer(&who, &task, &f.get("staff"), comment),
            "take-back" => e.take_back(&who, &task, comment),
            "supplement" => {
                e.request_supplement(&who, &task, f.items("material", "items"), comment)
            }
            "commitment" => e.accept_with_commitment(
                &who,
                &task,
                f.items("material", "items"),
                &f.get("by"),
                comment,
            ),
            other => Err(guichet_core::Error::NotFound(format!(
                "no task action '{other}'"
            ))),
        }
    };
    let done = s.pool.commit(call, |c| c.ticket).await;
    after(&s, actor, p, case_id, to_list, done).await
}

/// An action on a case as a whole: stopping and restarting its clock, extending its
/// limit, issuing and answering supervision cards.
pub(in crate::web) async fn case_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((reference, action)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (actor, p, f) = match posted(&s, &headers, &q, pairs).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if action == "withdraw" && f.get("confirm") != "yes" {
        let message = page::label(p.lang, "staff.withdraw_confirm_missing");
        return show_case(
            &s,
            actor,
            p,
            reference,
            None,
            Some(("", message)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let (who, r) = (actor.clone(), reference.clone());
    let to_board = f.get("back") == "board";
    let call = move |e: &Engine| -> guichet_core::Result<Committed> {
        let id = e.visible_case_id(&who, &r)?;
        let reason = f.get("reason");
        match action.as_str() {
            "suspend" => e.suspend(&who, id, &reason),
            "resume" => e.resume(&who, id, f.some("reason")),
            "extend" => e.extend(&who, id, &reason),
            "card" => e.issue_card(&who, id, &reason),
            "answer" => e.answer_card(&who, id, &f.get("card"), &reason),
            "withdraw" => e.withdraw(&who, id, None, f.some("reason")),
            "rate" => {
                let score = f.get("score").parse::<u8>().map_err(|_| {
                    guichet_core::Error::Validation("choose a score from 1 to 5".into())
                })?;
                let rating = guichet_core::rating::RatingRequest {
                    score,
                    tags: f.items("tag", "tags"),
                    comment: f.some("comment"),
                };
                e.rate(&who, id, rating)
            }
            other => Err(guichet_core::Error::NotFound(format!(
                "no case action '{other}'"
            ))),
        }
    };
    let done = s.pool.commit(call, |c| c.ticket).await;
    match done {
        Ok(_) if to_board => Redirect::to("/staff/board?done=1").into_response(),
        done => after(&s, actor, p, reference, false, done).await,
    }
}

/// A file of a case, for signed-in staff who may see the case: as an attachment.
pub(in crate::web) async fn case_file(
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
        Err(_) => not_found(p),
    }
}
