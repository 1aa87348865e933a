//! The five example procedures, driven end to end through the real server.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_connection_above_630_kva_goes_to_scheme_group_and_joins_parallel_reviews() {
    let s = TestServer::start().await;
    let (customer, project, scheme_a, scheme_b, grid, metering) = (
        s.token("zhou.qiang").await,
        s.token("wu.gang").await,
        s.token("xu.li").await,
        s.token("ma.jun").await,
        s.token("hu.bo").await,
        s.token("guo.na").await,
    );
    let (id, number, _) = s.submit(power_case(1250.0)).await;
    assert!(number.starts_with("PWR-NC-"), "{number}");
    assert!(number.ends_with("-000001"), "{number}");
    let c = s.act(&customer, id, "intake", "accept", json!({})).await;
    assert_eq!(c["status"], "in_progress");
    let c = s
        .act(&project, id, "site_survey", "approve", json!({}))
        .await;
    assert_eq!(
        open_steps(&c),
        vec!["scheme_review", "scheme_review"],
        "any-mode: one task per member"
    );
    // 或签: the first member to act decides; the other task is cancelled.
    let c = s
        .act(
            &scheme_b,
            id,
            "scheme_review",
            "approve",
            json!({ "scheme": "Two 10kV feeders" }),
        )
        .await;
    assert_eq!(open_steps(&c), vec!["grid_review", "metering_review"]);
    let (st, wl) = s.get("/api/tasks", &scheme_a).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        wl["tasks"].as_array().unwrap().is_empty(),
        "cancelled task left in worklist: {wl}"
    );
    // Parallel branches: the join waits for both.
    let c = s.act(&grid, id, "grid_review", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["metering_review"]);
    let c = s
        .act(&metering, id, "metering_review", "approve", json!({}))
        .await;
    assert_eq!(open_steps(&c), vec!["construction"]);
    // Completing the works runs the automatic commissioning step and approves the case.
    let c = s
        .act(&project, id, "construction", "approve", json!({}))
        .await;
    assert_eq!(c["status"], "approved");
    assert!(c["data"]["meter_number"].as_str().unwrap().starts_with('M'));
    assert_eq!(c["data"]["scheme"], "Two 10kV feeders");
    let full = s.case(id).await;
    let closed: Vec<(&str, &str)> = full["closed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["step"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(closed.len(), 7, "{closed:?}");
    assert!(
        closed.contains(&("scheme_review", "cancelled")),
        "{closed:?}"
    );
    assert!(full["tasks"].as_array().unwrap().is_empty());
    let actions: Vec<&str> = full["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "submitted",
            "completed",
            "completed",
            "completed",
            "completed",
            "completed",
            "completed"
        ]
    );
    let last = full["history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["actor"], "wu.gang");
    assert!(last["effects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "auto_step_ran"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_connection_small_capacity_skips_scheme_group() {
    let s = TestServer::start().await;
    let (customer, project) = (s.token("zhou.qiang").await, s.token("wu.gang").await);
    let (id, _, _) = s.submit(power_case(400.0)).await;
    s.act(&customer, id, "intake", "accept", json!({})).await;
    let c = s
        .act(&project, id, "site_survey", "approve", json!({}))
        .await;
    assert_eq!(open_steps(&c), vec!["scheme_draft"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_land_use_return_then_certificate_and_rejection() {
    let s = TestServer::start().await;
    let (window, section, survey, head) = (
        s.token("chen.jie").await,
        s.token("liu.yang").await,
        s.token("he.ping").await,
        s.token("gao.lin").await,
    );
    let body = json!({
        "procedure": "planning.land_use",
        "applicant": applicant("91310000MA1PL0002Y"),
        "data": { "project": "Riverside school", "site_area_m2": 12000, "land_use": "public" },
        "materials": [
            { "id": "application", "file": "form.pdf" },
            { "id": "project_approval", "file": "approval.pdf" },
            { "id": "topographic_map", "file": "map.dwg" },
        ],
    });
    let (id, number, _) = s.submit(body.clone()).await;
    assert!(
        number.starts_with("PLAN-LUP-") && number.ends_with("-000001"),
        "{number}"
    );
    s.act(&window, id, "intake", "accept", json!({})).await;
    s.act(&section, id, "site_selection", "approve", json!({}))
        .await;
    s.act(
        &survey,
        id,
        "red_line",
        "approve",
        json!({ "red_line": "RL-1" }),
    )
    .await;
    // Design conditions find the red line wrong: return to the survey team.
    let task = s.task_at(&section, id, "design_conditions").await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/return"),
            &section,
            json!({ "to": "red_line", "comment": "north boundary wrong" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(open_steps(&v["case"]), vec!["red_line"]);
    // A step that was never passed cannot be a return target.
    s.act(
        &survey,
        id,
        "red_line",
        "approve",
        json!({ "red_line": "RL-2" }),
    )
    .await;
    let task = s.task_at(&section, id, "design_conditions").await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/return"),
            &section,
            json!({ "to": "permit" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "invalid_transition");
    s.act(
        &section,
        id,
        "design_conditions",
        "approve",
        json!({ "plot_ratio_max": 2.5 }),
    )
    .await;
    let c = s.act(&head, id, "permit", "approve", json!({})).await;
    assert_eq!(c["status"], "approved");
    assert_eq!(c["data"]["red_line"], "RL-2");
    let cert = c["data"]["certificate"].as_str().unwrap();
    assert!(
        cert.starts_with("LUP-") && cert.ends_with("000001"),
        "{cert}"
    );
    let full = s.case(id).await;
    let returned = full["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "returned")
        .unwrap();
    assert_eq!(returned["comment"], "north boundary wrong");
    assert_eq!(returned["actor"], "liu.yang");

    // A second case, rejected by the head: no certificate, numbers stay gap-free.
    let (id2, number2, _) = s.submit(body).await;
    assert!(number2.ends_with("-000002"), "{number2}");
    s.act(&window, id2, "intake", "accept", json!({})).await;
    s.act(&section, id2, "site_selection", "approve", json!({}))
        .await;
    s.act(&survey, id2, "red_line", "approve", json!({})).await;
    s.act(&section, id2, "design_conditions", "approve", json!({}))
        .await;
    let c = s.act(&head, id2, "permit", "reject", json!({})).await;
    assert_eq!(c["status"], "rejected");
    assert!(c["data"].get("certificate").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_construction_scheme_needs_every_signer() {
    let s = TestServer::start().await;
    let (window, a, b, head) = (
        s.token("wang.fang").await,
        s.token("chen.jie").await,
        s.token("liu.yang").await,
        s.token("gao.lin").await,
    );
    let (st, v) = s
        .post(
            "/api/cases",
            &window,
            json!({
                "procedure": "planning.construction",
                "applicant": applicant("91310000MA1PL0003Z"),
                "data": { "project": "Riverside school", "floor_area_m2": 8000 },
                "materials": [ { "id": "land_use_permit", "file": "lup.pdf" }, { "id": "scheme_drawings", "file": "s.dwg" } ],
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["case"]["channel"], "window");
    let id = v["case"]["id"].as_u64().unwrap();
    s.act(&window, id, "intake", "accept", json!({})).await;
    let c = s.act(&a, id, "scheme_review", "approve", json!({})).await;
    assert_eq!(
        open_steps(&c),
        vec!["scheme_review"],
        "会签 waits for the second signer"
    );
    // Chen Jie's task is done; he cannot act for Liu Yang.
    let (st, wl) = s.get("/api/tasks", &a).await;
    assert_eq!(st, StatusCode::OK);
    assert!(wl["tasks"].as_array().unwrap().is_empty(), "{wl}");
    let c = s.act(&b, id, "scheme_review", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["permit"]);
    let c = s.act(&head, id, "permit", "approve", json!({})).await;
    assert!(c["data"]["certificate"]
        .as_str()
        .unwrap()
        .starts_with("CPP-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tax_bundle_opens_four_cases_handled_as_one_work_package() {
    let s = TestServer::start().await;
    let (window, officer, head) = (
        s.token("wang.fang").await,
        s.token("li.wei").await,
        s.token("sun.hua").await,
    );
    let (st, v) = s
        .post(
            "/api/bundles/tax.new_business/cases",
            &window,
            json!({
                "applicant": applicant("91310000MA1TX0004A"),
                "items": [
                    { "procedure": "tax.registration",
                      "data": { "company": "Bright Bakery Ltd", "credit_code": "91310000MA1TX0004A" },
                      "materials": [ { "id": "business_licence", "file": "bl.pdf" }, { "id": "legal_rep_id", "file": "id.jpg" } ] },
                    { "procedure": "tax.invoice_purchase", "data": { "invoice_kind": "ordinary", "monthly_quantity": 50 } },
                    { "procedure": "tax.vat_general", "data": { "annual_sales": 6000000 } },
                    { "procedure": "tax.type_determination", "data": { "business_scope": "retail of bread" } },
                ],
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let bundle = v["bundle"].as_str().unwrap().to_string();
    let ids: Vec<u64> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    // The applicant follows the bundle as one, with the code of any of its cases.
    let code = v["cases"][1]["query_code"].as_str().unwrap().to_string();
    let followed = s
        .call(
            "GET",
            &format!("/api/track/bundle/{bundle}?code={code}"),
            None,
            None,
        )
        .await
        .1;
    assert_eq!(followed["cases"].as_array().unwrap().len(), 4, "{followed}");
    assert_eq!(followed["complete"], false);
    let (st, _) = s
        .call(
            "GET",
            &format!("/api/track/bundle/{bundle}?code=WRONG123"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for id in &ids {
        s.act(&window, *id, "intake", "accept", json!({})).await;
    }
    // The automatic determination approved the retail business at once.
    let typ = s.case(ids[3]).await;
    assert_eq!(typ["status"], "approved");
    // The officer sees the rest as one package.
    let (st, wl) = s
        .get(&format!("/api/tasks?bundle={bundle}"), &officer)
        .await;
    assert_eq!(st, StatusCode::OK);
    let steps: Vec<&str> = wl["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps.len(), 3, "{wl}");
    s.act(&officer, ids[0], "register", "approve", json!({}))
        .await;
    s.act(&officer, ids[1], "site_visit", "approve", json!({}))
        .await;
    s.act(&officer, ids[2], "site_visit", "approve", json!({}))
        .await;
    s.act(&head, ids[2], "approval", "approve", json!({})).await;
    let (st, all) = s
        .get(&format!("/api/bundle-cases/{bundle}"), &officer)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        all["cases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "approved"),
        "{all}"
    );
    let reg = s.case(ids[0]).await;
    assert_eq!(reg["data"]["taxpayer_id"], "91310000MA1TX0004A");
    let (_, followed) = s
        .call(
            "GET",
            &format!("/api/track/bundle/{bundle}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(followed["complete"], true, "every case decided: {followed}");
    // A clerk sees all of one applicant's cases across departments.
    let (st, mine) = s
        .get("/api/applicants/91310000MA1TX0004A/cases", &window)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(mine["cases"].as_array().unwrap().len(), 4);
    // An invalid item rejects the whole bundle: nothing is created.
    let (st, v) = s
        .post(
            "/api/bundles/tax.new_business/cases",
            &window,
            json!({ "applicant": applicant("91310000MA1TX0005B"),
                    "items": [ { "procedure": "tax.vat_general", "data": { "annual_sales": -1 } } ] }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, none) = s
        .get("/api/applicants/91310000MA1TX0005B/cases", &window)
        .await;
    assert!(none["cases"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licence_inspection_transfer_and_ministry_countersign() {
    let s = TestServer::start().await;
    let (desk, deng, feng) = (
        s.token("lin.tao").await,
        s.token("deng.yu").await,
        s.token("feng.xia").await,
    );
    let (id, _, _) = s
        .submit(json!({
            "procedure": "licence.annual",
            "applicant": applicant("91110000MA1LC0006C"),
            "data": { "licence_number": "BJ123456", "year": 2026 },
            "materials": [ { "id": "annual_report", "file": "r.pdf" }, { "id": "audit_report", "file": "a.pdf" } ],
        }))
        .await;
    s.act(&desk, id, "intake", "accept", json!({})).await;
    // The province transfers its review to the ministry group (转办).
    let task = s.task_at(&desk, id, "province_review").await;
    let (st, v) = s
        .post(&format!("/api/tasks/{task}/transfer"), &desk, json!({ "group": "licence.ministry", "staff": "deng.yu", "comment": "ministry handles this licence" }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(&format!("/api/tasks/{task}/claim"), &feng, json!({}))
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "only the named staff may act: {v}"
    );
    s.act(&deng, id, "province_review", "approve", json!({}))
        .await;
    let c = s
        .act(&deng, id, "ministry_review", "approve", json!({}))
        .await;
    assert_eq!(c["status"], "in_progress");
    let c = s
        .act(&feng, id, "ministry_review", "approve", json!({}))
        .await;
    assert_eq!(c["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn court_case_sequential_panel_and_applicant_tracking() {
    let s = TestServer::start().await;
    let (filing, clerk, yang, qian, cao) = (
        s.token("tang.lei").await,
        s.token("song.kai").await,
        s.token("judge.yang").await,
        s.token("judge.qian").await,
        s.token("judge.cao").await,
    );
    let (id, number, code) = s
        .submit(json!({
            "procedure": "court.civil",
            "applicant": applicant("110101199001011234"),
            "data": { "plaintiff": "Zhang San", "defendant": "Acme Ltd", "claim_amount": 50000, "procedure_kind": "ordinary" },
            "materials": [ { "id": "complaint", "file": "complaint.pdf" } ],
        }))
        .await;
    let (st, t) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["status"], "submitted");
    let (st, _) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code=WRONG123"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.act(&filing, id, "intake", "accept", json!({})).await;
    s.act(
        &clerk,
        id,
        "serve_complaint",
        "approve",
        json!({ "served_on": "2026-11-30" }),
    )
    .await;
    let c = s.act(&yang, id, "hearing", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["panel_judgment"]);
    // In turn: only the first signer has a task until he signs.
    let (_, wl) = s.get("/api/tasks", &qian).await;
    assert!(wl["tasks"].as_array().unwrap().is_empty());
    s.act(&yang, id, "panel_judgment", "approve", json!({}))
        .await;
    s.act(&qian, id, "panel_judgment", "approve", json!({}))
        .await;
    let c = s
        .act(&cao, id, "panel_judgment", "approve", json!({}))
        .await;
    assert_eq!(c["status"], "approved");
    let (st, t) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={}", code.to_lowercase()),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(t["status"], "approved");
    assert!(t["progress"].as_array().unwrap().len() >= 6);
    assert!(
        t.get("tasks").is_none(),
        "applicants do not see internal tasks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applicant_withdraws_with_query_code_and_intake_refusal_and_referral() {
    let s = TestServer::start().await;
    let filing = s.token("tang.lei").await;
    let body = json!({
        "procedure": "court.civil",
        "applicant": applicant("110101199001011235"),
        "data": { "plaintiff": "Li Si", "defendant": "Wang Wu", "procedure_kind": "simplified" },
        "materials": [ { "id": "complaint", "file": "c.pdf" } ],
    });
    let (id, number, code) = s.submit(body.clone()).await;
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/cases/{number}/withdraw"),
            None,
            Some(json!({ "code": "BADCODE2" })),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/cases/{number}/withdraw"),
            None,
            Some(json!({ "code": code, "reason": "settled privately" })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["case"]["status"], "withdrawn");
    assert!(open_steps(&v["case"]).is_empty());
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/cases/{id}/withdraw"),
            None,
            Some(json!({ "code": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (id, _, _) = s.submit(body.clone()).await;
    let c = s.act(&filing, id, "intake", "reject", json!({})).await;
    assert_eq!(c["status"], "not_accepted");
    let (id, _, _) = s.submit(body).await;
    let c = s.act(&filing, id, "intake", "refer", json!({})).await;
    assert_eq!(c["status"], "referred");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_service_guide_shows_what_the_public_may_know_and_nothing_internal() {
    let s = TestServer::start().await;
    let (st, g) = s
        .call(
            "GET",
            "/api/procedures/power.connection?lang=en",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{g}");
    assert_eq!(g["name"], "New power connection");
    assert_eq!(g["department_name"], "Power Supply Company");
    assert_eq!(
        (g["promised_days"].as_u64(), g["statutory_days"].as_u64()),
        (Some(15), Some(22))
    );
    assert_eq!(g["immediate"], false);
    assert!(g["who_may_apply"].is_string() && g["hours"].is_string() && g["fees"].is_string());
    let materials: Vec<&str> = g["materials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(materials, ["licence", "site_plan", "load_list"]);
    assert_eq!(g["materials"][1]["formats"], json!(["pdf", "dwg"]));
    // Fields the applicant fills in; the staff's own are not shown.
    let fields: Vec<&str> = g["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"capacity_kva") && !fields.contains(&"meter_number"),
        "{fields:?}"
    );
    // The flow as a picture: the parallel review with its two reviews, the branches not
    // repeated at the top level.
    let steps = g["steps"].as_array().unwrap();
    let reviews = steps
        .iter()
        .find(|s| s["name"] == "Grid and metering review")
        .unwrap();
    assert_eq!(
        reviews["in_parallel"],
        json!(["Grid review", "Metering review"])
    );
    assert!(steps.iter().all(|s| s["name"] != "Grid review"));
    // Nothing internal: groups, conditions, hooks, functions, templates, files.
    let text = g.to_string();
    for internal in [
        "power.project",
        "capacity_kva > 630",
        "commission(",
        "\"run\"",
        "\"group\"",
        ".rhai",
        "{{",
        "notices",
    ] {
        assert!(
            !text.contains(internal),
            "{internal} in the public guide: {text}"
        );
    }
    // In Chinese, where the script gives the names.
    let (_, zh) = s
        .call(
            "GET",
            "/api/procedures/power.connection?lang=zh-CN",
            None,
            None,
        )
        .await;
    assert_eq!(zh["name"], "新装用电");
    assert_eq!(zh["department_name"], "供电公司");
    assert_eq!(zh["materials"][0]["name"], "营业执照或身份证");
    assert_eq!(zh["steps"][0]["name"], "现场勘查");
    // The whole definition is for staff.
    let (st, _) = s
        .call(
            "GET",
            "/api/procedures/power.connection/definition",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let clerk = s.token("zhou.qiang").await;
    let (st, d) = s
        .get("/api/procedures/power.connection/definition", &clerk)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(d["file"], "power/new_connection.rhai");
    assert_eq!(d["steps"][0]["group"], "power.project");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_manager_takes_back_his_survey_before_the_scheme_group_acts() {
    let s = TestServer::start().await;
    let (customer, project, scheme) = (
        s.token("zhou.qiang").await,
        s.token("wu.gang").await,
        s.token("xu.li").await,
    );
    let (id, _, _) = s.submit(power_case(1250.0)).await;
    s.act(&customer, id, "intake", "accept", json!({})).await;
    let survey = s.task_at(&project, id, "site_survey").await;
    s.act(
        &project,
        id,
        "site_survey",
        "approve",
        json!({ "scheme": "two feeders" }),
    )
    .await;
    // The case page offers it to him, and to no one else.
    let (_, c) = s.get(&format!("/api/cases/{id}"), &project).await;
    assert_eq!(c["offers"]["take_back"], survey.as_str(), "{c}");
    let (_, c) = s.get(&format!("/api/cases/{id}"), &scheme).await;
    assert!(c["offers"]["take_back"].is_null(), "{c}");
    let (st, v) = s
        .post(
            &format!("/api/tasks/{survey}/take-back"),
            &scheme,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = s
        .post(
            &format!("/api/tasks/{survey}/take-back"),
            &project,
            json!({ "comment": "the capacity was misread" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(open_steps(&v["case"]), vec!["site_survey"]);
    assert_eq!(v["case"]["tasks"][0]["claimed_by"], "wu.gang");
    // The scheme he wrote is withdrawn with the step, and the history says so.
    assert!(v["case"]["data"].get("scheme").is_none(), "{v}");
    let (_, c) = s.get(&format!("/api/cases/{id}"), &project).await;
    let last = c["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "taken_back");
    assert!(
        last["data_changed"]
            .get("scheme")
            .is_some_and(|v| v.is_null()),
        "{last}"
    );
    // Again, and this time the scheme group claims before he changes his mind.
    s.act(&project, id, "site_survey", "approve", json!({}))
        .await;
    let review = s.task_at(&scheme, id, "scheme_review").await;
    let (st, _) = s
        .post(&format!("/api/tasks/{review}/claim"), &scheme, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, c) = s.get(&format!("/api/cases/{id}"), &project).await;
    assert!(
        c["offers"]["take_back"].is_null(),
        "nothing left to take back: {c}"
    );
    assert!(
        c["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "taken_back"),
        "{c}"
    );
    let (st, v) = s
        .post(
            &format!("/api/tasks/{survey}/take-back"),
            &project,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_online_shares_its_fields_one_code_and_one_token() {
    let s = TestServer::start().await;
    let items = json!([
        { "procedure": "tax.registration",
          "materials": [ { "id": "business_licence", "file": "bl.pdf" }, { "id": "legal_rep_id", "file": "id.jpg" } ] },
        { "procedure": "tax.vat_general", "data": { "annual_sales": 6000000 } },
    ]);
    // A required shared field missing is said once, at the shared field.
    let (st, v) = s
        .call(
            "POST",
            "/api/bundles/tax.new_business/cases",
            None,
            Some(json!({
                "applicant": applicant("91310000MA1TX0004A"),
                "data": { "company": "Bright Bakery Ltd" },
                "items": items,
            })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let fields: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert_eq!(fields, ["shared:credit_code"], "{v}");
    let (st, v) = s
        .call(
            "POST",
            "/api/bundles/tax.new_business/cases",
            None,
            Some(json!({
                "applicant": applicant("91310000MA1TX0004A"),
                "data": { "company": "Bright Bakery Ltd", "credit_code": "91310000MA1TX0004A" },
                "items": items,
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let cases = v["cases"].as_array().unwrap();
    let code = v["query_code"].as_str().unwrap();
    for c in cases {
        assert_eq!(c["query_code"], code, "one code for the bundle");
        assert_eq!(c["data"]["company"], "Bright Bakery Ltd", "{c}");
    }
    assert_eq!(cases[0]["data"]["credit_code"], "91310000MA1TX0004A");
    assert!(
        cases[1]["data"].get("credit_code").is_none(),
        "VAT status has no such field"
    );
    // The one token follows the whole bundle, and each of its cases, without the code.
    let (bundle, token) = (
        v["bundle"].as_str().unwrap(),
        v["applicant_token"].as_str().unwrap(),
    );
    let (st, followed) = s
        .call(
            "GET",
            &format!("/api/track/bundle/{bundle}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{followed}");
    assert_eq!(followed["cases"].as_array().unwrap().len(), 2);
    let second = cases[1]["number"].as_str().unwrap();
    let (st, one) = s
        .call("GET", &format!("/api/track/{second}"), Some(token), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{one}");
    // Another application's token does not, nor no token at all.
    let (st, other) = s
        .call("POST", "/api/cases", None, Some(power_case(100.0)))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{other}");
    let stranger = other["applicant_token"].as_str().expect("token");
    for who in [Some(stranger), None] {
        let (st, _) = s
            .call("GET", &format!("/api/track/bundle/{bundle}"), who, None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        let (st, _) = s
            .call("GET", &format!("/api/track/{second}"), who, None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_answers_of_submissions_and_task_actions() {
    let s = TestServer::start().await;
    let (_, doc) = s.call("GET", "/api/openapi.json", None, None).await;
    let schema = |path: &str, status: &str| {
        doc["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]
            .clone()
    };
    let (st, submitted) = s
        .call("POST", "/api/cases", None, Some(power_case(1250.0)))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let declared = schema("/api/cases", "201");
    assert!(
        declared["properties"]["case"]["properties"]["number"].is_object(),
        "{declared}"
    );
    assert_conforms(&declared, &submitted, "submitted");
    let customer = s.token("zhou.qiang").await;
    let id = submitted["case"]["id"].as_u64().unwrap();
    // The worklist and the case search, as a clerk reads them.
    let read = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    assert!(
        read("/api/tasks")["properties"]["tasks"]["items"]["properties"]["case_number"].is_object()
    );
    assert!(read("/api/cases")["properties"]["cases"].is_object());
    let (_, worklist) = s.get("/api/tasks", &customer).await;
    assert!(!worklist["tasks"].as_array().unwrap().is_empty());
    assert_conforms(&read("/api/tasks"), &worklist, "worklist");
    let (_, found) = s
        .get("/api/cases?procedure=power.connection", &customer)
        .await;
    assert!(!found["cases"].as_array().unwrap().is_empty());
    assert_conforms(&read("/api/cases"), &found, "search");
    let task = s.task_at(&customer, id, "intake").await;
    let (st, answer) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &customer,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_conforms(
        &schema("/api/tasks/{task}/complete", "200"),
        &answer,
        "completed",
    );
}
