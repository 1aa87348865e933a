//! Throughput of the power-connection procedure (7 durable transitions per case, with the
//! 630 kVA rule, an any-of review and a parallel join), embedded and over HTTP.
//!
//! `cargo bench --bench throughput [-- CASES CONCURRENCY [RATE]]` prints cases/s,
//! transitions/s, p50/p99 latency of an action and peak memory. Every transition is
//! flushed to disk before it counts (group commit across concurrent clients).
//!
//! Without RATE the clients run closed-loop: as fast as the server answers, which measures
//! the maximum throughput (and latency at saturation). With RATE (transitions per second
//! over all clients) they also run open-loop at that rate, and latency is measured from
//! when each action was due, not when it was sent, so falling behind shows in p99.
//!
//! "Embedded" runs the engine calls through the server's engine threads (`guichet::pool`)
//! without HTTP; `GUICHET_BENCH_THREADS=N` sets their number in both runs (`engine_threads`;
//! default chosen from the store), and
//! `GUICHET_BENCH_NO_FLUSH=1` adds a diagnostic run that answers without waiting for
//! the disk. `GUICHET_BENCH_DURABILITY=flush` runs the store with `durability = "flush"`
//! (default `fsync`), to compare the two in alternating runs.
//!
//! `GUICHET_BENCH_STORE=postgres` runs on a fresh database of the cluster named by
//! `GUICHET_TEST_POSTGRES` (see `.ci/postgres`) instead of the embedded store, and
//! `GUICHET_BENCH_NODES=2` serves HTTP from two nodes on it (the clients alternate) and
//! `GUICHET_BENCH_CONNECTIONS=N` sets each node's `store_connections`;
//! `pg_cpu_us/transition` is then the database's CPU (every `postgres` process). The
//! database is dropped at the end. `benches/compare-stores [ROUNDS]` runs the embedded
//! store and PostgreSQL alternately and prints PostgreSQL's share of sled's throughput
//! per round and the median.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guichet::config::Config;
use guichet::pool::Pool;
use guichet_core::case::{Case, Data};
use guichet_core::engine::{Committed, Submission};
use guichet_core::{Actor, Engine};
use serde_json::json;

mod common;
use common::{cpu_secs, postgres_cpu_secs, status_mib, threads_cpu_secs};

/// Thread name of the bench's clients (the server's threads have their own names).
const CLIENT_THREADS: &str = "bench-client";

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the bench reads of an answer: the case (other fields are skipped while parsing).
#[derive(serde::Deserialize)]
struct CaseBody {
    case: Case,
}

fn holder(step: &str) -> &'static str {
    match step {
        "intake" => "zhou.qiang",
        "site_survey" | "construction" | "scheme_draft" => "wu.gang",
        "scheme_review" => "xu.li",
        "grid_review" => "hu.bo",
        "metering_review" => "guo.na",
        other => panic!("unexpected step {other}"),
    }
}

fn next_task(c: &Case) -> Option<(String, String)> {
    c.open_tasks()
        .find(|t| t.assignee.as_deref().is_none_or(|a| a == holder(&t.step)))
        .map(|t| (t.id.clone(), t.step.clone()))
}

fn submission() -> Submission {
    serde_json::from_value(json!({
        "procedure": "power.connection",
        "applicant": { "id": "91310000MA1FL0001X", "name": "Bench Co." },
        "data": { "project": "Bench", "capacity_kva": 1000, "supply_points": 2, "voltage": "10kV" },
        "materials": [ { "id": "licence", "file": "l.pdf" }, { "id": "site_plan", "file": "p.pdf" } ],
    }))
    .expect("submission")
}

