//! Limits on guessing query codes: wrong codes are counted per client address and per case
//! number in a sliding window; past a limit the answer is 429 until the window passes.
//! In memory: a restart forgets the counts, which only gives a guesser one more window.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
// Locks that cannot poison: a panic elsewhere must not switch these limits off.
use parking_lot::Mutex;

use crate::error::ApiError;

/// Wrong codes one client may try per window, over all cases.
const PER_CLIENT: u32 = 10;
/// Wrong codes one case may receive per window, from all clients.
const PER_CASE: u32 = 20;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Counters kept at most; beyond, expired ones are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct Guesses {
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Guesses {
    /// Refuses if the client or the case is over its limit.
    pub fn check(&self, client: &str, case: &str) -> Result<(), ApiError> {
        let mut m = self.counts.lock();
        let now = Instant::now();
        for (key, limit) in [
            (format!("c:{client}"), PER_CLIENT),
            (format!("n:{case}"), PER_CASE),
        ] {
            if let Some((since, n)) = m.get(&key).copied() {
                if now.duration_since(since) >= WINDOW {
                    m.remove(&key);
                } else if n >= limit {
                    let wait = (WINDOW - now.duration_since(since)).as_secs().max(1);
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_attempts",
                        format!("too many wrong query codes; try again in {wait} s"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Counts a wrong code against the client and the case.
    pub fn failed(&self, client: &str, case: &str) {
        let mut m = self.counts.lock();
        let now = Instant::now();
        if m.len() >= MAX_KEYS {
            m.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        }
        for key in [format!("c:{client}"), format!("n:{case}")] {
            let e = m.entry(key).or_insert((now, 0));
            if now.duration_since(e.0) >= WINDOW {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }
}

/// The client's address (the peer of the connection).
pub struct Client(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_stopped_after_its_limit_and_others_are_not() {
        let g = Guesses::default();
        for i in 0..PER_CLIENT {
            assert!(g.check("1.2.3.4", &format!("N-{i}")).is_ok());
            g.failed("1.2.3.4", &format!("N-{i}"));
        }
        let e = g.check("1.2.3.4", "N-new").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(g.check("5.6.7.8", "N-new").is_ok());
    }

    #[test]
    fn a_panic_while_counting_does_not_switch_the_limit_off() {
        let g = Guesses::default();
        for i in 0..PER_CLIENT {
            g.failed("1.2.3.4", &format!("N-{i}"));
        }
        // A thread that panics holding the lock would poison a std Mutex, and the limiter
        // used to treat a poisoned lock as "no limit".
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = g.counts.lock();
            panic!("while counting");
        }));
        assert_eq!(
            g.check("1.2.3.4", "N-new").unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn a_case_is_protected_from_many_clients() {
        let g = Guesses::default();
        for i in 0..PER_CASE {
            g.failed(&format!("10.0.0.{i}"), "CASE-1");
        }
        assert_eq!(
            g.check("10.9.9.9", "CASE-1").unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert!(g.check("10.9.9.9", "CASE-2").is_ok());
    }
}

/// Requests in progress per client address: one client flooding the server gets 429
/// once it holds its share, and the others are still served.
pub struct Inflight {
    max: usize,
    counts: Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl Inflight {
    pub fn new(max: usize) -> Inflight {
        Inflight {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }
}

struct InflightSlot<'a>(&'a Inflight, std::net::IpAddr);

impl Drop for InflightSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.0.counts.lock();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// The limits every request meets before it is routed.
pub struct RequestLimits {
    /// Requests in progress per client address.
    pub inflight: Inflight,
    /// Bytes of a request body at most.
    pub max_body: usize,
    /// Bytes of an upload (`multipart/form-data`) at most.
    pub max_upload: usize,
    /// Time a request may take before it is answered 408 (unless a write has started).
    pub timeout: Duration,
}

impl RequestLimits {
    pub fn new(
        limits: &crate::config::LimitsConfig,
        max_body: usize,
        max_upload: usize,
    ) -> RequestLimits {
        RequestLimits {
            inflight: Inflight::new(limits.requests_per_client),
            max_body,
            max_upload: max_upload.max(max_body),
            timeout: Duration::from_millis(limits.request_timeout_ms.max(1)),
        }
    }
}

/// Every request, before routing, in one layer:
/// - its deadline: answered 408 once it has taken `timeout`, unless an engine call of it
///   that may write has started; then it is answered with what that call did, however
///   late, so a client is never told "timed out" about a change that happened (see
///   `pool::Gate`). The time counts the body and the wait for a slot;
/// - its address's share of requests in progress (429 past it), held while the body
///   arrives;
/// - its whole body, read before the router sees it (see [`read_body`]).
pub(super) async fn admit(
    axum::extract::State(state): axum::extract::State<super::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let gate = std::sync::Arc::new(crate::pool::Gate::default());
    let timeout = state.limits.timeout;
    let handling = crate::pool::within(gate.clone(), async move {
        let limits = &state.limits;
        let _slot = match limits.inflight.enter(&req) {
            Ok(slot) => slot,
            Err(refused) => return refused.into_response(),
        };
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        let max = if multipart {
            limits.max_upload
        } else {
            limits.max_body
        };
        match read_body(req, max).await {
            Ok(req) => next.run(req).await,
            Err(refused) => refused.into_response(),
        }
    });
    tokio::pin!(handling);
    tokio::select! {
        answer = &mut handling => answer,
        () = tokio::time::sleep(timeout) => {
            if gate.abandon() {
                StatusCode::REQUEST_TIMEOUT.into_response()
            } else {
                handling.await
            }
        }
    }
}

impl Inflight {
    /// A place for one more request from the caller's address, given back when dropped.
    fn enter(&self, req: &axum::extract::Request) -> Result<Option<InflightSlot<'_>>, ApiError> {
        let Some(ip) = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(None);
        };
        let mut m = self.counts.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many requests in progress from this address; retry shortly",
            ));
        }
        *n += 1;
        Ok(Some(InflightSlot(self, ip)))
    }
}

/// Reads a request's whole body, up to `max` bytes. Handlers that take no body (claim,
/// release) would otherwise leave it unread, and hyper closes a kept-alive connection
/// whose request body was not consumed. A declared length over the limit is answered 413
/// at once, without waiting for a body that may never come.
async fn read_body(
    req: axum::extract::Request,
    max: usize,
) -> Result<axum::extract::Request, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is too large (at most {max} bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    if declared == Some(0) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        )),
        Err(e) => {
            // A chunked body past the limit, or a client that went away mid-body.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if over {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read",
                )
            })
        }
    }
}

/// The nesting depth of a JSON text if it exceeds `max` (strings skipped), else `None`.
/// Runs before parsing, in one pass over the bytes.
pub fn too_deep(bytes: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(max);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod depth_tests {
    use super::too_deep;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert_eq!(too_deep(br#"{"a":[[1]]}"#, 3), None);
        assert_eq!(too_deep(br#"{"a":[[[1]]]}"#, 3), Some(3));
        assert_eq!(too_deep(br#"{"a":"[[[[[[\"[[[["}"#, 1), None);
        assert_eq!(too_deep(&[b'['; 100_000], 32), Some(32));
    }
}
