//! The web interface, served by the same binary as the API: pages rendered on the server
//! from templates compiled in, working without JavaScript and on a phone, in Chinese and
//! English. These are the public pages (no sign-in): the services by department, each
//! service guide (printable), and tracking an application with its number and query code.
//!
//! Pages call the same engine functions as the API and obey the same rules: a case is
//! reached only with its query code, under the same guess limits (`api::guard`); every
//! form carries the browser's CSRF token; every value is escaped by the templates; the
//! Content-Security-Policy allows no script at all.

mod admin;
mod apply;
mod bundle;
mod page;
mod password;
mod problems;
mod public;
mod staff;
mod track;

use axum::routing::get;
use axum::Router;

use crate::api::AppState;

pub use page::css_path;

/// What answers an address no route knows: JSON under `/api`, a page elsewhere.
pub async fn fallback(
    state: axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        return crate::error::ApiError::not_found("no such route").into_response();
    }
    let query = axum::extract::Query::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    public::missing(state, headers, axum::extract::Query(query)).await
}

/// The pages' routes (everything outside `/api`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(public::home))
        .route("/guide/{id}", get(public::guide))
        .route("/apply/{id}", get(apply::form_page).post(apply::send))
        .route(
            "/apply/bundle/{id}",
            get(bundle::form_page).post(bundle::send),
        )
        .route("/track", get(track::track_form).post(track::track))
        .route("/track/supply", axum::routing::post(track::supply))
        .route("/track/withdraw", axum::routing::post(track::withdraw))
        .route("/track/rate", axum::routing::post(track::rate))
        .route("/static/{file}", get(public::asset))
        .route(
            "/staff/sign-in",
            get(staff::sign_in_form).post(staff::sign_in),
        )
        .route(
            "/staff/sign-in/admin",
            axum::routing::post(staff::sign_in_admin),
        )
        .route(
            "/password/{secret}",
            get(password::form).post(password::set),
        )
        .route("/staff/sign-out", axum::routing::post(staff::sign_out))
        .route("/staff", get(staff::worklist))
        .route("/admin", get(admin::admin))
        .route("/admin/{action}", axum::routing::post(admin::admin_action))
        .route("/audit", get(admin::audit))
        .route("/staff/board", get(staff::board))
        .route("/staff/stats", get(staff::stats))
        .route(
            "/staff/board/{action}",
            axum::routing::post(staff::board_action),
        )
        .route("/staff/intake", get(staff::intake_list))
        .route(
            "/staff/intake/{id}",
            get(staff::intake_form).post(staff::intake_send),
        )
        .route("/staff/cases/{case}", get(staff::case_page))
        .route(
            "/staff/cases/{case}/{action}",
            axum::routing::post(staff::case_action),
        )
        .route("/staff/cases/{case}/files/{sha256}", get(staff::case_file))
        .route(
            "/staff/tasks/{task}/{action}",
            axum::routing::post(staff::task_action),
        )
        // Offices on slow links: a worklist page goes out as a twentieth of its size.
        .layer(tower_http::compression::CompressionLayer::new())
}
