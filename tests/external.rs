//! External tasks over HTTP: the example Python worker, leases that expire, failures that
//! retry and become incidents an administrator retries.

mod common;

use common::{applicant, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn quota_case(current: i64, requested: i64) -> Value {
    json!({
        "procedure": "tax.invoice_quota",
        "applicant": applicant("91310000MA1FL0042Q"),
        "data": { "current_quota": current, "requested_quota": requested },
    })
}

/// Submits and accepts a case: it then waits at the external credit check.
async fn at_credit_check(s: &TestServer, window: &str, current: i64, requested: i64) -> u64 {
    let (id, _, _) = s.submit(quota_case(current, requested)).await;
    s.act(window, id, "intake", "accept", json!({})).await;
    id
}

async fn fetch(s: &TestServer, token: &str, worker: &str, lease_ms: i64) -> (StatusCode, Value) {
    s.post(
        "/api/external-tasks/fetch-and-lock",
        token,
        json!({ "worker": worker, "topics": ["credit-check"], "max_tasks": 10, "lease_ms": lease_ms }),
    )
    .await
}

#[tokio::test]
async fn the_example_python_worker_completes_credit_checks() {
    let s = TestServer::start().await;
    let window = s.token("wang.fang").await;
    let bot = s.token("credit.bot").await;
    let ok = at_credit_check(&s, &window, 100, 150).await;
    let refused = at_credit_check(&s, &window, 10, 5000).await;

    // As its docstring shows it: the server and token from the environment, its own
    // worker id.
    let out = tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/workers/credit_check.py"
        ))
        .arg("--once")
        .env("GUICHET_URL", &s.base)
        .env("GUICHET_TOKEN", &bot)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("done: 2 task(s)"), "{stdout}");

    let c = s.case(ok).await;
    assert_eq!(c["data"]["credit_rating"], "A");
    assert_eq!(c["current_steps"], json!(["Officer review"]));
    let h = c["history"].as_array().unwrap();
    // Locked under its default worker id: credit-check:<host name>.
    assert!(
        h.iter().any(|e| e["action"] == "locked"
            && e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("credit.bot/credit-check:"))),
        "{h:?}"
    );
    let c = s.case(refused).await;
    assert_eq!(c["status"], "rejected");
    assert_eq!(c["data"]["credit_rating"], "C");
}

#[tokio::test]
async fn an_expired_lease_lets_another_worker_take_the_task() {
    let s = TestServer::start().await;
    let window = s.token("wang.fang").await;
    let bot = s.token("credit.bot").await;
    let id = at_credit_check(&s, &window, 100, 150).await;

    let (st, v) = fetch(&s, &bot, "a", 200).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let task = v["tasks"][0]["task"].as_str().unwrap().to_string();
    assert_eq!(v["tasks"][0]["case"], id);
    assert_eq!(v["tasks"][0]["data"]["requested_quota"], 150);
    // Locked: nobody else gets it while the lease runs.
    let (_, v) = fetch(&s, &bot, "b", 60_000).await;
    assert_eq!(v["tasks"], json!([]));

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, v) = fetch(&s, &bot, "b", 60_000).await;
    assert_eq!(
        v["tasks"][0]["task"], task,
        "the expired lease freed the task"
    );
    // The first worker's late answer is refused and changes nothing.
    let (st, v) = s
        .post(
            &format!("/api/external-tasks/{task}/complete"),
            &bot,
            json!({ "worker": "a" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // A worker's data and outcome are checked like a clerk's; a refusal changes nothing.
    for body in [
        json!({ "worker": "b", "data": { "credit_rating": "Z" } }),
        json!({ "worker": "b", "outcome": "maybe" }),
    ] {
        let (st, v) = s
            .post(&format!("/api/external-tasks/{task}/complete"), &bot, body)
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["code"], "validation_failed");
    }
    assert_eq!(
        s.case(id).await["current_steps"],
        json!(["Tax credit check"])
    );
    let (st, v) = s
        .post(
            &format!("/api/external-tasks/{task}/complete"),
            &bot,
            json!({ "worker": "b", "data": { "credit_rating": "B" } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["data"]["credit_rating"], "B");
}

#[tokio::test]
async fn failures_retry_then_raise_an_incident_the_administrator_retries() {
    let s = TestServer::start().await;
    let window = s.token("wang.fang").await;
    let bot = s.token("credit.bot").await;
    let officer = s.token("li.wei").await;
    let id = at_credit_check(&s, &window, 100, 150).await;

    // Only the worker group may fetch; the task is not a staff task.
    let (_, v) = fetch(&s, &officer, "x", 1000).await;
    assert_eq!(v["tasks"], json!([]));
    let (_, v) = fetch(&s, &bot, "w", 60_000).await;
    let task = v["tasks"][0]["task"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &officer,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // The step allows 3 attempts: two failures leave the task fetchable...
    for attempt in 1..=3 {
        let (st, v) = s
            .post(
                &format!("/api/external-tasks/{task}/failure"),
                &bot,
                json!({ "worker": "w", "message": format!("credit system down ({attempt})") }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let ext = &v["case"]["tasks"][0]["external"];
        assert_eq!(ext["retries"], 3 - attempt);
        let (_, v) = fetch(&s, &bot, "w", 60_000).await;
        if attempt < 3 {
            assert_eq!(v["tasks"][0]["task"], task, "attempt {attempt}");
        } else {
            // ...the third makes it an incident: no worker gets it.
            assert_eq!(v["tasks"], json!([]));
            assert_eq!(ext["incident"], true);
        }
    }
    let (st, v) = s.get("/api/admin/external-tasks/incidents", &s.admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["tasks"][0]["task"]["id"], task);
    assert_eq!(
        v["tasks"][0]["task"]["external"]["error"],
        "credit system down (3)"
    );
    let (_, v) = s.get("/api/admin/incidents", &s.admin).await;
    assert!(v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == "external_task_failed" && i["task"] == task));
    let (st, _) = s
        .post(
            &format!("/api/admin/external-tasks/{task}/retry"),
            &bot,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .post(
            &format!("/api/admin/external-tasks/{task}/retry"),
            &s.admin,
            json!({ "retries": 1 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = fetch(&s, &bot, "w", 60_000).await;
    assert_eq!(v["tasks"][0]["task"], task);
    let (st, _) = s
        .post(
            &format!("/api/external-tasks/{task}/complete"),
            &bot,
            json!({ "worker": "w" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.case(id).await["current_steps"], json!(["Officer review"]));
}

#[tokio::test]
async fn bad_fetch_requests_are_refused() {
    let s = TestServer::start().await;
    let bot = s.token("credit.bot").await;
    for body in [
        json!({ "worker": "", "topics": ["credit-check"], "lease_ms": 1000 }),
        json!({ "worker": "w", "topics": [], "lease_ms": 1000 }),
        json!({ "worker": "w", "topics": ["credit-check"], "lease_ms": 0 }),
        json!({ "worker": "w", "topics": ["credit-check"], "lease_ms": 1000, "max_tasks": 0 }),
    ] {
        let (st, v) = s
            .post("/api/external-tasks/fetch-and-lock", &bot, body)
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
    let (st, _) = s
        .call(
            "POST",
            "/api/external-tasks/fetch-and-lock",
            None,
            Some(json!({ "worker": "w", "topics": ["credit-check"], "lease_ms": 1000 })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
