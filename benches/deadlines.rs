//! Deadlines at scale: N open tasks with deadlines spread over a year.
//!
//! `cargo bench --bench deadlines -- [N [BURST]]` (defaults 100,000 and 10,000) prints:
//! resident memory with N open cases, time to start the engine on that store, the cost of
//! a scheduler pass with nothing due (it must not grow with N), and, with BURST more step
//! deadlines falling due at once (with those of the spread cases that end at the same
//! closing time) while 16 clients read over HTTP, the delay until every card is issued,
//! the API latency meanwhile and the peak resident memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use guichet::config::Config;
use guichet_core::case::Data;
use guichet_core::clock::{Clock, ManualClock};
use guichet_core::engine::Submission;
use guichet_core::{Actor, Engine};

mod common;
use common::{cpu_secs, q, status_mib};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn start_at() -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2025, 1, 2, 10, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn open_case(engine: &Engine) -> u64 {
    let sub: Submission = serde_json::from_value(serde_json::json!({
        "procedure": "bench.deadline", "applicant": { "id": "A1", "name": "Bench" },
    }))
    .unwrap();
    let c = engine.submit(&Actor::Public, sub).unwrap().cases.remove(0);
    let task = c.tasks[0].id.clone();
    engine
        .complete(
            &Actor::Staff("a".into()),
            &task,
            "accept",
            None,
            Data::new(),
        )
        .unwrap();
    c.id
}

/// Opens the office, retrying while sled's own threads still hold the folder's lock (they
/// let go a moment after the last handle); the clock starts at the successful attempt.
fn open_retrying(cfg: &Config, clock: &Arc<ManualClock>) -> (Arc<guichet_core::Engine>, Instant) {
    loop {
        let t = Instant::now();
        match guichet::server::open_with_clock(cfg, clock.clone()) {
            Ok(e) => return (e, t),
            Err(e)
                if matches!(
                    e.downcast_ref::<guichet_core::Error>(),
                    Some(guichet_core::Error::InUse(_))
                ) =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e:#}"),
        }
    }
}

