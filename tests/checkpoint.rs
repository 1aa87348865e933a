//! Store checkpoints in a running server: once enough was written and the office is quiet,
//! the store reopens in place; requests meanwhile wait and then go on, nothing is lost,
//! and the checkpoint is in the audit log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_server_checkpoints_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        |c| {
            c.checkpoint_mb = 1;
            c.checkpoint_idle_secs = 1;
        },
    )
    .await;
    let customer = s.token("zhou.qiang").await;
    let auditor = s.token("audit.zhang").await;
    // Over a megabyte of transitions.
    let mut ids = Vec::new();
    for _ in 0..800 {
        let (id, _, _) = s.submit(power_case(100.0)).await;
        ids.push(id);
    }
    let checkpointed = async {
        loop {
            let (_, v) = s.get("/api/audit?action=store.maintained", &auditor).await;
            if !v["entries"].as_array().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), checkpointed)
        .await
        .expect("no checkpoint within 20 s of a quiet office");
    // Everything is there, and work goes on.
    for id in &ids {
        let c = s.case(*id).await;
        assert_eq!(c["status"], "submitted");
    }
    let c = s
        .act(&customer, ids[0], "intake", "accept", json!({}))
        .await;
    assert_eq!(c["status"], "in_progress");
    let s = s.restart().await;
    let c = s.case(ids[0]).await;
    assert_eq!(c["status"], "in_progress");
    let (st, v) = s
        .get("/api/audit/verify", &s.token("audit.zhang").await)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
}
