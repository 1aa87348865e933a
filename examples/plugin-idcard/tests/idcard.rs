//! The plugin in a real server: the script calls `idcard::valid` while routing, and the
//! plugin's step handler completes the automatic identity check.

use std::sync::Arc;
use std::time::Duration;

use guichet::config::Config;
use guichet_core::clock::SystemClock;
use guichet_example_idcard::IdCard;
use serde_json::{json, Value};

#[tokio::test]
async fn a_valid_id_is_checked_by_the_plugin_and_an_invalid_one_goes_to_a_person() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        scripts: concat!(env!("CARGO_MANIFEST_DIR"), "/scripts").into(),
        data: tmp.path().join("data"),
        ..Config::default()
    };
    let engine =
        guichet::server::open_with(&cfg, Arc::new(SystemClock), vec![Box::new(IdCard)]).unwrap();
    let admin = std::fs::read_to_string(guichet::server::admin_token_path(&cfg.data)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        guichet::server::serve(listener, engine, &cfg, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/api/admin/tokens"))
        .bearer_auth(admin.trim())
        .json(&json!({ "subject": "zhang.li" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clerk = token["token"].as_str().unwrap().to_string();

    let mut cases = Vec::new();
    for id in ["11010519491231002X", "110101199001011234"] {
        let v: Value = http
            .post(format!("{base}/api/cases"))
            .json(&json!({
                "procedure": "residence.permit",
                "applicant": { "id": id, "name": "Applicant" },
                "data": { "address": "1 Example Road" },
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let case = v["case"]["id"].as_u64().unwrap();
        let intake = v["case"]["tasks"][0]["id"].as_str().unwrap().to_string();
        let r = http
            .post(format!("{base}/api/tasks/{intake}/complete"))
            .bearer_auth(&clerk)
            .json(&json!({ "outcome": "accept" }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        cases.push(case);
    }

    let case = |id: u64| {
        let http = http.clone();
        let (base, admin) = (base.clone(), admin.trim().to_string());
        async move {
            http.get(format!("{base}/api/cases/{id}"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // The in-process worker polls; give it a few rounds.
    let mut valid = Value::Null;
    for _ in 0..100 {
        valid = case(cases[0]).await;
        if valid["current_steps"] == json!(["Review"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(valid["current_steps"], json!(["Review"]), "{valid}");
    assert_eq!(valid["data"]["birth_date"], "1949-12-31");
    assert_eq!(valid["data"]["id_verified"], true);
    assert!(valid["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "plugin:in-process:idcard-check" && e["action"] == "completed"));

    let invalid = case(cases[1]).await;
    assert_eq!(
        invalid["current_steps"],
        json!(["Manual identity check"]),
        "{invalid}"
    );

    let _ = stop.send(());
    server.await.unwrap();
}
