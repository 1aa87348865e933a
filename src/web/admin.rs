//! The administrator's page (scripts and their problems, procedure versions and
//! migrations with a dry run first, staff passwords and one-time password links, tokens,
//! incidents, failed notices with their retry) and the auditor's
//! (searching the audit log, verifying its chain). The same engine calls and permissions
//! as `/api/admin` and `/api/audit`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use guichet_core::Engine;
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use super::public::{refused, PageQuery};
use super::staff::staff;
use crate::api::{AppState, Permission};

#[derive(Serialize)]
struct StaffLine {
    id: String,
    name: String,
    has_password: bool,
}

#[derive(Serialize)]
struct TokenLine {
    id: String,
    subject: String,
    label: String,
    created: String,
    expires: String,
    revoked: Option<String>,
}

#[derive(Serialize)]
struct VersionLine {
    procedure: String,
    version: String,
    file: String,
    since: String,
    live: bool,
    open_cases: u64,
}

#[derive(Serialize)]
struct IncidentLine {
    at: String,
    code: String,
    message: String,
    actor: String,
    action: String,
    case: Option<u64>,
}

#[derive(Serialize)]
struct FailedLine {
    id: String,
    case_number: String,
    event: String,
    channel: String,
    address: String,
    at: String,
    attempts: u32,
    error: String,
}

#[derive(Serialize)]
struct AdminView {
    scripts: guichet_core::reload::ReloadStatus,
    live_since: Option<String>,
    attempted_at: Option<String>,
    versions: Vec<VersionLine>,
    staff: Vec<StaffLine>,
    tokens: Vec<TokenLine>,
    incidents: Vec<IncidentLine>,
    failed: Vec<FailedLine>,
}

fn admin_view(e: &Engine) -> guichet_core::Result<AdminView> {
    let rules = e.rules();
    let cal = &rules.calendar;
    let when = |t: chrono::DateTime<chrono::Utc>| cal.local_time_text(t);
    let scripts = e.reload_status();
    let staff = rules
        .staff
        .values()
        .map(|s| {
            Ok(StaffLine {
                id: s.id.clone(),
                name: s.name.clone(),
                has_password: e.has_password(&s.id)?,
            })
        })
        .collect::<guichet_core::Result<Vec<_>>>()?;
    let now = e.now();
    let tokens = e
        .tokens()?
        .into_iter()
        // Expired browser sessions are history, not something to manage.
        .filter(|t| {
            t.label != guichet_core::sessions::SESSION_LABEL
                || (t.revoked_at.is_none() && t.expires_at.is_none_or(|x| x > now))
        })
        .map(|t| TokenLine {
            id: t.id,
            subject: t.subject,
            label: t.label,
            created: when(t.created_at),
            expires: t.expires_at.map(when).unwrap_or_default(),
            revoked: t.revoked_at.map(when),
        })
        .collect();
    Ok(AdminView {
        live_since: scripts.live_since.map(when),
        attempted_at: scripts.attempted_at.map(when),
        scripts,
        versions: e
            .versions()?
            .into_iter()
            .map(|v| VersionLine {
                procedure: v.procedure,
                version: v.version,
                file: v.file,
                since: when(v.since),
                live: v.live,
                open_cases: v.open_cases,
            })
            .collect(),
        staff,
        tokens,
        incidents: e
            .incidents(50)?
            .into_iter()
            .map(|i| IncidentLine {
                at: when(i.at),
                code: i.code,
                message: i.message,
                actor: i.actor,
                action: i.action,
                case: i.case,
            })
            .collect(),
        failed: e
            .failed_notices(&guichet_core::Actor::Admin, 50)?
            .into_iter()
            .map(|n| FailedLine {
                at: n.done_at.map(when).unwrap_or_default(),
                id: n.id,
                case_number: n.case_number,
                event: n.event,
                channel: n.channel,
                address: n.address,
                attempts: n.attempts,
                error: n.error.unwrap_or_default(),
            })
            .collect(),
    })
}

