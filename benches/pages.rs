//! The web pages at scale: a group's worklist with N open tasks, a case page with 200
//! history events, and what the public pages weigh.
//!
//! `cargo bench --bench pages -- [N [REQUESTS]]` (defaults 100,000 and 200) prints the
//! server time of the worklist's first page (and of a filtered page), of the case page,
//! p50/p95 over REQUESTS sequential requests each, measured as the client sees it on
//! loopback, and the bytes each public page sends (with and without gzip).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use guichet::config::Config;
use guichet_core::case::Data;
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::{Actor, Engine};

mod common;
use common::{q, status_mib};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn start_at() -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2025, 1, 2, 10, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// A case accepted at the window, its review task open in group `g`.
fn open_case(engine: &Engine) -> (u64, String) {
    let sub: Submission = serde_json::from_value(serde_json::json!({
        "procedure": "bench.deadline", "applicant": { "id": "A1", "name": "Bench applicant" },
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
    (c.id, c.number)
}

/// Sequential GETs of `path` with the session cookie: the latencies, and the size of the
/// last answer.
async fn time_page(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
    n: usize,
) -> (Vec<Duration>, usize) {
    let mut lat = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = client
            .get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        size = r.bytes().await.unwrap().len();
        lat.push(t.elapsed());
    }
    (lat, size)
}

fn main() {
    guichet::server::disable_huge_pages();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let requests = args.get(1).copied().unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("benches/deadlines/office.rhai"),
        scripts.join("office.rhai"),
    )
    .unwrap();
    std::fs::copy(
        root.join("scripts/calendar.rhai"),
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
    let engine = guichet::server::open_with_clock(&cfg, clock.clone()).unwrap();
    let t = Instant::now();
    // Tasks created over the weeks before "now", so the list holds every level.
    let step = chrono::Duration::seconds(30 * 24 * 3600 / n.max(1) as i64);
    for _ in 0..n {
        open_case(&engine);
        clock.advance(step);
    }
    // One case with 200 history events: claimed and released 99 times after its start.
    let (busy, busy_number) = open_case(&engine);
    let task = engine
        .case(busy)
        .unwrap()
        .open_tasks()
        .next()
        .unwrap()
        .id
        .clone();
    let a = Actor::Staff("a".into());
    for _ in 0..99 {
        engine.claim(&a, &task).unwrap();
        engine.release(&a, &task).unwrap();
    }
    engine.flush().unwrap();
    let events = engine.history(busy).unwrap().len();
    println!(
        "loaded {n} open tasks in group g in {:?}; the busy case has {events} history events; resident {:.0} MiB",
        t.elapsed(),
        status_mib("VmRSS:")
    );
    engine
        .set_password(&Actor::Admin, "a", "bench password")
        .unwrap();
    let (_, session) = engine.sign_in("a", "bench password").unwrap().unwrap();
    let cookie = format!("guichet_session={session}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_engine = engine.clone();
        let server_cfg = cfg.clone();
        let server = tokio::spawn(async move {
            guichet::server::serve(listener, server_engine, &server_cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        for (what, path) in [
            ("worklist, first page", "/staff?lang=en".to_string()),
            (
                "worklist, page 1,000 (a deep page: the whole list sorted)",
                "/staff?lang=en&page=1000".to_string(),
            ),
            (
                "worklist, overdue only",
                "/staff?lang=en&level=red".to_string(),
            ),
            (
                "case page (200 events)",
                format!("/staff/cases/{busy_number}?lang=en"),
            ),
        ] {
            // A few requests first: caches warm as they would on a working server.
            time_page(&client, &base, &path, &cookie, 3).await;
            let (mut lat, size) = time_page(&client, &base, &path, &cookie, requests).await;
            // This client does not decode: what it reads is what was sent.
            let gzipped = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len();
            println!(
                "{what}: p50={:?} p95={:?} ({size} bytes, {gzipped} gzipped)",
                q(&mut lat, 0.5),
                q(&mut lat, 0.95)
            );
        }
        for path in [
            "/?lang=zh".to_string(),
            "/guide/bench.deadline?lang=zh".to_string(),
            "/apply/bench.deadline?lang=zh".to_string(),
            "/track?lang=zh".to_string(),
            guichet::web::css_path().to_string(),
        ] {
            let plain = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len();
            // This client does not decode: what it reads is what was sent.
            let r = client
                .get(format!("{base}{path}"))
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            let encoded = r.headers().get("content-encoding").is_some();
            let wire = r.bytes().await.unwrap().len();
            println!(
                "{path}: {plain} bytes{}",
                if encoded {
                    format!(", {wire} sent gzipped")
                } else {
                    String::new()
                }
            );
        }
        let _ = tx.send(());
        drop(server);
    });
    println!("peak resident {:.0} MiB", status_mib("VmHWM:"));
}
