//! What an operator watches: `GET /metrics` in the Prometheus text format, and the request
//! log, a line per request with its request id (the caller's `x-request-id`, or a new one
//! sent back in the answer), as JSON lines when asked.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_transitions_and_flushes() {
    let s = TestServer::start().await;
    let (id, _, _) = s.submit(power_case(400.0)).await;
    let customer = s.token("zhou.qiang").await;
    s.act(&customer, id, "intake", "accept", serde_json::json!({}))
        .await;
    let (st, _) = s.call("GET", "/api/procedures", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let resp = reqwest::get(format!("{}/metrics", s.base)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for want in [
        r#"guichet_http_requests_total{method="GET",route="/api/procedures",status="200"}"#,
        r#"guichet_http_requests_total{method="POST",route="/api/cases",status="201"}"#,
        r#"guichet_http_request_duration_seconds_bucket{method="POST",route="/api/cases",le="0.5"}"#,
        r#"guichet_transitions_total{action="submitted"}"#,
        r#"guichet_transitions_total{action="completed"}"#,
        "guichet_flush_duration_seconds_bucket",
        "guichet_flush_group_size_bucket",
        "guichet_engine_queue",
        "# HELP guichet_transitions_total Committed transitions of cases, by action",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    // A path that matches no route is one label, not one per path.
    let _ = reqwest::get(format!("{}/api/no/such/thing/1234", s.base))
        .await
        .unwrap();
    let text = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("/api/no/such/thing/1234"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_id_in_its_answer_and_its_log_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.jsonl");
    let port = free_port();
    let _server = Server(
        std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--scripts",
            ])
            .arg(example_scripts())
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("GUICHET_LOG", "info")
            .env("GUICHET_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    // A proxy's id is kept and sent back; without one the server makes one.
    let resp = client
        .post(format!("{base}/api/cases"))
        .header("x-request-id", "proxy-7f3a")
        .json(&power_case(400.0))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["x-request-id"], "proxy-7f3a");
    let resp = client
        .get(format!("{base}/api/procedures"))
        .send()
        .await
        .unwrap();
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 16, "{made}");
    let bad = client
        .get(format!("{base}/api/procedures"))
        .header("x-request-id", "not ok\tat all")
        .send()
        .await
        .unwrap();
    assert_ne!(bad.headers()["x-request-id"], "not ok\tat all");

    // The log: JSON lines; the request's line names its id, route and status.
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        if lines.iter().any(|l| l["span"]["id"] == made.as_str()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answered = lines
        .iter()
        .find(|l| l["span"]["id"] == "proxy-7f3a" && l["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no line for proxy-7f3a in {lines:?}"));
    assert_eq!(answered["fields"]["status"], 201);
    assert_eq!(answered["span"]["route"], "/api/cases");
    assert_eq!(answered["target"], "guichet::request");
    assert!(lines.iter().any(|l| l["span"]["id"] == made.as_str()));
}
