//! Kill -9 in the middle of traffic: every transition acknowledged to a client is there
//! after the restart, and case numbers have no gaps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transitions_survive_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = spawn_binary(&data, port, &[], None);
    wait_up(&client, &base).await;
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let token = issue_token(&client, &base, &admin, "zhou.qiang").await;
    let auditor = issue_token(&client, &base, &admin, "audit.zhang").await;

    // (case id, number, rev after the last acknowledged action)
    let acked: Arc<Mutex<Vec<(u64, String, u64)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, base, token, acked) =
            (client.clone(), base.clone(), token.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Ok(r) = client
                    .post(format!("{base}/api/cases"))
                    .json(&power_case(800.0))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let case = &v["case"];
                let (id, number) = (
                    case["id"].as_u64().unwrap(),
                    case["number"].as_str().unwrap().to_string(),
                );
                acked
                    .lock()
                    .unwrap()
                    .push((id, number.clone(), case["rev"].as_u64().unwrap()));
                let task = case["tasks"][0]["id"].as_str().unwrap().to_string();
                let Ok(r) = client
                    .post(format!("{base}/api/tasks/{task}/complete"))
                    .bearer_auth(&token)
                    .json(&json!({ "outcome": "accept" }))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let rev = v["case"]["rev"].as_u64().unwrap();
                acked.lock().unwrap().push((id, number, rev));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    for w in workers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too little traffic before the kill: {}",
        acked.len()
    );

    let _child = spawn_binary(&data, port, &[], None);
    wait_up(&client, &base).await;
    let mut max_number = 0;
    for (id, number, rev) in &acked {
        let r = client
            .get(format!("{base}/api/cases/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged case {number} lost"
        );
        let c: Value = r.json().await.unwrap();
        assert!(
            c["rev"].as_u64().unwrap() >= *rev,
            "case {number}: acknowledged rev {rev} lost: {c}"
        );
        assert_eq!(
            c["history"].as_array().unwrap().len() as u64,
            c["history_len"].as_u64().unwrap()
        );
        max_number = max_number.max(number.rsplit('-').next().unwrap().parse::<u64>().unwrap());
        // The audit chain is written in blocks before each flush: every acknowledged
        // transition has its entry.
        let url = format!("{base}/api/audit?target=case:{id}&limit=100");
        let v = get_json(&client, &url, &auditor).await;
        let transitions = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"].as_str().unwrap().starts_with("case."))
            .count() as u64;
        assert!(
            transitions >= *rev,
            "case {number}: {transitions} audit entries for {rev} acknowledged transitions"
        );
    }
    let v = get_json(&client, &format!("{base}/api/audit/verify"), &auditor).await;
    assert_eq!(v["ok"], true, "audit chain broken by the kill: {v}");
    // No gaps: every number up to the highest acknowledged one leads to a case.
    let prefix = acked[0].1.rsplit_once('-').unwrap().0.to_string();
    for n in 1..=max_number {
        let r = client
            .get(format!("{base}/api/cases/{prefix}-{n:06}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "number {n} missing");
    }
    // And numbering continues right after the last number that exists.
    let v = post_json(
        &client,
        &format!("{base}/api/cases"),
        None,
        &power_case(10.0),
    )
    .await;
    let next: u64 = v["case"]["number"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next > max_number);
    for n in max_number + 1..next {
        let r = client
            .get(format!("{base}/api/cases/{prefix}-{n:06}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "gap at {n} before the new case {next}"
        );
    }
}

/// A notice is written with its transition: killed before it could be delivered (the
/// gateway was down), it is delivered by the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_acknowledged_before_a_kill_is_delivered_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gateway = free_port();
    let config = tmp.path().join("guichet.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins.webhook.channels.sms]\nurl = \"http://127.0.0.1:{gateway}/sms\"\nsecret = \"0123456789abcdef0123\"\n\n[outbox]\nfirst_retry_ms = 50\nmax_retry_ms = 100\n"
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let serve = |d: &std::path::Path| spawn_binary(d, port, &args, None);
    let mut child = serve(&data);
    wait_up(&client, &base).await;
    let r = client
        .post(format!("{base}/api/cases"))
        .json(&power_case(100.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let number = v["case"]["number"].as_str().unwrap().to_string();
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let rx = Receiver::default();
    rx.serve(
        tokio::net::TcpListener::bind(("127.0.0.1", gateway))
            .await
            .unwrap(),
    );
    let _child = serve(&data);
    wait_up(&client, &base).await;
    for _ in 0..200 {
        if !rx.hits("/sms").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hits = rx.hits("/sms");
    assert!(
        !hits.is_empty(),
        "the receipt was not delivered after the restart"
    );
    let body: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert!(body["body"].as_str().unwrap().contains(&number), "{body}");
}
