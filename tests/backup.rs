//! `guichet backup` while the office works, `guichet restore` into a new data folder: the
//! audit chain verifies, every case acknowledged before the backup began is there, and so
//! are the uploaded files.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::Value;

fn cli(args: &[&str], envs: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_with_every_acknowledged_case() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let _server = spawn_binary(&data, port, &[], None);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    let token_file = data.join("admin.token");
    let admin = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();

    // A case with an uploaded file.
    let json = power_case(400.0).to_string();
    let pdf: &[u8] = b"%PDF-1.7 the site plan";
    let parts: Vec<(String, Option<&str>, &[u8])> = vec![
        ("submission".into(), None, json.as_bytes()),
        ("material.site_plan".into(), Some("plan.pdf"), pdf),
    ];
    let (content_type, body) = multipart(&parts);
    let v: Value = client
        .post(format!("{base}/api/cases"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let with_file = v["case"]["number"].as_str().expect("submitted").to_string();
    let sha = v["case"]["materials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "site_plan")
        .and_then(|m| m["sha256"].as_str())
        .expect("kept with its hash")
        .to_string();

    // Applicants keep applying while the backup runs.
    let acknowledged = Arc::new(Mutex::new(vec![with_file.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, base, acknowledged, stop) = (
            client.clone(),
            base.clone(),
            acknowledged.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v = post_json(
                    &client,
                    &format!("{base}/api/cases"),
                    None,
                    &power_case(400.0),
                )
                .await;
                let number = v["case"]["number"]
                    .as_str()
                    .expect("acknowledged")
                    .to_string();
                acknowledged.lock().unwrap().push(number);
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let copy = tmp.path().join("backup");
    let (copy2, token2) = (copy.clone(), token_file.clone());
    let server = base.clone();
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "backup",
                "--to",
                copy2.to_str().unwrap(),
                "--server",
                &server,
            ],
            &[("GUICHET_TOKEN_FILE", &token2)],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("backup in"));
    assert!(
        before.len() > 1,
        "cases were acknowledged before the backup"
    );

    // Never over an existing folder, and only for the administrator.
    let again = cli(
        &["backup", "--to", copy.to_str().unwrap(), "--server", &base],
        &[("GUICHET_TOKEN_FILE", &token_file)],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // A folder the server cannot make, and a relative path: 422, nothing written.
    let client2 = reqwest::Client::new();
    for to in ["/proc/no-backup-here", "relative/folder"] {
        let r = client2
            .post(format!("{base}/api/admin/backup"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "to": to }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "{to}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "validation_failed", "{v}");
    }

    // Restored into a new data folder: the chain verifies.
    let restored = tmp.path().join("restored");
    let out = cli(
        &[
            "restore",
            "--from",
            copy.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("audit chain intact"), "{said}");
    let out = cli(
        &[
            "restore",
            "--from",
            copy.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success(), "never over a store");

    // A server on it has every case acknowledged before the backup began, and the file.
    let port2 = free_port();
    let _restored_server = spawn_binary(&restored, port2, &[], None);
    let base2 = format!("http://127.0.0.1:{port2}");
    wait_up(&client, &base2).await;
    for number in &before {
        let c = get_json(&client, &format!("{base2}/api/cases/{number}"), &admin).await;
        assert_eq!(c["number"], number.as_str(), "{c}");
    }
    let file = client
        .get(format!("{base2}/api/cases/{with_file}/files/{sha}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), reqwest::StatusCode::OK);
    assert_eq!(&file.bytes().await.unwrap()[..], pdf);
}
