//! Notices through the real server: the webhook channel against a real HTTP receiver
//! (signature, dedup id, retries, permanent failure), delivery after a restart, event
//! subscribers, and the staff inbox filled by supervision cards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bj, court_case, set, Receiver, TestServer};
use guichet::config::Config;
use guichet_core::clock::{ManualClock, SystemClock};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "a-webhook-secret-of-some-length";

fn webhook_config(cfg: &mut Config, url: &str) {
    let table: toml::Value = toml::from_str(&format!(
        r#"
        [channels.sms]
        url = "{url}/sms"
        secret = "{SECRET}"
        [subscribers.archive]
        url = "{url}/events"
        secret = "{SECRET}"
        events = ["case.received", "case.accepted", "case.decided"]
        "#
    ))
    .unwrap();
    cfg.plugins.insert("webhook".into(), table);
    cfg.outbox.first_retry_ms = 50;
    cfg.outbox.max_retry_ms = 200;
    cfg.outbox.max_attempts = 4;
}

async fn start(url: &str, data: std::path::PathBuf) -> TestServer {
    let url = url.to_string();
    TestServer::start_configured(
        common::example_scripts(),
        data,
        Arc::new(SystemClock),
        move |c| webhook_config(c, &url),
    )
    .await
}

/// Waits (up to 10 s) until `f` holds.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn tax_case() -> Value {
    json!({
        "procedure": "tax.vat_general",
        "applicant": { "id": "91310000MA1FL0077K", "name": "Acme Trading", "phone": "13900000001", "language": "en" },
        "data": { "annual_sales": 8000000 },
    })
}

async fn notices(s: &TestServer, id: u64) -> Vec<Value> {
    let (st, v) = s.get(&format!("/api/cases/{id}/notices"), &s.admin).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["notices"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_receipt_reaches_the_sms_gateway_signed_with_the_query_code() {
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&url, tmp.path().join("data")).await;
    let (id, number, code) = s.submit(tax_case()).await;

    eventually("the receipt", async || !rx.hits("/sms").is_empty()).await;
    let hit = rx.hits("/sms")[0].clone();
    let body: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["to"], "13900000001");
    assert_eq!(body["event"], "case.received");
    assert_eq!(body["language"], "en", "the applicant's language");
    let text = body["body"].as_str().unwrap();
    assert!(text.contains(&number) && text.contains(&code), "{text}");
    // The receiver can check who sent it and deduplicate retries.
    let h = |k: &str| hit.headers[k].to_str().unwrap().to_string();
    let ts: i64 = h("x-guichet-timestamp").parse().unwrap();
    assert_eq!(
        h("x-guichet-signature"),
        guichet_webhook::signature(SECRET.as_bytes(), ts, &hit.body)
    );
    assert_eq!(h("x-guichet-delivery"), body["id"].as_str().unwrap());

    eventually("delivered status", async || {
        notices(&s, id)
            .await
            .iter()
            .any(|n| n["status"] == "delivered")
    })
    .await;
    // The applicant sees what was sent to them.
    let (_, v) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(v["notices"][0]["channel"], "sms");
    assert_eq!(v["notices"][0]["status"], "delivered");
}