/// Renders the administrator's page, with what an action just did (`flash`) or a
/// migration's report.
async fn show(
    s: &AppState,
    p: Page,
    flash: Option<String>,
    report: Option<guichet_core::migrate::MigrationReport>,
    status: StatusCode,
) -> Response {
    match s.pool.call(admin_view).await {
        Ok(view) => Page {
            template: "admin.html",
            ..p
        }
        .status(status)
        .with("a", view)
        .with("flash", flash)
        .with("report", report)
        .into_response(),
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            refused(p, e.status)
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Done {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The administrator's page.
pub(super) async fn admin(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(d): Query<Done>,
) -> Response {
    let q = PageQuery::lang(d.lang);
    let (_, p) = match staff(&s, &headers, &q, Permission::Admin, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let flash = d.done.is_some().then(|| page::label(p.lang, "staff.done"));
    show(&s, p, flash, None, StatusCode::OK).await
}

/// An administrator's action from the page: reload the scripts, migrate (or try a
/// migration), set a password, revoke a token.
pub(super) async fn admin_action(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Query(q): Query<PageQuery>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let (actor, p) = match staff(&s, &headers, &q, Permission::Admin, &Method::POST).await {
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
        return refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let refusal = |p: Page, e: crate::error::ApiError| {
        let message = page::refusal(lang, e.code, &e.message);
        (p, message, e.status)
    };
    if action == "password-link" {
        let staff_id = get("staff");
        let made = s
            .pool
            .commit(
                move |e| {
                    let (secret, expires, t) = e.password_link(&actor, &staff_id)?;
                    let when = e.rules().calendar.local_time_text(expires);
                    Ok((secret, when, t))
                },
                |(_, _, t)| *t,
            )
            .await;
        return match made {
            Ok((secret, when, _)) => {
                let link = serde_json::json!({
                    "staff": get("staff"),
                    "url": format!("{}/password/{secret}", origin(&headers)),
                    "expires": when,
                });
                show(&s, p.with("link", link), None, None, StatusCode::OK).await
            }
            Err(e) => {
                let (p, message, status) = refusal(p, e.into());
                show(&s, p.with("refused", message), None, None, status).await
            }
        };
    }
    let outcome: Result<Option<guichet_core::migrate::MigrationReport>, _> = match action.as_str() {
        "reload" => s
            .pool
            .call_heavy(|e| e.reload_as("admin"))
            .await
            .map(|_| None),
        "password" => {
            let (staff_id, password) = (get("staff"), get("password"));
            s.pool
                .commit(
                    move |e| e.set_password(&actor, &staff_id, &password),
                    |t| *t,
                )
                .await
                .map(|_| None)
        }
        "retry" => {
            let id = get("notice");
            s.pool
                .commit(
                    move |e| e.retry_notice(&actor, &id),
                    |_| crate::pool::NEXT_FLUSH,
                )
                .await
                .map(|_| None)
        }
        "revoke" => {
            let id = get("token");
            s.pool
                .commit(move |e| e.revoke_token(&actor, &id), |r| r.1)
                .await
                .map(|_| None)
        }
        "migrate" => {
            let steps = get("steps")
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .collect();
            let plan = guichet_core::migrate::MigrationPlan {
                procedure: get("procedure"),
                from: get("from"),
                to: None,
                steps,
                dry_run: get("apply") != "yes",
            };
            s.pool
                .commit(
                    move |e| e.migrate(&actor, plan),
                    |r| if r.applied { r.ticket } else { 0 },
                )
                .await
                .map(Some)
        }
        _ => return super::public::not_found(p),
    };
    match outcome {
        Ok(None) => Redirect::to("/admin?done=1").into_response(),
        Ok(Some(report)) => {
            let status = if !report.dry_run && !report.applied {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            show(&s, p, None, Some(report), status).await
        }
        Err(e) => {
            let (p, message, status) = refusal(p, e.into());
            show(&s, p.with("refused", message), None, None, status).await
        }
    }
}

/// Where the browser reached this server (`https://host` behind a TLS proxy that says
/// so), for links the administrator hands on; empty if the request does not say.
fn origin(headers: &HeaderMap) -> String {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return String::new();
    };
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    from: Option<u64>,
    /// `1`: verify the chain.
    #[serde(default)]
    verify: Option<String>,
}

#[derive(Serialize)]
struct EntryLine {
    seq: u64,
    at: String,
    actor: String,
    action: String,
    target: String,
    detail: Option<String>,
}

#[derive(Serialize)]
struct AuditView {
    entries: Vec<EntryLine>,
    next: Option<u64>,
    verdict: Option<guichet_core::audit::Verdict>,
}

/// Entries of the audit log a page at a time, filtered; the chain verified on demand.
pub(super) async fn audit(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(a): Query<AuditQuery>,
) -> Response {
    let q = PageQuery::lang(a.lang.clone());
    let (_, p) = match staff(&s, &headers, &q, Permission::Auditor, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let some = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let filter = guichet_core::audit::Filter {
        actor: some(&a.actor),
        action: some(&a.action),
        target: some(&a.target),
        since: None,
        until: None,
    };
    let (from, verify) = (a.from.unwrap_or(0), a.verify.is_some());
    let built = s
        .pool
        .call(move |e| {
            let found = e.audit_search(&filter, from, 100)?;
            let verdict = if verify {
                Some(e.verify_audit()?)
            } else {
                None
            };
            let cal = e.rules().calendar.clone();
            Ok(AuditView {
                entries: found
                    .entries
                    .into_iter()
                    .map(|x| EntryLine {
                        seq: x.seq,
                        at: cal.local_time_text(x.record.at),
                        actor: x.record.actor,
                        action: x.record.action,
                        target: x.record.target,
                        detail: x.record.detail,
                    })
                    .collect(),
                next: found.next,
                verdict,
            })
        })
        .await;
    match built {
        Ok(view) => {
            let query = [
                ("actor", &a.actor),
                ("action", &a.action),
                ("target", &a.target),
            ]
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", page::url_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&");
            Page {
                template: "audit.html",
                ..p
            }
            .with("v", view)
            .with(
                "filter",
                serde_json::json!({ "actor": a.actor, "action": a.action, "target": a.target }),
            )
            .with("query", query)
            .into_response()
        }
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            refused(p, e.status)
        }
    }
}