fn main() {
    guichet::server::disable_huge_pages();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    // Cases added at one instant for the burst. Limits end at closing time, so the spread
    // cases accepted on days that map to the same end join it: about 10,000 of them at
    // 1,000,000 open cases, which then make the burst on their own (`-- 1000000 0`).
    let burst = args.get(1).copied().unwrap_or(10_000);
    // Clients reading the API in a closed loop during the burst; `0` shows the firing's
    // own cost, steadier for comparing builds on a shared machine.
    let clients = args.get(2).copied().unwrap_or(16);
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/deadlines/office.rhai"),
        scripts.join("office.rhai"),
    )
    .unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/calendar.rhai"),
        scripts.join("calendar.rhai"),
    )
    .unwrap();
    let cfg = Config {
        scripts,
        data: tmp.path().join("data"),
        watch: false,
        ..Config::default()
    };
    let clock = Arc::new(ManualClock::new(start_at()));

    // Load: N cases accepted at moments spread over a year, each with an open task.
    {
        // The checkpoint the server makes once the office is quiet (`checkpoint_mb`, here
        // at once after the load).
        let load_cfg = Config {
            checkpoint_mb: 1,
            checkpoint_idle_secs: 0,
            ..cfg.clone()
        };
        let engine = guichet::server::open_with_clock(&load_cfg, clock.clone()).unwrap();
        let t = Instant::now();
        let step = chrono::Duration::seconds(365 * 24 * 3600 / n as i64);
        for _ in 0..n {
            open_case(&engine);
            clock.advance(step);
        }
        engine.flush().unwrap();
        println!(
            "loaded {n} open cases in {:?}; resident {:.0} MiB",
            t.elapsed(),
            rss_mib()
        );
        if std::env::var_os("GUICHET_BENCH_NO_CHECKPOINT").is_none() {
            let t = Instant::now();
            let took = engine.maintain_store().unwrap();
            println!(
                "checkpoint after the load: {:?} (store calls wait meanwhile; ran: {})",
                t.elapsed(),
                took.is_some()
            );
        }
    }
    // Restart: open the same store. sled 0.34 brings its page-table snapshot up to date
    // only when it opens a store, replaying the log written since the last open: without
    // the checkpoint the first start after the load pays for the whole load.
    let (engine, t) = open_retrying(&cfg, &clock);
    println!(
        "start on {n} open cases (first after the load and checkpoint): {:?}; resident {:.0} MiB",
        t.elapsed(),
        rss_mib()
    );
    drop(engine);
    let (engine, t) = open_retrying(&cfg, &clock);
    println!(
        "start on {n} open cases (again): {:?}; resident {:.0} MiB",
        t.elapsed(),
        rss_mib()
    );
    // A scheduler pass with nothing due, at the far end (all timers are in the future).
    clock.advance(start_at() - clock.now());
    let mut passes = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        engine.fire_due_timers(10_000).unwrap();
        let _ = engine.next_timer().unwrap();
        passes.push(t.elapsed());
    }
    println!(
        "scheduler pass with nothing due: p50={:?} p99={:?}",
        q(&mut passes, 0.5),
        q(&mut passes, 0.99)
    );

    // `burst` more deadlines at the same instant, under API load.
    let burst_start = clock.now();
    for _ in 0..burst {
        open_case(&engine);
    }
    engine.flush().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = engine.issue_token("admin", "a", "bench", None).unwrap().1;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_engine = engine.clone();
        let server = tokio::spawn(async move {
            guichet::server::serve(listener, server_engine, &cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::new();
        let mut load = Vec::new();
        for _ in 0..clients {
            let (client, base, token, stop) = (client.clone(), base.clone(), token.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client.get(format!("{base}/api/procedures/bench.deadline")).bearer_auth(&token).send().await.unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The step deadline of the burst: 5 working days after acceptance. Its 75 %
        // warnings fall due a day earlier: let them go first, as they would in real time.
        let cal = engine.rules().calendar.clone();
        let due = cal.deadline(burst_start, 5);
        let warn = cal.deadline(burst_start, 4) + chrono::Duration::seconds(1);
        clock.advance(warn - clock.now());
        while !engine.store().due_timers(engine.now(), 1).unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The spread cases' deadlines of that working day come as they would in real time,
        // before the burst's instant (at 1,000,000 open cases, about 4,000 a day).
        clock.advance(due - chrono::Duration::seconds(1) - clock.now());
        while !engine.store().due_timers(engine.now(), 1).unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let target = due + chrono::Duration::seconds(1);
        let pending: usize = engine
            .store()
            .due_timers(target, usize::MAX)
            .unwrap()
            .iter()
            .map(|g| g.timers.iter().filter(|t| t.at <= target).count())
            .sum();
        let t = Instant::now();
        let cpu = cpu_secs();
        clock.advance(target - clock.now());
        // Done when no timer due by now is left in the index.
        loop {
            let left = engine.store().due_timers(engine.now(), 1).unwrap().len();
            if left == 0 || t.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = t.elapsed();
        let cpu = cpu_secs() - cpu;
        let issued = pending;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in load {
            lat.extend(h.await.unwrap());
        }
        println!(
            "{burst} cases added at one instant; {issued} step deadlines at once: overdue cards issued within {:?} of the deadline (process CPU meanwhile {cpu:.2} s); API meanwhile ({clients} clients): {} requests p50={:?} p99={:?}",
            delay,
            lat.len(),
            q(&mut lat, 0.5),
            q(&mut lat, 0.99)
        );
        // Not awaiting the server: it waits until it holds the last reference to the
        // engine, and this bench keeps one to the end.
        let _ = tx.send(());
        drop(server);
    });
    println!("peak resident {:.0} MiB", status_mib("VmHWM:"));
}