/// Bytes this process has caused to be written to storage so far.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("write_bytes:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Report {
    written_before: u64,
    cpu_before: f64,
    client_cpu_before: f64,
    pg_cpu_before: f64,
    cases: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Report {
    fn print(mut self, label: &str, clients: usize) {
        self.latencies.sort();
        let q = |p: f64| {
            self.latencies
                [((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1)]
        };
        let secs = self.elapsed.as_secs_f64();
        let written = written_bytes().saturating_sub(self.written_before);
        let cpu = cpu_secs() - self.cpu_before;
        let server_cpu = cpu - (threads_cpu_secs(CLIENT_THREADS) - self.client_cpu_before);
        let pg_cpu = postgres_cpu_secs() - self.pg_cpu_before;
        println!(
            "{label:<9} clients={clients:<3} cases={:<6} cases/s={:>8.1} transitions/s={:>8.1} p50={:>7.2}ms p99={:>7.2}ms peak_rss={:.0}MiB disk_kib/transition={:.1} cpu_us/transition={:.0} server_cpu_us/transition={:.0} pg_cpu_us/transition={:.0}",
            self.cases,
            self.cases as f64 / secs,
            self.latencies.len() as f64 / secs,
            q(0.50).as_secs_f64() * 1e3,
            q(0.99).as_secs_f64() * 1e3,
            status_mib("VmHWM:"),
            written as f64 / 1024.0 / self.latencies.len() as f64,
            cpu * 1e6 / self.latencies.len() as f64,
            server_cpu * 1e6 / self.latencies.len() as f64,
            pg_cpu * 1e6 / self.latencies.len() as f64
        );
    }
}

/// When each client's next action is due, for open-loop runs.
struct Pace {
    next: Option<tokio::time::Instant>,
    period: Duration,
}

impl Pace {
    fn new(rate: Option<f64>, clients: usize, client: usize) -> Pace {
        match rate {
            None => Pace {
                next: None,
                period: Duration::ZERO,
            },
            Some(r) => {
                let period = Duration::from_secs_f64(clients as f64 / r);
                let offset = period.mul_f64(client as f64 / clients as f64);
                Pace {
                    next: Some(tokio::time::Instant::now() + offset),
                    period,
                }
            }
        }
    }

    /// Waits until the next action is due and returns the time latency counts from.
    async fn due(&mut self) -> Instant {
        match self.next {
            None => Instant::now(),
            Some(due) => {
                tokio::time::sleep_until(due).await;
                self.next = Some(due + self.period);
                due.into_std()
            }
        }
    }
}

async fn embedded(
    engine: Arc<Engine>,
    threads: usize,
    cases: usize,
    clients: usize,
    flush: bool,
    rate: Option<f64>,
) -> Report {
    // As the server does: engine calls on the engine threads, commits answered once durable.
    let pool = Pool::start(engine.clone(), threads);
    let written_before = written_bytes();
    let cpu_before = cpu_secs();
    let client_cpu_before = threads_cpu_secs(CLIENT_THREADS);
    let pg_cpu_before = postgres_cpu_secs();
    let start = Instant::now();
    let mut handles = Vec::new();
    // Without flushes (diagnosis): the commit counts as answered at once.
    let ticket = move |c: &Committed| if flush { c.ticket } else { 0 };
    for w in 0..clients {
        let pool = pool.clone();
        let n = cases / clients + usize::from(w < cases % clients);
        handles.push(tokio::spawn(async move {
            let mut pace = Pace::new(rate, clients, w);
            let mut lat = Vec::new();
            for _ in 0..n {
                let t = pace.due().await;
                let done = pool
                    .commit(|e| e.submit(&Actor::Public, submission()), ticket)
                    .await
                    .unwrap();
                lat.push(t.elapsed());
                let mut case = done.cases.into_iter().next().unwrap();
                while let Some((task, step)) = next_task(&case) {
                    let outcome = if step == "intake" {
                        "accept"
                    } else {
                        "approve"
                    };
                    let t = pace.due().await;
                    let actor = Actor::Staff(holder(&step).into());
                    let done = pool
                        .commit(
                            move |e| e.complete(&actor, &task, outcome, None, Data::new()),
                            ticket,
                        )
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                    case = done.cases.into_iter().next().unwrap();
                }
                assert_eq!(case.status, guichet_core::case::CaseStatus::Approved);
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = start.elapsed();
    tokio::task::spawn_blocking(move || pool.shutdown())
        .await
        .unwrap();
    Report {
        written_before,
        cpu_before,
        client_cpu_before,
        pg_cpu_before,
        cases,
        latencies,
        elapsed,
    }
}

async fn http(
    bases: Vec<String>,
    tokens: Arc<std::collections::HashMap<&'static str, String>>,
    cases: usize,
    clients: usize,
    rate: Option<f64>,
) -> Report {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let written_before = written_bytes();
    let cpu_before = cpu_secs();
    let client_cpu_before = threads_cpu_secs(CLIENT_THREADS);
    let pg_cpu_before = postgres_cpu_secs();
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..clients {
        // Clients alternate between the nodes.
        let base = bases[w % bases.len()].clone();
        let (client, tokens) = (client.clone(), tokens.clone());
        let n = cases / clients + usize::from(w < cases % clients);
        handles.push(tokio::spawn(async move {
            let mut pace = Pace::new(rate, clients, w);
            let mut lat = Vec::new();
            for _ in 0..n {
                let body = serde_json::to_value(json!({
                    "procedure": "power.connection",
                    "applicant": { "id": "91310000MA1FL0001X", "name": "Bench Co." },
                    "data": { "project": "Bench", "capacity_kva": 1000, "supply_points": 2, "voltage": "10kV" },
                    "materials": [ { "id": "licence", "file": "l.pdf" }, { "id": "site_plan", "file": "p.pdf" } ],
                }))
                .unwrap();
                let t = pace.due().await;
                let v: CaseBody = client.post(format!("{base}/api/cases")).json(&body).send().await.unwrap().json().await.unwrap();
                lat.push(t.elapsed());
                let mut case = v.case;
                while let Some((task, step)) = next_task(&case) {
                    let outcome = if step == "intake" { "accept" } else { "approve" };
                    let t = pace.due().await;
                    let resp = client
                        .post(format!("{base}/api/tasks/{task}/complete"))
                        .bearer_auth(&tokens[holder(&step)])
                        .json(&json!({ "outcome": outcome }))
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let v: CaseBody = resp.json().await.unwrap();
                    lat.push(t.elapsed());
                    case = v.case;
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    Report {
        written_before,
        cpu_before,
        client_cpu_before,
        pg_cpu_before,
        cases,
        latencies,
        elapsed: start.elapsed(),
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let cases = args.first().copied().unwrap_or(3000);
    let clients = args.get(1).copied().unwrap_or(64);
    let rate = args.get(2).map(|r| *r as f64);
    guichet::server::disable_huge_pages();
    // Start from a quiet disk: dirty pages left by earlier work (a build writes hundreds of
    // MiB) are written back by the kernel at some point, and the log's syncs then wait
    // behind them for tens of milliseconds (seen: 55 ms flushes while 100 MiB of a
    // build's pages went out), which measures the build, not the server.
    // SAFETY: sync(2) takes no arguments and touches no memory of ours.
    unsafe { libc::sync() };
    // The store: embedded, or a fresh PostgreSQL database (made before the runtimes: the
    // client blocks).
    let store = (std::env::var("GUICHET_BENCH_STORE").as_deref() == Ok("postgres")).then(|| {
        let base = std::env::var("GUICHET_TEST_POSTGRES")
            .expect("GUICHET_BENCH_STORE=postgres needs GUICHET_TEST_POSTGRES (.ci/postgres)");
        let name = format!("guichet_bench_{:016x}", rand::random::<u64>());
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        format!("{}/{name}", base.rsplit_once('/').unwrap().0)
    });
    let nodes: usize = std::env::var("GUICHET_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1 && store.is_some())
        .unwrap_or(1);
    // The clients on a runtime of their own, named so that their CPU can be told from
    // the server's; the server on another, as in its own process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let durability = match std::env::var("GUICHET_BENCH_DURABILITY").as_deref() {
            Ok("flush") => guichet_core::store::Durability::Flush,
            _ => guichet_core::store::Durability::Fsync,
        };
        match &store {
            None => println!("durability {durability:?}"),
            Some(_) => println!("store PostgreSQL, {nodes} node(s)"),
        }
        let cfg = Config {
            scripts,
            data: tmp.path().join("data"),
            durability,
            store: store.clone().map(Into::into),
            engine_threads: std::env::var("GUICHET_BENCH_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            store_connections: std::env::var("GUICHET_BENCH_CONNECTIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(Config::default().store_connections),
            ..Config::default()
        };
        let open = |cfg: Config| {
            std::thread::spawn(move || guichet::server::open(&cfg).unwrap())
                .join()
                .unwrap()
        };
        let engine = open(cfg.clone());
        println!(
            "power.connection, 7 durable transitions per case; {} cores",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        let threads = cfg.engine_threads().unwrap();
        embedded(engine.clone(), threads, cases / 10, clients, true, None).await; // warm-up
        if std::env::var_os("GUICHET_BENCH_NO_FLUSH").is_some() {
            // Diagnosis only: how fast the engine runs when the disk is taken out.
            embedded(engine.clone(), threads, cases, clients, false, None)
                .await
                .print("no-flush", clients);
        }
        embedded(engine.clone(), threads, cases, clients, true, None)
            .await
            .print("embedded", clients);
        if let Some(r) = rate {
            embedded(engine.clone(), threads, cases, clients, true, Some(r))
                .await
                .print(&format!("emb@{r}"), clients);
        }

        let mut tokens = std::collections::HashMap::new();
        for s in ["zhou.qiang", "wu.gang", "xu.li", "hu.bo", "guo.na"] {
            // Off the async thread, as the server does (a PostgreSQL client blocks).
            let e = engine.clone();
            let secret =
                std::thread::spawn(move || e.issue_token("admin", s, "bench", None).unwrap().1)
                    .join()
                    .unwrap();
            tokens.insert(s, secret);
        }
        let mut engines = vec![engine];
        for i in 1..nodes {
            // Another node: its own data folder, the same database.
            let other = Config {
                data: tmp.path().join(format!("data-{i}")),
                ..cfg.clone()
            };
            engines.push(open(other));
        }
        let (mut bases, mut stops, mut servers) = (Vec::new(), Vec::new(), Vec::new());
        for engine in engines {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            bases.push(format!("http://{}", listener.local_addr().unwrap()));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            let cfg = cfg.clone();
            servers.push(server_rt.spawn(async move {
                // Registered with the server's runtime.
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                guichet::server::serve(listener, engine, &cfg, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }));
        }
        let tokens = Arc::new(tokens);
        http(bases.clone(), tokens.clone(), cases / 10, clients, None).await; // warm-up
        http(bases.clone(), tokens.clone(), cases, clients, None)
            .await
            .print(
                &if nodes > 1 {
                    format!("http×{nodes}")
                } else {
                    "http".into()
                },
                clients,
            );
        if let Some(r) = rate {
            http(bases, tokens, cases, clients, Some(r))
                .await
                .print(&format!("http@{r}"), clients);
        }
        for tx in stops {
            let _ = tx.send(());
        }
        for s in servers {
            let _ = s.await;
        }
    });
    // The bench's database goes with it (FORCE: a node's pool may still be closing).
    if let (Some(url), Ok(cluster)) = (&store, std::env::var("GUICHET_TEST_POSTGRES")) {
        let name = url.rsplit_once('/').unwrap().1;
        let mut admin = postgres::Client::connect(&cluster, postgres::NoTls).unwrap();
        if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        {
            eprintln!("the bench's database {name} was not dropped: {e}");
        }
    }
}
