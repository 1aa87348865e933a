//! Who may do what: the whole route table walked with every role, against the matrix
//! below. A route added to the table without a row here fails the test, so every new
//! route gets its permission reviewed.

mod common;

use std::collections::BTreeMap;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Roles in the order of the matrix columns. `staff` goes last: it is the one role that
/// may change the case, and it must not change it before the others are tried.
const ROLES: [&str; 7] = [
    "anonymous",
    "applicant",
    "outsider",
    "supervisor",
    "auditor",
    "admin",
    "staff",
];

/// Expected class per role: `ok` (reached the handler: any status but 401, 403 and a
/// hiding 404), `401`, `403`, or `404` (the case is hidden from this caller).
/// anonymous: no token; applicant: the case's applicant token; outsider: judge.yang
/// (court, nothing to do with a tax case); supervisor: qin.lan (supervises the tax
/// window); auditor: audit.zhang; admin: the administrator token; staff: li.wei (member
/// of the tax window, which holds the case).
const MATRIX: &[(&str, &str)] = &[
    //                                                     anon appl outs  sup  aud  adm  staff
    ("GET /api/health", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /metrics", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /api/ready", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /api/openapi.json", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /api/me", "401  ok   ok   ok   ok   ok   ok"),
    ("GET /api/procedures", "ok   ok   ok   ok   ok   ok   ok"),
    (
        "GET /api/procedures/{id}",
        "ok   ok   ok   ok   ok   ok   ok",
    ),
    (
        "GET /api/procedures/{id}/definition",
        "401  403  ok   ok   ok   ok   ok",
    ),
    ("GET /api/bundles", "ok   ok   ok   ok   ok   ok   ok"),
    (
        "POST /api/bundles/{id}/cases",
        "ok   ok   ok   ok   403  ok   ok",
    ),
    (
        "GET /api/bundle-cases/{reference}",
        "401  403  ok   ok   ok   ok   ok",
    ),
    ("POST /api/cases", "ok   ok   ok   ok   403  ok   ok"),
    ("GET /api/cases", "401  403  ok   ok   ok   ok   ok"),
    ("GET /api/cases/{case}", "401  403  404  ok   ok   ok   ok"),
    (
        "GET /api/cases/{case}/files/{sha256}",
        "401  403  404  ok   ok   ok   ok",
    ),
    (
        "POST /api/cases/{case}/withdraw",
        "404  ok   404  ok   403  ok   ok",
    ),
    (
        "POST /api/cases/{case}/rating",
        "404  ok   404  ok   403  403  ok",
    ),
    (
        "GET /api/track/{number}",
        "404  ok   404  ok   ok   ok   ok",
    ),
    (
        "GET /api/track/bundle/{reference}",
        "ok   ok   ok   ok   ok   ok   ok",
    ),
    (
        "POST /api/track/{number}/supplement",
        "404  ok   404  ok   403  ok   ok",
    ),
    (
        "GET /api/applicants/{id}/cases",
        "401  403  ok   ok   ok   ok   ok",
    ),
    ("GET /api/tasks", "401  403  ok   ok   ok   ok   ok"),
    ("GET /api/board", "401  403  403  ok   403  403  403"),
    ("GET /api/stats", "401  403  ok   ok   ok   ok   ok"),
    ("GET /api/cards", "401  403  ok   ok   ok   ok   ok"),
    (
        "POST /api/cases/{case}/cards",
        "401  403  403  ok   403  403  403",
    ),
    (
        "POST /api/cases/{case}/cards/{card}/answer",
        "401  403  404  ok   403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/claim",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/release",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/complete",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/return",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/transfer",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/add-signer",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/take-back",
        "401  403  404  ok   403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/reassign",
        "401  403  403  ok   403  403  403",
    ),
    (
        "POST /api/tasks/{task}/supplement",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/tasks/{task}/accept-with-commitment",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/cases/{case}/suspend",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/cases/{case}/resume",
        "401  403  404  403  403  403  ok",
    ),
    (
        "POST /api/cases/{case}/extend",
        "401  403  404  ok   403  403  ok",
    ),
    (
        "GET /api/cases/{case}/notices",
        "401  403  404  ok   ok   ok   ok",
    ),
    ("GET /api/inbox", "401  403  ok   ok   ok   403  ok"),
    (
        "POST /api/inbox/{id}/read",
        "401  403  ok   ok   403  ok   ok",
    ),
    (
        "GET /api/admin/notices/failed",
        "401  403  403  403  403  ok   403",
    ),
    (
        "POST /api/admin/notices/{id}/retry",
        "401  403  403  403  403  ok   403",
    ),
    (
        "POST /api/external-tasks/fetch-and-lock",
        "401  403  ok   ok   403  403  ok",
    ),
    (
        "POST /api/external-tasks/{task}/complete",
        "401  403  ok   ok   403  403  ok",
    ),
    (
        "POST /api/external-tasks/{task}/failure",
        "401  403  ok   ok   403  ok   ok",
    ),
    (
        "GET /api/admin/external-tasks/incidents",
        "401  403  403  403  ok   ok   403",
    ),
    (
        "POST /api/admin/external-tasks/{task}/retry",
        "401  403  403  403  403  ok   403",
    ),
    ("GET /api/delegations", "401  403  ok   ok   ok   ok   ok"),
    ("POST /api/delegations", "401  403  403  ok   403  ok   ok"),
    (
        "DELETE /api/delegations/{id}",
        "401  403  403  ok   403  ok   ok",
    ),
    ("GET /api/admin/tokens", "401  403  403  403  ok   ok   403"),
    (
        "POST /api/admin/tokens",
        "401  403  403  403  403  ok   403",
    ),
    (
        "POST /api/admin/passwords",
        "401  403  403  403  403  ok   403",
    ),
    (
        "POST /api/admin/password-links",
        "401  403  403  403  403  ok   403",
    ),
    (
        "DELETE /api/admin/tokens/{id}",
        "401  403  403  403  403  ok   403",
    ),
    (
        "GET /api/admin/incidents",
        "401  403  403  403  ok   ok   403",
    ),
    (
        "GET /api/admin/scripts",
        "401  403  403  403  ok   ok   403",
    ),
    (
        "POST /api/admin/scripts/reload",
        "401  403  403  403  403  ok   403",
    ),
    (
        "POST /api/admin/backup",
        "401  403  403  403  403  ok   403",
    ),
    (
        "GET /api/admin/versions",
        "401  403  403  403  ok   ok   403",
    ),
    (
        "POST /api/admin/migrations",
        "401  403  403  403  403  ok   403",
    ),
    ("GET /api/audit", "401  403  403  403  ok   403  403"),
    ("GET /api/audit/export", "401  403  403  403  ok   403  403"),
    ("GET /api/audit/verify", "401  403  403  403  ok   403  403"),
];

