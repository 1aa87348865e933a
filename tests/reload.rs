//! Hot reload: files edited under a running server's scripts folder.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
"#;

fn proc_src(id: &str, steps: &str) -> String {
    format!(
        r#"procedure(#{{
    id: "{id}", name: "P", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    start: "review",
    steps: [ {steps} ],
}});
"#
    )
}

const ONE_STEP: &str = r#"#{ id: "review", name: "Review", group: "g", next: "@approved" }"#;
const TWO_STEPS: &str = r#"#{ id: "review", name: "Review", group: "g", next: "second" },
             #{ id: "second", name: "Second", group: "g", next: "@approved" }"#;

/// Saves like an editor that writes a temporary file and renames it over the original.
fn save(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("rhai.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// Polls until `check` holds; reload is asynchronous by nature.
async fn until(s: &TestServer, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = s.get("/api/admin/scripts", &s.admin).await;
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn submit(id: &str) -> Value {
    json!({ "procedure": id, "applicant": applicant("A1") })
}

async fn start() -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    save(&scripts, "office.rhai", OFFICE);
    save(&scripts, "p.rhai", &proc_src("p", ONE_STEP));
    let s = TestServer::start_on(scripts, tmp.path().join("data")).await;
    (s, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_edit_goes_live_and_old_cases_finish_on_their_version() {
    let (s, _tmp) = start().await;
    let a = s.token("a").await;
    let (old, _, _) = s.submit(submit("p")).await;
    s.act(&a, old, "intake", "accept", json!({})).await;
    let v1 = s.case(old).await["version"].as_str().unwrap().to_string();

    let saved = Instant::now();
    save(&s.scripts, "p.rhai", &proc_src("p", TWO_STEPS));
    until(&s, "the new version", |v| {
        v["procedures"]["p"] != v1.as_str() && v["ok"] == true
    })
    .await;
    eprintln!("save to live: {:?}", saved.elapsed());
    let (new, _, _) = s.submit(submit("p")).await;
    assert_ne!(s.case(new).await["version"], v1.as_str());
    // The old case ends after one review, as version 1 says.
    let c = s.act(&a, old, "review", "approve", json!({})).await;
    assert_eq!(c["status"], "approved");
    s.act(&a, new, "intake", "accept", json!({})).await;
    let c = s.act(&a, new, "review", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["second"]);
    // Both versions are listed, with their open cases.
    let (st, v) = s.get("/api/admin/versions", &s.admin).await;
    assert_eq!(st, StatusCode::OK);
    let list = v["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    let old_v = list.iter().find(|x| x["version"] == v1.as_str()).unwrap();
    assert_eq!(
        (old_v["live"].as_bool(), old_v["open_cases"].as_u64()),
        (Some(false), Some(0))
    );
    let new_v = list.iter().find(|x| x["version"] != v1.as_str()).unwrap();
    assert_eq!(
        (new_v["live"].as_bool(), new_v["open_cases"].as_u64()),
        (Some(true), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_scripts_leave_the_old_version_live_and_are_reported() {
    let (s, _tmp) = start().await;
    let (_, before) = s.get("/api/admin/scripts", &s.admin).await;
    let v1 = before["procedures"]["p"].as_str().unwrap().to_string();

    // A syntax error.
    save(&s.scripts, "p.rhai", "procedure(#{ id: \"p\", \n  name: ");
    let v = until(&s, "a refused reload", |v| v["ok"] == false).await;
    let problem = &v["problems"][0];
    assert_eq!(problem["location"]["file"], "p.rhai", "{v}");
    assert_eq!(problem["location"]["line"], 2, "{v}");
    assert_eq!(
        v["procedures"]["p"],
        v1.as_str(),
        "the old version must stay live"
    );
    let (st, _) = s.call("POST", "/api/cases", None, Some(submit("p"))).await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "the office keeps working on the old version"
    );

    // A validation error: a group that does not exist.
    save(
        &s.scripts,
        "p.rhai",
        &proc_src("p", ONE_STEP).replace(r#"group: "g""#, r#"group: "ghost""#),
    );
    let v = until(&s, "a validation error", |v| {
        v.to_string().contains("ghost")
    })
    .await;
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("group 'ghost' does not exist"),
        "{v}"
    );
    let (st, v) = s
        .post("/api/admin/scripts/reload", &s.admin, json!({}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("script_load_failed")),
        "{v}"
    );

    // The next good save goes live.
    save(&s.scripts, "p.rhai", &proc_src("p", TWO_STEPS));
    let v = until(&s, "recovery", |v| v["ok"] == true).await;
    assert_ne!(v["procedures"]["p"], v1.as_str());
    assert!(v["problems"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedures_added_in_new_folders_and_deleted_files() {
    let (s, _tmp) = start().await;
    let a = s.token("a").await;
    save(&s.scripts, "new/dept/q.rhai", &proc_src("q", ONE_STEP));
    until(&s, "q to appear", |v| v["procedures"]["q"].is_string()).await;
    let (st, _) = s.call("POST", "/api/cases", None, Some(submit("q"))).await;
    assert_eq!(st, StatusCode::CREATED);

    // A running case of p, then p's file is deleted.
    let (running, _, _) = s.submit(submit("p")).await;
    std::fs::remove_file(s.scripts.join("p.rhai")).unwrap();
    until(&s, "p to go", |v| {
        v["procedures"]["p"].is_null() && v["ok"] == true
    })
    .await;
    let (st, v) = s.call("POST", "/api/cases", None, Some(submit("p"))).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "no new cases of a removed procedure: {v}"
    );
    let (_, list) = s.call("GET", "/api/procedures", None, None).await;
    assert!(!list.to_string().contains("\"p\""));
    // Its running case still finishes, on its stored version.
    s.act(&a, running, "intake", "accept", json!({})).await;
    let c = s.act(&a, running, "review", "approve", json!({})).await;
    assert_eq!(c["status"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_temp_files_do_not_trigger_and_unchanged_content_is_not_reloaded() {
    let (s, _tmp) = start().await;
    let (_, v) = s.get("/api/admin/scripts", &s.admin).await;
    let reloads = v["reloads"].as_u64().unwrap();
    std::fs::write(s.scripts.join(".p.rhai.swp"), "garbage").unwrap();
    std::fs::write(s.scripts.join("p.rhai~"), "garbage").unwrap();
    // Same content saved again.
    save(&s.scripts, "p.rhai", &proc_src("p", ONE_STEP));
    let (st, v) = s
        .post("/api/admin/scripts/reload", &s.admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["changed"], json!([]));
    assert_eq!(v["status"]["reloads"].as_u64(), Some(reloads));
    assert_eq!(v["status"]["ok"], true);
    // This office declares no calendar: the administrator is told.
    assert!(
        v["status"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no holiday table"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_moves_open_cases_only_with_a_valid_mapping() {
    let (s, _tmp) = start().await;
    let a = s.token("a").await;
    let (id, _, _) = s.submit(submit("p")).await;
    s.act(&a, id, "intake", "accept", json!({})).await;
    let (waiting, _, _) = s.submit(submit("p")).await; // still at intake
    let v1 = s.case(id).await["version"].as_str().unwrap().to_string();

    // Version 2 renames `review` to `check` and adds a second step.
    let v2_steps = r#"#{ id: "check", name: "Check", group: "g", next: "second" },
             #{ id: "second", name: "Second", group: "g", next: "@approved" }"#;
    save(
        &s.scripts,
        "p.rhai",
        &proc_src("p", v2_steps).replace(r#"start: "review""#, r#"start: "check""#),
    );
    let v = until(&s, "version 2", |v| v["procedures"]["p"] != v1.as_str()).await;
    let v2 = v["procedures"]["p"].as_str().unwrap().to_string();
    let before = s.case(id).await;

    // Without a mapping, `review` has nowhere to go: refused, nothing changed.
    let plan = json!({ "procedure": "p", "from": v1, "dry_run": true });
    let (st, r) = s.post("/api/admin/migrations", &s.admin, plan).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let case_report = r["report"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone();
    assert!(
        case_report["problems"][0]
            .as_str()
            .unwrap()
            .contains("'review' does not exist"),
        "{r}"
    );
    let (st, r) = s
        .post(
            "/api/admin/migrations",
            &s.admin,
            json!({ "procedure": "p", "from": v1 }),
        )
        .await;
    assert_eq!(
        (st, r["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("migration_refused")),
        "{r}"
    );
    assert_eq!(s.case(id).await, before);
    // A mapping to a step that does not exist is refused outright.
    let (st, _) = s
        .post(
            "/api/admin/migrations",
            &s.admin,
            json!({ "procedure": "p", "from": v1, "steps": { "review": "nope" } }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // With review → check: a dry run reports, then the real run moves both open cases.
    let plan =
        json!({ "procedure": "p", "from": v1, "steps": { "review": "check" }, "dry_run": true });
    let (st, r) = s.post("/api/admin/migrations", &s.admin, plan).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["report"]["applied"], false);
    assert_eq!(s.case(id).await, before, "a dry run changes nothing");
    let plan = json!({ "procedure": "p", "from": v1, "steps": { "review": "check" } });
    let (st, r) = s.post("/api/admin/migrations", &s.admin, plan).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["report"]["applied"], true);
    assert_eq!(r["report"]["cases"].as_array().unwrap().len(), 2);
    let c = s.case(id).await;
    assert_eq!(c["version"], v2.as_str());
    assert_eq!(open_steps(&c), vec!["check"]);
    let last = c["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "migrated");
    assert!(last["comment"].as_str().unwrap().contains("review→check"));
    // The case now follows version 2.
    let c = s.act(&a, id, "check", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["second"]);
    s.act(&a, waiting, "intake", "accept", json!({})).await;
    assert_eq!(open_steps(&s.case(waiting).await), vec!["check"]);
    let (_, v) = s.get("/api/admin/versions", &s.admin).await;
    let old = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["version"] == v1.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["open_cases"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_refuses_a_step_whose_group_changed() {
    let (s, _tmp) = start().await;
    let a = s.token("a").await;
    save(
        &s.scripts,
        "office.rhai",
        &format!(
            "{OFFICE}\ngroup(#{{ id: \"h\", name: \"H\", department: \"d\", members: [\"a\"] }});"
        ),
    );
    until(&s, "the new group", |v| {
        v["ok"] == true && v["reloads"].as_u64() >= Some(2)
    })
    .await;
    let (id, _, _) = s.submit(submit("p")).await;
    s.act(&a, id, "intake", "accept", json!({})).await;
    let v1 = s.case(id).await["version"].as_str().unwrap().to_string();
    save(
        &s.scripts,
        "p.rhai",
        &proc_src("p", ONE_STEP).replace(r#"group: "g""#, r#"group: "h""#),
    );
    until(&s, "version 2", |v| v["procedures"]["p"] != v1.as_str()).await;
    let (st, r) = s
        .post(
            "/api/admin/migrations",
            &s.admin,
            json!({ "procedure": "p", "from": v1 }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.to_string().contains("cannot change group"), "{r}");
    assert_eq!(s.case(id).await["version"], v1.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_cases_get_new_deadlines_and_their_timers_fire_once() {
    let clock = std::sync::Arc::new(guichet_core::clock::ManualClock::new(bj(
        "2025-03-03 10:00",
    )));
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    save(&scripts, "office.rhai", OFFICE);
    let two_days = r#"#{ id: "review", name: "Review", group: "g", days: 2, next: "@approved" }"#;
    save(&scripts, "p.rhai", &proc_src("p", two_days));
    let s = TestServer::start_with(scripts, tmp.path().join("data"), clock.clone()).await;
    let a = s.token("a").await;
    let (id, _, _) = s.submit(submit("p")).await;
    let c = s.act(&a, id, "intake", "accept", json!({})).await;
    let due = |c: &Value| {
        c["tasks"][0]["due"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert_eq!(due(&c), bj("2025-03-05 17:30"));
    let v1 = c["version"].as_str().unwrap().to_string();

    // Version 2 gives the review five days; the case moves over.
    save(
        &s.scripts,
        "p.rhai",
        &proc_src("p", &two_days.replace("days: 2", "days: 5")),
    );
    until(&s, "version 2", |v| v["procedures"]["p"] != v1.as_str()).await;
    let (st, r) = s
        .post(
            "/api/admin/migrations",
            &s.admin,
            json!({ "procedure": "p", "from": v1 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let c = s.case(id).await;
    assert_eq!(
        due(&c),
        bj("2025-03-10 17:30"),
        "deadline recomputed from the step's start"
    );

    let step_cards = |c: &Value| -> Vec<String> {
        c["cards"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["limit"] == "step")
                    .map(|c| c["threshold"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Past the old deadline: the step's old timers do nothing (the case's own one-day
    // promised limit has passed, so it has cards of its own).
    set(&clock, "2025-03-06 09:00");
    s.fire_timers().await;
    assert!(step_cards(&s.case(id).await).is_empty());
    // Past the new one: its warning and its breach, once each.
    set(&clock, "2025-03-11 09:00");
    s.fire_timers().await;
    s.fire_timers().await;
    assert_eq!(step_cards(&s.case(id).await), vec!["75%", "breach"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_fires_a_timer_again() {
    let clock = std::sync::Arc::new(guichet_core::clock::ManualClock::new(bj(
        "2025-03-03 10:00",
    )));
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    save(&scripts, "office.rhai", OFFICE);
    let step = r#"#{ id: "review", name: "Review", group: "g", days: 2, next: "@approved" }"#;
    save(&scripts, "p.rhai", &proc_src("p", step));
    let s = TestServer::start_with(scripts, tmp.path().join("data"), clock.clone()).await;
    let a = s.token("a").await;
    let (id, _, _) = s.submit(submit("p")).await;
    s.act(&a, id, "intake", "accept", json!({})).await;
    set(&clock, "2025-03-06 09:00");
    s.fire_timers().await;
    let before = s.case(id).await["cards"].as_array().unwrap().len();
    assert!(before > 0);
    // The same procedure saved again with a change, and the office reloaded twice.
    save(
        &s.scripts,
        "p.rhai",
        &proc_src("p", step).replace("name: \"P\"", "name: \"P2\""),
    );
    until(&s, "the reload", |v| v["reloads"].as_u64() >= Some(2)).await;
    let (st, _) = s
        .post("/api/admin/scripts/reload", &s.admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    s.fire_timers().await;
    let c = s.case(id).await;
    assert_eq!(c["cards"].as_array().unwrap().len(), before, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_rescan_catches_what_the_watcher_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    save(&scripts, "office.rhai", OFFICE);
    save(&scripts, "p.rhai", &proc_src("p", ONE_STEP));
    // A debounce longer than the test: only the rescan (every second) can see the edit.
    let clock = std::sync::Arc::new(guichet_core::clock::SystemClock);
    let s = TestServer::start_configured(scripts, tmp.path().join("data"), clock, |c| {
        c.reload_debounce_ms = 600_000;
        c.rescan_secs = 1;
    })
    .await;
    let (_, v) = s.get("/api/admin/scripts", &s.admin).await;
    let v1 = v["procedures"]["p"].as_str().unwrap().to_string();
    save(&s.scripts, "p.rhai", &proc_src("p", TWO_STEPS));
    let v = until(&s, "the rescan", |v| v["procedures"]["p"] != v1.as_str()).await;
    assert_eq!(v["ok"], true);
}

/// How many times the server has read the folder to compare or load it.
async fn attempts(s: &TestServer) -> u64 {
    let (_, v) = s.get("/api/admin/scripts", &s.admin).await;
    v["attempts"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_scripts_does_not_trigger_a_reload() {
    let (s, _tmp) = start().await;
    // One real change, so the watcher has reloaded (and read every file) once.
    save(&s.scripts, "p.rhai", &proc_src("p", TWO_STEPS));
    until(&s, "the change", |v| v["reloads"] == 2).await;
    let settled = attempts(&s).await;
    // inotify reports the reload's own reads (opens and closes) as events; counting
    // them made an idle server reload itself several times a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(attempts(&s).await, settled, "an idle server reloaded");

    // A broken file is compiled once, not again and again.
    save(&s.scripts, "p.rhai", "procedure(#{ id: ");
    until(&s, "the refusal", |v| v["ok"] == false).await;
    let refused = attempts(&s).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(attempts(&s).await, refused, "a refused folder was reloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_broken_script_runs_on_the_last_good_rule_set() {
    let (s, _tmp) = start().await;
    let (_, before) = s.get("/api/admin/scripts", &s.admin).await;
    let v1 = before["procedures"]["p"].as_str().unwrap().to_string();
    let (open_case, _, _) = s.submit(submit("p")).await;
    // The file breaks while the server is down; an import it needs breaks too.
    let mut s = s;
    s.shutdown().await;
    save(&s.scripts, "p.rhai", "procedure(#{ id: \"p\", \n  name: ");
    let s = TestServer::start_on(s.scripts.clone(), s.data.clone()).await;
    let (st, v) = s.get("/api/admin/scripts", &s.admin).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["problems"][0]["location"]["file"], "p.rhai", "{v}");
    assert_eq!(v["procedures"]["p"], v1.as_str(), "{v}");
    let (st, _) = s.call("GET", "/api/ready", None, None).await;
    assert_eq!(st, StatusCode::OK);
    // The office works: new cases on the last good version, old ones go on.
    let (new, _, _) = s.submit(submit("p")).await;
    assert_eq!(s.case(new).await["version"], v1.as_str());
    let a = s.token("a").await;
    s.act(&a, open_case, "intake", "accept", json!({})).await;
    // Once the folder validates it goes live.
    save(&s.scripts, "p.rhai", &proc_src("p", TWO_STEPS));
    let v = until(&s, "the fixed folder", |v| v["ok"] == true).await;
    assert_ne!(v["procedures"]["p"], v1.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_with_a_broken_folder_is_refused_with_its_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    save(&scripts, "office.rhai", OFFICE);
    save(&scripts, "p.rhai", "procedure(#{ id: ");
    let cfg = guichet::config::Config {
        scripts,
        data: tmp.path().join("data"),
        ..Default::default()
    };
    let err = guichet::server::open(&cfg)
        .err()
        .expect("nothing to run on");
    assert!(format!("{err:#}").contains("p.rhai:1"), "{err:#}");
}
