//! Scripts at run time: sandbox failures change nothing and keep the server up; cases keep
//! the procedure version they started on; the CLI reports load errors.

mod common;

use std::path::Path;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
"#;

fn write(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const PROC_V1: &str = r#"
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    fields: [ #{ id: "mode", label: "Mode", type: "enum", values: ["ok", "spin", "deep", "huge", "wide"] } ],
    start: "review",
    steps: [ #{ id: "review", name: "Review", group: "g",
                next: [ #{ when: "data.mode == \"spin\"", to: "spin" },
                        #{ when: "data.mode == \"deep\"", to: "deep" },
                        #{ when: "data.mode == \"huge\"", to: "huge" },
                        #{ when: "data.mode == \"wide\"", to: "wide" },
                        #{ to: "@approved" } ] },
             #{ id: "spin", name: "Spin", kind: "auto", run: "spin", next: "@approved" },
             #{ id: "deep", name: "Deep", kind: "auto", run: "deep", next: "@approved" },
             #{ id: "huge", name: "Huge", kind: "auto", run: "huge", next: "@approved" },
             #{ id: "wide", name: "Wide", kind: "auto", run: "wide", next: "@approved" } ],
});
fn spin(c) { loop { } }
fn recurse(n) { recurse(n + 1) }
fn deep(c) { recurse(0) }
fn huge(c) { let s = "xxxxxxxx"; loop { s += s; } }
fn wide(c) { let a = [1, 2, 3, 4]; loop { a += a; } }
"#;

fn submit_body(mode: &str) -> serde_json::Value {
    json!({ "procedure": "p", "applicant": applicant("A1"), "data": { "mode": mode } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_scripts_fail_the_transition_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    write(&scripts, "office.rhai", OFFICE);
    write(&scripts, "p.rhai", PROC_V1);
    let s = TestServer::start_on(scripts, tmp.path().join("data")).await;
    let a = s.token("a").await;
    for mode in ["spin", "deep", "huge", "wide"] {
        let (id, _, _) = s.submit(submit_body(mode)).await;
        s.act(&a, id, "intake", "accept", json!({})).await;
        let before = s.case(id).await;
        let task = s.task_at(&a, id, "review").await;
        let (st, v) = s
            .post(
                &format!("/api/tasks/{task}/complete"),
                &a,
                json!({ "outcome": "approve" }),
            )
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("script_error")),
            "{mode}: {v}"
        );
        assert_eq!(
            s.case(id).await,
            before,
            "{mode}: a failed script changed the case"
        );
    }
    let (id, _, _) = s.submit(submit_body("ok")).await;
    s.act(&a, id, "intake", "accept", json!({})).await;
    let c = s.act(&a, id, "review", "approve", json!({})).await;
    assert_eq!(c["status"], "approved");
    // Each failure is recorded for the administrator, with the case and the reason.
    let (st, v) = s.get("/api/admin/incidents", &s.admin).await;
    assert_eq!(st, StatusCode::OK);
    let list = v["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 4, "{v}");
    assert!(list
        .iter()
        .all(|i| i["code"] == "script_error" && i["case"].is_u64() && i["actor"] == "a"));
    let text = v.to_string();
    assert!(text.contains("Too many operations"), "{text}");
    assert!(text.contains("Size of array/BLOB too large"), "{text}");
    let (st, _) = s.get("/api/admin/incidents", &a).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_case_keeps_its_version_after_the_file_changes_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    write(&scripts, "office.rhai", OFFICE);
    write(&scripts, "p.rhai", PROC_V1);
    let s = TestServer::start_on(scripts.clone(), tmp.path().join("data")).await;
    let a = s.token("a").await;
    let (old, _, _) = s.submit(submit_body("ok")).await;
    s.act(&a, old, "intake", "accept", json!({})).await;
    let v1 = s.case(old).await["version"].as_str().unwrap().to_string();

    // The office adds a second review step; the file on disk changes.
    let v2_src = PROC_V1.replace(
        r#"#{ to: "@approved" } ] },"#,
        r#"#{ to: "second" } ] },
             #{ id: "second", name: "Second review", group: "g", next: "@approved" },"#,
    );
    write(&scripts, "p.rhai", &v2_src);
    let s = s.restart().await;
    let (new, _, _) = s.submit(submit_body("ok")).await;
    assert_ne!(s.case(new).await["version"].as_str().unwrap(), v1);
    // The old case finishes on version 1: approving review ends it.
    let c = s.act(&a, old, "review", "approve", json!({})).await;
    assert_eq!(c["status"], "approved");
    assert_eq!(c["version"], v1.as_str());
    // The new case follows version 2.
    s.act(&a, new, "intake", "accept", json!({})).await;
    let c = s.act(&a, new, "review", "approve", json!({})).await;
    assert_eq!(open_steps(&c), vec!["second"]);
}

#[test]
fn check_reports_errors_with_location_and_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "office.rhai", OFFICE);
    write(
        tmp.path(),
        "d/bad.rhai",
        &PROC_V1.replace(r#"group: "g","#, r#"group: "nobody","#),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("check")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("d/bad.rhai:6:5: procedure 'p': step 'review': group 'nobody' does not exist"),
        "{err}"
    );
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .arg("check")
        .arg(example_scripts())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("power.connection"));
    // `check` runs the procedure tests too.
    assert!(
        out.contains("ok    tests/power.rhai:8 test_small_connection"),
        "{out}"
    );
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn test_runs_the_scenarios_and_reports_failures_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "office.rhai", OFFICE);
    write(tmp.path(), "d/p.rhai", PROC_V1);
    write(
        tmp.path(),
        "tests/p.rhai",
        "fn test_review() {\n    let c = submit(\"p\", #{ mode: \"ok\" });\n    complete(c, \"intake\");\n    expect_steps(c, [\"approval\"]);\n}\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(args)
            .arg(tmp.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run(&["test"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  tests/p.rhai:1 test_review"), "{out}");
    assert!(
        out.contains("tests/p.rhai:4:5: expected open steps approval, they are review"),
        "{out}"
    );
    assert!(out.contains("1 scenario(s): 0 passed, 1 failed"), "{out}");
    let (code, _) = run(&["check"]);
    assert_eq!(code, Some(1), "a failing scenario fails the check");
    write(
        tmp.path(),
        "tests/p.rhai",
        "fn test_review() {\n    let c = submit(\"p\", #{ mode: \"ok\" });\n    complete(c, \"intake\");\n    expect_steps(c, [\"review\"]);\n}\n",
    );
    let (code, out) = run(&["test"]);
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_folder_fails_clearly() {
    let s = TestServer::start().await;
    let cfg = guichet::config::Config {
        scripts: example_scripts(),
        data: s.data.clone(),
        ..Default::default()
    };
    let err = guichet::server::open(&cfg)
        .err()
        .expect("second open must fail");
    assert!(
        matches!(
            err.downcast_ref::<guichet_core::Error>(),
            Some(guichet_core::Error::InUse(_))
        ),
        "{err:#}"
    );
    assert!(format!("{err:#}").contains("in use by another Guichet process"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_call_the_admin_api() {
    let s = TestServer::start().await;
    let token_file = guichet::server::admin_token_path(&s.data);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .arg("token")
            .args(args)
            .arg("--server")
            .arg(&s.base)
            .arg("--token-file")
            .arg(&token_file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, secret, err) =
        tokio::task::block_in_place(|| run(&["issue", "li.wei", "--label", "desk 3"]));
    assert_eq!(code, Some(0), "{err}");
    let secret = secret.trim().to_string();
    let (st, me) = s.get("/api/me", &secret).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["id"], "li.wei");
    let (_, list, _) = tokio::task::block_in_place(|| run(&["list"]));
    let line = list
        .lines()
        .find(|l| l.contains("li.wei"))
        .expect("listed")
        .to_string();
    assert!(!list.contains(&secret));
    let id = line.split('\t').next().unwrap().to_string();
    let (code, _, _) = tokio::task::block_in_place(|| run(&["revoke", &id]));
    assert_eq!(code, Some(0));
    let (st, _) = s.get("/api/me", &secret).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (code, _, err) = tokio::task::block_in_place(|| run(&["issue", "ghost"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("validation_failed"), "{err}");
}

#[test]
fn init_writes_a_starter_office_that_checks_and_passes_its_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("office");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(args)
            .arg(&dir)
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("permits/outdoor_sign.rhai").is_file());
    let out = run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("permits.outdoor_sign"), "{stdout}");
    assert!(
        stdout.contains("4 scenario(s): 4 passed, 0 failed"),
        "{stdout}"
    );
    // Never over an existing office.
    let out = run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
}
