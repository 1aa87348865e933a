//! Crash testing as a bench: `cargo bench --bench crash [-- CYCLES [CLIENTS]]` (default 100
//! cycles, 64 clients). Each cycle starts the server binary on the same data folder,
//! checks what the previous cycle left, lets the clients submit, accept and survey power
//! connections, and kills the server with SIGKILL at a random moment. After every restart:
//! every acknowledged transition is there (each case at least at the revision its client
//! was answered with, its history whole), case numbers run from 1 with no gap and no
//! duplicate, the audit chain verifies, no card was issued twice, and every due timer fired
//! once (the bench's office is open round the clock and one procedure's step has a warning
//! due the moment it starts: each accepted case of it holds exactly one warning card).
//! Prints per-cycle and total figures; CI runs a few cycles.
//!
//! `-- CYCLES CLIENTS --nodes N`: N nodes on one PostgreSQL database (a fresh one on the
//! cluster of `GUICHET_TEST_POSTGRES`), the clients spread over them; each cycle kills one
//! node at random while the others work on, so its leased timers are taken over (leases
//! of 3 s here), and checks the same through the first node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

type Acked = Arc<Mutex<BTreeMap<u64, (String, u64)>>>;
/// Cases of `crash.timer` whose acceptance (and with it the timer) was acknowledged.
type Timed = Arc<Mutex<BTreeSet<u64>>>;

/// The bench's calendar: open round the clock, so that timers fall due while it runs.
const CALENDAR: &str = r#"calendar(#{
    time_zone: "Asia/Shanghai", utc_offset: "+08:00", rest_days: [],
    office_hours: ["00:00", "23:59"], years: #{},
});"#;

/// A review whose warning (0.5 % of one working hour, rounded to the minute: none) falls
/// due the moment the step starts.
const TIMED: &str = r#"department(#{ id: "crash", name: "Crash bench" });
group(#{ id: "crash.window", name: "Window", department: "crash", members: ["zhou.qiang"] });
group(#{ id: "crash.review", name: "Review", department: "crash", members: ["wu.gang"] });
procedure(#{
    id: "crash.timer", name: "Timer under crashes", department: "crash",
    promised_days: 5, statutory_days: 20, intake: "crash.window",
    warnings: #{ at_shares: [0.005] },
    start: "review",
    steps: [ #{ id: "review", name: "Review", group: "crash.review", hours: 1, next: "@approved" } ],
});"#;

/// The example office (its scenarios left out) with the bench's calendar and procedure.
fn bench_scripts(to: &std::path::Path) {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "tests" {
                    copy(&entry.path(), &target);
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"),
        to,
    );
    std::fs::write(to.join("calendar.rhai"), CALENDAR).unwrap();
    std::fs::create_dir_all(to.join("crash")).unwrap();
    std::fs::write(to.join("crash").join("timer.rhai"), TIMED).unwrap();
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    data: &std::path::Path,
    scripts: &std::path::Path,
    port: u16,
    config: Option<&std::path::Path>,
) -> Server {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"));
    if let Some(c) = config {
        cmd.env("GUICHET_CONFIG", c);
    }
    Server(
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--scripts",
        ])
        .arg(scripts)
        .arg("--data")
        .arg(data)
        .env("GUICHET_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the guichet binary"),
    )
}