fn tax_case() -> Value {
    json!({
        "procedure": "tax.registration",
        "applicant": applicant("91310000MA1FL0002Y"),
        "data": { "company": "Riverside Tea Ltd", "credit_code": "91310000MA1TX0004A" },
        "materials": [ { "id": "business_licence", "file": "licence.pdf" }, { "id": "legal_rep_id", "file": "id.jpg" } ],
    })
}

/// A body of the right shape for each route, so that a refusal comes from the
/// permission and not from validation.
fn body_for(path: &str) -> Value {
    match path {
        p if p.ends_with("/complete") && p.contains("external") => {
            json!({ "worker": "w1", "outcome": "approve" })
        }
        p if p.ends_with("/failure") => json!({ "worker": "w1", "error": "down" }),
        p if p.ends_with("/complete") => json!({ "outcome": "accept" }),
        p if p.ends_with("/return") => json!({ "to": "intake" }),
        p if p.ends_with("/rating") => json!({ "score": 4 }),
        p if p.ends_with("/add-signer") => json!({ "staff": "zhao.min" }),
        p if p.ends_with("/transfer") || p.ends_with("/reassign") => {
            json!({ "group": "tax.officer" })
        }
        p if p.ends_with("/tasks/{task}/supplement") => json!({ "items": ["stamp"] }),
        p if p.ends_with("/accept-with-commitment") => {
            json!({ "items": ["stamp"], "by": "2030-01-10" })
        }
        "/api/cases/{case}/cards" | "/api/cases/{case}/cards/{card}/answer" => {
            json!({ "reason": "waiting for the land registry" })
        }
        p if p.ends_with("/suspend") || p.ends_with("/resume") || p.ends_with("/extend") => {
            json!({ "reason": "expert review" })
        }
        "/api/external-tasks/fetch-and-lock" => {
            json!({ "worker": "w1", "topics": ["credit-check"], "lease_ms": 1000 })
        }
        "/api/delegations" => json!({
            "from": "li.wei", "to": "zhao.min", "starts": "2030-01-01", "ends": "2030-01-05",
            "reason": "annual leave"
        }),
        "/api/admin/tokens" => json!({ "subject": "zhao.min" }),
        "/api/admin/passwords" => json!({ "staff": "zhao.min", "password": "a long passphrase" }),
        "/api/admin/password-links" => json!({ "staff": "zhao.min" }),
        // Real submissions: `ok` then means a case was created.
        "/api/cases" => tax_case(),
        "/api/bundles/{id}/cases" => json!({
            "applicant": applicant("91310000MA1TX0004A"),
            "items": [
                { "procedure": "tax.invoice_purchase", "data": { "invoice_kind": "ordinary", "monthly_quantity": 50 } },
            ],
        }),
        _ => json!({}),
    }
}

