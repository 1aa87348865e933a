//! Tracking an application with its number and query code (查询码): where it is, in plain
//! words, its timeline and notices; answering a supplement request with the files asked
//! for; withdrawing it. Every step proves the code again, under the same guess limits as
//! the API.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use guichet_core::guide::localized;
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use super::public::{page_for, PageQuery};
use crate::api::{AppState, Client};

/// One label in a language (for messages built in code).
fn label(lang: &str, key: &str) -> String {
    page::label(lang, key)
}

/// The tracking form.
#[derive(Deserialize, Default)]
pub(super) struct TrackLink {
    #[serde(default)]
    lang: Option<String>,
    /// A notice's link fills in the number and the code; nothing is looked up before the
    /// applicant sends the form.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

pub(super) async fn track_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(l): Query<TrackLink>,
) -> Response {
    let q = PageQuery::lang(l.lang);
    let mut p = page_for(&s, &q, &headers, "track.html");
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    let short = |v: Option<String>| v.map(|v| v.chars().take(64).collect::<String>());
    p.with("csrf", csrf)
        .with("number", short(l.number))
        .with("code", short(l.code))
        .into_response()
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
    /// Carried in the page's forms: each action proves it again.
    code: String,
    /// File inputs for what was asked for, when the case waits on the applicant.
    asked: Vec<super::apply::MaterialView>,
    can_withdraw: bool,
    /// The rating form is offered (a decided case not rated yet), with the service's tags.
    can_rate: bool,
    rating_tags: Vec<String>,
    rating: Option<guichet_core::rating::Rating>,
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
    // A bundle's reference (`<bundle>-<code>`) tracks all its cases.
    let bundle = s
        .engine
        .rules()
        .bundles
        .keys()
        .any(|b| number.starts_with(&format!("{b}-")));
    if errors.is_empty() && bundle {
        let csrf = page::csrf_token(&headers).0;
        match super::bundle::tracked(&s, &client, p.clone(), csrf, &number, &code).await {
            Ok(page) => return page,
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
    } else if errors.is_empty() {
        match crate::api::applicant_lookup(&s, &client, &number, &code, move |e, case| {
            tracked(e, case, lang, &[])
        })
        .await
        {
            Ok(view) => {
                return Page {
                    template: "tracked.html",
                    ..p
                }
                .with("c", view)
                .with("csrf", page::csrf_token(&headers).0)
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
    problems: &[guichet_core::form::Problem],
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
    let requested: Vec<String> = case
        .supplement
        .as_ref()
        .map(|r| r.items.clone())
        .or_else(|| case.commitment.as_ref().map(|m| m.items.clone()))
        .unwrap_or_default();
    let asked = match &proc {
        Some(p) if !requested.is_empty() => asked_materials(p, &requested, lang, problems),
        _ => Vec::new(),
    };
    Ok(Tracked {
        code: case.query_code.clone(),
        asked,
        can_withdraw: case.status.is_open(),
        can_rate: guichet_core::rating::may_be_rated(&case),
        rating_tags: proc
            .as_ref()
            .map(|p| p.rating.tags.clone())
            .unwrap_or_default(),
        rating: case.rating.clone(),
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
        requested,
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
                    "signer_added",
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
                    .map(|s| {
                        if s == guichet_core::rating::FOLLOW_UP_STEP {
                            label(lang, "track.follow_up")
                        } else {
                            step_name(s)
                        }
                    }),
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

/// The materials a request names (by name in any language, or id); all of them if it
/// names none, since the request is free text.
fn asked_materials(
    p: &guichet_core::procedure::Procedure,
    requested: &[String],
    lang: &str,
    problems: &[guichet_core::form::Problem],
) -> Vec<super::apply::MaterialView> {
    let names = |m: &guichet_core::procedure::Material| {
        let mut n = vec![m.id.to_lowercase(), m.name.to_lowercase()];
        n.extend(m.names.values().map(|v| v.to_lowercase()));
        n
    };
    let wanted: Vec<&guichet_core::procedure::Material> = p
        .materials
        .iter()
        .filter(|m| {
            let names = names(m);
            requested.iter().any(|item| {
                let item = item.to_lowercase();
                names.iter().any(|n| item.contains(n.as_str()))
            })
        })
        .collect();
    let wanted = if wanted.is_empty() {
        p.materials.iter().collect()
    } else {
        wanted
    };
    wanted
        .into_iter()
        .map(|m| {
            let field = format!("material.{}", m.id);
            let error = problems
                .iter()
                .filter(|pr| pr.field.as_deref() == Some(field.as_str()))
                .map(|pr| pr.message.clone())
                .collect::<Vec<_>>();
            super::apply::material_view(m, lang, (!error.is_empty()).then(|| error.join("; ")))
        })
        .collect()
}

#[derive(Serialize)]
struct SummaryLine {
    anchor: String,
    message: String,
}

/// The case's page again: after an action, with what was done or what was wrong.
#[allow(clippy::too_many_arguments)]
async fn again(
    s: &AppState,
    client: &Client,
    p: Page,
    csrf: String,
    number: &str,
    code: &str,
    flash: Option<String>,
    problems: Vec<guichet_core::form::Problem>,
    status: StatusCode,
) -> Response {
    let lang = p.lang;
    let errors: Vec<SummaryLine> = problems
        .iter()
        .map(|pr| SummaryLine {
            anchor: pr
                .field
                .as_deref()
                .and_then(|f| f.strip_prefix("material."))
                .map_or_else(|| "actions".to_string(), |m| format!("material-{m}")),
            message: pr.message.clone(),
        })
        .collect();
    match crate::api::applicant_lookup(s, client, number, code, move |e, case| {
        tracked(e, case, lang, &problems)
    })
    .await
    {
        Ok(view) => Page {
            template: "tracked.html",
            ..p
        }
        .status(status)
        .with("c", view)
        .with("csrf", csrf)
        .with("flash", flash)
        .with("errors", errors)
        .into_response(),
        Err(e) => super::public::refused(p, e.status),
    }
}

/// The applicant answers a supplement request with the files asked for.
pub(super) async fn supply(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    req: axum::extract::Request,
) -> Response {
    let p = page_for(&s, &q, &headers, "tracked.html");
    let sent = match super::apply::read(req, &s).await {
        Ok(sent) => sent,
        Err(status) => return super::public::refused(p, status),
    };
    if !page::csrf_ok(&headers, &sent.get("csrf")) {
        return super::public::refused(p, StatusCode::FORBIDDEN);
    }
    let (number, code) = (sent.get("number"), sent.get("code"));
    let uploads = sent.uploads;
    let lang = p.lang;
    let done = crate::api::applicant_commit(&s, &client, &number, &code, move |e, case| {
        let done = e
            .supply_with_files(
                &case.number,
                &case.query_code,
                Default::default(),
                Vec::new(),
                uploads,
            )
            .map_err(|err| match err {
                guichet_core::Error::Invalid(list) => {
                    let rules = e.rules();
                    let p = rules.procedures.get(&case.procedure).cloned();
                    let list = super::problems::word(list, lang, &rules, p.as_deref());
                    guichet_core::Error::Invalid(list)
                }
                other => other,
            })?;
        Ok((done, ()))
    })
    .await;
    match done {
        Ok(()) => {
            let flash = label(lang, "track.supplied");
            again(
                &s,
                &client,
                p,
                page::csrf_token(&headers).0,
                &number,
                &code,
                Some(flash),
                vec![],
                StatusCode::OK,
            )
            .await
        }
        Err(e) if !e.problems.is_empty() || e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let problems = if e.problems.is_empty() {
                vec![guichet_core::form::Problem::general(e.message)]
            } else {
                e.problems
            };
            again(
                &s,
                &client,
                p,
                page::csrf_token(&headers).0,
                &number,
                &code,
                None,
                problems,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => super::public::refused(p, e.status),
    }
}

#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
}

struct RateForm {
    csrf: String,
    number: String,
    code: String,
    score: String,
    tag: Vec<String>,
    comment: String,
}

/// The applicant rates the decided case (好差评), once.
pub(super) async fn rate(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    // Ticked tags come as the same name repeated: read as pairs.
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let p = page_for(&s, &q, &headers, "tracked.html");
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let f = RateForm {
        csrf: get("csrf"),
        number: get("number"),
        code: get("code"),
        score: get("score"),
        tag: pairs
            .iter()
            .filter(|(n, _)| n == "tag")
            .map(|(_, v)| v.clone())
            .collect(),
        comment: get("comment"),
    };
    if !page::csrf_ok(&headers, &f.csrf) {
        return super::public::refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let Ok(score) = f.score.parse::<u8>() else {
        let problem = guichet_core::form::Problem::general(label(lang, "track.rate_missing"));
        return again(
            &s,
            &client,
            p,
            page::csrf_token(&headers).0,
            &f.number,
            &f.code,
            None,
            vec![problem],
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let rating = guichet_core::rating::RatingRequest {
        score,
        tags: f.tag.clone(),
        comment: Some(f.comment.clone()),
    };
    let done = crate::api::applicant_commit(&s, &client, &f.number, &f.code, move |e, case| {
        Ok((e.rate(&guichet_core::Actor::Public, case.id, rating)?, ()))
    })
    .await;
    let (flash, problems, status) = match done {
        Ok(()) => (Some(label(lang, "track.rated")), vec![], StatusCode::OK),
        Err(e)
            if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            return super::public::refused(p, e.status)
        }
        Err(e) => (
            None,
            vec![guichet_core::form::Problem::general(page::refusal(
                lang, e.code, &e.message,
            ))],
            e.status,
        ),
    };
    again(
        &s,
        &client,
        p,
        page::csrf_token(&headers).0,
        &f.number,
        &f.code,
        flash,
        problems,
        status,
    )
    .await
}

/// The applicant withdraws the application, having ticked that they mean it.
pub(super) async fn withdraw(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    Form(f): Form<WithdrawForm>,
) -> Response {
    let p = page_for(&s, &q, &headers, "tracked.html");
    if !page::csrf_ok(&headers, &f.csrf) {
        return super::public::refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    if f.confirm.as_deref() != Some("yes") {
        let problem =
            guichet_core::form::Problem::general(label(lang, "track.withdraw_confirm_missing"));
        return again(
            &s,
            &client,
            p,
            page::csrf_token(&headers).0,
            &f.number,
            &f.code,
            None,
            vec![problem],
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let reason = Some(f.reason.trim().to_string()).filter(|r| !r.is_empty());
    let done = crate::api::applicant_commit(&s, &client, &f.number, &f.code, move |e, case| {
        let code = case.query_code.clone();
        Ok((
            e.withdraw(&guichet_core::Actor::Public, case.id, Some(&code), reason)?,
            (),
        ))
    })
    .await;
    let (flash, problems, status) = match done {
        Ok(()) => (Some(label(lang, "track.withdrawn")), vec![], StatusCode::OK),
        Err(e)
            if e.status == StatusCode::CONFLICT || e.status == StatusCode::UNPROCESSABLE_ENTITY =>
        {
            let problem = guichet_core::form::Problem::general(e.message);
            (None, vec![problem], e.status)
        }
        Err(e) => return super::public::refused(p, e.status),
    };
    let csrf = page::csrf_token(&headers).0;
    again(
        &s, &client, p, csrf, &f.number, &f.code, flash, problems, status,
    )
    .await
}
