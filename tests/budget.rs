//! Scripts cannot hold the server: a script past its time budget fails its own request
//! (422 `script_error`, nothing changed) while others are served, and a request whose
//! write has started is answered with what it did, not 408.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
fn spin(c) {
    // One sort of 10,000 items is one operation: the operation limit alone does not end this.
    let a = []; for i in 0..10000 { a.push(10000 - i) }
    loop { a.sort(); }
}
fn slow(c) {
    let a = []; for i in 0..10000 { a.push(10000 - i) }
    let t = timestamp();
    while t.elapsed < 0.8 { a.sort(); }
    c
}
procedure(#{
    id: "heavy", name: "Heavy", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    hooks: #{ on_submit: "spin" },
    start: "s", steps: [ #{ id: "s", name: "S", group: "g", next: "@approved" } ],
});
procedure(#{
    id: "slow", name: "Slow", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    hooks: #{ on_submit: "slow" },
    start: "s", steps: [ #{ id: "s", name: "S", group: "g", next: "@approved" } ],
});
procedure(#{
    id: "plain", name: "Plain", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    start: "s", steps: [ #{ id: "s", name: "S", group: "g", next: "@approved" } ],
});
"#;

async fn server(
    tune: impl FnOnce(&mut guichet::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let s = TestServer::start_configured(
        scripts,
        tmp.path().join("data"),
        Arc::new(SystemClock),
        tune,
    )
    .await;
    (s, tmp)
}

fn submission(procedure: &str) -> Value {
    json!({ "procedure": procedure, "applicant": applicant("A1") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_its_budget_fails_its_request_and_others_are_served() {
    let (s, _tmp) = server(|c| c.limits.script_ms = 300).await;
    let started = Instant::now();
    let heavy: Vec<_> = (0..6)
        .map(|_| {
            let base = s.base.clone();
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(format!("{base}/api/cases"))
                    .json(&submission("heavy"))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // Meanwhile a plain submission and a read go through.
    let (st, v) = s
        .call("POST", "/api/cases", None, Some(submission("plain")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s.call("GET", "/api/procedures", None, None).await;
    assert_eq!(st, StatusCode::OK);
    for h in heavy {
        let (st, v) = h.await.unwrap();
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["code"], "script_error");
        assert!(
            v["message"].as_str().unwrap().contains("time budget"),
            "{v}"
        );
    }
    // Six calls of 0.3 s on the threads that may run scripts: seconds, not minutes.
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing was created by the refused submissions.
    let a = s.token("a").await;
    let (_, v) = s.get("/api/tasks", &a).await;
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_way_at_the_deadline_is_answered_with_what_it_did() {
    let (s, _tmp) = server(|c| {
        c.limits.request_timeout_ms = 300;
        c.limits.script_ms = 10_000;
    })
    .await;
    let started = Instant::now();
    let (st, v) = s
        .call("POST", "/api/cases", None, Some(submission("slow")))
        .await;
    // The hook ran 0.8 s, past the 0.3 s deadline: the case exists, so the answer says so.
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let id = v["case"]["id"].as_u64().unwrap();
    assert_eq!(s.case(id).await["procedure"], "slow");
}