async fn wait_up(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/api/ready")).send().await {
            if r.status().is_success() {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn power_case() -> Value {
    json!({
        "procedure": "power.connection",
        "applicant": { "id": "91310000MA1FL0001X", "name": "Metro Line 14 Construction Co." },
        "data": { "project": "Depot", "capacity_kva": 400, "supply_points": 1, "voltage": "10kV" },
        "materials": [ { "id": "licence", "file": "licence.pdf" }, { "id": "site_plan", "file": "plan.pdf" } ],
    })
}

fn timed_case() -> Value {
    json!({
        "procedure": "crash.timer",
        "applicant": { "id": "91310000MA1FL0001X", "name": "Metro Line 14 Construction Co." },
    })
}

/// One client: submit, accept at the window, complete the survey; again, until the
/// server is gone. Every fourth round submits and accepts a `crash.timer` case instead.
/// Every answer received is acknowledged: its case id, number, revision.
async fn client_loop(
    client: reqwest::Client,
    base: String,
    tokens: (String, String),
    (acked, timed): (Acked, Timed),
    stop: Arc<AtomicBool>,
) {
    let ack = |v: &Value| {
        let c = &v["case"];
        if let (Some(id), Some(number), Some(rev)) =
            (c["id"].as_u64(), c["number"].as_str(), c["rev"].as_u64())
        {
            let mut a = acked.lock().unwrap();
            let e = a.entry(id).or_insert((number.to_string(), 0));
            e.1 = e.1.max(rev);
        }
    };
    // The answer of one POST, or None once the server is gone.
    let post = |path: String, token: Option<&str>, body: Value| {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.ok()?.json::<Value>().await.ok() }
    };
    let first_task = |v: &Value| v["case"]["tasks"][0]["id"].as_str().map(str::to_string);
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if round % 4 == 3 {
            let Some(v) = post("/api/cases".into(), None, timed_case()).await else {
                return;
            };
            ack(&v);
            let Some(task) = first_task(&v) else { continue };
            let path = format!("/api/tasks/{task}/complete");
            let Some(v) = post(path, Some(&tokens.0), json!({ "outcome": "accept" })).await else {
                return;
            };
            ack(&v);
            if let (Some(id), Some("review")) = (
                v["case"]["id"].as_u64(),
                v["case"]["tasks"][0]["step"].as_str(),
            ) {
                timed.lock().unwrap().insert(id);
            }
            continue;
        }
        let Some(v) = post("/api/cases".into(), None, power_case()).await else {
            return;
        };
        ack(&v);
        let Some(task) = first_task(&v) else { continue };
        let accept = json!({ "outcome": "accept" });
        let path = format!("/api/tasks/{task}/complete");
        let Some(v) = post(path, Some(&tokens.0), accept).await else {
            return;
        };
        ack(&v);
        let Some(survey) = first_task(&v) else {
            continue;
        };
        let approve = json!({ "outcome": "approve" });
        let path = format!("/api/tasks/{survey}/complete");
        let Some(v) = post(path, Some(&tokens.1), approve).await else {
            return;
        };
        ack(&v);
    }
}

