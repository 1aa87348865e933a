//! Test harness: a real server on 127.0.0.1:0 with a temporary data folder, and a small
//! HTTP client around it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod tls;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxStatus};

use guichet::config::Config;
use guichet::server;
use guichet_core::clock::{Clock, ManualClock, SystemClock};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct TestServer {
    pub base: String,
    pub data: PathBuf,
    pub scripts: PathBuf,
    pub admin: String,
    /// The engine behind the server, for tests that drive time (dropped on shutdown).
    pub engine: Option<Arc<guichet_core::Engine>>,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

pub fn example_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A copy of the example scripts a test may edit, its scenarios (`tests/`) left out
/// unless `scenarios`.
pub fn copy_scripts(to: &Path, scenarios: bool) {
    fn copy(from: &Path, to: &Path, scenarios: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if scenarios || entry.file_name() != "tests" {
                    copy(&entry.path(), &target, scenarios);
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&example_scripts(), to, scenarios);
}

impl TestServer {
    /// Starts a server on the example office with a fresh data folder.
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut s = Self::start_on(example_scripts(), data).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_on(scripts: PathBuf, data: PathBuf) -> TestServer {
        Self::start_with(scripts, data, Arc::new(SystemClock)).await
    }

    /// A server on the example office whose time only moves when the test says so.
    pub async fn start_at(clock: Arc<ManualClock>) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut s = Self::start_with(example_scripts(), data, clock).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_with(scripts: PathBuf, data: PathBuf, clock: Arc<dyn Clock>) -> TestServer {
        Self::start_configured(scripts, data, clock, |_| {}).await
    }

    /// As `start_with`, after `tune` has changed the configuration.
    pub async fn start_configured(
        scripts: PathBuf,
        data: PathBuf,
        clock: Arc<dyn Clock>,
        tune: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut cfg = Config {
            scripts: scripts.clone(),
            data: data.clone(),
            ..Config::default()
        };
        tune(&mut cfg);
        if cfg.store.is_none() {
            cfg.store = store_for(&data).map(Into::into);
        }
        // A restart here is in the same process: `serve` returns once the engine (and
        // with it the store and its folder lock) is released.
        // Off the async threads, as `main` opens it (a PostgreSQL client blocks).
        let engine = std::thread::scope(|s| {
            s.spawn(|| server::open_with_clock(&cfg, clock.clone()))
                .join()
                .expect("open server")
        })
        .unwrap_or_else(|e| panic!("open server: {e:#}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let kept = engine.clone();
        let handle = tokio::spawn(async move {
            server::serve(listener, engine, &cfg, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        // A second node on a shared store finds the administrator already there: no file
        // (the test uses the first node's token).
        let admin = std::fs::read_to_string(server::admin_token_path(&data))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        let client = reqwest::Client::new();
        // Serving means started: the watcher and the background loops start before the
        // accept loop, so a test's first edit or timer is never missed.
        wait_up(&client, &base).await;
        TestServer {
            base,
            data,
            scripts,
            admin,
            engine: Some(kept),
            client,
            stop: Some(tx),
            handle: Some(handle),
            _tmp: None,
        }
    }

    /// Stops the server and starts a new one on the same folders (a restart).
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let tmp = self._tmp.take();
        let mut s = Self::start_on(self.scripts.clone(), self.data.clone()).await;
        s._tmp = tmp;
        s
    }

    /// Runs one scheduler pass now, as the background scheduler would.
    pub async fn fire_timers(&self) -> guichet_core::supervision::FireReport {
        let engine = self.engine.clone().expect("running");
        let r = tokio::task::spawn_blocking({
            let e = engine.clone();
            move || {
                let r = e.fire_due_timers(100_000)?;
                e.durable(r.ticket)?;
                Ok::<_, guichet_core::Error>(r)
            }
        })
        .await
        .expect("join")
        .expect("fire");
        r
    }

    /// A restart on the same folders with a manual clock.
    pub async fn restart_at(mut self, clock: Arc<ManualClock>) -> TestServer {
        self.shutdown().await;
        let tmp = self._tmp.take();
        let mut s = Self::start_with(self.scripts.clone(), self.data.clone(), clock).await;
        s._tmp = tmp;
        s
    }

    pub async fn shutdown(&mut self) {
        self.engine = None;
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            "DELETE" => self.client.delete(url),
            m => panic!("method {m}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let json = is_json(&resp);
        let (status, v) = answer(resp).await;
        if status.is_success() && json {
            if let Some(schema) = declared_answer(method, path) {
                assert_conforms(&schema, &v, &format!("{method} {path}"));
            }
        }
        (status, v)
    }

    /// Submits `submission` with files, as `multipart/form-data`: `(material, file name,
    /// content)` each.
    pub async fn submit_files(
        &self,
        token: Option<&str>,
        submission: Value,
        files: &[(&str, &str, &[u8])],
    ) -> (StatusCode, Value) {
        let json = submission.to_string();
        let mut parts: Vec<(String, Option<&str>, &[u8])> =
            vec![("submission".into(), None, json.as_bytes())];
        for (material, name, bytes) in files {
            parts.push((format!("material.{material}"), Some(*name), *bytes));
        }
        let (content_type, body) = multipart(&parts);
        let mut req = self
            .client
            .post(format!("{}/api/cases", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// Issues a staff token through the admin API.
    pub async fn token(&self, staff: &str) -> String {
        let (st, v) = self
            .post(
                "/api/admin/tokens",
                &self.admin,
                json!({ "subject": staff, "label": "test" }),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// Submits a case online (no token) and returns `(case id, number, query code)`.
    pub async fn submit(&self, body: Value) -> (u64, String, String) {
        let (st, v) = self.call("POST", "/api/cases", None, Some(body)).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        (
            v["case"]["id"].as_u64().expect("id"),
            v["case"]["number"].as_str().expect("number").to_string(),
            v["query_code"].as_str().expect("code").to_string(),
        )
    }

    pub async fn case(&self, id: u64) -> Value {
        let (st, v) = self.get(&format!("/api/cases/{id}"), &self.admin).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    /// The open task of a case at `step` that `token`'s holder sees in their worklist.
    pub async fn task_at(&self, token: &str, case: u64, step: &str) -> String {
        let (st, v) = self.get("/api/tasks", token).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|t| t["case_id"] == case && t["step"] == step)
            .unwrap_or_else(|| panic!("no task at {step} for case {case} in {v}"))["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Completes the task at `step` as `token`'s holder, asserting success.
    pub async fn act(
        &self,
        token: &str,
        case: u64,
        step: &str,
        outcome: &str,
        data: Value,
    ) -> Value {
        let task = self.task_at(token, case, step).await;
        let (st, v) = self
            .post(
                &format!("/api/tasks/{task}/complete"),
                token,
                json!({ "outcome": outcome, "data": data }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v["case"].clone()
    }
}

/// A `multipart/form-data` body of `(part name, file name, content)` parts, as a browser's
/// form with file inputs sends it; returns the content type and the body.
pub fn multipart(parts: &[(String, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----guichet-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// An answer as JSON; JSON lines and files as a string.
fn is_json(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("content-type")
        .is_none_or(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The answer schema the route table declares for a request: every successful JSON
/// answer a test reads through [`TestServer::call`] is checked against it, so the
/// OpenAPI document is checked on every state the tests reach.
fn declared_answer(method: &str, path: &str) -> Option<Value> {
    type Declared = Vec<(String, Vec<String>, Option<Value>)>;
    static TABLE: std::sync::OnceLock<Declared> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        guichet::api::table()
            .iter()
            .map(|r| {
                let segments = r.path.split('/').map(str::to_string).collect();
                (r.method.to_string(), segments, r.answers.map(|f| f()))
            })
            .collect()
    });
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    // The route whose literal segments match most (`/api/track/bundle/{reference}`
    // before `/api/track/{number}/...`).
    table
        .iter()
        .filter(|(m, segments, _)| {
            m == method
                && segments.len() == parts.len()
                && segments
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.starts_with('{') || s == p)
        })
        .max_by_key(|(_, segments, _)| segments.iter().filter(|s| !s.starts_with('{')).count())
        .and_then(|(_, _, schema)| schema.clone())
}

async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let json = is_json(&resp);
    let text = String::from_utf8_lossy(&resp.bytes().await.expect("body")).to_string();
    if !json {
        return (status, Value::String(text));
    }
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON response {status}: {text}"));
    (status, v)
}

pub fn applicant(id: &str) -> Value {
    json!({ "id": id, "name": "Test Applicant", "phone": "13800000000" })
}

pub fn power_case(kva: f64) -> Value {
    json!({
        "procedure": "power.connection",
        "applicant": applicant("91310000MA1FL0001X"),
        "data": { "project": "Metro line 14 temporary supply", "capacity_kva": kva, "supply_points": 3, "voltage": "10kV" },
        "materials": [ { "id": "licence", "file": "licence.pdf" }, { "id": "site_plan", "file": "plan.pdf" } ],
    })
}

pub fn open_steps(case: &Value) -> Vec<String> {
    let mut v: Vec<String> = case["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["state"] == "open" || t["state"] == "claimed")
        .map(|t| t["step"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// Beijing local time `YYYY-MM-DD HH:MM` as an instant.
pub fn bj(s: &str) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("time");
    chrono::FixedOffset::east_opt(8 * 3600)
        .expect("offset")
        .from_local_datetime(&naive)
        .single()
        .expect("local time")
        .with_timezone(&chrono::Utc)
}

/// Moves a manual clock to a Beijing local time.
pub fn set(clock: &ManualClock, to: &str) {
    let now = Clock::now(clock);
    clock.advance(bj(to) - now);
}

/// A simplified-procedure civil case for the court.
pub fn court_case() -> Value {
    json!({
        "procedure": "court.civil",
        "applicant": applicant("110101199001011234"),
        "data": { "plaintiff": "Zhang San", "defendant": "Acme Ltd", "procedure_kind": "simplified" },
        "materials": [ { "id": "complaint", "file": "complaint.pdf" } ],
    })
}

/// A real HTTP receiver for webhooks: records every request, answers as scripted.
/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses to answer, in order; 200 once they run out.
    pub script: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    /// Serves HTTPS on `listener` with `acceptor`'s certificate until the test ends.
    pub fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    ) {
        let app = self.app();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }

    /// Serves on `listener` until the test ends.
    pub fn serve(&self, listener: tokio::net::TcpListener) {
        let app = self.app();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    /// The receiving end: records each request, answers with the next scripted status.
    fn app(&self) -> axum::Router {
        let me = self.clone();
        axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let me = me.clone();
                async move {
                    me.hits.lock().unwrap().push(Hit {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    let mut script = me.script.lock().unwrap();
                    let code = if script.is_empty() {
                        200
                    } else {
                        script.remove(0)
                    };
                    AxStatus::from_u16(code).unwrap()
                }
            },
        )
    }

    pub async fn start() -> (Receiver, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let r = Receiver::default();
        r.serve(l);
        (r, url)
    }

    pub fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

// --- the real binary, for kill -9 and log inspection ------------------------------------

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `guichet serve` process; killed if the test fails half-way.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on the example office, with `extra` arguments. With `log`, at debug
/// level into that file; otherwise quiet.
pub fn spawn_binary(data: &Path, port: u16, extra: &[&str], log: Option<&Path>) -> Server {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--scripts")
        .arg(example_scripts())
        .arg("--data")
        .arg(data)
        .stdout(std::process::Stdio::null());
    match log {
        Some(path) => cmd
            .env("GUICHET_LOG", "debug")
            .stderr(std::fs::File::create(path).unwrap()),
        None => cmd
            .env("GUICHET_LOG", "warn")
            .stderr(std::process::Stdio::null()),
    };
    Server(cmd.spawn().unwrap())
}

pub async fn wait_up(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if client
            .get(format!("{base}/api/health"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("server did not start");
}

/// A bearer token for `subject`, issued through the admin API of a server started with
/// [`spawn_binary`].
pub async fn issue_token(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    subject: &str,
) -> String {
    let url = format!("{base}/api/admin/tokens");
    let v = post_json(client, &url, Some(admin), &json!({ "subject": subject })).await;
    v["token"].as_str().unwrap().to_string()
}

/// `POST url` with a JSON body (and a bearer token if given), answered with JSON.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Value {
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// `GET url` with a bearer token, answered with JSON.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Panics unless `value` is what `schema` (a JSON Schema as the OpenAPI document
/// declares it) describes.
pub fn assert_conforms(schema: &Value, value: &Value, at: &str) {
    if let Err(e) = conforms(schema, value, at) {
        panic!("{e}\nschema: {schema}\nvalue: {value}");
    }
}

/// Checks the keywords schemars writes: `type`, `enum`, `const`, `anyOf`, `oneOf`,
/// `allOf`, `properties`, `required`, `additionalProperties`, `items`. Enough for a client
/// generated from the document to read the answer: every field it expects is there, of
/// the declared type, and none it does not know where none is allowed.
pub fn conforms(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(()); // `true` or `{}`: anything
    };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        });
        if !fits {
            return Err(format!("{at}: {value} is not of type {t}"));
        }
    }
    if let Some(list) = s.get("enum").and_then(Value::as_array) {
        if !list.contains(value) {
            return Err(format!("{at}: {value} is not one of {list:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != value {
            return Err(format!("{at}: {value} is not {c}"));
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let errors: Vec<String> = branches
                .iter()
                .filter_map(|b| conforms(b, value, at).err())
                .collect();
            if errors.len() == branches.len() {
                return Err(format!(
                    "{at}: no branch of {key} fits: {}",
                    errors.join("; ")
                ));
            }
        }
    }
    for branch in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        conforms(branch, value, at)?;
    }
    if let Some(obj) = value.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = req.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{at}.{key} is required and missing"));
            }
        }
        for (k, v) in obj {
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(sub), _) => conforms(sub, v, &format!("{at}.{k}"))?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{at}.{k} is not in the schema"))
                }
                (None, Some(extra)) => conforms(extra, v, &format!("{at}.{k}"))?,
                (None, None) => {}
            }
        }
    }
    if let (Some(items), Some(list)) = (s.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            conforms(items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// A fresh database on the test cluster (`GUICHET_TEST_POSTGRES`, started by
/// `.ci/postgres`), as the address a server's `store` takes; `None` (the test then says
/// it skipped) without a cluster, except in CI, where a test never skips silently.
pub fn postgres_database() -> Option<String> {
    let Ok(base) = std::env::var("GUICHET_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("GUICHET_CI").is_none(),
            "GUICHET_TEST_POSTGRES is not set (start a cluster with .ci/postgres)"
        );
        eprintln!("skipped: GUICHET_TEST_POSTGRES is not set (start a cluster with .ci/postgres)");
        return None;
    };
    let name = format!("guichet_{:016x}", rand::random::<u64>());
    // On a thread of its own: the client blocks, and tests call this from async code.
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("test cluster");
        admin.batch_execute(&create).expect("create database");
    })
    .join()
    .expect("create database");
    let base = std::env::var("GUICHET_TEST_POSTGRES").unwrap_or_default();
    Some(format!(
        "{}/{name}",
        base.rsplit_once('/').expect("an address").0
    ))
}

/// With `GUICHET_TEST_STORE=postgres`, every server of the tests runs on PostgreSQL: a
/// database per data folder (a restart on the same folder finds its database again).
/// (`.ci/run` runs the tests of the API this way too; those of what only the embedded
/// store has, its files, checkpoints, syncs and backups, only on it.)
fn store_for(data: &Path) -> Option<String> {
    static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    if std::env::var("GUICHET_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    let mut known = DATABASES.lock().unwrap();
    if let Some((_, url)) = known.iter().find(|(d, _)| d == data) {
        return Some(url.clone());
    }
    let url = postgres_database().expect("GUICHET_TEST_POSTGRES for GUICHET_TEST_STORE=postgres");
    known.push((data.to_path_buf(), url.clone()));
    Some(url)
}
