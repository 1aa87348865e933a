//! End to end in a real browser: headless Chromium driven over WebDriver (chromedriver),
//! against the real server on a temporary store. An applicant applies online with two
//! files and gets a receipt; the window accepts; two reviewers complete their parallel
//! steps; the case turns yellow on the supervisor's board and gets a card; the applicant
//! answers a supplement request with a file and sees the decision. Also: a refused form
//! shows its errors, another department's case page does not exist, a form without its
//! CSRF token is refused.
//!
//! Needs `chromium` and `chromedriver` on the PATH (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver`). Without them the test says so and passes, so that
//! `cargo test` works on a machine with only Rust; with `GUICHET_CI=1` (set by
//! `.ci/run`) a missing browser fails it: CI never skips it. Screenshots of the main pages go to
//! `target/ui-screenshots/`; with `GUICHET_SCREENSHOTS=docs/ui` they refresh the ones
//! `docs/ui.md` shows.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use guichet_core::clock::ManualClock;
use serde_json::{json, Value};

/// A chromedriver process for one test, killed when dropped.
struct Driver {
    child: std::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether chromedriver can run here; if not, says why (and fails where a browser is
/// required).
fn browser_installed() -> bool {
    let found = std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("GUICHET_CI").is_none(),
            "GUICHET_CI is set and chromedriver is not installed"
        );
        eprintln!(
            "SKIPPED: the browser test needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        );
    }
    found
}

/// Starts chromedriver and opens a headless Chromium session on a fresh profile.
async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian: chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("{}/status", driver.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "chromedriver did not start");
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--window-size=1200,1000".into(),
        "--lang=en-GB".into(),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    args.push("--accept-lang=en-GB,en".into());
    let mut options = json!({ "args": args });
    for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(binary).exists() {
            options["binary"] = json!(binary);
            break;
        }
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = find(c, css).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap();
}

/// Clicks a form's button and waits for the page it leads to: until the old document is
/// gone (a click that posts a form does not wait for the answer).
async fn submit(c: &Client, css: &str) {
    let old = find(c, "html").await;
    click(c, css).await;
    for _ in 0..400 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{css} led nowhere");
}

/// Opens the `<details>` whose summary says `summary`.
async fn open(c: &Client, summary: &str) {
    c.find(Locator::XPath(&format!(
        "//summary[contains(normalize-space(.), \"{summary}\")]"
    )))
    .await
    .unwrap_or_else(|e| panic!("no section '{summary}': {e}"))
    .click()
    .await
    .unwrap();
}

async fn html(c: &Client) -> String {
    c.source().await.unwrap()
}

async fn title(c: &Client) -> String {
    find(c, "h1").await.text().await.unwrap()
}

/// Keeps a screenshot of the page: always under `target/`, and where
/// `GUICHET_SCREENSHOTS` says (the documentation's folder) when set.
async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let mut dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")];
    if let Ok(d) = std::env::var("GUICHET_SCREENSHOTS") {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d));
    }
    for d in dirs {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{name}.png")), &png).unwrap();
    }
}