/// A JSON answer of the server.
async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> Value {
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

/// Every timer of the `crash.timer` cases fired once: each holds exactly one warning
/// card of its review (those due while the server was down fire when it starts; waits
/// for them, a few seconds at most).
async fn check_timers(client: &reqwest::Client, base: &str, admin: &str, timed: &BTreeSet<u64>) {
    let started = Instant::now();
    for id in timed {
        loop {
            let c: Value = get_json(client, &format!("{base}/api/cases/{id}"), admin).await;
            let warnings = c["cards"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|k| k["step"] == "review" && k["kind"] == "supervision")
                .count();
            assert!(
                warnings <= 1,
                "case {id}: its timer fired {warnings} times: {c}"
            );
            if warnings == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "case {id}: its due timer never fired: {c}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Everything the restarted server must still have; panics otherwise.
async fn check(
    client: &reqwest::Client,
    base: &str,
    (admin, auditor): (&str, &str),
    acked: &BTreeMap<u64, (String, u64)>,
) {
    for (id, (number, rev)) in acked {
        let c: Value = get_json(client, &format!("{base}/api/cases/{id}"), admin).await;
        assert_eq!(
            c["number"],
            number.as_str(),
            "acknowledged case {number} lost: {c}"
        );
        assert!(
            c["rev"].as_u64().unwrap() >= *rev,
            "case {number}: acknowledged revision {rev} lost"
        );
        assert_eq!(
            c["history"].as_array().unwrap().len() as u64,
            c["history_len"].as_u64().unwrap(),
            "case {number}: history incomplete"
        );
        let cards: Vec<&str> = c["cards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["id"].as_str())
            .collect();
        let unique: BTreeSet<&str> = cards.iter().copied().collect();
        assert_eq!(
            cards.len(),
            unique.len(),
            "case {number}: a card issued twice"
        );
    }
    // Numbers: 1..=n, each once, over every case of the procedure.
    let mut numbers = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/cases?procedure=power.connection&order=oldest&limit=200");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let v: Value = get_json(client, &url, admin).await;
        for c in v["cases"].as_array().unwrap() {
            let n: u64 = c["number"]
                .as_str()
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(numbers.insert(n), "number {n} twice");
        }
        // The cursor is a string; the pages end with none.
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    if let Some(max) = numbers.last() {
        assert_eq!(
            numbers.len() as u64,
            *max,
            "a gap in the case numbers (1..={max})"
        );
    }
    let v: Value = get_json(client, &format!("{base}/api/audit/verify"), auditor).await;
    assert_eq!(v["ok"], true, "audit chain broken: {v}");
}

async fn token(client: &reqwest::Client, base: &str, admin: &str, staff: &str) -> String {
    let v: Value = client
        .post(format!("{base}/api/admin/tokens"))
        .bearer_auth(admin)
        .json(&json!({ "subject": staff }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// One node of the office: its data folder, its port, its process while it runs.
struct Node {
    data: std::path::PathBuf,
    port: u16,
    base: String,
    server: Option<Server>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With `--nodes N`: a fresh database on the test cluster (`GUICHET_TEST_POSTGRES`) and
/// the configuration file that names it, with short leases (a killed node's timers are
/// taken over within seconds).
fn postgres_config(dir: &std::path::Path) -> std::path::PathBuf {
    let base = std::env::var("GUICHET_TEST_POSTGRES")
        .expect("--nodes needs GUICHET_TEST_POSTGRES (a cluster from .ci/postgres)");
    let name = format!("guichet_crash_{:016x}", rand::random::<u64>());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let path = dir.join("guichet.toml");
    std::fs::write(&path, format!("store = \"{url}\"\nstore_lease_secs = 3\n")).unwrap();
    path
}

fn main() {
    // CYCLES CLIENTS, and `--nodes N` for N nodes on PostgreSQL.
    let (mut args, mut nodes_wanted) = (Vec::new(), None);
    let mut raw = std::env::args().skip(1);
    while let Some(a) = raw.next() {
        if a == "--nodes" {
            nodes_wanted = raw
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0);
        } else if let Ok(n) = a.parse::<usize>() {
            args.push(n);
        }
    }
    let cycles = args.first().copied().unwrap_or(100);
    let clients = args.get(1).copied().unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Before the runtime: the PostgreSQL client blocks.
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    bench_scripts(&scripts);
    let config = nodes_wanted.map(|_| postgres_config(tmp.path()));
    rt.block_on(async move {
        let mut nodes: Vec<Node> = (0..nodes_wanted.unwrap_or(1))
            .map(|i| {
                let port = free_port();
                Node {
                    data: tmp.path().join(format!("data-{i}")),
                    port,
                    base: format!("http://127.0.0.1:{port}"),
                    server: None,
                }
            })
            .collect();
        let first = nodes[0].base.clone();
        let timed: Timed = Arc::default();
        let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
        let acked: Acked = Arc::default();
        let mut rng = rand::rng();
        let (mut restarts, mut transitions) = (Vec::new(), 0usize);
        match &config {
            None => println!("crash: {cycles} cycles of SIGKILL under {clients} clients"),
            Some(_) => println!(
                "crash: {cycles} cycles of SIGKILL of one of {} nodes on PostgreSQL under {clients} clients",
                nodes.len()
            ),
        }
        // Tokens are kept by the store: issued once, they work after every restart.
        let mut staff: Option<(String, String, String)> = None;
        let mut checked: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        let mut timers_checked: BTreeSet<u64> = BTreeSet::new();
        let mut admin = String::new();
        for cycle in 0..=cycles {
            // Every node up (the first start of the first node makes the administrator).
            let mut up = Duration::ZERO;
            for n in nodes.iter_mut().filter(|n| n.server.is_none()) {
                n.server = Some(start(&n.data, &scripts, n.port, config.as_deref()));
                up = up.max(wait_up(&client, &n.base).await);
            }
            if admin.is_empty() {
                admin = std::fs::read_to_string(nodes[0].data.join("admin.token")).unwrap().trim().to_string();
            }
            if staff.is_none() {
                staff = Some((
                    token(&client, &first, &admin, "zhou.qiang").await,
                    token(&client, &first, &admin, "wu.gang").await,
                    token(&client, &first, &admin, "audit.zhang").await,
                ));
            }
            let Some((window, project, auditor)) = staff.clone() else { unreachable!() };
            if cycle > 0 {
                restarts.push(up);
            }
            // The cases the last cycle changed (the others were checked after an earlier
            // restart); after the last kill, all of them.
            let now = acked.lock().unwrap().clone();
            let last = cycle == cycles;
            let changed: BTreeMap<u64, (String, u64)> = now
                .iter()
                .filter(|(id, v)| last || checked.get(*id) != Some(*v))
                .map(|(id, v)| (*id, v.clone()))
                .collect();
            check(&client, &first, (&admin, &auditor), &changed).await;
            let timers = timed.lock().unwrap().clone();
            let unchecked: BTreeSet<u64> = if last {
                timers.clone()
            } else {
                timers.difference(&timers_checked).copied().collect()
            };
            check_timers(&client, &first, &admin, &unchecked).await;
            timers_checked = timers;
            checked = now;
            if last {
                break;
            }
            let tokens = (window, project);
            // Transitions acknowledged: each case's highest answered revision, summed.
            let count = |a: &Acked| a.lock().unwrap().values().map(|(_, r)| *r as usize).sum::<usize>();
            let before_count = count(&acked);
            let stop = Arc::new(AtomicBool::new(false));
            // Clients spread over the nodes.
            let workers: Vec<_> = (0..clients)
                .map(|i| {
                    let base = nodes[i % nodes.len()].base.clone();
                    tokio::spawn(client_loop(
                        client.clone(),
                        base,
                        tokens.clone(),
                        (acked.clone(), timed.clone()),
                        stop.clone(),
                    ))
                })
                .collect();
            let run = Duration::from_millis(rng.random_range(150..900));
            tokio::time::sleep(run).await;
            let victim = rng.random_range(0..nodes.len());
            if let Some(mut s) = nodes[victim].server.take() {
                s.0.kill().unwrap();
                s.0.wait().unwrap();
            }
            if nodes.len() > 1 {
                // The others work on while it is down (and take its leases over).
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            stop.store(true, Ordering::Relaxed);
            for w in workers {
                let _ = w.await;
            }
            let done = count(&acked) - before_count;
            transitions += done;
            println!(
                "cycle {cycle:>3}: up in {:>4} ms, node {victim} killed after {:>3} ms, {done:>5} transitions acknowledged",
                up.as_millis(),
                run.as_millis()
            );
        }
        let all = acked.lock().unwrap().clone();
        let timers = timed.lock().unwrap().clone();
        restarts.sort();
        let p = |q: f64| restarts[((restarts.len() - 1) as f64 * q) as usize].as_millis();
        println!(
            "{cycles} kills: {} cases, {transitions} transitions acknowledged, none lost; numbers gap-free; audit chain intact; {} due timers fired once each; restart p50 {} ms, max {} ms",
            all.len(),
            timers.len(),
            p(0.5),
            p(1.0)
        );
    });
}
