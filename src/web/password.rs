//! The one-time password link: a staff member whom the administrator gave a link sets
//! their own password on it, once, then signs in. The link's secret is its only proof;
//! a link that does not work says so without saying why.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::page::{self, Page};
use super::public::{page_for, refused, PageQuery};
use crate::api::AppState;

/// The page for a link that does not work (used, expired, replaced or never made).
fn dead_link(p: Page) -> Response {
    let message = page::label(p.lang, "password.dead_link");
    Page {
        template: "error.html",
        ..p
    }
    .status(StatusCode::NOT_FOUND)
    .with("message", message)
    .into_response()
}

/// The form of a working link: whose password it sets, the password twice.
pub(super) async fn form(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut p = page_for(&s, &q, &headers, "password.html");
    let staff = match s.pool.call(move |e| e.password_link_staff(&secret)).await {
        Ok(Some(staff)) => staff,
        Ok(None) => return dead_link(p),
        Err(e) => return refused(p, crate::error::ApiError::from(e).status),
    };
    let (csrf, new) = page::csrf_token(&headers);
    if new {
        p.set_csrf = Some(csrf.clone());
    }
    p.with("csrf", csrf).with("staff", staff).into_response()
}

#[derive(Deserialize)]
pub(super) struct NewPassword {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    again: String,
}

/// Sets the password and sends the staff member to the sign-in page; a refused password
/// shows the form again with the reason, the link still working.
pub(super) async fn set(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
    Query(q): Query<PageQuery>,
    Form(f): Form<NewPassword>,
) -> Response {
    let p = page_for(&s, &q, &headers, "password.html");
    if !page::csrf_ok(&headers, &f.csrf) {
        return refused(p, StatusCode::FORBIDDEN);
    }
    let lang = p.lang;
    let again = |p: Page, staff: String, key: &str| {
        let (csrf, _) = page::csrf_token(&headers);
        p.status(StatusCode::UNPROCESSABLE_ENTITY)
            .with("csrf", csrf)
            .with("staff", staff)
            .with("error", page::label(lang, key))
            .into_response()
    };
    let probe = secret.clone();
    let staff = match s.pool.call(move |e| e.password_link_staff(&probe)).await {
        Ok(Some(staff)) => staff,
        Ok(None) => return dead_link(p),
        Err(e) => return refused(p, crate::error::ApiError::from(e).status),
    };
    if f.password != f.again {
        return again(p, staff, "password.mismatch");
    }
    let password = f.password;
    // Hashing takes a while: on an engine thread.
    let done = s
        .pool
        .commit(
            move |e| e.redeem_password_link(&secret, &password),
            |r| r.unwrap_or(0),
        )
        .await;
    match done {
        Ok(Some(_)) => Redirect::to("/staff/sign-in?done=password").into_response(),
        Ok(None) => dead_link(p),
        Err(crate::pool::PoolError::Engine(guichet_core::Error::Validation(_))) => {
            again(p, staff, "password.too_short")
        }
        Err(e) => refused(p, crate::error::ApiError::from(e).status),
    }
}
