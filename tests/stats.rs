//! Statistics over HTTP: the figures of real cases as JSON and as CSV, for staff only,
//! with the period chosen by name or by dates.

mod common;

use std::sync::Arc;

use common::*;
use guichet_core::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn registration(company: &str) -> Value {
    json!({
        "procedure": "tax.registration",
        "applicant": applicant("91310000MA1FL0001X"),
        "data": { "company": company, "credit_code": "91310000MA1FL0001X" },
        "materials": [
            { "id": "business_licence", "file": "licence.pdf" },
            { "id": "legal_rep_id", "file": "id.pdf" },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_read_the_figures_of_a_period_as_json_and_csv() {
    let clock = Arc::new(ManualClock::new(bj("2026-11-30 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let window = s.token("wang.fang").await;
    let officer = s.token("li.wei").await;
    let (a, _, _) = s.submit(registration("Alpha Ltd")).await;
    let (b, _, _) = s.submit(registration("Beta Ltd")).await;
    for id in [a, b] {
        s.act(&window, id, "intake", "accept", json!({})).await;
    }
    // Alpha decided the next working day (its promise: one day); Beta three days later.
    set(&clock, "2026-12-01 11:00");
    s.act(&officer, a, "register", "approve", json!({})).await;
    set(&clock, "2026-12-03 15:00");
    s.act(&officer, b, "register", "approve", json!({})).await;

    let (st, v) = s
        .get(
            "/api/stats?period=month&date=2026-12-15&by=procedure",
            &officer,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = &v["report"];
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("2026-12-01"), Some("2026-12-31"))
    );
    let row = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "tax.registration")
        .unwrap()
        .clone();
    // Received and accepted in November: not this month's; decided in December: this one.
    assert_eq!(
        (row["received"].as_i64(), row["approved"].as_i64()),
        (Some(0), Some(2))
    );
    assert_eq!(row["mean_days"], 2.0);
    assert_eq!(row["on_time_promised"], 0.5);
    assert_eq!(row["on_time_statutory"], 1.0);
    assert_eq!(row["speed_up"], 0.6);

    // The same as a range, by day; November holds the arrivals.
    let (_, v) = s
        .get("/api/stats?from=2026-11-30&to=2026-12-03&by=day", &officer)
        .await;
    let days: Vec<(String, i64)> = v["report"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["received"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days[0], ("2026-11-30".to_string(), 2));

    // A spreadsheet: a header, the row, the total.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/stats?period=month&date=2026-12-15&format=csv",
            s.base
        ))
        .bearer_auth(&officer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("guichet-rows-2026-12-01-2026-12-31.csv"));
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("key,name,received,accepted,"), "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("tax.registration,Tax registration,0,0,")),
        "{csv}"
    );
    assert!(lines.last().unwrap().starts_with("total,total,"), "{csv}");
    let (st, _) = s
        .get(
            "/api/stats?period=month&date=2026-12-15&format=csv&table=steps",
            &officer,
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Wrong periods are refused with the reason; the public reads nothing.
    for bad in [
        "/api/stats?from=2026-12-01",
        "/api/stats?period=month&from=2026-12-01&to=2026-12-02",
        "/api/stats?from=2026-12-31&to=2026-12-01",
        "/api/stats?period=fortnight",
        "/api/stats?format=xml",
    ] {
        let (st, v) = s.get(bad, &officer).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["code"], "bad_query", "{v}");
    }
    let r = reqwest::get(format!("{}/api/stats", s.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