#[tokio::test]
async fn a_gateway_that_is_down_delays_notices_without_blocking_cases() {
    let (rx, url) = Receiver::start().await;
    // Down twice (503), then up; the archive refuses for good (400).
    rx.script.lock().unwrap().extend([503, 503]);
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&url, tmp.path().join("data")).await;
    let started = std::time::Instant::now();
    let (id, _, _) = s.submit(tax_case()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "submission waited on delivery"
    );

    eventually("a retried delivery", async || {
        notices(&s, id)
            .await
            .iter()
            .any(|n| n["channel"] == "sms" && n["status"] == "delivered")
    })
    .await;
    let all = notices(&s, id).await;
    let sms = all.iter().find(|n| n["channel"] == "sms").unwrap();
    // Which notice got the 503s depends on timing: two notices, two failed attempts in
    // all, and every attempt at the SMS carried the same delivery id.
    let attempts: u64 = all.iter().map(|n| n["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, 4, "{all:?}");
    let ids: Vec<String> = rx
        .hits("/sms")
        .iter()
        .map(|h| {
            h.headers["x-guichet-delivery"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        ids.iter().all(|i| i == sms["id"].as_str().unwrap()),
        "{ids:?}"
    );

    // A permanent refusal fails the notice with the receiver's answer.
    rx.script.lock().unwrap().extend([400; 8]);
    let window = s.token("wang.fang").await;
    s.act(&window, id, "intake", "accept", json!({})).await;
    eventually("a permanent failure", async || {
        notices(&s, id)
            .await
            .iter()
            .any(|n| n["status"] == "failed")
    })
    .await;
    let failed = notices(&s, id).await;
    let failed = failed.iter().find(|n| n["status"] == "failed").unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("400"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "a 400 is not retried");
    let listed = s
        .get("/api/admin/notices/failed?limit=10", &s.admin)
        .await
        .1;
    let ids: Vec<&Value> = listed["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert!(
        ids.contains(&&failed["id"]),
        "the administrator's list: {listed}"
    );
    assert!(
        listed["notices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "failed"),
        "{listed}"
    );

    // The administrator queues it again once the receiver is fixed.
    rx.script.lock().unwrap().clear();
    let (st, v) = s
        .post(
            &format!(
                "/api/admin/notices/{}/retry",
                failed["id"].as_str().unwrap()
            ),
            &s.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let listed = s.get("/api/admin/notices/failed", &s.admin).await.1;
    assert!(
        listed["notices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"] != failed["id"]),
        "a retried notice left the list: {listed}"
    );
    let fid = failed["id"].clone();
    eventually("the retried notice", async || {
        notices(&s, id)
            .await
            .iter()
            .any(|n| n["id"] == fid && n["status"] == "delivered")
    })
    .await;
}

#[tokio::test]
async fn notices_queued_before_a_shutdown_are_delivered_after_the_restart() {
    // A port nobody listens on: every attempt fails, the notice stays queued.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let url = format!("http://{addr}");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = start(&url, data.clone()).await;
    let (id, number, _) = s.submit(tax_case()).await;
    let queued = notices(&s, id).await;
    assert!(queued.iter().all(|n| n["status"] == "queued"), "{queued:?}");
    s.shutdown().await;

    let rx = Receiver::default();
    rx.serve(tokio::net::TcpListener::bind(addr).await.unwrap());
    let s = start(&url, data).await;
    eventually("delivery after restart", async || {
        !rx.hits("/sms").is_empty()
    })
    .await;
    let body: Value = serde_json::from_slice(&rx.hits("/sms")[0].body).unwrap();
    assert!(body["body"].as_str().unwrap().contains(&number));
    eventually("the archive event", async || !rx.hits("/events").is_empty()).await;
    let ev: Value = serde_json::from_slice(&rx.hits("/events")[0].body).unwrap();
    assert_eq!(ev["kind"], "case.received");
    assert_eq!(ev["case_number"], number);
    eventually("statuses", async || {
        notices(&s, id)
            .await
            .iter()
            .all(|n| n["status"] == "delivered")
    })
    .await;
}

#[tokio::test]
async fn subscribers_get_the_events_they_asked_for_in_order() {
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&url, tmp.path().join("data")).await;
    let (window, officer, head) = (
        s.token("wang.fang").await,
        s.token("li.wei").await,
        s.token("sun.hua").await,
    );
    let (id, _, _) = s.submit(tax_case()).await;
    s.act(&window, id, "intake", "accept", json!({})).await;
    s.act(&officer, id, "site_visit", "approve", json!({}))
        .await;
    s.act(&head, id, "approval", "approve", json!({})).await;
    eventually("three events", async || rx.hits("/events").len() >= 3).await;
    let mut kinds: Vec<(u64, String)> = rx
        .hits("/events")
        .iter()
        .map(|h| {
            let e: Value = serde_json::from_slice(&h.body).unwrap();
            let seq: u64 = h.headers["x-guichet-delivery"]
                .to_str()
                .unwrap()
                .split('-')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            (seq, e["kind"].as_str().unwrap().to_string())
        })
        .collect();
    kinds.sort();
    let kinds: Vec<String> = kinds.into_iter().map(|k| k.1).collect();
    // task.created, claimed... were not asked for.
    assert_eq!(
        kinds,
        vec!["case.received", "case.accepted", "case.decided"]
    );
    // The decision notice went out too.
    let decided = notices(&s, id).await;
    assert!(decided.iter().any(|n| n["event"] == "case.decided"
        && n["channel"] == "sms"
        && n["body"].as_str().unwrap().contains("approved")));
}

#[tokio::test]
async fn supervision_cards_land_in_the_holders_and_supervisors_inbox() {
    let clock = Arc::new(ManualClock::new(bj("2025-09-26 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk, judge) = (
        s.token("tang.lei").await,
        s.token("song.kai").await,
        s.token("judge.yang").await,
    );
    let (id, number, _) = s.submit(court_case()).await;
    s.act(&filing, id, "intake", "accept", json!({})).await;
    set(&clock, "2025-10-09 18:00");
    s.fire_timers().await;

    let (st, v) = s.get("/api/inbox", &clerk).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let inbox = v["notices"].as_array().unwrap();
    assert_eq!(inbox.len(), 1, "{v}");
    assert_eq!(inbox[0]["event"], "limit.warning");
    assert_eq!(inbox[0]["status"], "delivered");
    let text = inbox[0]["body"].as_str().unwrap();
    assert!(text.contains(&number) && text.contains("80%"), "{text}");
    let (_, v) = s.get("/api/inbox", &filing).await;
    assert_eq!(
        v["notices"].as_array().unwrap().len(),
        1,
        "the supervisor group"
    );
    let (_, v) = s.get("/api/inbox", &judge).await;
    assert!(v["notices"].as_array().unwrap().is_empty());

    // Read marks: only the addressee may, and unread filters.
    let nid = inbox[0]["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(&format!("/api/inbox/{nid}/read"), &judge, json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s
        .post(&format!("/api/inbox/{nid}/read"), &clerk, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["notice"]["read_at"].is_string());
    let (_, v) = s.get("/api/inbox?unread=true", &clerk).await;
    assert!(v["notices"].as_array().unwrap().is_empty());
    let (st, _) = s.get("/api/inbox", &s.admin).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[test]
fn a_wrong_plugin_table_stops_the_start_with_the_plugins_message() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        scripts: common::example_scripts(),
        data: tmp.path().join("data"),
        ..Config::default()
    };
    cfg.plugins.insert(
        "webhook".into(),
        toml::from_str("[channels.sms]\nurl = \"ftp://gateway\"\nsecret = \"0123456789abcdef\"")
            .unwrap(),
    );
    let err = guichet::server::open(&cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("webhook") && err.contains("http or https"),
        "{err}"
    );

    cfg.plugins.clear();
    cfg.plugins
        .insert("fax".into(), toml::from_str("").unwrap());
    let err = guichet::server::open(&cfg)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("no such plugin"), "{err}");
    assert!(!tmp.path().join("data").exists(), "nothing was created");
}
