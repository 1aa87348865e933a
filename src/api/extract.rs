//! The API's extractors: JSON bodies and query strings whose every rejection is a JSON
//! error, applications with files (`multipart/form-data`), and the caller the permission
//! middleware established.

use super::*;

// --- extractors ----------------------------------------------------------------------

/// A JSON body whose every rejection is a JSON error. Nesting deeper than the configured
/// depth is refused before parsing.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body is too large",
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", r.body_text())
                }
            })?;
        parse_json(&bytes, state.max_json_depth).map(Body)
    }
}

/// A JSON text as `T`: nesting deeper than `max_depth` refused before parsing; a malformed
/// text is 400, a well-formed one of the wrong shape 422.
pub(super) fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, ApiError> {
    if let Some(depth) = guard::too_deep(bytes, max_depth) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            format!("JSON nested deeper than {depth} levels"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("invalid body: {e}"),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("malformed JSON: {e}"),
            ),
        }
    })
}

/// A JSON body that may also come as `multipart/form-data`, in a part of its own name,
/// beside files.
pub trait JsonPart: DeserializeOwned {
    /// The name of the part holding the JSON.
    const PART: &'static str;
    /// The body when the part is left out (`None`: it is required).
    fn absent() -> Option<Self>;
}

impl JsonPart for Submission {
    const PART: &'static str = "submission";
    fn absent() -> Option<Self> {
        None
    }
}

/// A JSON body, or `multipart/form-data` with the same JSON in a part named
/// [`JsonPart::PART`] and one file per material in parts named `material.<id>`.
pub struct WithFiles<T> {
    pub body: T,
    pub uploads: Vec<guichet_core::files::Upload>,
}

/// An application with its materials' files.
pub type Application = WithFiles<Submission>;

impl<T: JsonPart + Send> FromRequest<AppState> for WithFiles<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        if !multipart {
            let Body(body) = Body::from_request(req, state).await?;
            return Ok(WithFiles {
                body,
                uploads: Vec::new(),
            });
        }
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
        let mut form = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| bad(e.body_text()))?;
        let mut body = None;
        let mut uploads = Vec::new();
        while let Some(part) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
            let name = part.name().unwrap_or_default().to_string();
            if name == T::PART {
                let bytes = part.bytes().await.map_err(|e| bad(e.body_text()))?;
                body = Some(parse_json::<T>(&bytes, state.max_json_depth)?);
            } else if let Some(material) = name.strip_prefix("material.") {
                let file = part.file_name().unwrap_or_default().to_string();
                let material = material.to_string();
                let bytes = part.bytes().await.map_err(|e| bad(e.body_text()))?;
                // A file input left empty sends a part without a file.
                if file.is_empty() && bytes.is_empty() {
                    continue;
                }
                uploads.push(guichet_core::files::Upload {
                    material,
                    name: file,
                    bytes: bytes.to_vec(),
                });
            } else {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!(
                        "unknown part '{name}': send `{}` and `material.<id>` parts",
                        T::PART
                    ),
                ));
            }
        }
        let body = body.or_else(T::absent).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("the `{}` part is missing", T::PART),
            )
        })?;
        Ok(WithFiles { body, uploads })
    }
}

/// Query parameters whose rejection is a JSON error.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Set by the permission middleware on every route of the table.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "route without a declared permission",
            )
        })
    }
}

impl Caller {
    /// The staff member or administrator (the route's permission already required one).
    pub(crate) fn staff_or_admin(&self) -> ApiResult<&Actor> {
        match &self.0 {
            Actor::Public => Err(ApiError::unauthorized()),
            Actor::Applicant(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a staff token is required",
            )),
            a => Ok(a),
        }
    }
}
