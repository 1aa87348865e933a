//! Case search over HTTP: filters, a stable cursor, and only the cases the caller may see.

mod common;

use std::sync::Arc;

use common::*;
use guichet_core::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn numbers(v: &Value) -> Vec<String> {
    v["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|c| c["number"].as_str().unwrap().to_string())
        .collect()
}

fn registration(company: &str, applicant_id: &str) -> Value {
    json!({
        "procedure": "tax.registration",
        "applicant": { "id": applicant_id, "name": company },
        "data": { "company": company, "credit_code": "91310000MA1FL0001X" },
        "materials": [
            { "id": "business_licence", "file": "licence.pdf" },
            { "id": "legal_rep_id", "file": "id.pdf" },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_find_the_cases_they_may_see_a_page_at_a_time() {
    let clock = Arc::new(ManualClock::new(bj("2026-11-30 10:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let window = s.token("wang.fang").await;
    let officer = s.token("li.wei").await;
    // Seven tax registrations, one a day, and two power connections.
    let mut tax = Vec::new();
    for (i, company) in ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta"]
        .iter()
        .enumerate()
    {
        set(&clock, &format!("2026-12-0{} 10:00", i + 1));
        let (id, number, _) = s
            .submit(registration(
                &format!("{company} Trading"),
                &format!("ID{i}"),
            ))
            .await;
        tax.push((id, number));
    }
    let (p1, power1, _) = s.submit(power_case(100.0)).await;
    let (_, power2, _) = s.submit(power_case(200.0)).await;
    // Alpha accepted and decided; Beta refused at the window.
    s.act(&window, tax[0].0, "intake", "accept", json!({}))
        .await;
    s.act(&officer, tax[0].0, "register", "approve", json!({}))
        .await;
    s.act(&window, tax[1].0, "intake", "reject", json!({}))
        .await;

    // The tax officer sees the tax cases, newest first, not the power company's.
    let (st, v) = s.get("/api/cases?limit=3", &officer).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        numbers(&v).iter().collect::<Vec<_>>(),
        [&tax[6].1, &tax[5].1, &tax[4].1]
    );
    // Page by page with the cursor until the end, each case once.
    let mut all = numbers(&v);
    let mut next = v["next"].as_str().map(str::to_string);
    while let Some(after) = next {
        let (_, v) = s
            .get(&format!("/api/cases?limit=3&after={after}"), &officer)
            .await;
        all.extend(numbers(&v));
        next = v["next"].as_str().map(str::to_string);
    }
    let mut expected: Vec<String> = tax.iter().rev().map(|(_, n)| n.clone()).collect();
    assert_eq!(all, expected);
    expected.reverse();
    let (_, v) = s.get("/api/cases?order=oldest&limit=50", &officer).await;
    assert_eq!(numbers(&v), expected);
    assert!(v.get("next").is_none(), "one page holds them all: {v}");

    // Filters, one at a time and together.
    let q = |query: &str| format!("/api/cases?{query}");
    let (_, v) = s.get(&q("status=approved"), &officer).await;
    assert_eq!(numbers(&v).iter().collect::<Vec<_>>(), [&tax[0].1]);
    assert_eq!(v["cases"][0]["applicant_name"], "Alpha Trading");
    let (_, v) = s.get(&q("status=not_accepted"), &officer).await;
    assert_eq!(numbers(&v).iter().collect::<Vec<_>>(), [&tax[1].1]);
    let (_, v) = s.get(&q("applicant=ID3"), &officer).await;
    assert_eq!(numbers(&v).iter().collect::<Vec<_>>(), [&tax[3].1]);
    let (_, v) = s.get(&q("q=epsilon"), &officer).await;
    assert_eq!(numbers(&v).iter().collect::<Vec<_>>(), [&tax[4].1]);
    let (_, v) = s.get(&q(&format!("q={}", &tax[5].1[8..])), &officer).await;
    assert!(numbers(&v).contains(&tax[5].1), "{v}");
    let (_, v) = s
        .get(
            &q("submitted_from=2026-12-02&submitted_to=2026-12-03"),
            &officer,
        )
        .await;
    assert_eq!(
        numbers(&v).iter().collect::<Vec<_>>(),
        [&tax[2].1, &tax[1].1]
    );
    let (_, v) = s.get(&q("decided_from=2026-12-01"), &officer).await;
    assert_eq!(numbers(&v).len(), 2, "approved and refused: {v}");
    let (_, v) = s
        .get(&q("number=TAX-REG-2026&status=submitted"), &officer)
        .await;
    assert_eq!(numbers(&v).len(), 5);
    let (_, v) = s
        .get(&q("level=green&procedure=tax.registration"), &officer)
        .await;
    assert!(
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["level"] == "green"),
        "{v}"
    );
    assert_eq!(numbers(&v).len(), 5, "the open ones: {v}");
    let (_, v) = s.get(&q("department=power"), &officer).await;
    assert!(numbers(&v).is_empty(), "not his department: {v}");

    // The power company's clerk sees its cases, and the auditor all.
    let clerk = s.token("zhou.qiang").await;
    let (_, v) = s.get("/api/cases", &clerk).await;
    assert_eq!(numbers(&v), [power2.clone(), power1.clone()]);
    let auditor = s.token("audit.zhang").await;
    let (_, v) = s.get("/api/cases?limit=200", &auditor).await;
    assert_eq!(numbers(&v).len(), 9);
    let _ = p1;

    // The worklist comes a page at a time too, with the total over all pages.
    let (_, v) = s.get("/api/tasks?limit=2", &window).await;
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        (v["total"].as_u64(), v["offset"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(v["counts"]["green"], 5);
    let (_, last) = s.get("/api/tasks?limit=2&offset=4", &window).await;
    assert_eq!(last["tasks"].as_array().unwrap().len(), 1, "{last}");
    let (st, _) = s.get("/api/tasks?limit=0", &window).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Bad input is refused and says why; the public finds nothing.
    for bad in [
        "/api/cases?limit=0",
        "/api/cases?limit=201",
        "/api/cases?after=xyz",
        "/api/cases?status=lost",
        "/api/cases?submitted_from=yesterday",
        "/api/cases?colour=red",
    ] {
        let (st, v) = s.get(bad, &officer).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let r = reqwest::get(format!("{}/api/cases", s.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
