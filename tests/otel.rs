//! OpenTelemetry export (the `otel` feature; `.ci/run` runs `cargo test --features otel
//! --test otel`): the server started with `OTEL_EXPORTER_OTLP_ENDPOINT` sends its request
//! and engine spans to an OTLP/HTTP collector, here a small one that keeps what it gets.
#![cfg(feature = "otel")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use common::*;

type Received = Arc<Mutex<Vec<Bytes>>>;

async fn collect(State(got): State<Received>, body: Bytes) -> &'static str {
    got.lock().unwrap().push(body);
    ""
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_engine_spans_reach_the_collector() {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(got.clone());
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(collector, app).await.unwrap() });

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--scripts")
        .arg(example_scripts())
        .arg("--data")
        .arg(tmp.path().join("data"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("GUICHET_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    let answer = client
        .post(format!("{base}/api/cases"))
        .header("x-request-id", "otel-check-4711")
        .json(&power_case(1250.0))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);

    let mut seen = false;
    for _ in 0..100 {
        let bodies = got.lock().unwrap().concat();
        // OTLP/HTTP protobuf keeps strings as they are: the service, the span names and
        // the request's id and route are all in the export.
        if [
            "otel-check-4711",
            "request",
            "engine",
            "/api/cases",
            "guichet",
        ]
        .iter()
        .all(|s| contains(&bodies, s))
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen,
        "the collector got {} export(s) without the submission's spans",
        got.lock().unwrap().len()
    );
}