fn class(status: StatusCode, hiding: bool) -> &'static str {
    match status.as_u16() {
        401 => "401",
        403 => "403",
        404 if hiding => "404",
        _ => "ok",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_allows_exactly_the_roles_it_declares() {
    let s = TestServer::start().await;
    let mut tokens: BTreeMap<&str, Option<String>> = BTreeMap::new();
    tokens.insert("anonymous", None);
    tokens.insert("admin", Some(s.admin.clone()));
    for (role, who) in [
        ("outsider", "judge.yang"),
        ("supervisor", "qin.lan"),
        ("auditor", "audit.zhang"),
        ("staff", "li.wei"),
    ] {
        tokens.insert(role, Some(s.token(who).await));
    }
    let table = guichet::api::table();
    let expected: BTreeMap<&str, Vec<&str>> = MATRIX
        .iter()
        .map(|(route, row)| (*route, row.split_whitespace().collect()))
        .collect();
    let mut observed = Vec::new();
    let mut wrong = Vec::new();
    let mut undescribed = Vec::new();
    let mut answered = std::collections::BTreeSet::new();
    for route in &table {
        let key = format!("{} {}", route.method, route.path);
        // A fresh case per route: what one route does to a case cannot change another's.
        // With a file of its own where the route serves one.
        let (st, sub) = if route.path.contains("{sha256}") {
            s.submit_files(
                None,
                tax_case(),
                &[("business_licence", "licence.pdf", b"%PDF-1.4 licence")],
            )
            .await
        } else {
            s.call("POST", "/api/cases", None, Some(tax_case())).await
        };
        assert_eq!(st, StatusCode::CREATED, "{sub}");
        let sha = sub["case"]["materials"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|m| m["sha256"].as_str())
            .unwrap_or("none")
            .to_string();
        let id = sub["case"]["id"].as_u64().unwrap();
        let number = sub["case"]["number"].as_str().unwrap().to_string();
        tokens.insert(
            "applicant",
            Some(sub["applicant_token"].as_str().unwrap().to_string()),
        );
        let task = sub["case"]["tasks"][0]["id"].as_str().unwrap().to_string();
        let path = route
            .path
            .replace("{case}", &id.to_string())
            .replace("{task}", &task)
            .replace("{number}", &number)
            .replace("{card}", "manual-1")
            .replace("{sha256}", &sha)
            .replace("{reference}", "no-such-bundle")
            .replace(
                "{id}",
                match route.path {
                    "/api/procedures/{id}" | "/api/procedures/{id}/definition" => {
                        "tax.registration"
                    }
                    "/api/bundles/{id}/cases" => "tax.new_business",
                    "/api/applicants/{id}/cases" => "91310000MA1FL0002Y",
                    "/api/delegations/{id}" => "d1",
                    _ => "nothing",
                },
            );
        // On case routes a 404 means "hidden". (The external-task routes answer 404 for a
        // task that is not external, which the walk's tasks are not.)
        let hiding = (route.path.contains("{case}")
            || route.path.contains("{task}")
            || route.path.contains("{number}"))
            && !route.path.contains("external-tasks");
        if route.path.ends_with("/answer") {
            let (st, v) = s
                .post(
                    &format!("/api/cases/{id}/cards"),
                    tokens["supervisor"].as_deref().unwrap(),
                    json!({ "reason": "three days late" }),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
        let mut row = Vec::new();
        for role in ROLES {
            let body = (route.method != reqwest::Method::GET
                && route.method != reqwest::Method::DELETE)
                .then(|| body_for(route.path));
            let (status, v) = s
                .call(route.method.as_str(), &path, tokens[role].as_deref(), body)
                .await;
            assert_ne!(
                status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{key} as {role}: {v}"
            );
            if status.is_success() {
                // The table (and so the OpenAPI document) declares the success status.
                let declared = if route.created { 201 } else { 200 };
                assert_eq!(status.as_u16(), declared, "{key} as {role}: {v}");
                // And the answer is what the document says it is.
                if route.produces == "application/json" {
                    let schema = route.answers.map(|f| f());
                    match schema {
                        Some(schema) => assert_conforms(&schema, &v, &format!("{key} as {role}")),
                        None => undescribed.push(key.clone()),
                    }
                    answered.insert(key.clone());
                }
            }
            if status.as_u16() >= 400 {
                assert!(
                    v["code"].is_string(),
                    "{key} as {role}: error without a code: {v}"
                );
            }
            row.push(class(status, hiding));
            if matches!(route.path, "/api/cases" | "/api/bundles/{id}/cases")
                && route.method == axum::http::Method::POST
                && class(status, hiding) == "ok"
            {
                // A submission the caller may make is a case made, not a refused body.
                assert_eq!(status, StatusCode::CREATED, "{key} as {role}: {v}");
            }
            if let Some(exp) = expected.get(key.as_str()) {
                let want = exp[ROLES.iter().position(|r| *r == role).unwrap()];
                if want != class(status, hiding) {
                    wrong.push(format!(
                        "{key} as {role}: expected {want}, got {status} {v}"
                    ));
                }
            }
        }
        observed.push(format!("{key:50} {}", row.join("  ")));
    }
    let missing: Vec<String> = table
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|k| !expected.contains_key(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the access matrix (add one after deciding who may call them): {missing:?}\nobserved:\n{}",
        observed.join("\n")
    );
    assert_eq!(
        expected.len(),
        table.len(),
        "the matrix names routes that no longer exist"
    );
    assert!(
        undescribed.is_empty(),
        "routes whose answer the OpenAPI document does not describe: {undescribed:?}"
    );
    // Each JSON route's answer was read against its schema at least once (by some role).
    let unread: Vec<String> = table
        .iter()
        .filter(|r| r.produces == "application/json")
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|k| !answered.contains(k))
        .collect();
    println!("routes no role reached with success in the walk: {unread:?}");
    assert!(
        wrong.is_empty(),
        "{}\nobserved:\n{}",
        wrong.join("\n"),
        observed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deputy_handles_the_tasks_of_a_colleague_on_leave_and_it_is_recorded() {
    let clock = std::sync::Arc::new(guichet_core::clock::ManualClock::new(bj(
        "2026-03-02 09:00",
    )));
    let s = TestServer::start_at(clock.clone()).await;
    let (hu, ma, xu) = (
        s.token("hu.bo").await,
        s.token("ma.jun").await,
        s.token("xu.li").await,
    );
    // hu.bo (grid review) goes on leave; ma.jun (supply scheme) is not in his group.
    let (st, v) = s
        .post(
            "/api/delegations",
            &xu,
            json!({ "from": "hu.bo", "to": "ma.jun", "starts": "2026-03-03", "ends": "2026-03-05", "reason": "x" }),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "only hu.bo, his supervisor or the admin: {v}"
    );
    let (st, v) = s
        .post(
            "/api/delegations",
            &hu,
            json!({ "from": "hu.bo", "to": "ma.jun", "starts": "2026-03-03", "ends": "2026-03-05", "reason": "annual leave" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let d = v["delegation"]["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            "/api/delegations",
            &hu,
            json!({ "from": "hu.bo", "to": "ma.jun", "starts": "2026-03-05", "ends": "2026-03-03", "reason": "x" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // A small connection reaches the parallel grid and metering reviews.
    let (id, _, _) = s.submit(power_case(100.0)).await;
    let customer = s.token("zhou.qiang").await;
    let project = s.token("wu.gang").await;
    s.act(&customer, id, "intake", "accept", json!({})).await;
    s.act(&project, id, "site_survey", "approve", json!({}))
        .await;
    s.act(&project, id, "scheme_draft", "approve", json!({}))
        .await;
    deputy_acts(&s, &clock, &ma, id, &d).await;
}

async fn deputy_acts(
    s: &TestServer,
    clock: &guichet_core::clock::ManualClock,
    deputy: &str,
    id: u64,
    delegation: &str,
) {
    let grid = |v: &Value| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["group"] == "power.grid")
            .map(|t| t["id"].as_str().unwrap().to_string())
    };
    let (_, list) = s.get("/api/tasks", deputy).await;
    assert!(
        grid(&list).is_none(),
        "before the leave the deputy sees nothing of it: {list}"
    );
    set(clock, "2026-03-03 09:00");
    let (_, list) = s.get("/api/tasks", deputy).await;
    let task =
        grid(&list).unwrap_or_else(|| panic!("deputy's worklist lacks the grid task: {list}"));
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            deputy,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let c = s.case(id).await;
    let ev = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["task"] == task.as_str())
        .unwrap()
        .clone();
    assert_eq!(ev["actor"], "ma.jun");
    assert_eq!(ev["on_behalf_of"], "hu.bo");
    let (_, me) = s.get("/api/me", deputy).await;
    assert_eq!(me["deputy_for"], json!(["hu.bo"]));
    // Ended early: the deputy loses the power at once.
    let (st, _) = s
        .call(
            "DELETE",
            &format!("/api/delegations/{delegation}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, me) = s.get("/api/me", deputy).await;
    assert_eq!(me["deputy_for"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_reassigns_and_issues_cards_but_does_not_act() {
    let s = TestServer::start().await;
    let sup = s.token("qin.lan").await;
    let (id, _, _) = s.submit(tax_case()).await;
    let c = s.case(id).await;
    let intake = c["tasks"][0]["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            &format!("/api/tasks/{intake}/reassign"),
            &sup,
            json!({ "staff": "wang.fang", "comment": "li.wei is overloaded" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["tasks"][0]["assignee"], "wang.fang");
    let (st, _) = s
        .post(
            &format!("/api/tasks/{intake}/reassign"),
            &sup,
            json!({ "staff": "judge.yang" }),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a member of the group"
    );
    let (st, _) = s
        .post(
            &format!("/api/tasks/{intake}/complete"),
            &sup,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "supervisors oversee; members act"
    );
    let (st, v) = s
        .post(
            &format!("/api/cases/{id}/cards"),
            &sup,
            json!({ "reason": "the applicant called twice" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let wang = s.token("wang.fang").await;
    let (_, cards) = s.get("/api/cards?answered=false", &wang).await;
    let card = cards["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case_id"] == id)
        .unwrap_or_else(|| panic!("holder does not see the card: {cards}"))
        .clone();
    assert_eq!(card["threshold"], "manual");
    assert_eq!(card["assignees"], json!(["wang.fang"]));
    // The supervisor of a group sees its cases; the head of another department does not.
    let gao = s.token("gao.lin").await;
    let (st, _) = s.get(&format!("/api/cases/{id}"), &gao).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let sun = s.token("sun.hua").await;
    let (st, _) = s.get(&format!("/api/cases/{id}"), &sun).await;
    assert_eq!(st, StatusCode::OK);
}
