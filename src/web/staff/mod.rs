//! Staff pages: signing in with a password and out, and what every staff page shares
//! (the signed-in actor, the permission check, the CSRF token). The pages call the same
//! engine functions as the API and pass the same permission check (`api::permitted`); the
//! engine then checks what only it can (group membership, signers), and a case the staff
//! member may not see does not exist for them.

mod board;
mod case;
mod intake;
mod stats;
mod worklist;

pub(super) use board::{board, board_action};
pub(super) use case::{case_action, case_file, case_page, task_action};
pub(super) use intake::{intake_form, intake_list, intake_send};
pub(super) use stats::stats;
pub(super) use worklist::worklist;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use guichet_core::Actor;
use serde::{Deserialize, Serialize};

use super::page::{self, Page};
use super::public::{page_for, refused, PageQuery};
use crate::api::{AppState, Client, Permission};

/// Cookie of a browser's session (HttpOnly: scripts never see it; SameSite=Lax: sent when
/// following a link from elsewhere, never with a form posted from elsewhere).
const SESSION_COOKIE: &str = "guichet_session";

/// The signed-in actor of a request, if its session is valid.
async fn who(s: &AppState, headers: &HeaderMap) -> Option<Actor> {
    let secret = page::cookie(headers, SESSION_COOKIE)?;
    let known = match s.engine.authenticate_cached(&secret) {
        Some(known) => known,
        None => s.pool.call(move |e| e.authenticate(&secret)).await.ok()?,
    };
    known.filter(|a| matches!(a, Actor::Staff(_) | Actor::Admin))
}

/// The staff member (or administrator) a page is for, who must hold `permission`:
/// otherwise the sign-in page (no session) or a refusal.
pub(super) async fn staff(
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
        return Err(super::public::denied(
            page_for(s, q, headers, "error.html"),
            e.status,
        ));
    }
    let rules = s.engine.rules();
    let (name, roles) = match &actor {
        Actor::Staff(id) => (
            rules
                .staff
                .get(id)
                .map_or_else(|| id.clone(), |st| st.name.clone()),
            rules.roles_of(id),
        ),
        Actor::Admin => (
            page::label(page_for(s, q, headers, "error.html").lang, "admin.who"),
            vec!["admin"],
        ),
        _ => (String::new(), Vec::new()),
    };
    let (csrf, new) = page::csrf_token(headers);
    let mut p = page_for(s, q, headers, "worklist.html")
        .with("staff_name", name)
        .with("roles", roles)
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
    let flash =
        (q.done.as_deref() == Some("password")).then(|| page::label(p.lang, "password.done"));
    p.with("csrf", csrf).with("flash", flash).into_response()
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
        Ok(Some((_, secret))) => session_opened(&headers, &secret, "/staff"),
        Ok(None) => {
            s.guesses.failed(&client.0, &key);
            again(p, page::label(lang, "staff.wrong"))
        }
        Err(_) => again(p, page::label(lang, "error.busy")),
    }
}

#[derive(Deserialize)]
pub(super) struct AdminSignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// The administrator signs in with the administrator token: a session of its own, so the
/// token itself never sits in a cookie. Wrong tokens count as wrong passwords do.
pub(super) async fn sign_in_admin(
    State(s): State<AppState>,
    headers: HeaderMap,
    client: Client,
    Query(q): Query<PageQuery>,
    Form(f): Form<AdminSignIn>,
) -> Response {
    let p = page_for(&s, &q, &headers, "signin.html");
    if !page::csrf_ok(&headers, &f.csrf) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let key = "admin".to_string();
    let (csrf, _) = page::csrf_token(&headers);
    let lang = p.lang;
    let again = |p: Page, message: String| {
        p.status(StatusCode::UNAUTHORIZED)
            .with("csrf", csrf.clone())
            .with("admin_error", message)
            .into_response()
    };
    if s.guesses.check(&client.0, &key).is_err() {
        return again(p, page::label(lang, "track.too_many"));
    }
    let token = f.token.trim().to_string();
    match s.pool.call(move |e| e.admin_session(&token)).await {
        Ok(Some((_, secret))) => session_opened(&headers, &secret, "/admin"),
        Ok(None) => {
            s.guesses.failed(&client.0, &key);
            again(p, page::label(lang, "admin.wrong_token"))
        }
        Err(_) => again(p, page::label(lang, "error.busy")),
    }
}

/// The answer to a successful sign-in: the session cookie, and on to `to`.
fn session_opened(headers: &HeaderMap, secret: &str, to: &str) -> Response {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        guichet_core::sessions::SESSION_HOURS * 3600,
        if secure { "; Secure" } else { "" }
    );
    let mut r = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(super) struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Signs out: the session is revoked and its cookie cleared.
pub(super) async fn sign_out(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    Form(f): Form<SignOut>,
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

/// A value as the pages show it: a string as itself, anything else as JSON.
fn text(v: impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
