//! Time limits over HTTP on a manual clock: deadlines on the office calendar, warning
//! levels in the worklist and on the case.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::*;
use guichet_core::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::json;

async fn level(s: &TestServer, token: String) -> String {
    let (st, v) = s.get("/api/tasks", &token).await;
    assert_eq!(st, StatusCode::OK);
    v["tasks"][0]["level"].as_str().unwrap().to_string()
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
    // The case shows the worst of its limits and open step budgets: red, though its own
    // promised limit (60 days) is far off.
    let case = s.case(id).await;
    assert_eq!(case["level"], "red");
    let promised: DateTime<Utc> = case["promised_due"].as_str().unwrap().parse().unwrap();
    assert!(promised > bj("2025-10-11 09:00"));
}

fn cards_of(case: &serde_json::Value) -> Vec<(String, String)> {
    case["cards"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["kind"].as_str().unwrap().to_string(),
                        c["threshold"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_issued_once_answered_with_a_reason_and_escalated_at_breach() {
    let clock = Arc::new(ManualClock::new(bj("2025-09-26 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk, judge) = (
        s.token("tang.lei").await,
        s.token("song.kai").await,
        s.token("judge.yang").await,
    );
    let (id, _, _) = s.submit(court_case()).await;
    s.act(&filing, id, "intake", "accept", json!({})).await;
    // A second case whose complaint is served in time: its timers must do nothing.
    let (quick, _, _) = s.submit(court_case()).await;
    s.act(&filing, quick, "intake", "accept", json!({})).await;
    s.act(&clerk, quick, "serve_complaint", "approve", json!({}))
        .await;

    s.fire_timers().await;
    assert!(cards_of(&s.case(id).await).is_empty(), "nothing is due yet");
    // 80 % of the 5-day budget is used at the close of 9 October.
    set(&clock, "2025-10-09 18:00");
    s.fire_timers().await;
    s.fire_timers().await;
    assert_eq!(
        cards_of(&s.case(id).await),
        vec![("supervision".into(), "80%".into())],
        "exactly one card"
    );
    assert!(
        cards_of(&s.case(quick).await).is_empty(),
        "a completed step fires nothing"
    );

    // The card reaches the clerk's group and the filing division (supervisor).
    let (_, mine) = s.get("/api/cards", &clerk).await;
    let card = mine["cards"][0].clone();
    assert_eq!(card["step"], "serve_complaint");
    assert_eq!(card["supervisor"], "court.filing");
    let (_, sup) = s.get("/api/cards?answered=false", &filing).await;
    assert_eq!(sup["cards"].as_array().unwrap().len(), 1);
    assert_eq!(
        (sup["total"].as_u64(), sup["offset"].as_u64()),
        (Some(1), Some(0))
    );
    let (_, past) = s.get("/api/cards?answered=false&offset=1", &filing).await;
    assert!(past["cards"].as_array().unwrap().is_empty(), "{past}");
    assert_eq!(past["total"], 1);
    let (st, _) = s.get("/api/cards?limit=0", &filing).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, none) = s.get("/api/cards", &judge).await;
    assert!(none["cards"].as_array().unwrap().is_empty());
    let path = format!(
        "/api/cases/{id}/cards/{}/answer",
        card["id"].as_str().unwrap()
    );
    let (st, _) = s.post(&path, &judge, json!({ "reason": "not mine" })).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.post(&path, &clerk, json!({ "reason": " " })).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = s
        .post(
            &path,
            &clerk,
            json!({ "reason": "defendant moved; new address requested" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = s.post(&path, &clerk, json!({ "reason": "again" })).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, answered) = s.get("/api/cards?answered=true", &filing).await;
    assert_eq!(answered["cards"][0]["answer"]["by"], "song.kai");

    // Past the deadline: an overdue card escalates to the supervisor group.
    set(&clock, "2025-10-11 09:00");
    s.fire_timers().await;
    let c = s.case(id).await;
    assert_eq!(cards_of(&c), warned_then_overdue());
    let actions: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"card_issued")
            && actions.contains(&"card_answered")
            && actions.contains(&"overdue"),
        "{actions:?}"
    );

    // The case moves on to the judge; its judgment step's card goes to the judges. A
    // group sees a case's cards addressed to it, not every card of a case it has one on.
    s.act(&clerk, id, "serve_complaint", "approve", json!({}))
        .await;
    s.act(&judge, id, "hearing", "approve", json!({})).await;
    set(&clock, "2025-10-24 18:00");
    s.fire_timers().await;
    let steps = |v: &serde_json::Value| -> Vec<String> {
        v["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["step"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (_, to_judges) = s.get("/api/cards", &judge).await;
    // Its 10 working days end on the 24th in the morning: warning and breach.
    assert_eq!(steps(&to_judges), ["judgment", "judgment"], "{to_judges}");
    let (_, to_clerks) = s.get("/api/cards", &clerk).await;
    assert_eq!(
        steps(&to_clerks),
        ["serve_complaint", "serve_complaint"],
        "{to_clerks}"
    );
    let (_, to_filing) = s.get("/api/cards", &filing).await;
    assert_eq!(
        to_filing["cards"].as_array().unwrap().len(),
        4,
        "{to_filing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_while_the_server_was_down_fire_once_in_order_after_restart() {
    let clock = Arc::new(ManualClock::new(bj("2025-09-26 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let filing = s.token("tang.lei").await;
    // Enough cases for a burst the scheduler fires on several threads.
    let mut ids = Vec::new();
    for _ in 0..40 {
        let (id, _, _) = s.submit(court_case()).await;
        s.act(&filing, id, "intake", "accept", json!({})).await;
        ids.push(id);
    }
    let mut s = s;
    s.shutdown().await;
    // Down over the whole budget of the step.
    set(&clock, "2025-10-13 09:00");
    let s = s.restart_at(clock.clone()).await;
    // The background scheduler's first pass handles the backlog; wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for &id in &ids {
        loop {
            let c = s.case(id).await;
            if cards_of(&c).len() == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timers did not fire after restart: {c}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let again = s.fire_timers().await;
    assert_eq!(again.cards, 0);
    for &id in &ids {
        let c = s.case(id).await;
        // In order (the warning before the breach), and each once.
        assert_eq!(cards_of(&c), warned_then_overdue());
        let issued: Vec<&serde_json::Value> = c["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["actor"] == "scheduler")
            .collect();
        assert_eq!(issued.len(), 2);
    }
}

/// The court step's cards: the 80 % warning, then the breach.
fn warned_then_overdue() -> Vec<(String, String)> {
    vec![
        ("supervision".into(), "80%".into()),
        ("overdue".into(), "breach".into()),
    ]
}

fn due_of(case: &serde_json::Value, step: &str) -> DateTime<Utc> {
    case["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["step"] == step)
        .unwrap()["due"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_applicant_stops_the_clock_and_moves_every_deadline() {
    let clock = Arc::new(ManualClock::new(bj("2025-09-26 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk) = (s.token("tang.lei").await, s.token("song.kai").await);
    let (id, number, code) = s.submit(court_case()).await;
    let c = s.act(&filing, id, "intake", "accept", json!({})).await;
    assert_eq!(due_of(&c, "serve_complaint"), bj("2025-10-10 17:30"));
    let statutory: DateTime<Utc> = c["statutory_due"].as_str().unwrap().parse().unwrap();

    // Monday 29 September: the clerk asks for two things at once.
    set(&clock, "2025-09-29 10:00");
    let task = s.task_at(&clerk, id, "serve_complaint").await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/supplement"),
            &clerk,
            json!({ "items": ["defendant's address", "power of attorney"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["status"], "supplement");
    assert_eq!(
        v["case"]["supplement"]["items"],
        json!(["defendant's address", "power of attorney"])
    );
    let (_, t) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(t["status"], "supplement");
    // One notice lists everything missing, with the query code to answer with. (This test
    // server has no SMS gateway configured: the notice is kept, failed, saying so.)
    let notice = t["notices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "case.supplement_requested")
        .unwrap_or_else(|| panic!("no supplement notice in {t}"))
        .clone();
    let text = notice["body"].as_str().unwrap();
    for part in ["defendant's address", "power of attorney", code.as_str()] {
        assert!(text.contains(part), "{text}");
    }
    assert_eq!(notice["status"], "failed");
    // While the case waits nothing turns red, and no card is issued.
    set(&clock, "2025-10-13 10:00");
    assert_eq!(level(&s, clerk.clone()).await, "green");
    s.fire_timers().await;
    assert!(cards_of(&s.case(id).await).is_empty());

    // The applicant answers on Monday 13 October: 5 working days were lost
    // (30 Sep, 9, 10, 11 (make-up Saturday) and 13 Oct).
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/track/{number}/supplement"),
            None,
            Some(json!({ "code": code, "materials": [ { "id": "evidence", "file": "poa.pdf" } ] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let c = s.case(id).await;
    assert_eq!(c["status"], "in_progress");
    assert_eq!(due_of(&c, "serve_complaint"), bj("2025-10-16 17:30"));
    let moved: DateTime<Utc> = c["statutory_due"].as_str().unwrap().parse().unwrap();
    assert!(moved > statutory);
    assert_eq!(c["clock_stops"][0]["days"], 5);
    assert_eq!(c["clock_stops"][0]["kind"], "applicant");
    let actions: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.ends_with(&["supplement_requested", "supplemented"]),
        "{actions:?}"
    );
    // The old timers do nothing; the moved limit warns on its new schedule.
    set(&clock, "2025-10-14 18:00");
    s.fire_timers().await;
    assert!(
        cards_of(&s.case(id).await).is_empty(),
        "warned on the old schedule"
    );
    set(&clock, "2025-10-15 18:00");
    s.fire_timers().await;
    assert_eq!(
        cards_of(&s.case(id).await),
        vec![("supervision".to_string(), "80%".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplement_before_acceptance_starts_no_clock() {
    let clock = Arc::new(ManualClock::new(bj("2025-03-03 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let filing = s.token("tang.lei").await;
    let (id, number, code) = s.submit(court_case()).await;
    let task = s.task_at(&filing, id, "intake").await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/supplement"),
            &filing,
            json!({ "items": ["evidence list"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["case"].get("promised_due").is_none());
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/supplement"),
            &filing,
            json!({ "items": ["again"] }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "the intake task is done");
    // Unknown material: refused, nothing changes.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/track/{number}/supplement"),
            None,
            Some(json!({ "code": code, "materials": [ { "id": "nope", "file": "x.pdf" } ] })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    set(&clock, "2025-03-10 10:00");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/track/{number}/supplement"),
            None,
            Some(json!({ "code": code, "materials": [ { "id": "evidence", "file": "e.pdf" } ] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.case(id).await["status"], "submitted");
    // The window decides again; the clock starts at acceptance, on 10 March.
    let c = s.act(&filing, id, "intake", "accept", json!({})).await;
    assert_eq!(due_of(&c, "serve_complaint"), bj("2025-03-17 17:30"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspensions_and_excluded_steps_stop_the_clock_with_a_record() {
    let clock = Arc::new(ManualClock::new(bj("2025-03-03 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk, judge, outsider) = (
        s.token("tang.lei").await,
        s.token("song.kai").await,
        s.token("judge.yang").await,
        s.token("li.wei").await,
    );
    let (id, _, _) = s.submit(court_case()).await;
    let c = s.act(&filing, id, "intake", "accept", json!({})).await;
    let promised: DateTime<Utc> = c["promised_due"].as_str().unwrap().parse().unwrap();
    let (st, _) = s
        .post(
            &format!("/api/cases/{id}/suspend"),
            &outsider,
            json!({ "reason": "x" }),
        )
        .await;
    // A tax officer may not see a court case at all: it does not exist for them.
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post(&format!("/api/cases/{id}/resume"), &clerk, json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "nothing to resume");
    let (st, v) = s
        .post(
            &format!("/api/cases/{id}/suspend"),
            &clerk,
            json!({ "reason": "awaiting expert opinion" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    set(&clock, "2025-03-05 10:00"); // two working days
    let (st, _) = s
        .post(
            &format!("/api/cases/{id}/resume"),
            &clerk,
            json!({ "reason": "opinion received" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let c = s.case(id).await;
    let after: DateTime<Utc> = c["promised_due"].as_str().unwrap().parse().unwrap();
    assert_eq!(c["clock_stops"][0]["days"], 2);
    assert_eq!(c["clock_stops"][0]["reason"], "awaiting expert opinion");
    assert!(after > promised);

    // The hearing is an excluded step: entering it stops the clock, leaving resumes it.
    s.act(&clerk, id, "serve_complaint", "approve", json!({}))
        .await;
    let c = s.case(id).await;
    assert_eq!(c["clock_stop"]["kind"], "excluded_step");
    set(&clock, "2025-03-12 10:00"); // five working days of hearings
    s.act(&judge, id, "hearing", "approve", json!({})).await;
    let c = s.case(id).await;
    assert!(c.get("clock_stop").is_none());
    assert_eq!(c["clock_stops"][1]["days"], 5);
    let last: DateTime<Utc> = c["promised_due"].as_str().unwrap().parse().unwrap();
    assert!(last > after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statutory_limit_is_extended_once_by_the_approver_with_a_reason() {
    let clock = Arc::new(ManualClock::new(bj("2025-03-03 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk, judge) = (
        s.token("tang.lei").await,
        s.token("song.kai").await,
        s.token("judge.yang").await,
    );
    let (id, _, _) = s.submit(court_case()).await;
    let c = s.act(&filing, id, "intake", "accept", json!({})).await;
    let before: DateTime<Utc> = c["statutory_due"].as_str().unwrap().parse().unwrap();
    let (st, _) = s
        .post(
            &format!("/api/cases/{id}/extend"),
            &clerk,
            json!({ "reason": "complex" }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "only the approver group extends");
    let (st, _) = s
        .post(&format!("/api/cases/{id}/extend"), &judge, json!({}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "a reason is required");
    let (st, v) = s
        .post(
            &format!("/api/cases/{id}/extend"),
            &judge,
            json!({ "reason": "expert evidence needed" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let after: DateTime<Utc> = v["case"]["statutory_due"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > before);
    assert_eq!(v["case"]["extension"]["days"], 30);
    assert_eq!(v["case"]["extension"]["by"], "judge.yang");
    let (st, _) = s
        .post(
            &format!("/api/cases/{id}/extend"),
            &judge,
            json!({ "reason": "again" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "only once");
    let c = s.case(id).await;
    let last = c["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["comment"].as_str()),
        (Some("extended"), Some("expert evidence needed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_with_commitment_waits_for_the_promise_and_terminates_if_it_is_broken() {
    let clock = Arc::new(ManualClock::new(bj("2025-03-03 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk) = (s.token("tang.lei").await, s.token("song.kai").await);
    let commit = |by: &str| json!({ "items": ["original of the evidence list"], "by": by });

    // Kept: promised by Friday, delivered on Wednesday.
    let (kept, number, code) = s.submit(court_case()).await;
    let task = s.task_at(&filing, kept, "intake").await;
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/accept-with-commitment"),
            &filing,
            commit("2025-03-01"),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a promise in the past"
    );
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/accept-with-commitment"),
            &filing,
            commit("2025-03-07"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["status"], "in_progress");
    assert_eq!(v["case"]["clock_stop"]["kind"], "applicant");
    s.task_at(&clerk, kept, "serve_complaint").await; // the work goes on meanwhile
    let (_, t) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(t["requested"], json!(["original of the evidence list"]));
    set(&clock, "2025-03-05 10:00");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/track/{number}/supplement"),
            None,
            Some(
                json!({ "code": code, "materials": [ { "id": "evidence", "file": "list.pdf" } ] }),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let c = s.case(kept).await;
    assert!(c.get("commitment").is_none() && c.get("clock_stop").is_none());
    assert_eq!(c["clock_stops"][0]["days"], 2);
    set(&clock, "2025-03-08 10:00");
    s.fire_timers().await;
    assert_eq!(
        s.case(kept).await["status"],
        "in_progress",
        "a kept promise ends nothing"
    );

    // Broken: nothing arrives by the promised date.
    let (broken, _, _) = s.submit(court_case()).await;
    let task = s.task_at(&filing, broken, "intake").await;
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/accept-with-commitment"),
            &filing,
            commit("2025-03-12"),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    set(&clock, "2025-03-12 18:00");
    s.fire_timers().await;
    let c = s.case(broken).await;
    assert_eq!(c["status"], "terminated");
    assert!(c["tasks"].as_array().unwrap().is_empty());
    let last = c["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_step_entered_while_suspended_keeps_the_suspension() {
    let clock = Arc::new(ManualClock::new(bj("2025-03-03 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let (filing, clerk) = (s.token("tang.lei").await, s.token("song.kai").await);
    let (id, _, _) = s.submit(court_case()).await;
    s.act(&filing, id, "intake", "accept", json!({})).await;
    let (st, _) = s
        .post(
            &format!("/api/cases/{id}/suspend"),
            &clerk,
            json!({ "reason": "site inspection" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Serving the complaint leads into the hearing, which is not counted either.
    s.act(&clerk, id, "serve_complaint", "approve", json!({}))
        .await;
    let c = s.case(id).await;
    assert_eq!(c["clock_stop"]["kind"], "suspension");
    assert_eq!(open_steps(&c), vec!["hearing"]);
    set(&clock, "2025-03-05 10:00");
    // The supervisor group (filing division) may resume it.
    let (st, _) = s
        .post(&format!("/api/cases/{id}/resume"), &filing, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.case(id).await["clock_stops"][0]["days"], 2);
}
