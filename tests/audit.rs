//! The audit log: every kind of action is recorded, the chain verifies, the log exports
//! as JSON lines, and an edit made behind the server's back (to an audit entry, or to a
//! case's history) is caught by `guichet audit verify`, which names the entry.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn verify_cli(data: &std::path::Path) -> (bool, String) {
    audit_cli("verify", data)
}

fn audit_cli(action: &str, data: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["audit", action, "--data"])
        .arg(data)
        .output()
        .expect("run guichet");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_chained_exported_and_tampering_is_caught() {
    let mut s = TestServer::start().await;
    let auditor = s.token("audit.zhang").await;
    let window = s.token("zhou.qiang").await;
    let (id, _, _) = s.submit(power_case(500.0)).await;
    s.act(&window, id, "intake", "reject", json!({})).await;
    // Refused: an outsider's look at the case, and a bad token.
    let (st, _) = s.get(&format!("/api/cases/{id}"), "gch_not_a_token").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.get("/api/admin/tokens", &window).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post("/api/admin/scripts/reload", &s.admin.clone(), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);

    let (st, v) = s.get("/api/audit?limit=1000", &auditor).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let entries = v["entries"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "token.issued",
        "login",
        "case.submitted",
        "authorization.refused",
        "scripts.reloaded",
    ] {
        assert!(
            actions.iter().any(|a| a.starts_with(want)),
            "no {want} in {actions:?}"
        );
    }
    // Each entry points at the one before.
    for w in entries.windows(2) {
        assert_eq!(w[1]["prev"], w[0]["hash"]);
        assert_eq!(w[1]["seq"].as_u64(), w[0]["seq"].as_u64().map(|n| n + 1));
    }
    let submitted = entries
        .iter()
        .find(|e| e["action"] == "case.submitted")
        .unwrap();
    assert_eq!(submitted["event"]["case"], id);

    // An auditor's questions: what did this clerk do to cases; everything about one case.
    let (st, v) = s
        .get("/api/audit?actor=zhou.qiang&action=case.", &auditor)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mine = v["entries"].as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|e| e["actor"] == "zhou.qiang" && e["action"].as_str().unwrap().starts_with("case.")));
    assert!(v["next"].is_null(), "the log was read to its end");
    let (_, v) = s
        .get(&format!("/api/audit?target=case:{id}&limit=1"), &auditor)
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["action"], "case.submitted");
    let next = v["next"].as_u64().expect("more to read");
    let (_, v) = s
        .get(
            &format!("/api/audit?target=case:{id}&from={next}"),
            &auditor,
        )
        .await;
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["target"] == format!("case:{id}")));
    assert!(!v["entries"].as_array().unwrap().is_empty());
    let (st, _) = s.get("/api/audit?since=yesterday", &auditor).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A page larger than the documented maximum is refused, not silently shortened.
    for limit in [0, 1001, 100_000_000] {
        let (st, v) = s.get(&format!("/api/audit?limit={limit}"), &auditor).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{limit}: {v}");
        assert_eq!(v["code"], "bad_query");
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/api/audit/export", s.base))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    let media = resp.headers()["content-type"].to_str().unwrap().to_string();
    let (_, doc) = s.call("GET", "/api/openapi.json", None, None).await;
    let declared = doc["paths"]["/api/audit/export"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap();
    assert!(declared.contains_key(&media), "{media} not in {declared:?}");

    let (st, v) = s.get("/api/audit/verify", &auditor).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
    let (st, v) = s.get("/api/audit/export", &auditor).await;
    assert_eq!(st, StatusCode::OK);
    let lines: Vec<Value> = v
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= entries.len());
    assert_eq!(lines[0]["seq"], 0);

    // Behind the server's back: stop it, check the CLI agrees, then edit the store.
    s.shutdown().await;
    let data = s.data.clone();
    let (ok, out) = verify_cli(&data);
    assert!(ok, "{out}");
    // The CLI's export: the same entries the API exported, in order, and none missing.
    let (ok, out) = audit_cli("export", &data);
    assert!(ok, "{out}");
    let exported: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(exported.len() >= lines.len());
    assert_eq!(exported[..lines.len()], lines[..]);
    for (n, e) in exported.iter().enumerate() {
        assert_eq!(e["seq"], n as u64);
    }
    let db = sled::open(data.join("store")).unwrap();
    let audit = db.open_tree("audit").unwrap();
    // The chain is stored in blocks (entries one per line under the first's number): edit
    // the first entry of the fourth block.
    let (key, value) = audit.iter().nth(3).unwrap().unwrap();
    let seq = u64::from_be_bytes(key.as_ref().try_into().unwrap());
    let original = value.to_vec();
    let mut lines: Vec<Vec<u8>> = value.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let mut entry: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(entry["seq"], seq);
    entry["actor"] = json!("someone.else");
    lines[0] = serde_json::to_vec(&entry).unwrap();
    audit.insert(&key, lines.join(&b'\n')).unwrap();
    db.flush().unwrap();
    drop((audit, db));
    let (ok, out) = verify_cli(&data);
    assert!(!ok, "tampering not caught: {out}");
    assert!(out.contains(&format!("entry {seq}")), "{out}");

    // Put it back, and change a case's history instead: the entry vouching for it breaks.
    let db = sled::open(data.join("store")).unwrap();
    let audit = db.open_tree("audit").unwrap();
    audit.insert(&key, original).unwrap();
    let state = db.open_tree("state").unwrap();
    let mut hkey = vec![b'h'];
    hkey.extend_from_slice(&id.to_be_bytes());
    hkey.extend_from_slice(&1u64.to_be_bytes());
    let stored = state.get(&hkey).unwrap().unwrap().to_vec();
    // The event is the stored value's first line; the tasks it closed follow.
    let (event_line, closed_line) =
        stored.split_at(stored.iter().position(|&b| b == b'\n').unwrap());
    let mut closed: Value = serde_json::from_slice(&closed_line[1..]).unwrap();
    assert_eq!(closed[0]["state"], "completed", "{closed}");
    closed[0]["completed_by"] = json!("nobody");
    let mut edited = event_line.to_vec();
    edited.push(b'\n');
    edited.extend(serde_json::to_vec(&closed).unwrap());
    state.insert(&hkey, edited).unwrap();
    db.flush().unwrap();
    drop((audit, state, db));
    let (ok, out) = verify_cli(&data);
    assert!(!ok, "closed task edit not caught: {out}");
    assert!(out.contains("history event 1"), "{out}");

    // And the event itself.
    let db = sled::open(data.join("store")).unwrap();
    let state = db.open_tree("state").unwrap();
    let mut ev: Value = serde_json::from_slice(event_line).unwrap();
    assert_ne!(ev["action"], "submitted");
    ev["actor"] = json!("nobody");
    state
        .insert(&hkey, serde_json::to_vec(&ev).unwrap())
        .unwrap();
    db.flush().unwrap();
    drop((state, db));
    let (ok, out) = verify_cli(&data);
    assert!(!ok, "history edit not caught: {out}");
    assert!(out.contains("history event 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_are_refused() {
    let clock = std::sync::Arc::new(guichet_core::clock::ManualClock::new(bj(
        "2026-03-02 09:00",
    )));
    let s = TestServer::start_at(clock.clone()).await;
    let (st, v) = s
        .post(
            "/api/admin/tokens",
            &s.admin,
            json!({ "subject": "li.wei", "expires_in_days": 2 }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let short = v["token"].as_str().unwrap().to_string();
    assert!(v["record"]["expires_at"].is_string());
    let (st, _) = s.get("/api/tasks", &short).await;
    assert_eq!(st, StatusCode::OK);
    set(&clock, "2026-03-04 09:01");
    let (st, v) = s.get("/api/tasks", &short).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");

    let other = s.token("zhao.min").await;
    let (_, list) = s.get("/api/admin/tokens", &s.admin).await;
    let rec = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|t| t["subject"] == "zhao.min")
        .unwrap()
        .clone();
    // Listing never shows a secret.
    assert!(!list.to_string().contains(&other));
    let (st, _) = s
        .call(
            "DELETE",
            &format!("/api/admin/tokens/{}", rec["id"].as_str().unwrap()),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/api/tasks", &other).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .post(
            "/api/admin/tokens",
            &s.admin,
            json!({ "subject": "li.wei", "expires_in_days": 5000 }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

/// The real binary with debug logging: no secret reaches its log or the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = tmp.path().join("server.log");
    let mut child = spawn_binary(&tmp.path().join("data"), port, &[], Some(&log));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    let admin = std::fs::read_to_string(tmp.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let staff = issue_token(&client, &base, &admin, "audit.zhang").await;
    let sub = post_json(
        &client,
        &format!("{base}/api/cases"),
        None,
        &power_case(100.0),
    )
    .await;
    let applicant = sub["applicant_token"].as_str().unwrap().to_string();
    let code = sub["query_code"].as_str().unwrap().to_string();
    let number = sub["case"]["number"].as_str().unwrap().to_string();
    for t in [
        &staff,
        &applicant,
        &admin,
        &"gch_wrong_secret_0123456789".to_string(),
    ] {
        let _ = client
            .get(format!("{base}/api/me"))
            .bearer_auth(t)
            .send()
            .await;
    }
    let _ = client
        .get(format!("{base}/api/track/{number}?code={code}"))
        .send()
        .await;
    let export = client
        .get(format!("{base}/api/audit/export"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(export.lines().count() > 3);
    let _ = child.0.kill();
    let _ = child.0.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("token issued"), "debug log is empty? {text}");
    for secret in [
        &admin,
        &staff,
        &applicant,
        &code,
        &"gch_wrong_secret_0123456789".to_string(),
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the server log"
        );
        assert!(
            !export.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }
}
