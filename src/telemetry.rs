//! What an operator watches: the Prometheus metrics (`GET /metrics`), and the request log,
//! one line per request with a request id that every log line of the request carries.
//!
//! Metrics go through the `metrics` facade: the engine counts transitions, cards and timers
//! there too, knowing nothing of the exporter. The names and what they mean are listed in
//! `docs/deployment.md` ("Metrics").

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

/// The header a request id travels in, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's metrics recorder, installed on first use (every server of the process,
/// tests included, shares it); `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0, 3600.0,
            ];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "guichet_http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "guichet_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request, by route and method"
    );
    describe_counter!(
        "guichet_transitions_total",
        "Committed transitions of cases, by action"
    );
    describe_histogram!(
        "guichet_flush_duration_seconds",
        Unit::Seconds,
        "Time of one store flush (a group commit)"
    );
    describe_histogram!("guichet_flush_group_size", "Commits answered by one flush");
    describe_gauge!(
        "guichet_engine_queue",
        "Engine calls waiting for an engine thread"
    );
    describe_counter!("guichet_timers_fired_total", "Deadline timers fired");
    describe_histogram!(
        "guichet_timer_lateness_seconds",
        Unit::Seconds,
        "How long after its instant a timer fired"
    );
    describe_counter!(
        "guichet_cards_issued_total",
        "Supervision and overdue cards issued"
    );
    describe_gauge!(
        "guichet_outbox_due",
        "Notices due for delivery at the last pass of the delivery loop"
    );
    describe_counter!(
        "guichet_notices_total",
        "Notice deliveries, by result (sent, retry, failed)"
    );
    describe_counter!(
        "guichet_reloads_total",
        "Script reloads, by result (live, unchanged, refused)"
    );
    describe_gauge!(
        "guichet_store_bytes",
        Unit::Bytes,
        "Size of the data folder on disk"
    );
}

/// The metrics in the Prometheus text format.
pub async fn render() -> Response {
    match handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => crate::error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics are recorded elsewhere in this process",
        )
        .into_response(),
    }
}

/// A request id: the caller's (a proxy's) if it is a short token, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

/// Around every request: its span (every log line inside carries the request id), its
/// metrics, one log line when answered, and the id in the answer's `x-request-id`.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().as_str().to_string();
    // The route's pattern, never the path itself: a bounded set of labels.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!("guichet_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("guichet_http_request_duration_seconds", "method" => method, "route" => route).record(secs);
    span.in_scope(|| {
        tracing::info!(target: "guichet::request", status, ms = (secs * 1000.0).round() as u64, "answered");
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    response
}

/// The size of the data folder, in bytes (walked; called from the maintenance loop).
pub fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Trace export over OTLP/HTTP (the `otel` feature), configured the standard way: on when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the
/// service is `guichet` unless `OTEL_SERVICE_NAME` says otherwise; batching follows the
/// `OTEL_BSP_*` variables. Spans exported: each request (`request`, with its id and
/// route) and the engine call inside it (`engine`).
#[cfg(feature = "otel")]
pub mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::registry::LookupSpan;

    /// Sends what is still batched when dropped (at the end of `main`).
    pub struct Flush(SdkTracerProvider);

    impl Drop for Flush {
        fn drop(&mut self) {
            if let Err(e) = self.0.shutdown() {
                eprintln!("warning: traces not all exported: {e}");
            }
        }
    }

    /// The layer that exports spans, if an endpoint is configured.
    pub fn layer<S>() -> anyhow::Result<Option<(impl tracing_subscriber::Layer<S>, Flush)>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !configured {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("guichet");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("guichet");
        // Guichet's own spans (the request, the engine call), not its libraries'.
        let ours =
            tracing_subscriber::filter::Targets::new().with_target("guichet", tracing::Level::INFO);
        Ok(Some((
            tracing_subscriber::Layer::with_filter(
                tracing_opentelemetry::layer().with_tracer(tracer),
                ours,
            ),
            Flush(provider),
        )))
    }
}
