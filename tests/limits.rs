//! Time limits over HTTP on a manual clock: deadlines on the office calendar, warning
//! levels in the worklist and on the case.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use guichet_core::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::json;

fn bj(s: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&naive)
        .unwrap()
        .with_timezone(&Utc)
}

async fn level(s: &TestServer, token: String) -> String {
    let (st, v) = s.get("/api/tasks", &token).await;
    assert_eq!(st, StatusCode::OK);
    v["tasks"][0]["level"].as_str().unwrap().to_string()
}

fn set(clock: &ManualClock, to: &str) {
    let now = guichet_core::clock::Clock::now(clock);
    clock.advance(bj(to) - now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn court_limits_run_on_working_days_and_turn_yellow_then_red() {
    // Friday 26 September 2025, just before the National Day holidays.
    let clock = Arc::new(ManualClock::new(bj("2025-09-26 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk) = (s.token("tang.lei").await, s.token("song.kai").await);
    let (id, _, _) = s
        .submit(json!({
            "procedure": "court.civil",
            "applicant": applicant("110101199001011234"),
            "data": { "plaintiff": "Zhang San", "defendant": "Acme Ltd", "procedure_kind": "simplified" },
            "materials": [ { "id": "complaint", "file": "complaint.pdf" } ],
        }))
        .await;
    let c = s.act(&filing, id, "intake", "accept", json!({})).await;
    // Serve within 5 working days: 28 Sep (make-up Sunday), 29, 30 Sep, then 9 and 10 Oct.
    let task = c["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["step"] == "serve_complaint")
        .unwrap()
        .clone();
    assert_eq!(
        task["due"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        bj("2025-10-10 17:30")
    );
    let promised: DateTime<Utc> = c["promised_due"].as_str().unwrap().parse().unwrap();
    let statutory: DateTime<Utc> = c["statutory_due"].as_str().unwrap().parse().unwrap();
    assert!(promised < statutory);

    assert_eq!(level(&s, clerk.clone()).await, "green");
    // 9 October at close: 4 of 5 days used (80 % of the step's budget).
    set(&clock, "2025-10-09 18:00");
    assert_eq!(level(&s, clerk.clone()).await, "yellow");
    set(&clock, "2025-10-11 09:00");
    assert_eq!(level(&s, clerk.clone()).await, "red");
    let (_, red) = s.get("/api/tasks?level=red", &clerk).await;
    assert_eq!(red["tasks"].as_array().unwrap().len(), 1);
    let (_, green) = s.get("/api/tasks?level=green", &clerk).await;
    assert!(green["tasks"].as_array().unwrap().is_empty());
    // The case's own promised limit (60 days) is still green.
    assert_eq!(s.case(id).await["level"], "green");
}
