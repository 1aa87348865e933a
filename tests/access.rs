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
    ("GET /api/openapi.json", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /api/me", "401  ok   ok   ok   ok   ok   ok"),
    ("GET /api/procedures", "ok   ok   ok   ok   ok   ok   ok"),
    (
        "GET /api/procedures/{id}",
        "ok   ok   ok   ok   ok   ok   ok",
    ),
    ("GET /api/bundles", "ok   ok   ok   ok   ok   ok   ok"),
    (
        "POST /api/bundles/{id}/cases",
        "ok   ok   ok   ok   ok   ok   ok",
    ),
    (
        "GET /api/bundle-cases/{reference}",
        "401  403  ok   ok   ok   ok   ok",
    ),
    ("POST /api/cases", "ok   ok   ok   ok   ok   ok   ok"),
    ("GET /api/cases/{case}", "401  403  404  ok   ok   ok   ok"),
    (
        "POST /api/cases/{case}/withdraw",
        "404  ok   404  ok   403  ok   ok",
    ),
    (
        "GET /api/track/{number}",
        "404  ok   404  ok   ok   ok   ok",
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
    for route in &table {
        let key = format!("{} {}", route.method, route.path);
        // A fresh case per route: what one route does to a case cannot change another's.
        let (st, sub) = s.call("POST", "/api/cases", None, Some(tax_case())).await;
        assert_eq!(st, StatusCode::CREATED, "{sub}");
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
            .replace("{reference}", "no-such-bundle")
            .replace(
                "{id}",
                match route.path {
                    "/api/procedures/{id}" => "tax.registration",
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
            if status.as_u16() >= 400 {
                assert!(
                    v["code"].is_string(),
                    "{key} as {role}: error without a code: {v}"
                );
            }
            row.push(class(status, hiding));
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
        wrong.is_empty(),
        "{}\nobserved:\n{}",
        wrong.join("\n"),
        observed.join("\n")
    );
}