/// A file for an `<input type="file">` (the browser reads it from disk).
fn file(dir: &Path, name: &str, content: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

async fn set_password(s: &TestServer, staff: &str) {
    let (st, v) = s
        .post(
            "/api/admin/passwords",
            &s.admin,
            json!({ "staff": staff, "password": "correct horse battery" }),
        )
        .await;
    assert!(st.is_success(), "{v}");
}

/// Signs `staff` in through the sign-in page (after signing out whoever was in).
async fn sign_in(c: &Client, base: &str, staff: &str) {
    c.goto(&format!("{base}/staff?lang=en")).await.unwrap();
    if let Ok(out) = c
        .find(Locator::Css("form[action='/staff/sign-out'] button"))
        .await
    {
        let old = find(c, "html").await;
        out.click().await.unwrap();
        while old.tag_name().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        c.goto(&format!("{base}/staff/sign-in?lang=en"))
            .await
            .unwrap();
    }
    fill(c, "#staff", staff).await;
    fill(c, "#password", "correct horse battery").await;
    submit(c, "form[action='/staff/sign-in'] button[type=submit]").await;
    assert_eq!(
        title(c).await,
        "My worklist",
        "{staff} is signed in: {}",
        html(c).await
    );
}

/// Signs the administrator in with the administrator token (after signing out whoever was
/// in), landing on the administrator's page.
async fn sign_in_admin(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/staff?lang=en")).await.unwrap();
    if let Ok(out) = c
        .find(Locator::Css("form[action='/staff/sign-out'] button"))
        .await
    {
        let old = find(c, "html").await;
        out.click().await.unwrap();
        while old.tag_name().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    c.goto(&format!("{base}/staff/sign-in?lang=en"))
        .await
        .unwrap();
    find(c, "details summary").await.click().await.unwrap();
    fill(c, "#token", token).await;
    submit(c, "form[action='/staff/sign-in/admin'] button[type=submit]").await;
    assert_eq!(title(c).await, "Administration", "{}", html(c).await);
}

/// Opens a case page and claims the task whose claim form comes first.
async fn claim_on_case(c: &Client, base: &str, number: &str) {
    c.goto(&format!("{base}/staff/cases/{number}?lang=en"))
        .await
        .unwrap();
    submit(c, "form[action$='/claim'] button").await;
    assert!(html(c).await.contains("Done."));
}

/// Claims the first task it may on the case and completes it with `outcome`.
async fn decide(c: &Client, base: &str, number: &str, outcome: &str) {
    claim_on_case(c, base, number).await;
    submit(c, &format!("button[name=outcome][value={outcome}]")).await;
    assert!(html(c).await.contains("Done."), "{outcome} on {number}");
}

fn open_steps_of(case: &Value) -> Vec<String> {
    open_steps(case)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_goes_from_the_online_form_to_the_decision_in_a_browser() {
    if !browser_installed() {
        return;
    }
    // Tuesday morning, Beijing time: working days ahead.
    let clock = Arc::new(ManualClock::new(bj("2026-12-01 09:00")));
    let s = TestServer::start_at(clock.clone()).await;
    let base = s.base.clone();
    for staff in [
        "zhou.qiang",
        "wu.gang",
        "hu.bo",
        "guo.na",
        "shen.yue",
        "judge.yang",
    ] {
        set_password(&s, staff).await;
    }
    let files = tempfile::tempdir().unwrap();
    let (_driver, c) = browser().await;

    // The applicant finds the service and applies; the first try has mistakes.
    c.goto(&format!("{base}/?lang=zh")).await.unwrap();
    assert!(html(&c).await.contains("新装用电"));
    shot(&c, "home-zh").await;
    c.goto(&format!("{base}/?lang=en")).await.unwrap();
    shot(&c, "home").await;
    c.goto(&format!("{base}/guide/power.connection?lang=en"))
        .await
        .unwrap();
    assert!(html(&c).await.contains("Site plan with supply points"));
    shot(&c, "guide").await;
    c.goto(&format!("{base}/apply/power.connection?lang=en"))
        .await
        .unwrap();
    fill(&c, "#applicant-id", "91310000MA1FL0001X").await;
    fill(&c, "#field-project", "Riverside bakery").await;
    fill(&c, "#field-capacity_kva", "lots").await;
    submit(&c, "form button[type=submit]").await;
    let refused = find(&c, ".error-summary").await.text().await.unwrap();
    assert!(refused.contains("There is a problem with your application"));
    // Each problem links to its field, and what was typed is still there.
    find(&c, ".error-summary a[href='#applicant-name']").await;
    find(&c, ".error-summary a[href='#field-capacity_kva']").await;
    find(&c, "#field-capacity_kva-error").await;
    let kept = find(&c, "#field-project")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("Riverside bakery"));
    shot(&c, "apply-errors").await;
    // Right this time, with two files.
    fill(&c, "#applicant-name", "Riverside Bakery Ltd").await;
    fill(&c, "#applicant-phone", "13800000000").await;
    fill(&c, "#field-capacity_kva", "100").await;
    fill(&c, "#field-supply_points", "2").await;
    find(&c, "#field-voltage")
        .await
        .select_by_value("0.4kV")
        .await
        .unwrap();
    let licence = file(files.path(), "licence.pdf", b"%PDF-1.7 licence");
    let plan = file(files.path(), "plan.pdf", b"%PDF-1.7 site plan");
    find(&c, "#material-licence")
        .await
        .send_keys(&licence)
        .await
        .unwrap();
    find(&c, "#material-site_plan")
        .await
        .send_keys(&plan)
        .await
        .unwrap();
    submit(&c, "form button[type=submit]").await;
    assert_eq!(title(&c).await, "Application received");
    let strong = c.find_all(Locator::Css("strong")).await.unwrap();
    let number = strong[0].text().await.unwrap();
    let code = strong[1].text().await.unwrap();
    assert!(number.starts_with("PWR-NC-"), "{number}");
    let receipt = html(&c).await;
    assert!(receipt.contains("licence.pdf") && receipt.contains("plan.pdf"));
    shot(&c, "receipt").await;
    let id = s.get(&format!("/api/cases/{number}"), &s.admin).await.1["id"]
        .as_u64()
        .unwrap();

    // The window's customer manager accepts it from the worklist.
    sign_in(&c, &base, "zhou.qiang").await;
    assert!(html(&c).await.contains(&number));
    shot(&c, "worklist").await;
    decide(&c, &base, &number, "accept").await;
    assert_eq!(s.case(id).await["status"], "in_progress");

    // The project manager surveys and drafts the scheme; the two reviews run in parallel.
    sign_in(&c, &base, "wu.gang").await;
    decide(&c, &base, &number, "approve").await;
    decide(&c, &base, &number, "approve").await;
    assert_eq!(
        open_steps_of(&s.case(id).await),
        vec!["grid_review", "metering_review"]
    );
    sign_in(&c, &base, "hu.bo").await;
    decide(&c, &base, &number, "approve").await;
    assert_eq!(open_steps_of(&s.case(id).await), vec!["metering_review"]);
    sign_in(&c, &base, "guo.na").await;
    decide(&c, &base, &number, "approve").await;
    assert_eq!(open_steps_of(&s.case(id).await), vec!["construction"]);

    // Time passes: the works near their limit and turn yellow on the head's board.
    let case = s.case(id).await;
    let due: chrono::DateTime<chrono::Utc> = case["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["step"] == "construction")
        .and_then(|t| t["due"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let now = guichet_core::clock::Clock::now(clock.as_ref());
    clock.advance(due - now - chrono::Duration::hours(2));
    sign_in(&c, &base, "shen.yue").await;
    c.goto(&format!("{base}/staff/board?lang=en"))
        .await
        .unwrap();
    let row = c
        .find(Locator::XPath(&format!(
            "//tr[.//a[normalize-space(.)='{number}']]"
        )))
        .await
        .unwrap();
    let badge = row
        .find(Locator::Css(".badge"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(badge, "Warning");
    shot(&c, "board").await;
    c.find(Locator::XPath(&format!(
        "//a[normalize-space(.)='{number}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    open(&c, "Issue a supervision card").await;
    fill(&c, "#card-reason", "Works due tomorrow: report today").await;
    submit(&c, "form[action$='/card'] button").await;
    assert!(html(&c).await.contains("Issued by a supervisor"));
    shot(&c, "case").await;

    // The project manager asks the applicant for a revised site plan.
    sign_in(&c, &base, "wu.gang").await;
    claim_on_case(&c, &base, &number).await;
    open(&c, "Ask the applicant for more").await;
    click(
        &c,
        "input[name=material][value='Site plan with supply points']",
    )
    .await;
    submit(&c, "form[action$='/supplement'] button").await;
    assert_eq!(s.case(id).await["status"], "supplement");

    // The applicant tracks the case and answers with the file.
    c.goto(&format!("{base}/track?lang=en")).await.unwrap();
    fill(&c, "#number", &number).await;
    fill(&c, "#code", &code).await;
    submit(&c, "form[action='/track'] button").await;
    let page = html(&c).await;
    assert!(page.contains("Waiting for you"), "{page}");
    assert!(page.contains("Site plan with supply points"));
    shot(&c, "tracked-supplement").await;
    let revised = file(files.path(), "plan-v2.pdf", b"%PDF-1.7 revised plan");
    find(&c, "#material-site_plan")
        .await
        .send_keys(&revised)
        .await
        .unwrap();
    submit(&c, "form[action='/track/supply'] button").await;
    assert!(html(&c).await.contains("your materials were received"));
    assert_eq!(s.case(id).await["status"], "in_progress");

    // The works are done; commissioning runs by itself and the case is approved.
    sign_in(&c, &base, "wu.gang").await;
    c.goto(&format!("{base}/staff/cases/{number}?lang=en"))
        .await
        .unwrap();
    assert!(html(&c).await.contains("plan-v2.pdf"));
    submit(&c, "button[name=outcome][value=approve]").await;
    assert_eq!(s.case(id).await["status"], "approved");
    c.goto(&format!("{base}/track?lang=en")).await.unwrap();
    fill(&c, "#number", &number).await;
    fill(&c, "#code", &code).await;
    submit(&c, "form[action='/track'] button").await;
    let page = html(&c).await;
    assert!(page.contains("Approved"), "{page}");
    assert!(page.contains("Your materials received"));
    shot(&c, "tracked-decided").await;

    // The auditor reads what happened and verifies the chain.
    set_password(&s, "audit.zhang").await;
    sign_in(&c, &base, "audit.zhang").await;
    c.goto(&format!("{base}/audit?lang=en&verify=1"))
        .await
        .unwrap();
    let page = html(&c).await;
    assert!(page.contains("intact"), "{page}");
    assert!(
        page.contains("case.submitted"),
        "the case's entries: {page}"
    );
    shot(&c, "audit").await;

    // The administrator signs in with the administrator token and sees the scripts live.
    sign_in_admin(&c, &base, &s.admin).await;
    let page = html(&c).await;
    assert!(page.contains("power.connection"), "{page}");
    shot(&c, "admin").await;

    // The figures of the month: the case decided, its time against the limits, drawn.
    c.goto(&format!("{base}/staff/stats?lang=en"))
        .await
        .unwrap();
    let page = html(&c).await;
    assert!(page.contains("New power connection"), "{page}");
    assert!(page.contains("<svg class=\"chart\""), "{page}");
    shot(&c, "stats").await;

    // A judge of the court has no business with a power connection: no such page.
    sign_in(&c, &base, "judge.yang").await;
    c.goto(&format!("{base}/staff/cases/{number}?lang=en"))
        .await
        .unwrap();
    let page = html(&c).await;
    assert!(page.contains("This page does not exist"));
    assert!(!page.contains("Riverside Bakery"));

    // A form posted without the browser's CSRF token (as a forged cross-site form
    // would be) is refused and changes nothing.
    c.goto(&format!("{base}/track?lang=en")).await.unwrap();
    c.delete_cookie("guichet_csrf").await.unwrap();
    fill(&c, "#number", &number).await;
    fill(&c, "#code", &code).await;
    submit(&c, "form[action='/track'] button").await;
    let page = html(&c).await;
    assert!(!page.contains("Approved"), "{page}");
    assert!(page.contains("This form has expired"), "{page}");
    c.close().await.unwrap();
}
