//! API errors: every failure leaves the server as JSON `{code, message}` with the status
//! that fits. Codes are stable; `docs/api.md` lists them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use guichet_core::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For a refused form: each problem with the field it is about.
    pub problems: Vec<guichet_core::form::Problem>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Validation(_) | Error::Invalid(_) | Error::Script { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict(_) | Error::InvalidTransition(_) => StatusCode::CONFLICT,
            // A refused reload is the administrator's input being invalid.
            Error::Load(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Store(_) | Error::InUse(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = "request failed", error = %e);
        } else if let Error::Script { .. } = &e {
            tracing::warn!(message = "script error; transition not applied", error = %e);
        }
        let problems = match &e {
            Error::Invalid(p) => p.clone(),
            _ => Vec::new(),
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            problems,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if !self.problems.is_empty() {
            body["problems"] = serde_json::json!(self.problems);
        }
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::pool::PoolError> for ApiError {
    fn from(e: crate::pool::PoolError) -> Self {
        use crate::pool::PoolError;
        match e {
            PoolError::Engine(e) => e.into(),
            PoolError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "server is shutting down",
            ),
            PoolError::Panicked => {
                tracing::error!(message = "an engine call panicked");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "worker failed",
                )
            }
        }
    }
}
