//! The server on PostgreSQL: the same API on a shared database, across a restart and with
//! two nodes at once (`GUICHET_TEST_POSTGRES`, a cluster started by `.ci/postgres`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::StatusCode;
use serde_json::json;

/// A node of the office: the example scripts, a data folder of its own, the shared store.
async fn node(store: &str, data: &std::path::Path) -> TestServer {
    node_on(store, example_scripts(), data).await
}

async fn node_on(store: &str, scripts: std::path::PathBuf, data: &std::path::Path) -> TestServer {
    let store = store.to_string();
    TestServer::start_configured(
        scripts,
        data.to_path_buf(),
        Arc::new(SystemClock),
        move |c| c.store = Some(store.into()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_runs_on_postgresql_and_survives_a_restart() {
    let Some(db) = postgres_database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = node(&db, &tmp.path().join("a")).await;
    let (id, number, code) = s.submit(power_case(1250.0)).await;
    assert!(number.ends_with("-000001"), "{number}");
    let clerk = s.token("zhou.qiang").await;
    let case = s.act(&clerk, id, "intake", "accept", json!({})).await;
    assert_eq!(case["status"], "in_progress");
    let (st, tracked) = s
        .call(
            "GET",
            &format!("/api/track/{number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tracked}");
    assert!(tracked["progress"].as_array().unwrap().len() >= 2);
    // The worklist, search, statistics and notices read the same database.
    let (_, found) = s.get("/api/cases?procedure=power.connection", &clerk).await;
    assert_eq!(found["cases"].as_array().unwrap().len(), 1);
    let (st, stats) = s.get("/api/stats", &s.admin).await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    let (_, notices) = s.get(&format!("/api/cases/{id}/notices"), &s.admin).await;
    assert!(!notices["notices"].as_array().unwrap().is_empty());
    // A restart keeps everything: the case, its token, its history, the next number.
    let data = s.data.clone();
    let mut s = s;
    s.shutdown().await;
    let s = node(&db, &data).await;
    let case = s.case(id).await;
    assert_eq!(case["number"], number.as_str());
    assert_eq!(case["history"].as_array().unwrap().len(), 2);
    let (st, _) = s.get("/api/tasks", &clerk).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "a token issued before the restart still works"
    );
    let (_, second, _) = s.submit(power_case(400.0)).await;
    assert!(second.ends_with("-000002"), "{second}");
    let auditor = s.token("audit.zhang").await;
    let (_, verdict) = s.get("/api/audit/verify", &auditor).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_share_cases_numbers_and_the_audit_chain() {
    let Some(db) = postgres_database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&db, &tmp.path().join("a")).await;
    let mut b = node(&db, &tmp.path().join("b")).await;
    // The administrator was created by the first node; the second writes no token file.
    assert!(b.admin.is_empty());
    b.admin = a.admin.clone();
    // Submissions spread over both nodes, concurrently.
    let mut submitted = Vec::new();
    for round in 0..10 {
        let (x, y) = tokio::join!(
            a.call(
                "POST",
                "/api/cases",
                None,
                Some(power_case(100.0 + round as f64))
            ),
            b.call(
                "POST",
                "/api/cases",
                None,
                Some(power_case(200.0 + round as f64))
            ),
        );
        for (st, v) in [x, y] {
            assert_eq!(st, StatusCode::CREATED, "{v}");
            submitted.push((
                v["case"]["id"].as_u64().unwrap(),
                v["case"]["number"].as_str().unwrap().to_string(),
            ));
        }
    }
    // Numbers gap-free and unique across the nodes.
    let numbers: BTreeSet<u64> = submitted
        .iter()
        .map(|(_, n)| n.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers, (1..=20).collect::<BTreeSet<u64>>());
    // A token issued on one node works on the other; a case submitted on one is worked
    // on the other.
    let clerk = a.token("zhou.qiang").await;
    let (id, _) = submitted[0].clone();
    let task = b.task_at(&clerk, id, "intake").await;
    let (st, v) = b
        .post(&format!("/api/tasks/{task}/claim"), &clerk, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let case = a.case(id).await;
    assert_eq!(case["tasks"][0]["claimed_by"], "zhou.qiang", "{case}");
    // A revoked token is refused on the other node too.
    let (_, issued) = a
        .post(
            "/api/admin/tokens",
            &a.admin,
            json!({ "subject": "li.wei", "label": "revoke me" }),
        )
        .await;
    let secret = issued["token"].as_str().unwrap().to_string();
    let (st, _) = b.get("/api/me", &secret).await;
    assert_eq!(st, StatusCode::OK);
    let token_id = issued["record"]["id"].as_str().unwrap();
    let (st, _) = a
        .call(
            "DELETE",
            &format!("/api/admin/tokens/{token_id}"),
            Some(&a.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut refused = false;
    for _ in 0..20 {
        if b.get("/api/me", &secret).await.0 == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "a token revoked on node a still works on node b after 2 s"
    );
    // One audit chain, whichever node wrote its entries.
    let auditor = b.token("audit.zhang").await;
    for s in [&a, &b] {
        let (_, verdict) = s.get("/api/audit/verify", &auditor).await;
        assert_eq!(verdict["ok"], true, "{verdict}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_worked_on_both_nodes_in_turn_goes_by_the_case_as_stored() {
    // A node keeps the cases it committed, to change them again without reading them;
    // what the other node did meanwhile must count as if it had read them.
    let Some(db) = postgres_database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&db, &tmp.path().join("a")).await;
    let mut b = node(&db, &tmp.path().join("b")).await;
    b.admin = a.admin.clone();
    let (st, v) = a
        .call("POST", "/api/cases", None, Some(power_case(100.0)))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["case"]["id"].as_u64().unwrap();
    let clerk = a.token("zhou.qiang").await;
    let surveyor = a.token("wu.gang").await;
    let intake = a.task_at(&clerk, id, "intake").await;
    let (st, v) = a
        .post(
            &format!("/api/tasks/{intake}/complete"),
            &clerk,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Claimed on node b, then completed on node a, which committed the case before the
    // claim: done, with the claim kept.
    let survey = b.task_at(&surveyor, id, "site_survey").await;
    let (st, v) = b
        .post(&format!("/api/tasks/{survey}/claim"), &surveyor, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = a
        .post(
            &format!("/api/tasks/{survey}/complete"),
            &surveyor,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Node b last committed the claim: completing the task again there is refused as
    // on the case as stored, and changes nothing.
    let before = a.case(id).await;
    let (st, v) = b
        .post(
            &format!("/api/tasks/{survey}/complete"),
            &surveyor,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already completed"),
        "{v}"
    );
    let after = b.case(id).await;
    assert!(before["rev"].is_u64(), "{before}");
    assert_eq!(before["rev"], after["rev"], "{after}");
    // The task the completion opened, which node b has not seen: done on node b.
    let next = after["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["state"] == "open" && t["step"] == "scheme_draft")
        .unwrap_or_else(|| panic!("no scheme_draft task in {after}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = b
        .post(
            &format!("/api/tasks/{next}/complete"),
            &surveyor,
            json!({ "outcome": "approve" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let history = a.case(id).await["history"].clone();
    let completed = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "completed")
        .count();
    assert_eq!(completed, 3, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_and_a_delegation_on_one_node_reach_the_other() {
    let Some(db) = postgres_database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (sa, sb) = (tmp.path().join("scripts-a"), tmp.path().join("scripts-b"));
    // Each node its own folder.
    copy_scripts(&sa, false);
    copy_scripts(&sb, false);
    let a = node_on(&db, sa.clone(), &tmp.path().join("a")).await;
    let mut b = node_on(&db, sb, &tmp.path().join("b")).await;
    b.admin = a.admin.clone();
    let names = |v: serde_json::Value| -> Vec<String> {
        v["procedures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The administrator edits the scripts of node a only.
    let file = sa.join("power").join("new_connection.rhai");
    let src = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        src.replace(
            "\"New power connection\"",
            "\"New power connection (2027 rules)\"",
        ),
    )
    .unwrap();
    let (st, v) = a
        .post("/api/admin/scripts/reload", &a.admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut reached = false;
    for _ in 0..40 {
        let (_, v) = b.call("GET", "/api/procedures", None, None).await;
        if names(v).contains(&"New power connection (2027 rules)".to_string()) {
            reached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        reached,
        "node b did not take over node a's reload within 4 s"
    );
    // Node b's own folder (unchanged) does not push the old rules back.
    let (st, v) = b
        .post("/api/admin/scripts/reload", &b.admin, json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], json!([]), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for s in [&a, &b] {
        let (_, v) = s.call("GET", "/api/procedures", None, None).await;
        assert!(names(v).contains(&"New power connection (2027 rules)".to_string()));
    }
    // A case submitted on b runs on the version a made live.
    let (id, _, _) = b.submit(power_case(630.0)).await;
    let case = a.case(id).await;
    let (_, live) = a.get("/api/admin/scripts", &a.admin).await;
    assert_eq!(
        case["version"], live["procedures"]["power.connection"],
        "{case}"
    );
    // A delegation given on a holds on b.
    let (st, d) = a
        .post(
            "/api/delegations",
            &a.admin,
            json!({
                "from": "li.wei", "to": "zhao.min", "starts": "2030-01-01", "ends": "2030-01-05",
                "reason": "annual leave"
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    let mut seen = false;
    for _ in 0..30 {
        let (_, v) = b.get("/api/delegations", &b.admin).await;
        if v["delegations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["to"] == "zhao.min")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "node b did not see node a's delegation within 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_moves_its_embedded_store_to_postgresql_whole() {
    let Some(db) = postgres_database() else {
        return;
    };
    // An office at work on the embedded store: cases moving, a file, tokens, notices.
    let mut s = TestServer::start().await;
    let (st, v) = s
        .submit_files(
            None,
            power_case(800.0),
            &[("licence", "licence.pdf", b"%PDF-1.4 the licence")],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let with_file = v["case"]["id"].as_u64().unwrap();
    let sha = v["case"]["materials"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|m| m["sha256"].as_str())
        .unwrap()
        .to_string();
    let clerk = s.token("zhou.qiang").await;
    let accepted = s
        .act(&clerk, with_file, "intake", "accept", json!({}))
        .await;
    let (second, second_number, code) = s.submit(power_case(100.0)).await;
    let (_, before) = s.get(&format!("/api/cases/{with_file}"), &s.admin).await;
    let (admin, data) = (s.admin.clone(), s.data.clone());
    s.shutdown().await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["store", "copy", "--from"])
        .arg(&data)
        .args(["--to", &db])
        .env("GUICHET_LOG", "warn")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("2 cases") && said.contains("audit chain intact"),
        "{said}"
    );

    // A node on the copy: the same cases, history, file, tokens; work and numbers go on.
    let tmp = tempfile::tempdir().unwrap();
    let mut n = node(&db, &tmp.path().join("node")).await;
    n.admin = admin;
    let (_, after) = n.get(&format!("/api/cases/{with_file}"), &n.admin).await;
    for k in [
        "number",
        "rev",
        "status",
        "history",
        "tasks",
        "closed_tasks",
        "notices",
    ] {
        assert_eq!(after[k], before[k], "{k} differs after the copy");
    }
    assert_eq!(accepted["status"], after["status"]);
    let (st, _) = n
        .call(
            "GET",
            &format!("/api/cases/{with_file}/files/{sha}"),
            Some(&clerk),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the uploaded file came along");
    let (st, tracked) = n
        .call(
            "GET",
            &format!("/api/track/{second_number}?code={code}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tracked}");
    // The worklist is rebuilt from the copied cases.
    let task = n.task_at(&clerk, second, "intake").await;
    let (st, v) = n
        .post(
            &format!("/api/tasks/{task}/complete"),
            &clerk,
            json!({ "outcome": "accept" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, third, _) = n.submit(power_case(50.0)).await;
    assert!(
        third.ends_with("-000003"),
        "numbers go on from the copy: {third}"
    );
    let auditor = n.token("audit.zhang").await;
    let (_, verdict) = n.get("/api/audit/verify", &auditor).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    n.shutdown().await;

    // The database is no longer empty: a second copy is refused, nothing written.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["store", "copy", "--from"])
        .arg(&data)
        .args(["--to", &db])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_notice_once() {
    let Some(db) = postgres_database() else {
        return;
    };
    let (rx, url) = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let with_webhook = |data: std::path::PathBuf| {
        let (db, url) = (db.clone(), url.clone());
        TestServer::start_configured(example_scripts(), data, Arc::new(SystemClock), move |c| {
            c.store = Some(db.into());
            let table: toml::Value = toml::from_str(&format!(
                "[channels.sms]\nurl = \"{url}/sms\"\nsecret = \"a-webhook-secret-of-some-length\"\n"
            ))
            .unwrap();
            c.plugins.insert("webhook".into(), table);
        })
    };
    let a = with_webhook(tmp.path().join("a")).await;
    let mut b = with_webhook(tmp.path().join("b")).await;
    b.admin = a.admin.clone();
    let tax = |i: usize| {
        json!({
            "procedure": "tax.vat_general",
            "applicant": { "id": format!("91310000MA1FL{i:04}K"), "name": "Acme Trading", "phone": "13900000001" },
            "data": { "annual_sales": 8000000 },
        })
    };
    let mut ids = Vec::new();
    for i in 0..10 {
        let (x, y) = tokio::join!(
            a.call("POST", "/api/cases", None, Some(tax(2 * i))),
            b.call("POST", "/api/cases", None, Some(tax(2 * i + 1))),
        );
        for (st, v) in [x, y] {
            assert_eq!(st, StatusCode::CREATED, "{v}");
            ids.push(v["case"]["id"].as_u64().unwrap());
        }
    }
    // Every receipt delivered, by one node or the other...
    let mut delivered = false;
    for _ in 0..100 {
        let mut all = true;
        for id in &ids {
            let (_, v) = a.get(&format!("/api/cases/{id}/notices"), &a.admin).await;
            all &= v["notices"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["channel"] == "sms")
                .all(|n| n["status"] == "delivered");
        }
        if all {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(delivered, "not every notice was delivered within 10 s");
    // ... and each exactly once: the gateway saw every delivery id once.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let hits = rx.hits("/sms");
    let ids_seen: Vec<String> = hits
        .iter()
        .map(|h| {
            h.headers["x-guichet-delivery"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: BTreeSet<&String> = ids_seen.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "one receipt per case: {ids_seen:?}"
    );
    assert_eq!(
        ids_seen.len(),
        unique.len(),
        "a notice delivered twice: {ids_seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reconnects_when_the_database_drops_its_connections() {
    let Some(db) = postgres_database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = node(&db, &tmp.path().join("a")).await;
    s.submit(power_case(100.0)).await;
    // As in a failover or a restart of PostgreSQL: every connection of the node is cut.
    let name = db.rsplit_once('/').unwrap().1.to_string();
    let base = std::env::var("GUICHET_TEST_POSTGRES").unwrap();
    let cut = std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .unwrap()
            .len()
    })
    .join()
    .unwrap();
    assert!(cut > 0, "the node held connections");
    // The node answers again at once: a broken connection is replaced, and a request that
    // met one is told to retry (503), never a 500.
    let mut ok = false;
    for _ in 0..20 {
        let (st, v) = s
            .call("POST", "/api/cases", None, Some(power_case(200.0)))
            .await;
        assert_ne!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
        if st == StatusCode::CREATED {
            ok = true;
            break;
        }
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the node did not recover from cut connections");
    // Ready again too (a probe may meet one more cut connection, answered 503, and the
    // connections given back before it are then checked before use).
    let mut ready = false;
    for _ in 0..20 {
        let (st, v) = s.get("/api/ready", &s.admin).await;
        assert_ne!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
        if st == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the node did not become ready again");
}

/// A PostgreSQL cluster of the test's own (TLS with a certificate of the test CA, or
/// settings a test needs), stopped when dropped.
struct Cluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    run_as: Option<&'static str>,
    /// The server's options (`pg_ctl -o`).
    opts: String,
    tls: bool,
}

impl Cluster {
    /// `None` without PostgreSQL's programs (then the test says it skipped; in CI it
    /// may not). `settings`: more `-c name=value` options.
    fn start(ca: Option<&common::tls::TestCa>, settings: &str) -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max());
        let Some(bin) = bin.filter(|b| b.join("initdb").is_file()) else {
            assert!(
                std::env::var_os("GUICHET_CI").is_none(),
                "PostgreSQL's programs are missing (.ci/postgres installs them)"
            );
            eprintln!("skipped: no /usr/lib/postgresql/*/bin/initdb");
            return None;
        };
        // initdb refuses root: the cluster belongs to the user `.ci/postgres` made.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then_some("guichetpg");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=localhost {settings}",
            dir.path().display()
        );
        if let Some(ca) = ca {
            for (name, pem) in [("server.crt", &ca.cert_pem), ("server.key", &ca.key_pem)] {
                std::fs::write(dir.path().join(name), pem).unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
        }
        let c = Cluster {
            bin,
            dir,
            port,
            run_as,
            opts,
            tls: ca.is_some(),
        };
        if let Some(user) = run_as {
            let chown = std::process::Command::new("chown")
                .args(["-R", user])
                .arg(c.dir.path())
                .status()
                .unwrap();
            assert!(
                chown.success(),
                "chown to {user} (run .ci/postgres once to create it)"
            );
        }
        let data = c.dir.path().join("data");
        c.run(&[
            "initdb".as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "--auth=trust".as_ref(),
            "--no-sync".as_ref(),
        ]);
        c.up();
        Some(c)
    }

    /// Starts the server (again).
    fn up(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        self.run(&[
            "pg_ctl".as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-o".as_ref(),
            self.opts.as_ref(),
            "start".as_ref(),
        ]);
    }

    /// Stops the server as a crash would: at once, nothing written that was not yet.
    fn crash(&self) {
        let data = self.dir.path().join("data");
        self.run(&[
            "pg_ctl".as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "stop".as_ref(),
        ]);
    }

    fn run(&self, args: &[&std::ffi::OsStr]) {
        let program = self.bin.join(args[0]);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => std::process::Command::new(&program),
        };
        let out = cmd.args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        let tls = if self.tls { "?sslmode=require" } else { "" };
        format!("postgres://postgres@localhost:{}/postgres{tls}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.crash();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_transition_survives_a_crash_of_the_database() {
    // The log writer left alone for ten seconds: what is not flushed by the node's
    // commits stays in PostgreSQL's memory, and the crash loses it.
    let Some(cluster) = Cluster::start(None, "-c wal_writer_delay=10000") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = node(&cluster.url(), &tmp.path().join("a")).await;
    let clerk = s.token("zhou.qiang").await;
    let mut answered = Vec::new();
    for i in 0..5 {
        let (id, number, _) = s.submit(power_case(100.0 + f64::from(i))).await;
        s.act(&clerk, id, "intake", "accept", json!({})).await;
        answered.push((id, number));
    }
    // At once after the last answer.
    cluster.crash();
    cluster.up();
    let mut s = s;
    s.shutdown().await;
    let s = node(&cluster.url(), &tmp.path().join("a")).await;
    for (id, number) in &answered {
        let case = s.case(*id).await;
        assert_eq!(case["number"], number.as_str());
        assert_eq!(
            case["history"].as_array().unwrap().len(),
            2,
            "case {number} lost an answered transition: {case}"
        );
    }
    let auditor = s.token("audit.zhang").await;
    let (_, verdict) = s.get("/api/audit/verify", &auditor).await;
    assert_eq!(verdict["ok"], true, "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_talks_to_postgresql_over_tls_trusting_the_office_ca() {
    let ca = common::tls::TestCa::new();
    let Some(cluster) = Cluster::start(Some(&ca), "") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("office-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    // Without the office's CA the database's certificate is not trusted: no start.
    let url = cluster.url();
    let refused = std::thread::spawn(move || {
        guichet_core::store::postgres::PgStore::open(&url, 1, None).err()
    })
    .join()
    .unwrap();
    let refused = refused
        .expect("a certificate of an unknown CA must be refused")
        .to_string();
    assert!(
        refused.contains("certificate") || refused.contains("Unknown"),
        "{refused}"
    );
    // With it, the node runs, over TLS.
    let (url, ca) = (cluster.url(), ca_file.clone());
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        move |c| {
            c.store = Some(url.into());
            c.store_ca_file = Some(ca);
        },
    )
    .await;
    let (_, number, _) = s.submit(power_case(300.0)).await;
    assert!(number.ends_with("-000001"));
    let port = cluster.port;
    let encrypted: i64 = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(
            &format!("postgres://postgres@localhost:{port}/postgres?sslmode=disable"),
            postgres::NoTls,
        )
        .unwrap();
        c.query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND application_name = '' AND backend_type = 'client backend'",
            &[],
        )
        .unwrap()
        .get(0)
    })
    .join()
    .unwrap();
    assert!(encrypted > 0, "the node's connections are not encrypted");
}
