//! Bad input gets a JSON error with a stable code and the right status, and changes nothing.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// POST over a raw connection: writes in one task, reads the answer in another, so an
/// early answer (413) is read even if the server stops reading the body.
async fn raw_post(s: &TestServer, path: &str, token: &str, body: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(body.as_bytes()).await;
    });
    let mut buf = Vec::new();
    let _ = rd.read_to_end(&mut buf).await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(json.trim()).unwrap_or(Value::Null),
    )
}

async fn rev(s: &TestServer, id: u64) -> (u64, usize) {
    let c = s.case(id).await;
    (
        c["rev"].as_u64().unwrap(),
        c["history"].as_array().unwrap().len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let s = TestServer::start().await;
    let (customer, project, grid) = (
        s.token("zhou.qiang").await,
        s.token("wu.gang").await,
        s.token("hu.bo").await,
    );
    let (id, _, _) = s.submit(power_case(100.0)).await;
    let task = s.task_at(&customer, id, "intake").await;
    let before = rev(&s, id).await;
    let url = format!("{}/api/tasks/{task}/complete", s.base);
    let client = reqwest::Client::new();

    // Malformed JSON: 400.
    let r = client
        .post(&url)
        .bearer_auth(&customer)
        .header("content-type", "application/json")
        .body("{\"outcome\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_json");
    // Unknown field: 422.
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &customer,
            json!({ "outcome": "accept", "oops": 1 }),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")),
        "{v}"
    );
    // Oversized body: 413. The server answers before the client has sent everything and
    // closes, so the request goes over a raw socket that keeps reading while it writes.
    let big = json!({ "outcome": "accept", "comment": "x".repeat(2 * 1024 * 1024) }).to_string();
    let (st, v) = raw_post(&s, &format!("/api/tasks/{task}/complete"), &customer, big).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    // Missing and unknown tokens: 401.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/tasks/{task}/complete"),
            None,
            Some(json!({ "outcome": "accept" })),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            "gch_not_a_token",
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Not a member of the task's group: 403.
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &grid,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    // The administrator does not handle tasks: 403.
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &s.admin,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Unknown task and case: 404.
    let (st, v) = s
        .post(
            "/api/tasks/999999-1/complete",
            &customer,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (st, _) = s.get("/api/cases/PWR-NC-2026-999999", &customer).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s.get("/api/no/such/route", &customer).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // An outcome the step does not have: 422.
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &customer,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
        "{v}"
    );
    assert_eq!(
        rev(&s, id).await,
        before,
        "rejected requests changed the case"
    );

    // Data that breaks the form's rules: 422, nothing merged.
    s.act(&customer, id, "intake", "accept", json!({})).await;
    let survey = s.task_at(&project, id, "site_survey").await;
    let before = rev(&s, id).await;
    for bad in [
        json!({ "capacity_kva": "lots" }),
        json!({ "voltage": "220V" }),
        json!({ "undeclared": 1 }),
        json!({ "capacity_kva": -5 }),
    ] {
        let (st, v) = s
            .post(
                &format!("/api/tasks/{survey}/complete"),
                &project,
                json!({ "outcome": "approve", "data": bad }),
            )
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{v}"
        );
    }
    assert_eq!(rev(&s, id).await, before);
    // Returning an accepted case to the window says why not (it did pass intake).
    let (st, v) = s
        .post(
            &format!("/api/tasks/{survey}/return"),
            &project,
            json!({ "to": "intake" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let why = v["message"].as_str().unwrap();
    assert!(!why.contains("has not been passed"), "{why}");
    assert!(why.contains("supplement"), "{why}");
    assert_eq!(rev(&s, id).await, before);

    // Claimed by someone else: 409 for the other.
    let (st, _) = s
        .post(&format!("/api/tasks/{survey}/claim"), &project, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(&format!("/api/tasks/{survey}/claim"), &project, json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = s
        .post(&format!("/api/tasks/{survey}/release"), &project, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    // Completing twice: the second is a conflict.
    let (st, _) = s
        .post(
            &format!("/api/tasks/{survey}/complete"),
            &project,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .post(
            &format!("/api/tasks/{survey}/complete"),
            &project,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_submissions_are_refused_with_every_problem_listed() {
    let s = TestServer::start().await;
    let mut body = power_case(100.0);
    body["data"]["capacity_kva"] = json!(0);
    body["data"]["contact_phone"] = json!("12345");
    body["data"]["meter_number"] = json!("M1");
    body["materials"] = json!([{ "id": "site_plan", "file": "plan.exe" }]);
    body["applicant"]["name"] = json!("");
    let (st, v) = s.call("POST", "/api/cases", None, Some(body)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let msg = v["message"].as_str().unwrap();
    for needle in [
        "capacity_kva",
        "contact_phone",
        "meter_number",
        "site_plan",
        "missing material: Business licence",
        "applicant.name",
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    // Each problem names its field, so that a form shows it next to that field.
    let fields: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "applicant.name",
            "capacity_kva",
            "contact_phone",
            "meter_number",
            "material.site_plan",
            "material.licence"
        ]
    );
    let (st, v) = s
        .call(
            "POST",
            "/api/cases",
            None,
            Some(json!({ "procedure": "nope", "applicant": applicant("X1") })),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let mut bad_applicant = power_case(100.0);
    bad_applicant["applicant"]["id"] = json!("../../etc/passwd");
    let (st, _) = s
        .call("POST", "/api/cases", None, Some(bad_applicant))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was numbered: the next good case still gets number 1.
    let (_, number, _) = s.submit(power_case(100.0)).await;
    assert!(number.ends_with("-000001"), "{number}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_staff_completing_the_same_task_exactly_one_wins() {
    let s = TestServer::start().await;
    let (window, li, zhao) = (
        s.token("wang.fang").await,
        s.token("li.wei").await,
        s.token("zhao.min").await,
    );
    for round in 0..10 {
        let (st, v) = s
            .post(
                "/api/cases",
                &window,
                json!({ "procedure": "tax.invoice_purchase", "applicant": applicant("91310000MA1TX0009Z"),
                        "data": { "invoice_kind": "ordinary", "monthly_quantity": 10 } }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        let id = v["case"]["id"].as_u64().unwrap();
        s.act(&window, id, "intake", "accept", json!({})).await;
        let task = s.task_at(&li, id, "site_visit").await;
        let path = format!("/api/tasks/{task}/complete");
        let body = json!({ "outcome": "approve" });
        let (a, b) = tokio::join!(
            s.post(&path, &li, body.clone()),
            s.post(&path, &zhao, body.clone())
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}: {a:?} {b:?}"
        );
        let c = s.case(id).await;
        assert_eq!(c["status"], "approved");
        let completed = c["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["task"] == task.as_str())
            .count();
        assert_eq!(completed, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_of_a_case_keeps_its_state() {
    let s = TestServer::start().await;
    let (customer, project, grid) = (
        s.token("zhou.qiang").await,
        s.token("wu.gang").await,
        s.token("hu.bo").await,
    );
    let (id, number, code) = s.submit(power_case(2000.0)).await;
    s.act(&customer, id, "intake", "accept", json!({})).await;
    s.act(&project, id, "site_survey", "approve", json!({}))
        .await;
    let scheme = s.token("xu.li").await;
    s.act(&scheme, id, "scheme_review", "approve", json!({}))
        .await;
    s.act(&grid, id, "grid_review", "approve", json!({})).await;
    let before = s.case(id).await;

    let s = s.restart().await;
    let after = s.case(id).await;
    assert_eq!(before, after, "state changed across a restart");
    // Tokens survive too, and the parallel join still waits for metering.
    let metering = s.token("guo.na").await;
    let c = s
        .act(&metering, id, "metering_review", "approve", json!({}))
        .await;
    assert_eq!(open_steps(&c), vec!["construction"]);
    s.act(&project, id, "construction", "approve", json!({}))
        .await;
    let (st, t) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["status"], "approved");
    // Numbering continues without a gap after the restart.
    let (_, n2, _) = s.submit(power_case(10.0)).await;
    assert!(n2.ends_with("-000002"), "{n2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_file_is_private_and_tokens_can_be_revoked() {
    let s = TestServer::start().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(guichet::server::admin_token_path(&s.data))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (st, v) = s
        .post(
            "/api/admin/tokens",
            &s.admin,
            json!({ "subject": "nobody.here" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let li = s.token("li.wei").await;
    let (st, me) = s.get("/api/me", &li).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["groups"], json!(["tax.officer", "tax.window"]));
    // Staff cannot manage tokens.
    let (st, _) = s.get("/api/admin/tokens", &li).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, list) = s.get("/api/admin/tokens", &s.admin).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        !list.to_string().contains(&li),
        "a secret appeared in the token list"
    );
    let id = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"] == "li.wei")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = s
        .call(
            "DELETE",
            &format!("/api/admin/tokens/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/api/me", &li).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
