//! The public pages over HTTP: services, service guides and tracking, in Chinese and
//! English, without JavaScript, with the security headers, CSRF tokens and escaping a
//! public site needs.

mod common;

use std::sync::Arc;

use common::*;
use guichet_core::clock::SystemClock;
use reqwest::header::{ACCEPT_LANGUAGE, CONTENT_SECURITY_POLICY, SET_COOKIE};
use reqwest::StatusCode;

/// A browser as far as these pages care: it keeps the cookies it is given.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Browser {
    fn new(s: &TestServer) -> Browser {
        Browser {
            // Redirects are looked at, not followed: they carry the session cookie.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookies: Default::default(),
        }
    }

    fn with_cookies(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let jar = self.cookies.lock().unwrap();
        if jar.is_empty() {
            return r;
        }
        let header = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        r.header(reqwest::header::COOKIE, header)
    }

    fn keep(&self, h: &reqwest::header::HeaderMap) {
        let mut jar = self.cookies.lock().unwrap();
        for v in h.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            if let Some((k, val)) = pair.split_once('=') {
                jar.insert(k.to_string(), val.to_string());
            }
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let r = self
            .with_cookies(self.client.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        let (st, h) = (r.status(), r.headers().clone());
        self.keep(&h);
        (st, h, r.text().await.unwrap())
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .with_cookies(self.client.post(format!("{}{path}", self.base)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&r.headers().clone());
        (r.status(), r.text().await.unwrap())
    }
}

/// Percent-encoding of a form value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden CSRF field of a page's form.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_page_lists_procedures_by_department_in_the_readers_language() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let (st, h, html) = b.get("/?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    assert!(h[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(!html.contains("<script"), "pages need no script");
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("Power Supply Company"));
    assert!(html.contains("href=\"/guide/power.connection\">New power connection</a>"));
    assert!(html.contains("Done within 15 working days"));
    // The choice is remembered.
    let (_, _, html) = b.get("/").await;
    assert!(html.contains("<html lang=\"en\">"));
    // A browser that prefers Chinese, without a choice, reads Chinese.
    let r = reqwest::Client::new()
        .get(format!("{}/", s.base))
        .header(ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9,en;q=0.8")
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"zh\">"));
    assert!(
        html.contains("供电公司") && html.contains("新装用电"),
        "{html}"
    );
    // Search narrows the list.
    let (_, _, html) = b.get("/?q=invoice").await;
    assert!(html.contains("First purchase of invoices"));
    assert!(!html.contains("New power connection"));
    // Pages and the stylesheet go out compressed to a browser that asks.
    for path in [
        "/?lang=en".to_string(),
        guichet::web::css_path().to_string(),
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", s.base))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
        let sent = r.bytes().await.unwrap();
        assert!(sent.starts_with(&[0x1f, 0x8b]), "{path}: gzip data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_guide_is_a_printable_page_of_public_facts() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let (st, _, html) = b.get("/guide/power.connection?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    for fact in [
        "<h1>New power connection</h1>",
        "15 working days",
        "22 working days",
        "Site plan with supply points",
        "PDF, DWG",
        "Grid and metering review",
        "Grid review, Metering review",
        "Power Supply Business Rules",
        "Monday to Friday",
    ] {
        assert!(html.contains(fact), "{fact} missing");
    }
    for internal in [
        "power.project",
        "capacity_kva &gt; 630",
        "commission",
        ".rhai",
    ] {
        assert!(!html.contains(internal), "{internal} on a public page");
    }
    // The stylesheet: fingerprinted, cached for ever, with print rules.
    let css = html
        .split("href=\"")
        .find_map(|s| s.strip_prefix("/static/"))
        .and_then(|s| s.split('"').next())
        .unwrap();
    let (st, h, body) = b.get(&format!("/static/{css}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(body.contains("@media print"));
    let (st, _, _) = b.get("/static/site.0000000000.css").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, html) = b.get("/guide/no.such.procedure").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(html.contains("<h1>"));
    // Any unknown address outside the API is a page too; inside it, JSON.
    let (st, h, html) = b.get("/no/such/page").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(html.contains("This page does not exist"));
    let (st, h, _) = b.get("/api/no/such/route").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_tracks_a_case_with_its_number_and_query_code() {
    let s = TestServer::start().await;
    let (id, number, code) = s.submit(power_case(100.0)).await;
    let clerk = s.token("zhou.qiang").await;
    s.act(&clerk, id, "intake", "accept", serde_json::json!({}))
        .await;
    // From the home page's tracking box, straight to the case.
    let home = Browser::new(&s);
    let (_, _, page) = home.get("/?lang=en").await;
    assert!(page.contains("action=\"/track\""), "{page}");
    let (st, html) = home
        .post_form(
            "/track?lang=en",
            &[
                ("csrf", &csrf_of(&page)),
                ("number", &number),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&number));
    let b = Browser::new(&s);
    let (st, h, form) = b.get("/track?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    let cookie = h
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        cookie.contains("guichet_csrf=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let csrf = csrf_of(&form);
    // Everything wrong at once, each next to its field, with a summary that links to it.
    let (st, html) = b
        .post_form("/track", &[("csrf", &csrf), ("number", ""), ("code", "")])
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("class=\"error-summary\""));
    assert!(html.contains("href=\"#number\">Enter the application number"));
    assert!(html.contains("href=\"#code\">Enter the query code"));
    // A wrong code looks like a missing case.
    let (st, html) = b
        .post_form(
            "/track",
            &[("csrf", &csrf), ("number", &number), ("code", "WRONG123")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("No application has this number and query code"));
    assert!(!html.contains("WRONG123"), "the code is not echoed back");
    // The right code: where the case is, in plain words.
    let (st, html) = b
        .post_form(
            "/track",
            &[
                ("csrf", &csrf),
                ("number", &number),
                ("code", &code.to_lowercase()),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("<h1>{number}</h1>")));
    assert!(html.contains("In progress"));
    assert!(html.contains("Site survey"), "the current step by name");
    assert!(html.contains("Application received"));
    assert!(
        !html.contains("zhou.qiang"),
        "no staff names for the applicant"
    );
    // The same in Chinese.
    let (_, html) = b
        .post_form(
            "/track?lang=zh",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert!(
        html.contains("办理中") && html.contains("现场勘查"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_the_browsers_csrf_token_is_refused_and_guesses_are_limited() {
    let s = TestServer::start().await;
    let (_, number, code) = s.submit(power_case(100.0)).await;
    let b = Browser::new(&s);
    // No token, or a token of another browser: refused before anything is looked up.
    let (st, _) = b
        .post_form("/track", &[("number", &number), ("code", &code)])
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, _, form) = b.get("/track").await;
    let csrf = csrf_of(&form);
    let other = Browser::new(&s);
    let (st, _) = other
        .post_form(
            "/track",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Wrong codes count against the address, as on the API.
    for i in 0..10 {
        let (st, _) = b
            .post_form(
                "/track",
                &[
                    ("csrf", &csrf),
                    ("number", &number),
                    ("code", &format!("BAD{i:05}")),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (_, html) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert!(html.contains("Too many wrong query codes"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_a_script_gives_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("office.rhai"),
        r#"
office(#{ name: "Hall <b>", language: "en" });
department(#{ id: "d", name: "Dept <script>alert(1)</script>" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "P\"><img src=x onerror=alert(1)>", department: "d", promised_days: 1, statutory_days: 2, intake: "g",
    guide: #{ description: "<iframe src=//evil>" },
    start: "s", steps: [ #{ id: "s", name: "S", group: "g", next: "@approved" } ],
});
"#,
    )
    .unwrap();
    let s = TestServer::start_with(scripts, tmp.path().join("data"), Arc::new(SystemClock)).await;
    let b = Browser::new(&s);
    for path in ["/", "/guide/p"] {
        let (_, _, html) = b.get(path).await;
        for raw in ["<script>alert", "<img src=x", "<iframe", "Hall <b>"] {
            assert!(!html.contains(raw), "{raw} unescaped on {path}");
        }
        assert!(html.contains("&lt;"));
    }
}

impl Browser {
    /// Sends a form with files, as a browser does with `enctype="multipart/form-data"`.
    async fn post_multipart(
        &self,
        path: &str,
        parts: &[(String, Option<&str>, &[u8])],
    ) -> (StatusCode, String) {
        let (content_type, body) = multipart(parts);
        let r = self
            .with_cookies(self.client.post(format!("{}{path}", self.base)))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&r.headers().clone());
        (r.status(), r.text().await.unwrap())
    }
}

/// The text parts of an application form.
fn text_parts<'a>(fields: &'a [(&'a str, &'a str)]) -> Vec<(String, Option<&'a str>, &'a [u8])> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), None, v.as_bytes()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_applies_online_with_files_and_gets_a_receipt() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let (st, _, form) = b.get("/apply/power.connection?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    assert!(form.contains("enctype=\"multipart/form-data\""));
    // Every input has its label; files say what they accept.
    for id in [
        "applicant-name",
        "applicant-id",
        "field-project",
        "field-capacity_kva",
        "field-voltage",
        "material-site_plan",
    ] {
        assert!(
            form.contains(&format!("<label for=\"{id}\">")),
            "{id} has no label"
        );
        assert!(form.contains(&format!("id=\"{id}\"")), "{id} has no input");
    }
    assert!(form.contains("accept=\".pdf,.dwg\""));
    assert!(!form.contains("meter_number"), "staff fields are not asked");
    let csrf = csrf_of(&form);

    // Everything wrong at once, each next to its field; what was typed stays.
    let wrong = [
        ("csrf", csrf.as_str()),
        ("applicant.name", ""),
        ("applicant.id", "91310000MA1FL0001X"),
        ("field.project", "Metro line 14"),
        ("field.capacity_kva", "lots"),
        ("field.supply_points", "20"),
        ("field.voltage", "10kV"),
    ];
    let mut parts = text_parts(&wrong);
    parts.push((
        "material.licence".into(),
        Some("licence.pdf"),
        b"MZ not a pdf",
    ));
    let (st, html) = b
        .post_multipart("/apply/power.connection?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    for anchor in [
        "#applicant-name",
        "#field-capacity_kva",
        "#material-licence",
        "#material-site_plan",
    ] {
        assert!(
            html.contains(&format!("href=\"{anchor}\"")),
            "no summary link to {anchor}"
        );
    }
    assert!(html.contains("id=\"field-capacity_kva-error\""));
    assert!(
        html.contains("value=\"Metro line 14\""),
        "what was typed is kept"
    );

    // Right this time: a receipt with the number and the query code.
    let right = [
        ("csrf", csrf.as_str()),
        ("applicant.name", "Metro Construction Co."),
        ("applicant.id", "91310000MA1FL0001X"),
        ("applicant.phone", "13800000000"),
        ("field.project", "Metro line 14"),
        ("field.capacity_kva", "40000"),
        ("field.supply_points", "20"),
        ("field.voltage", "10kV"),
        ("field.temporary", "yes"),
    ];
    let mut parts = text_parts(&right);
    parts.push((
        "material.licence".into(),
        Some("licence.pdf"),
        b"%PDF-1.7 licence",
    ));
    parts.push((
        "material.site_plan".into(),
        Some("plan.dwg"),
        b"AC1032 plan",
    ));
    parts.push(("material.load_list".into(), Some(""), b""));
    let (st, receipt) = b
        .post_multipart("/apply/power.connection?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{receipt}");
    assert!(receipt.contains("Application received"));
    let number = receipt
        .split("<strong>")
        .nth(1)
        .and_then(|s| s.split("</strong>").next())
        .unwrap()
        .to_string();
    let code = receipt
        .split("<strong>")
        .nth(2)
        .and_then(|s| s.split("</strong>").next())
        .unwrap()
        .to_string();
    assert!(number.starts_with("PWR-NC-"), "{number}");
    assert_eq!(code.len(), 8);
    assert!(receipt.contains("plan.dwg"));
    // The case holds what was sent, typed, with the files by hash.
    let clerk = s.token("zhou.qiang").await;
    let (_, case) = s.get(&format!("/api/cases/{number}"), &clerk).await;
    assert_eq!(case["data"]["capacity_kva"], 40000.0);
    assert_eq!(case["data"]["temporary"], true);
    assert_eq!(case["channel"], "online");
    assert!(case["materials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["sha256"].is_string()));
    // And the receipt's number and code track it.
    let (st, html) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("Received, waiting for acceptance"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_without_the_browsers_token_is_refused() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let parts = text_parts(&[("applicant.name", "X"), ("applicant.id", "X1")]);
    let (st, _) = b.post_multipart("/apply/power.connection", &parts).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let clerk = s.token("zhou.qiang").await;
    let (_, tasks) = s.get("/api/tasks", &clerk).await;
    assert!(tasks["tasks"].as_array().unwrap().is_empty());
}

/// Where a redirect points.
fn location(h: &reqwest::header::HeaderMap) -> String {
    h.get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

impl Browser {
    async fn post_form_full(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .with_cookies(self.client.post(format!("{}{path}", self.base)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let h = r.headers().clone();
        self.keep(&h);
        (r.status(), h, r.text().await.unwrap())
    }

    /// Signs in as `staff`, whose password the administrator has just set.
    async fn sign_in(&self, s: &TestServer, staff: &str) -> String {
        let (st, _) = s
            .post(
                "/api/admin/passwords",
                &s.admin,
                serde_json::json!({ "staff": staff, "password": "correct horse battery" }),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let (_, _, form) = self.get("/staff/sign-in?lang=en").await;
        let csrf = csrf_of(&form);
        let (st, h, _) = self
            .post_form_full(
                "/staff/sign-in",
                &[
                    ("csrf", &csrf),
                    ("staff", staff),
                    ("password", "correct horse battery"),
                ],
            )
            .await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        assert_eq!(location(&h), "/staff");
        csrf
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_signs_in_works_the_worklist_and_decides_on_the_case_page() {
    let s = TestServer::start().await;
    let (st, v) = s
        .submit_files(
            None,
            {
                let mut b = power_case(100.0);
                b["materials"] = serde_json::json!([{ "id": "site_plan", "file": "plan.pdf" }]);
                b
            },
            &[("licence", "licence.pdf", b"%PDF-1.7 licence")],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let number = v["case"]["number"].as_str().unwrap().to_string();
    let b = Browser::new(&s);
    // Staff pages need a session.
    let (st, h, _) = b.get("/staff").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff/sign-in");
    // A wrong password is refused without saying which half was wrong.
    let (_, _, form) = b.get("/staff/sign-in?lang=en").await;
    let csrf = csrf_of(&form);
    let (st, _, html) = b
        .post_form_full(
            "/staff/sign-in",
            &[
                ("csrf", &csrf),
                ("staff", "zhou.qiang"),
                ("password", "guessing"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(html.contains("The staff id or the password is not right."));
    let csrf = b.sign_in(&s, "zhou.qiang").await;
    let session = b
        .cookies
        .lock()
        .unwrap()
        .get("guichet_session")
        .cloned()
        .unwrap();
    assert!(session.starts_with("gch_"));
    // The worklist: the new case's intake task, claimable.
    let (st, _, html) = b.get("/staff?lang=en").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&number), "{html}");
    assert!(html.contains("Sign out"));
    let task = html
        .split("/staff/tasks/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (st, h, _) = b
        .post_form_full(
            &format!("/staff/tasks/{task}/claim"),
            &[("csrf", &csrf), ("back", "list")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff?done=1");
    // The case page offers the intake decision, the file to download, the history.
    let (st, _, html) = b.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("value=\"accept\">Accept</button>"), "{html}");
    let file = html
        .split(&format!("/staff/cases/{number}/files/"))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (st, h, body) = b.get(&format!("/staff/cases/{number}/files/{file}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(body, "%PDF-1.7 licence");
    // A form without the browser's token changes nothing.
    let (st, _, _) = b
        .post_form_full(
            &format!("/staff/tasks/{task}/complete"),
            &[("outcome", "accept")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Accepting moves the case on, as the API would.
    let (st, h, _) = b
        .post_form_full(
            &format!("/staff/tasks/{task}/complete"),
            &[
                ("csrf", &csrf),
                ("outcome", "accept"),
                ("comment", "complete"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), format!("/staff/cases/{number}?done=1"));
    let clerk = s.token("zhou.qiang").await;
    let (_, case) = s.get(&format!("/api/cases/{number}"), &clerk).await;
    assert_eq!(case["status"], "in_progress");
    // What the engine refuses is said on the page: the task is done.
    let (st, _, html) = b
        .post_form_full(
            &format!("/staff/tasks/{task}/complete"),
            &[("csrf", &csrf), ("outcome", "accept")],
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(html.contains("Not done:"), "{html}");
    // In Chinese, the kind of refusal in Chinese, the engine's details after it.
    let (st, _, html) = b
        .post_form_full(
            &format!("/staff/tasks/{task}/complete?lang=zh"),
            &[("csrf", &csrf), ("outcome", "accept")],
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(
        html.contains("未办理：案件已被他人修改，请刷新后重试（task"),
        "{html}"
    );
    // The applicant calls to withdraw: offered on the case page, confirmed first.
    let (_, _, html) = b.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(html.contains(&format!("/staff/cases/{number}/withdraw")));
    let (st, _, html) = b
        .post_form_full(
            &format!("/staff/cases/{number}/withdraw?lang=en"),
            &[("csrf", &csrf), ("reason", "asked by phone")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Tick the box to confirm"), "{html}");
    assert_eq!(
        s.get(&format!("/api/cases/{number}"), &clerk).await.1["status"],
        "in_progress"
    );
    let (st, h, _) = b
        .post_form_full(
            &format!("/staff/cases/{number}/withdraw"),
            &[
                ("csrf", &csrf),
                ("reason", "asked by phone"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{h:?}");
    let (_, case) = s.get(&format!("/api/cases/{number}"), &clerk).await;
    assert_eq!(case["status"], "withdrawn");
    let (_, _, html) = b.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(
        !html.contains(&format!("/staff/cases/{number}/withdraw")),
        "closed: not offered"
    );
    // Signing out ends the session: the cookie no longer opens anything.
    let (st, h, _) = b
        .post_form_full("/staff/sign-out", &[("csrf", &csrf)])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/");
    let (st, _) = s.get("/api/me", &session).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_cannot_open_another_departments_case_page() {
    let s = TestServer::start().await;
    let (id, number, _) = s.submit(power_case(100.0)).await;
    let b = Browser::new(&s);
    b.sign_in(&s, "judge.yang").await;
    let (st, _, html) = b.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(html.contains("This page does not exist"));
    assert!(!html.contains(&number));
    // Nor act on it.
    let (_, _, form) = b.get("/staff?lang=en").await;
    let (st, _, _) = b
        .post_form_full(
            &format!("/staff/cases/{number}/withdraw"),
            &[("csrf", &csrf_of(&form)), ("confirm", "yes")],
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(s.case(id).await["status"], "submitted");
}

/// The `/staff/tasks/{id}/` of the first form on a page for `action`.
fn task_form(html: &str, action: &str) -> String {
    html.split("/staff/tasks/")
        .find_map(|rest| {
            let (task, tail) = rest.split_once('/')?;
            tail.starts_with(&format!("{action}\""))
                .then(|| task.to_string())
        })
        .unwrap_or_else(|| panic!("no {action} form in {html}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_watches_the_board_issues_a_card_and_handlers_pass_work_on() {
    let s = TestServer::start().await;
    let (id, number, _) = s.submit(power_case(1000.0)).await;
    let (customer, project) = (s.token("zhou.qiang").await, s.token("wu.gang").await);
    s.act(&customer, id, "intake", "accept", serde_json::json!({}))
        .await;
    s.act(
        &project,
        id,
        "site_survey",
        "approve",
        serde_json::json!({}),
    )
    .await;

    // The head of the power company sees the scheme review on the board, unclaimed.
    let boss = Browser::new(&s);
    let csrf = boss.sign_in(&s, "shen.yue").await;
    let (st, _, html) = boss.get("/staff/board?lang=en").await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains(&number), "{html}");
    assert!(html.contains("Supply-scheme group review"));
    // Either member of the scheme group may sign: a task each.
    assert!(html.contains("Xu Li") && html.contains("Ma Jun"), "{html}");
    assert!(html.contains("No card waits for an answer."));
    // A clerk who supervises nothing has no board.
    let clerk = Browser::new(&s);
    let clerk_csrf = clerk.sign_in(&s, "xu.li").await;
    let (st, _, _) = clerk.get("/staff/board").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The case page offers the supervisor a card; without a reason it is refused.
    let (_, _, page) = boss.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(
        page.contains(&format!("/staff/cases/{number}/card\"")),
        "{page}"
    );
    assert!(page.contains("Reassign (supervisor)"));
    let (st, _, html) = boss
        .post_form_full(
            &format!("/staff/cases/{number}/card?lang=en"),
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("a reason is required"));
    let (st, h, _) = boss
        .post_form_full(
            &format!("/staff/cases/{number}/card"),
            &[("csrf", &csrf), ("reason", "The customer called twice")],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), format!("/staff/cases/{number}?done=1"));

    // The scheme group's Ma Jun answers the card, as a holder; Xu Li sees it answered.
    let (_, _, page) = clerk.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(!page.contains("Reassign"), "only supervisors reassign");
    assert!(!page.contains("/card\""), "only supervisors issue cards");
    let ma = Browser::new(&s);
    let ma_csrf = ma.sign_in(&s, "ma.jun").await;
    let (_, _, page) = ma.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(page.contains("Issued by a supervisor"), "{page}");
    assert!(page.contains("Answer the card"));
    let card = page
        .split("name=\"card\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (st, _, _) = ma
        .post_form_full(
            &format!("/staff/cases/{number}/answer"),
            &[
                ("csrf", &ma_csrf),
                ("card", &card),
                ("reason", "Waiting for the site owner's drawings"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let case = s.case(id).await;
    assert_eq!(
        case["cards"][0]["answer"]["reason"],
        "Waiting for the site owner's drawings"
    );
    // The board has no open card any more.
    let (_, _, html) = boss.get("/staff/board?lang=en").await;
    assert!(html.contains("No card waits for an answer."), "{html}");
    let _ = clerk_csrf;
    // The case page lists the notices sent about the case.
    let (_, _, page) = boss.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(page.contains("<h2>Notices</h2>"), "{page}");

    // The head names a deputy for Xu Li's tasks, then ends it.
    let (st, _, html) = boss
        .post_form_full(
            "/staff/board/delegate?lang=en",
            &[
                ("csrf", &csrf),
                ("from", "xu.li"),
                ("to", "ma.jun"),
                ("starts", "2026-01-01"),
                ("ends", "2026-12-31"),
                ("reason", "Annual leave"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{html}");
    let (_, d) = s.get("/api/delegations", &s.admin).await;
    let id = d["delegations"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(d["delegations"][0]["to"], "ma.jun");
    let (_, _, html) = boss.get("/staff/board?lang=en").await;
    assert!(html.contains("Annual leave"), "{html}");
    // Dates that are not dates are said, and nothing is delegated.
    let (st, _, html) = boss
        .post_form_full(
            "/staff/board/delegate?lang=en",
            &[
                ("csrf", &csrf),
                ("from", "xu.li"),
                ("to", "ma.jun"),
                ("starts", "soon"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Give the first and the last day as dates."));
    let (st, _, _) = boss
        .post_form_full(
            "/staff/board/revoke",
            &[("csrf", &csrf), ("delegation", &id)],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, d) = s.get("/api/delegations", &s.admin).await;
    assert!(d["delegations"][0]["revoked_at"].is_string(), "{d}");
    assert_eq!(d["delegations"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_clerk_passes_a_task_to_a_colleague_and_a_handler_sends_a_case_back() {
    let s = TestServer::start().await;
    let (id, number, _) = s
        .submit(serde_json::json!({
            "procedure": "tax.registration",
            "applicant": applicant("91310000MA1TX0004A"),
            "data": { "company": "Riverside Tea Ltd", "credit_code": "91310000MA1TX0004A" },
            "materials": [
                { "id": "business_licence", "file": "licence.pdf" },
                { "id": "legal_rep_id", "file": "id.pdf" }
            ]
        }))
        .await;
    let wang = Browser::new(&s);
    let csrf = wang.sign_in(&s, "wang.fang").await;
    let (_, _, page) = wang.get(&format!("/staff/cases/{number}?lang=en")).await;
    let task = task_form(&page, "claim");
    wang.post_form_full(&format!("/staff/tasks/{task}/claim"), &[("csrf", &csrf)])
        .await;
    let (_, _, page) = wang.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(page.contains("Pass to a colleague"), "{page}");
    assert!(
        page.contains("Accept with a commitment"),
        "intake offers 容缺受理"
    );
    let (st, h, _) = wang
        .post_form_full(
            &format!("/staff/tasks/{task}/transfer"),
            &[
                ("csrf", &csrf),
                ("staff", "li.wei"),
                ("comment", "Li Wei knows this company"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), format!("/staff/cases/{number}?done=1"));
    let case = s.case(id).await;
    let intake = &case["tasks"][0];
    assert_eq!(intake["assignee"], "li.wei", "{case}");
    assert!(intake["claimed_by"].is_null());
    // Wang Fang may no longer act on it; Li Wei may.
    let (_, _, page) = wang.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(!page.contains("/claim\""), "{page}");
    let li = Browser::new(&s);
    let li_csrf = li.sign_in(&s, "li.wei").await;
    let (_, _, page) = li.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert_eq!(task_form(&page, "claim"), task);
    li.post_form_full(&format!("/staff/tasks/{task}/claim"), &[("csrf", &li_csrf)])
        .await;
    // Accepting with a commitment: the materials ticked and the date promised.
    let (st, _, _) = li
        .post_form_full(
            &format!("/staff/tasks/{task}/commitment"),
            &[
                ("csrf", &li_csrf),
                ("material", "ID of the legal representative"),
                ("by", "2099-01-05"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let case = s.case(id).await;
    assert_eq!(case["status"], "in_progress");
    assert_eq!(
        case["commitment"]["items"],
        serde_json::json!(["ID of the legal representative"])
    );
    // The officer's step takes the staff's own field from the completion form.
    let (_, _, page) = li.get(&format!("/staff/cases/{number}?lang=en")).await;
    let review = task_form(&page, "claim");
    li.post_form_full(
        &format!("/staff/tasks/{review}/claim"),
        &[("csrf", &li_csrf)],
    )
    .await;
    let (_, _, page) = li.get(&format!("/staff/cases/{number}?lang=en")).await;
    assert!(page.contains("Taxpayer identification number"), "{page}");
    let (st, _, _) = li
        .post_form_full(
            &format!("/staff/tasks/{review}/complete"),
            &[
                ("csrf", &li_csrf),
                ("field.taxpayer_id", "91310000MA1TX0004A"),
                ("outcome", "approve"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let case = s.case(id).await;
    assert_eq!(case["data"]["taxpayer_id"], "91310000MA1TX0004A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_answers_a_supplement_request_with_a_file_and_can_withdraw() {
    let s = TestServer::start().await;
    let (st, v) = s
        .submit_files(
            None,
            power_case(100.0),
            &[
                ("licence", "licence.pdf", b"%PDF-1.7 licence"),
                ("site_plan", "plan.pdf", b"%PDF-1.7 old plan"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["case"]["id"].as_u64().unwrap();
    let number = v["case"]["number"].as_str().unwrap().to_string();
    let code = v["query_code"].as_str().unwrap().to_string();
    let (customer, project) = (s.token("zhou.qiang").await, s.token("wu.gang").await);
    s.act(&customer, id, "intake", "accept", serde_json::json!({}))
        .await;
    let task = s.task_at(&project, id, "site_survey").await;
    s.post(
        &format!("/api/tasks/{task}/claim"),
        &project,
        serde_json::json!({}),
    )
    .await;
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/supplement"),
            &project,
            serde_json::json!({ "items": ["Site plan with supply points, showing the new transformer"] }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The tracking page says what is asked for and offers a file input for it only.
    let b = Browser::new(&s);
    let (_, _, form) = b.get("/track?lang=en").await;
    let csrf = csrf_of(&form);
    let (st, page) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("Waiting for you"), "{page}");
    assert!(page.contains("showing the new transformer"));
    assert!(page.contains("name=\"material.site_plan\""), "{page}");
    assert!(
        !page.contains("name=\"material.licence\""),
        "only what is asked"
    );
    // Nothing chosen, or a file of the wrong kind: said at the top and next to the input.
    let fields = [
        ("csrf", csrf.as_str()),
        ("number", &number),
        ("code", &code),
    ];
    let (st, page) = b
        .post_multipart("/track/supply?lang=en", &text_parts(&fields))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains("Send at least one of the materials"),
        "{page}"
    );
    let mut parts = text_parts(&fields);
    parts.push((
        "material.site_plan".into(),
        Some("plan.pdf"),
        b"GIF89a not a plan",
    ));
    let (st, page) = b.post_multipart("/track/supply?lang=en", &parts).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("href=\"#material-site_plan\""), "{page}");
    assert!(page.contains("id=\"material-site_plan-error\""));
    assert!(
        page.contains("the file&#x27;s content is not a PDF file."),
        "worded for the applicant: {page}"
    );
    // In Chinese, naming the material by its Chinese name.
    let (_, page) = b.post_multipart("/track/supply?lang=zh", &parts).await;
    assert!(
        page.contains("供电点平面图：文件内容不是 PDF 文件。"),
        "{page}"
    );
    assert_eq!(s.case(id).await["status"], "supplement");
    // A wrong code is a wrong code here too.
    let wrong = [
        ("csrf", csrf.as_str()),
        ("number", &number),
        ("code", "XXXXXXXX"),
    ];
    let mut parts = text_parts(&wrong);
    parts.push((
        "material.site_plan".into(),
        Some("plan.pdf"),
        b"%PDF-1.7 new",
    ));
    let (st, _) = b.post_multipart("/track/supply?lang=en", &parts).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The right file: received, the clock runs again, the case names the new file.
    let mut parts = text_parts(&fields);
    parts.push((
        "material.site_plan".into(),
        Some("plan-v2.pdf"),
        b"%PDF-1.7 new plan",
    ));
    let (st, page) = b.post_multipart("/track/supply?lang=en", &parts).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("your materials were received"), "{page}");
    assert!(page.contains("In progress"));
    let case = s.case(id).await;
    assert_eq!(case["status"], "in_progress");
    let plan = case["materials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "site_plan")
        .unwrap()
        .clone();
    assert_eq!(plan["file"], "plan-v2.pdf");
    let (st, bytes) = s
        .call(
            "GET",
            &format!(
                "/api/cases/{number}/files/{}",
                plan["sha256"].as_str().unwrap()
            ),
            Some(&project),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{bytes}");

    // Withdrawing needs the box ticked; then the case ends.
    let w = [
        ("csrf", csrf.as_str()),
        ("number", &number),
        ("code", &code),
        ("reason", "We build elsewhere"),
    ];
    let (st, page) = b.post_form("/track/withdraw?lang=en", &w).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Tick the box"), "{page}");
    assert_eq!(s.case(id).await["status"], "in_progress");
    let mut confirmed = w.to_vec();
    confirmed.push(("confirm", "yes"));
    let (st, page) = b.post_form("/track/withdraw?lang=en", &confirmed).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Your application is withdrawn."));
    assert!(!page.contains("Withdraw this application"));
    assert_eq!(s.case(id).await["status"], "withdrawn");
    // Without the browser's token nothing happens.
    let (st, _) = b
        .post_form(
            "/track/withdraw",
            &[("number", &number), ("code", &code), ("confirm", "yes")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_clerk_receives_an_application_with_files_for_the_applicant() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let csrf = b.sign_in(&s, "wang.fang").await;
    let (st, _, list) = b.get("/staff/intake?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    assert!(list.contains("/staff/intake/tax.registration"), "{list}");
    assert!(list.contains("your window"));
    let (st, _, form) = b.get("/staff/intake/tax.registration?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        form.contains("action=\"/staff/intake/tax.registration\""),
        "{form}"
    );
    assert!(form.contains("at the window on the applicant"));
    let fields = [
        ("csrf", csrf.as_str()),
        ("applicant.name", "Riverside Tea Ltd"),
        ("applicant.id", "91310000MA1TX0004A"),
        ("field.company", "Riverside Tea Ltd"),
        ("field.credit_code", "91310000MA1TX0004A"),
    ];
    // A missing file is said next to its input, as online.
    let mut parts = text_parts(&fields);
    parts.push((
        "material.business_licence".into(),
        Some("licence.pdf"),
        b"%PDF-1.7 licence",
    ));
    let (st, html) = b
        .post_multipart("/staff/intake/tax.registration?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("href=\"#material-legal_rep_id\""), "{html}");
    parts.push((
        "material.legal_rep_id".into(),
        Some("id.jpg"),
        b"\xFF\xD8\xFF\xE0 an ID card",
    ));
    let (st, receipt) = b
        .post_multipart("/staff/intake/tax.registration?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{receipt}");
    let number = receipt
        .split("<strong>")
        .nth(1)
        .and_then(|s| s.split("</strong>").next())
        .unwrap()
        .to_string();
    let (_, case) = s.get(&format!("/api/cases/{number}"), &s.admin).await;
    assert_eq!(case["channel"], "window");
    assert_eq!(case["history"][0]["actor"], "wang.fang", "{case}");
    assert_eq!(case["materials"].as_array().unwrap().len(), 2);
    // An auditor reads; receiving is not theirs.
    let auditor = Browser::new(&s);
    auditor.sign_in(&s, "audit.zhang").await;
    let (st, _, _) = auditor.get("/staff/intake/tax.registration").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_reads_script_problems_migrates_with_a_dry_run_and_sets_passwords() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    copy_scripts(&scripts, true);
    let s = TestServer::start_on(scripts.clone(), tmp.path().join("data")).await;
    let (old_case, old_number, _) = s.submit(power_case(100.0)).await;

    // Only the administrator token opens the administrator's pages.
    let b = Browser::new(&s);
    let (_, _, form) = b.get("/staff/sign-in?lang=en").await;
    let csrf = csrf_of(&form);
    let (st, _, html) = b
        .post_form_full(
            "/staff/sign-in/admin?lang=en",
            &[("csrf", &csrf), ("token", "gch_wrong")],
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(html.contains("not a valid administrator token"));
    let (st, h, _) = b
        .post_form_full(
            "/staff/sign-in/admin",
            &[("csrf", &csrf), ("token", &s.admin)],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/admin");
    let session = b.cookies.lock().unwrap()["guichet_session"].clone();
    assert_ne!(
        session, s.admin,
        "the cookie holds a session, not the token"
    );
    let (st, _, page) = b.get("/admin?lang=en").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("power.connection"));
    assert!(page.contains("li.wei"));

    // A password set on the page lets the staff member sign in.
    let (st, h, _) = b
        .post_form_full(
            "/admin/password",
            &[
                ("csrf", &csrf),
                ("staff", "li.wei"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{h:?}");
    let clerk = Browser::new(&s);
    let (_, _, form) = clerk.get("/staff/sign-in").await;
    let clerk_csrf = csrf_of(&form);
    let (st, h, _) = clerk
        .post_form_full(
            "/staff/sign-in",
            &[
                ("csrf", &clerk_csrf),
                ("staff", "li.wei"),
                ("password", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff");
    // Staff have no business on the administrator's page.
    let (st, _, page) = clerk.get("/admin?lang=en").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(page.contains("Your role does not open this page."));

    // A broken edit: refused, said with its file and line, the old version live.
    let file = scripts.join("power/new_connection.rhai");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("days: 5,", "days: 5,,")).unwrap();
    let (st, _, page) = b
        .post_form_full("/admin/reload?lang=en", &[("csrf", &csrf)])
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Not done:"), "{page}");
    assert!(page.contains("Why the last change was refused"), "{page}");
    assert!(page.contains("new_connection.rhai:58:"), "{page}");
    // Fixed and changed: a new version; the old case waits on the old one.
    std::fs::write(
        &file,
        good.replace(
            "\"construction\", name: \"Connection works\"",
            "\"works\", name: \"Connection works\"",
        )
        .replace("next: \"construction\"", "next: \"works\""),
    )
    .unwrap();
    b.post_form_full("/admin/reload", &[("csrf", &csrf)]).await;
    let (_, _, page) = b.get("/admin?lang=en").await;
    assert!(!page.contains("Why the last change was refused"), "{page}");
    assert!(
        page.contains("Move its open cases to the live version"),
        "{page}"
    );
    let from = s.case(old_case).await["version"]
        .as_str()
        .unwrap()
        .to_string();
    // A dry run reports and changes nothing; then the migration moves the case.
    let (st, _, page) = b
        .post_form_full(
            "/admin/migrate?lang=en",
            &[
                ("csrf", &csrf),
                ("procedure", "power.connection"),
                ("from", &from),
                ("steps", "construction=works"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Migration tried: nothing changed"), "{page}");
    assert!(page.contains(&old_number));
    assert_eq!(s.case(old_case).await["version"], from.as_str());
    let (st, _, page) = b
        .post_form_full(
            "/admin/migrate?lang=en",
            &[
                ("csrf", &csrf),
                ("procedure", "power.connection"),
                ("from", &from),
                ("steps", "construction=works"),
                ("apply", "yes"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Migration done"), "{page}");
    assert_ne!(s.case(old_case).await["version"], from.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_searches_the_log_and_verifies_the_chain() {
    let s = TestServer::start().await;
    s.submit(power_case(100.0)).await;
    let b = Browser::new(&s);
    b.sign_in(&s, "audit.zhang").await;
    let (st, _, page) = b.get("/audit?lang=en&action=session.").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("session.opened"), "{page}");
    assert!(!page.contains("case.submitted"), "filtered by action");
    let (_, _, page) = b.get("/audit?lang=en&verify=1").await;
    assert!(page.contains("intact"), "{page}");
    assert!(page.contains("entries checked"));
    // Clerks do not read the audit log.
    let clerk = Browser::new(&s);
    clerk.sign_in(&s, "li.wei").await;
    let (st, _, _) = clerk.get("/audit").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_applies_for_a_bundle_once_and_follows_it_as_one() {
    let s = TestServer::start().await;
    let b = Browser::new(&s);
    let (_, _, home) = b.get("/?lang=en").await;
    assert!(
        home.contains("href=\"/apply/bundle/tax.new_business\""),
        "{home}"
    );
    let (st, _, form) = b.get("/apply/bundle/tax.new_business?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    // The bundle's shared fields once; a section per service, ticked, its own fields
    // and files named under it.
    assert!(form.contains("name=\"shared:field.company\""), "{form}");
    assert!(form.contains("name=\"shared:field.credit_code\""), "{form}");
    assert!(
        !form.contains("name=\"tax.registration:field.company\""),
        "asked once"
    );
    assert!(form.contains("name=\"include.tax.registration\" value=\"yes\" checked"));
    assert!(form.contains("name=\"material.tax.registration:business_licence\""));
    let csrf = csrf_of(&form);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("applicant.name", "Riverside Tea Ltd"),
        ("applicant.id", "91310000MA1TX0004A"),
        ("include.tax.registration", "yes"),
        ("shared:field.company", "Riverside Tea Ltd"),
        ("shared:field.credit_code", "91310000MA1TX0004A"),
        ("include.tax.invoice_purchase", "yes"),
        ("tax.invoice_purchase:field.invoice_kind", "ordinary"),
        ("tax.invoice_purchase:field.monthly_quantity", "many"),
    ];
    // Every problem of every service at once, each linked to its input.
    let mut parts = text_parts(&fields);
    parts.push((
        "material.tax.registration:business_licence".into(),
        Some("licence.pdf"),
        b"%PDF-1.7 licence",
    ));
    let (st, html) = b
        .post_multipart("/apply/bundle/tax.new_business?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        html.contains("href=\"#tax_registration-material-legal_rep_id\""),
        "{html}"
    );
    assert!(html.contains("href=\"#tax_invoice_purchase-field-monthly_quantity\""));
    assert!(html.contains("id=\"tax_invoice_purchase-field-monthly_quantity-error\""));
    // Unticked services stay unticked; what was typed stays.
    assert!(!html.contains("name=\"include.tax.vat_general\" value=\"yes\" checked"));
    assert!(html.contains("value=\"Riverside Tea Ltd\""));
    let clerk = s.token("li.wei").await;
    let (_, none) = s
        .get("/api/applicants/91310000MA1TX0004A/cases", &clerk)
        .await;
    assert!(
        none["cases"].as_array().unwrap().is_empty(),
        "all or nothing"
    );
    // Right this time: two cases, one receipt.
    fields.retain(|(k, _)| *k != "tax.invoice_purchase:field.monthly_quantity");
    fields.push(("tax.invoice_purchase:field.monthly_quantity", "25"));
    let mut parts = text_parts(&fields);
    parts.push((
        "material.tax.registration:business_licence".into(),
        Some("licence.pdf"),
        b"%PDF-1.7 licence",
    ));
    parts.push((
        "material.tax.registration:legal_rep_id".into(),
        Some("id.jpg"),
        b"\xFF\xD8\xFF\xE0 an ID card",
    ));
    let (st, receipt) = b
        .post_multipart("/apply/bundle/tax.new_business?lang=en", &parts)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{receipt}");
    let strong: Vec<String> = receipt
        .split("<strong>")
        .skip(1)
        .map(|s| s.split("</strong>").next().unwrap().to_string())
        .collect();
    let reference = strong[0].clone();
    assert!(reference.starts_with("tax.new_business-"), "{reference}");
    assert_eq!(
        strong.len(),
        4,
        "the reference, its one query code and two numbers"
    );
    let code = strong[1].clone();
    let (_, cases) = s
        .get("/api/applicants/91310000MA1TX0004A/cases", &clerk)
        .await;
    let cases = cases["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 2);
    assert!(cases.iter().all(|c| c["bundle"] == reference.as_str()));
    // The name entered once is in both; the credit code where the service has the field.
    assert!(
        cases
            .iter()
            .all(|c| c["data"]["company"] == "Riverside Tea Ltd"),
        "{cases:?}"
    );
    assert!(cases.iter().all(|c| c["query_code"] == code.as_str()));
    // Followed as one with the reference and either code.
    let (_, _, track) = b.get("/track?lang=en").await;
    let csrf = csrf_of(&track);
    let (st, html) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &reference), ("code", &code)],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert!(html.contains("Tax registration") && html.contains("First purchase of invoices"));
    assert_eq!(html.matches("Received, waiting for acceptance").count(), 2);
    let (st, html) = b
        .post_form(
            "/track?lang=en",
            &[
                ("csrf", &csrf),
                ("number", &reference),
                ("code", "WRONG123"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("No application has this number and query code"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_sends_a_failed_notice_again_and_hands_out_a_one_time_password_link() {
    // The SMS gateway refuses everything until it is fixed.
    let (rx, url) = Receiver::start().await;
    rx.script.lock().unwrap().extend([400; 64]);
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(
        example_scripts(),
        tmp.path().join("data"),
        Arc::new(SystemClock),
        move |c| {
            let table: toml::Value =
                toml::from_str(&format!(
                    "[channels.sms]\nurl = \"{url}/sms\"\nsecret = \"a-webhook-secret-of-some-length\"\n"
                )).unwrap();
            c.plugins.insert("webhook".into(), table);
        },
    )
    .await;
    let (id, number, _) = s.submit(power_case(100.0)).await;
    let mut failed = None;
    for _ in 0..200 {
        let (_, v) = s.get(&format!("/api/cases/{id}/notices"), &s.admin).await;
        failed = v["notices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["status"] == "failed")
            .cloned();
        if failed.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let failed = failed.expect("the refused notice fails");

    let b = Browser::new(&s);
    let (_, _, form) = b.get("/staff/sign-in?lang=en").await;
    let csrf = csrf_of(&form);
    b.post_form_full(
        "/staff/sign-in/admin",
        &[("csrf", &csrf), ("token", &s.admin)],
    )
    .await;
    let (st, _, page) = b.get("/admin?lang=en").await;
    assert_eq!(st, StatusCode::OK);
    let section = &page[page.find("id=\"failed-notices\"").unwrap()..];
    assert!(section.contains(&number), "{section}");
    assert!(section.contains("400"), "the gateway's answer: {section}");
    let notice = failed["id"].as_str().unwrap();
    assert!(section.contains(&format!("value=\"{notice}\"")));

    // Fixed, sent again from the page: it leaves the list and is delivered.
    rx.script.lock().unwrap().clear();
    let (st, h, _) = b
        .post_form_full("/admin/retry", &[("csrf", &csrf), ("notice", notice)])
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{h:?}");
    let mut delivered = false;
    for _ in 0..200 {
        let (_, v) = s.get(&format!("/api/cases/{id}/notices"), &s.admin).await;
        delivered = v["notices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == failed["id"] && n["status"] == "delivered");
        if delivered {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(delivered, "the notice sent again was delivered");
    let (_, _, page) = b.get("/admin?lang=en").await;
    assert!(page.contains("No notice has failed."));

    // A one-time link lets the clerk choose a password, once.
    let (st, _, page) = b
        .post_form_full(
            "/admin/password-link?lang=en",
            &[("csrf", &csrf), ("staff", "li.wei")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let page = page.replace("&#x2f;", "/");
    let start = page.find("/password/").unwrap();
    let link = &page[start..];
    let link = link[..link.find('<').unwrap()].to_string();
    assert!(page.contains(&format!("http://{}{link}", &s.base["http://".len()..])));
    let clerk = Browser::new(&s);
    let (st, _, form) = clerk.get(&format!("{link}?lang=en")).await;
    assert_eq!(st, StatusCode::OK, "{form}");
    assert!(form.contains("li.wei"));
    let clerk_csrf = csrf_of(&form);
    let (st, _, page) = clerk
        .post_form_full(
            &format!("{link}?lang=en"),
            &[
                ("csrf", &clerk_csrf),
                ("password", "my own passphrase"),
                ("again", "my own passphrase!"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("The two passwords are not the same."));
    // Without the form's CSRF token: refused, the link still good.
    let (st, _, _) = clerk
        .post_form_full(
            &link,
            &[
                ("password", "my own passphrase"),
                ("again", "my own passphrase"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, h, _) = clerk
        .post_form_full(
            &link,
            &[
                ("csrf", &clerk_csrf),
                ("password", "my own passphrase"),
                ("again", "my own passphrase"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff/sign-in?done=password");
    let (_, _, page) = clerk.get("/staff/sign-in?done=password&lang=en").await;
    assert!(page.contains("Your password is set."));
    let (st, h, _) = clerk
        .post_form_full(
            "/staff/sign-in",
            &[
                ("csrf", &clerk_csrf),
                ("staff", "li.wei"),
                ("password", "my own passphrase"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff");
    // Spent.
    let (st, _, page) = clerk.get(&format!("{link}?lang=en")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(page.contains("This link does not work"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_reads_the_statistics_as_tables_charts_and_csv() {
    let clock = Arc::new(guichet_core::clock::ManualClock::new(bj(
        "2026-11-30 10:00",
    )));
    let s = TestServer::start_at(clock.clone()).await;
    let window = s.token("zhou.qiang").await;
    let (id, _, _) = s.submit(power_case(100.0)).await;
    s.act(&window, id, "intake", "accept", serde_json::json!({}))
        .await;
    let (other, _, _) = s.submit(power_case(100.0)).await;
    s.post(
        &format!("/api/cases/{other}/withdraw"),
        &window,
        serde_json::json!({ "reason": "by phone" }),
    )
    .await;
    let b = Browser::new(&s);
    b.sign_in(&s, "li.wei").await;
    let (st, _, page) = b
        .get("/staff/stats?period=month&date=2026-11-30&lang=en")
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("From 2026-11-01 to 2026-11-30"), "{page}");
    // The power connection's row: two received, one accepted, one withdrawn, one open.
    let row = page
        .split("<tr")
        .find(|r| r.contains("New power connection"))
        .unwrap_or_else(|| panic!("{page}"));
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().trim())
        .collect();
    assert_eq!(&cells[..4], ["2", "1", "0", "1"], "{row}");
    assert!(
        page.contains("href=\"/staff/stats?period=month&amp;date=2026-11-30&amp;csv=rows\""),
        "{page}"
    );
    // By day: the arrivals chart, drawn on the server.
    let (_, _, page) = b
        .get("/staff/stats?from=2026-11-24&to=2026-11-30&by=day&lang=en")
        .await;
    assert!(page.contains("<svg class=\"chart\""), "{page}");
    assert!(page.contains("class=\"bar-received\""));
    // The same in Chinese.
    let (_, _, page) = b.get("/staff/stats?lang=zh").await;
    assert!(page.contains("提速率"));
    // The table as a file.
    let (st, h, csv) = b
        .get("/staff/stats?period=month&date=2026-11-30&csv=rows")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.lines().any(|l| l.starts_with("power.connection,")),
        "{csv}"
    );
    // A value the form does not take: said, nothing else.
    let (st, _, page) = b.get("/staff/stats?period=fortnight&lang=en").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("“fortnight” is not a value this form takes."),
        "{page}"
    );
    // Applicants have no statistics page.
    let (st, h, _) = Browser::new(&s).get("/staff/stats").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(location(&h), "/staff/sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applicant_rates_the_decision_and_reads_the_answer_to_a_low_rating() {
    let s = TestServer::start().await;
    let body = serde_json::json!({
        "procedure": "tax.registration",
        "applicant": { "id": "91310000MA1FL0001X", "name": "Alpha Trading", "phone": "13800000000" },
        "data": { "company": "Alpha Trading", "credit_code": "91310000MA1FL0001X" },
        "materials": [
            { "id": "business_licence", "file": "licence.pdf" },
            { "id": "legal_rep_id", "file": "id.pdf" },
        ],
    });
    let (id, number, code) = s.submit(body).await;
    let window = s.token("wang.fang").await;
    let officer = s.token("li.wei").await;
    // Not decided yet: nothing to rate.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/cases/{number}/rating"),
            None,
            Some(serde_json::json!({ "code": code, "score": 4 })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "invalid_transition");
    s.act(&window, id, "intake", "accept", serde_json::json!({}))
        .await;
    s.act(&officer, id, "register", "approve", serde_json::json!({}))
        .await;

    // The decision's notice links to the tracking page, number and code filled in.
    let (_, n) = s.get(&format!("/api/cases/{id}/notices"), &window).await;
    let decided = n["notices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "case.decided" && n["channel"] == "sms")
        .unwrap_or_else(|| panic!("{n}"))
        .clone();
    let link = format!("http://localhost:8080/track?number={number}&code={code}&lang=");
    assert!(
        decided["body"].as_str().unwrap().contains(&link),
        "{decided}"
    );
    let b = Browser::new(&s);
    let (_, _, form) = b
        .get(&format!("/track?number={number}&code={code}&lang=en"))
        .await;
    assert!(form.contains(&format!("value=\"{number}\"")), "{form}");
    assert!(form.contains(&format!("value=\"{code}\"")));
    // The applicant tracks the decided case: the rating form.
    let (_, _, form) = b.get("/track?lang=en").await;
    let csrf = csrf_of(&form);
    let (_, page) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert!(
        page.contains("How satisfied are you with this service?"),
        "{page}"
    );
    // No score chosen: said, nothing recorded.
    let (st, page) = b
        .post_form(
            "/track/rate?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("Choose how satisfied you are."));
    let (st, page) = b
        .post_form(
            "/track/rate?lang=en",
            &[
                ("csrf", &csrf),
                ("number", &number),
                ("code", &code),
                ("score", "1"),
                ("comment", "Nobody answered the phone."),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("Thank you: your rating was recorded."));
    assert!(page.contains("Very dissatisfied"));
    assert!(page.contains("The office is looking into what you told us"));
    assert!(!page.contains("action=\"/track/rate\""), "once");
    // Once only, through the API too.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/cases/{number}/rating"),
            None,
            Some(serde_json::json!({ "code": code, "score": 5 })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // The window's group has the follow-up in its worklist; its answer needs a reply.
    let (_, tasks) = s
        .get("/api/tasks?procedure=tax.registration", &window)
        .await;
    let task = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["step"] == "follow_up")
        .unwrap_or_else(|| panic!("{tasks}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.post(
        &format!("/api/tasks/{task}/claim"),
        &window,
        serde_json::json!({}),
    )
    .await;
    let (st, _) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &window,
            serde_json::json!({ "outcome": "resolved" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = s
        .post(
            &format!("/api/tasks/{task}/complete"),
            &window,
            serde_json::json!({ "outcome": "resolved", "comment": "The hotline now has two lines." }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, page) = b
        .post_form(
            "/track?lang=en",
            &[("csrf", &csrf), ("number", &number), ("code", &code)],
        )
        .await;
    assert!(page.contains("The office&#x27;s answer"), "{page}");
    assert!(page.contains("The hotline now has two lines."));
    // The applicant is told too.
    let (_, n) = s.get(&format!("/api/cases/{id}/notices"), &window).await;
    assert!(
        n["notices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["event"] == "case.follow_up_answered" && n["recipient"] == "applicant"),
        "{n}"
    );
}
