//! The office's supervision centre (督查室): supervises every department without being
//! named supervisor of each group.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn registration() -> serde_json::Value {
    json!({
        "procedure": "tax.registration",
        "applicant": { "id": "91310000MA1FL0001X", "name": "Alpha Trading" },
        "data": { "company": "Alpha Trading", "credit_code": "91310000MA1FL0001X" },
        "materials": [
            { "id": "business_licence", "file": "licence.pdf" },
            { "id": "legal_rep_id", "file": "id.pdf" },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervision_centre_watches_every_department_issues_cards_and_reassigns() {
    let s = TestServer::start().await;
    let (power, _, _) = s.submit(power_case(100.0)).await;
    let (tax, _, _) = s.submit(registration()).await;
    let du = s.token("du.chao").await;
    let (_, me) = s.get("/api/me", &du).await;
    assert!(
        me["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("supervision")),
        "{me}"
    );
    // The board holds the work of both departments.
    let (st, board) = s.get("/api/board", &du).await;
    assert_eq!(st, StatusCode::OK, "{board}");
    let cases: Vec<u64> = board["tasks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["case_id"].as_u64().unwrap())
        .collect();
    assert!(cases.contains(&power) && cases.contains(&tax), "{board}");
    // A card on the power company's case reaches the holders' inbox.
    let (st, v) = s
        .post(
            &format!("/api/cases/{power}/cards"),
            &du,
            json!({ "reason": "Three days at the window: why?" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let clerk = s.token("zhou.qiang").await;
    let (_, inbox) = s.get("/api/inbox", &clerk).await;
    assert!(
        inbox["notices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["case_number"] == v["case"]["number"]),
        "the holder's inbox: {inbox}"
    );
    // A tax task passed to another member of its group.
    let task = board["tasks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["case_id"] == tax)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/reassign"),
            &du,
            json!({ "staff": "li.wei", "comment": "Wang Fang is away" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // An ordinary clerk of one department has none of this.
    let (st, _) = s.get("/api/board", &clerk).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
