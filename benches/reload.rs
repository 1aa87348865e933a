//! Hot reload under load: an office of 200 procedures, edited while clients submit cases.
//!
//! `cargo bench --bench reload` prints the time to load the 200-procedure office, the time
//! from a file save to the new version serving requests (debounce included), and request
//! latency and failures while the reloads happen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guichet::config::Config;
use serde_json::{json, Value};

mod common;
use common::q;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROCEDURES: usize = 200;
const SAVES: usize = 10;

fn write_office(dir: &std::path::Path) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    // The office, its calendar and the modules procedures import (`notices`).
    for f in ["office.rhai", "calendar.rhai", "notices.rhai"] {
        std::fs::copy(repo.join(f), dir.join(f)).unwrap();
    }
    let power = std::fs::read_to_string(repo.join("power/new_connection.rhai")).unwrap();
    for i in 0..PROCEDURES {
        let src = power
            .replace("\"power.connection\"", &format!("\"gen.p{i:03}\""))
            .replace("\"PWR-NC\"", &format!("\"GEN-{i:03}\""));
        std::fs::write(dir.join(format!("generated/p{i:03}.rhai")), src).unwrap();
    }
}

fn main() {
    guichet::server::disable_huge_pages();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let scripts = tmp.path().join("scripts");
        write_office(&scripts);
        let t = Instant::now();
        let rules = guichet_core::script::load_dir(&scripts).unwrap();
        println!("load {} procedures: {:?}", rules.procedures.len(), t.elapsed());

        let cfg = Config { scripts: scripts.clone(), data: tmp.path().join("data"), ..Config::default() };
        let engine = guichet::server::open(&cfg).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            guichet::server::serve(listener, engine, &cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let client = reqwest::Client::new();

        // Background load: submissions across the office, counting failures.
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let mut load = Vec::new();
        for w in 0..16usize {
            let (client, base, stop, failures) = (client.clone(), base.clone(), stop.clone(), failures.clone());
            load.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({
                        "procedure": format!("gen.p{:03}", i % PROCEDURES),
                        "applicant": { "id": "A1", "name": "Bench" },
                        "data": { "project": "x", "capacity_kva": 100, "supply_points": 1, "voltage": "10kV" },
                        "materials": [ { "id": "licence", "file": "l.pdf" }, { "id": "site_plan", "file": "p.pdf" } ],
                    });
                    let t = Instant::now();
                    match client.post(format!("{base}/api/cases")).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lat.push(t.elapsed());
                    i += 16;
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut save_to_live = Vec::new();
        for n in 0..SAVES {
            let file = scripts.join(format!("generated/p{:03}.rhai", n * 7));
            let id = format!("gen.p{:03}", n * 7);
            let v0: Value = client.get(format!("{base}/api/procedures/{id}")).send().await.unwrap().json().await.unwrap();
            let src = std::fs::read_to_string(&file).unwrap().replace("New power connection", &format!("New power connection (rev {n})"));
            // Save as editors do: write a temporary file, rename it over the original.
            let tmp_file = file.with_extension("rhai.tmp");
            std::fs::write(&tmp_file, src).unwrap();
            let t = Instant::now();
            std::fs::rename(&tmp_file, &file).unwrap();
            loop {
                let v: Value = client.get(format!("{base}/api/procedures/{id}")).send().await.unwrap().json().await.unwrap();
                if v["version"] != v0["version"] {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(10), "reload did not happen");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            save_to_live.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for h in load {
            lat.extend(h.await.unwrap());
        }
        println!(
            "save to live ({SAVES} saves, debounce 150 ms): p50={:?} max={:?}",
            q(&mut save_to_live, 0.5),
            q(&mut save_to_live, 1.0)
        );
        println!(
            "submissions meanwhile: {} requests, {} failed, p50={:?} p99={:?} max={:?}",
            lat.len(),
            failures.load(Ordering::Relaxed),
            q(&mut lat, 0.5),
            q(&mut lat, 0.99),
            q(&mut lat, 1.0)
        );
        let _ = tx.send(());
        let _ = server.await;
    });
}
