//! Bad and hostile clients: half-sent headers are cut off, one address flooding the
//! server gets 429 while another is served, deeply nested JSON is refused before parsing,
//! and query-code guessing is stopped per client with nothing changed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(
    tune: impl FnOnce(&mut guichet::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        tune,
    )
    .await;
    (s, tmp)
}

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let (s, _tmp) = server(|c| c.limits.header_timeout_ms = 300).await;
    let mut slow = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile others are served.
    let (st, _) = s.call("GET", "/api/procedures", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server must close a connection stuck in its headers");
    // Closed outright, or after a 408 written by hyper.
    match closed {
        Ok(0) | Err(_) => {}
        Ok(n) => assert!(
            String::from_utf8_lossy(&buf[..n]).contains("408"),
            "{:?}",
            &buf[..n]
        ),
    }
    // An idle kept-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = idle.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(end.is_ok(), "idle connection kept open");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_flooding_gets_429_and_another_is_served() {
    let (s, _tmp) = server(|c| c.limits.requests_per_client = 4).await;
    // Four requests from 127.0.0.1 stuck sending their bodies hold the address's share.
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut c = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
        c.write_all(
            b"POST /api/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"proc",
        )
        .await
        .unwrap();
        stuck.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, v) = s.call("GET", "/api/procedures", None, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "too_many_requests");
    // Another address is served at once.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/api/procedures", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(stuck);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, _) = s.call("GET", "/api/procedures", None, None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_before_parsing() {
    let s = TestServer::start().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let resp = reqwest::Client::new()
        .post(format!("{}/api/cases", s.base))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "too_deep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_code_guessing_is_stopped_and_changes_nothing() {
    let s = TestServer::start().await;
    let (id, number, code) = s.submit(power_case(100.0)).await;
    let before = s.case(id).await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (st, v) = s
            .call(
                "GET",
                &format!("/api/track/{number}?code=WRONG{i:03}"),
                None,
                None,
            )
            .await;
        statuses.push(st.as_u16());
        assert!(v["code"].is_string());
    }
    assert_eq!(&statuses[..10], &[404; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    // Even the right code waits out the window from this address...
    let (st, _) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // ...while the applicant token, and another address with the code, still work.
    let (_, sub) = s
        .call("POST", "/api/cases", None, Some(power_case(100.0)))
        .await;
    let token = sub["applicant_token"].as_str().unwrap();
    let number2 = sub["case"]["number"].as_str().unwrap();
    let (st, v) = s.get(&format!("/api/track/{number2}"), token).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The token reaches its own case only.
    let (st, _) = s.get(&format!("/api/track/{number}"), token).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.3".parse().unwrap()))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/api/track/{number}?code={code}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut after = s.case(id).await;
    let mut before = before;
    for v in [&mut after, &mut before] {
        v.as_object_mut().unwrap().remove("level");
    }
    assert_eq!(before, after, "guessing changed the case");
    // Every wrong code is in the audit log.
    let auditor = s.token("audit.zhang").await;
    let (_, log) = s.get("/api/audit?limit=1000", &auditor).await;
    let refused = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "applicant.code_refused")
        .count();
    assert_eq!(refused, 10);
    let _ = json!({});
}

/// Found by schemathesis: an extreme lease made chrono panic inside the handler (500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_durations_are_refused_not_crashed_on() {
    let s = TestServer::start().await;
    let bot = s.token("credit.bot").await;
    for lease in [i64::MIN, -1, 0, i64::MAX] {
        let (st, v) = s
            .post(
                "/api/external-tasks/fetch-and-lock",
                &bot,
                json!({ "worker": "w", "topics": ["credit-check"], "lease_ms": lease }),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{lease}: {v}");
    }
}

/// Sends one request on `conn` and reads its answer: (status line and headers, body).
async fn exchange(conn: &mut tokio::net::TcpStream, request: &str) -> (String, String) {
    exchange_in_parts(conn, &[request]).await
}

/// As `exchange`, sending the request in parts a moment apart (as TCP may deliver them).
async fn exchange_in_parts(conn: &mut tokio::net::TcpStream, parts: &[&str]) -> (String, String) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn.write_all(part.as_bytes()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "connection closed before an answer");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while got.len() < head_end + len {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        got.extend_from_slice(&buf[..n]);
    }
    (
        head,
        String::from_utf8_lossy(&got[head_end..head_end + len]).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_sent_with_a_small_body_keep_their_connection() {
    let s = TestServer::start().await;
    let clerk = s.token("zhou.qiang").await;
    let (id, _, _) = s.submit(power_case(100.0)).await;
    let task = s.task_at(&clerk, id, "intake").await;
    let mut conn = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    for i in 0..6 {
        let action = if i % 2 == 0 { "claim" } else { "release" };
        // The body after the headers, in a packet of its own.
        let (head, body) = exchange_in_parts(
            &mut conn,
            &[
                &format!(
                    "POST /api/tasks/{task}/{action} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {clerk}\r\n\
                     Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
                ),
                "{}",
            ],
        )
        .await;
        assert!(head.starts_with("http/1.1 200"), "{action}: {head}{body}");
        assert!(!head.contains("connection: close"), "{action} #{i}: {head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_at_once() {
    let s = TestServer::start().await;
    let mut conn = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    let started = std::time::Instant::now();
    let (head, body) = exchange(
        &mut conn,
        "POST /api/cases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 99999999999\r\n\r\n{}",
    )
    .await;
    assert!(head.starts_with("http/1.1 413"), "{head}{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    // Not after the request timeout (30 s): the body is never waited for.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_scheme_is_case_insensitive() {
    let s = TestServer::start().await;
    let clerk = s.token("zhou.qiang").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = reqwest::Client::new()
            .get(format!("{}/api/me", s.base))
            .header("authorization", format!("{scheme} {clerk}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
    }
}
