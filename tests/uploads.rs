//! Materials are files: uploaded with the application (`multipart/form-data`), checked
//! by size, extension and content, kept by their SHA-256, named in the case and its
//! history (so the audit chain vouches for them), and given to staff as attachments.

mod common;

use std::sync::Arc;

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PLAN: &[u8] = b"AC1032 a site plan with twenty supply points";
const LICENCE: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF";

/// The example power case, its materials to come as files.
fn application() -> Value {
    let mut body = power_case(800.0);
    body["materials"] = json!([]);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_with_its_files_names_them_by_hash_and_staff_download_them() {
    let s = TestServer::start().await;
    let (st, v) = s
        .submit_files(
            None,
            application(),
            &[
                ("licence", "营业执照.pdf", LICENCE),
                ("site_plan", "plan.DWG", PLAN),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["case"]["id"].as_u64().unwrap();
    let materials = v["case"]["materials"].as_array().unwrap();
    assert_eq!(materials.len(), 2);
    let licence = materials.iter().find(|m| m["id"] == "licence").unwrap();
    let sha = licence["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    assert_eq!(licence["size"].as_u64(), Some(LICENCE.len() as u64));
    // The submission's history event names the files: the audit chain covers it.
    let case = s.case(id).await;
    assert_eq!(case["history"][0]["materials"].as_array().unwrap().len(), 2);
    let auditor = s.token("audit.zhang").await;
    let (_, verdict) = s.get("/api/audit/verify", &auditor).await;
    assert_eq!(verdict["ok"], true);
    // Staff who see the case download it as an attachment, byte for byte.
    let clerk = s.token("zhou.qiang").await;
    let r = reqwest::Client::new()
        .get(format!("{}/api/cases/{id}/files/{sha}", s.base))
        .bearer_auth(&clerk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''%E8%90%A5"),
        "{disposition}"
    );
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(&r.bytes().await.unwrap()[..], LICENCE);
    // Someone who may not see the case learns nothing; a hash the case does not name is
    // not served through it.
    let judge = s.token("judge.yang").await;
    let (st, _) = s.get(&format!("/api/cases/{id}/files/{sha}"), &judge).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (other, _, _) = s.submit(power_case(100.0)).await;
    let (st, _) = s
        .get(&format!("/api/cases/{other}/files/{sha}"), &clerk)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Kept once however often it comes.
    let (st, again) = s
        .submit_files(
            None,
            application(),
            &[
                ("licence", "copy.pdf", LICENCE),
                ("site_plan", "p.dwg", PLAN),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let again_sha = again["case"]["materials"][0]["sha256"].as_str().unwrap();
    assert!(again_sha == sha || again["case"]["materials"][1]["sha256"] == sha.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_what_they_claim_or_too_large_are_refused_with_the_form() {
    let s = TestServer::start().await;
    let mut big = b"%PDF-".to_vec();
    big.resize(11 << 20, b' ');
    let mut body = application();
    body["data"]["capacity_kva"] = json!(0);
    let (st, v) = s
        .submit_files(
            None,
            body,
            &[
                (
                    "licence",
                    "licence.pdf",
                    b"MZ\x90\x00 this program cannot be run",
                ),
                ("site_plan", "plan.dwg", &big),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let problems: Vec<(String, String)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let about = |f: &str| problems.iter().any(|(field, _)| field == f);
    assert!(
        about("material.licence") && about("material.site_plan") && about("capacity_kva"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|(_, m)| m.contains("not a PDF file")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|(_, m)| m.contains("larger than 10 MiB")),
        "{problems:?}"
    );
    // Nothing was created.
    let clerk = s.token("zhou.qiang").await;
    let (_, tasks) = s.get("/api/tasks", &clerk).await;
    assert!(tasks["tasks"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_servers_limit_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        |c| c.max_upload_mb = 1,
    )
    .await;
    let mut big = b"%PDF-".to_vec();
    big.resize(2 << 20, b' ');
    let json = application().to_string();
    let (content_type, body) = multipart(&[
        ("submission".into(), None, json.as_bytes()),
        ("material.licence".into(), Some("l.pdf"), &big),
    ]);
    // Over a raw connection that reads the answer before it has sent the body: the server
    // answers at once from the declared length (a client still writing would see its
    // connection closed).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(
        format!(
            "POST /api/cases HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    conn.write_all(&body[..1024]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = conn.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    // A JSON body keeps its own, smaller limit.
    let (st, _) = s
        .submit_files(
            None,
            application(),
            &[("licence", "l.pdf", LICENCE), ("site_plan", "p.dwg", PLAN)],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applicant_supplies_a_requested_file_through_the_api() {
    let s = TestServer::start().await;
    let mut named = application();
    named["materials"] = json!([{ "id": "site_plan", "file": "plan.dwg" }]);
    let (st, v) = s
        .submit_files(None, named, &[("licence", "l.pdf", LICENCE)])
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (id, number) = (
        v["case"]["id"].as_u64().unwrap(),
        v["case"]["number"].as_str().unwrap().to_string(),
    );
    let code = v["query_code"].as_str().unwrap().to_string();
    let customer = s.token("zhou.qiang").await;
    let task = s.task_at(&customer, id, "intake").await;
    s.post(&format!("/api/tasks/{task}/claim"), &customer, json!({}))
        .await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/supplement"),
            &customer,
            json!({ "items": ["Site plan"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Files alone (the JSON part may be left out), the code in it when there is one.
    let client = reqwest::Client::new();
    let supply = |parts: Vec<(String, Option<&'static str>, &'static [u8])>| {
        let (content_type, body) = multipart(&parts);
        client
            .post(format!("{}/api/track/{number}/supplement", s.base))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = supply(vec![("supplement".into(), None, br#"{"code":"WRONGONE"}"#)])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: &'static [u8] = format!(r#"{{"code":"{code}"}}"#).into_bytes().leak();
    let r = supply(vec![
        ("supplement".into(), None, body),
        ("material.site_plan".into(), Some("p.dwg"), b"MZ no plan"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["problems"][0]["field"], "material.site_plan", "{v}");
    let r = supply(vec![
        ("supplement".into(), None, body),
        ("material.site_plan".into(), Some("p.dwg"), PLAN),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let case = s.case(id).await;
    assert_eq!(case["status"], "submitted", "back at the window: {case}");
    assert!(case["materials"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "site_plan" && m["sha256"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_comes_with_the_files_of_each_service() {
    let s = TestServer::start().await;
    let bundle = json!({
        "applicant": applicant("91310000MA1TX0004A"),
        "items": [
            { "procedure": "tax.registration",
              "data": { "company": "Riverside Tea Ltd", "credit_code": "91310000MA1TX0004A" } },
            { "procedure": "tax.invoice_purchase",
              "data": { "invoice_kind": "ordinary", "monthly_quantity": 25 } }
        ]
    })
    .to_string();
    let client = reqwest::Client::new();
    let send = |parts: Vec<(String, Option<&'static str>, &'static [u8])>| {
        let (content_type, body) = multipart(&parts);
        client
            .post(format!("{}/api/bundles/tax.new_business/cases", s.base))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json: &'static [u8] = bundle.into_bytes().leak();
    // A file must say which service it is for.
    let r = send(vec![
        ("bundle".into(), None, json),
        ("material.business_licence".into(), Some("l.pdf"), LICENCE),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A missing file is named with its service.
    let r = send(vec![
        ("bundle".into(), None, json),
        (
            "material.tax.registration:business_licence".into(),
            Some("l.pdf"),
            LICENCE,
        ),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["problems"][0]["field"], "tax.registration:material.legal_rep_id",
        "{v}"
    );
    let r = send(vec![
        ("bundle".into(), None, json),
        (
            "material.tax.registration:business_licence".into(),
            Some("l.pdf"),
            LICENCE,
        ),
        (
            "material.tax.registration:legal_rep_id".into(),
            Some("id.pdf"),
            LICENCE,
        ),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let registration = cases
        .iter()
        .find(|c| c["procedure"] == "tax.registration")
        .unwrap();
    assert!(registration["materials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["sha256"].is_string()));
}
