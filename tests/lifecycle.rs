//! The server's threads and its end: a store held up (a long checkpoint) never stalls the
//! async threads, so requests that need no store are answered meanwhile; shutdown waits
//! for its background loops and releases the engine when `serve` returns.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use guichet::config::Config;
use guichet_core::clock::SystemClock;
use guichet_core::engine::Submission;
use guichet_core::store::{FaultPoint, SledStore, Store};
use guichet_core::{Actor, Engine};
use reqwest::StatusCode;

fn config(tmp: &tempfile::TempDir) -> Config {
    Config {
        scripts: example_scripts(),
        data: tmp.path().join("data"),
        ..Config::default()
    }
}

fn open(cfg: &Config) -> (Arc<SledStore>, Arc<Engine>) {
    std::fs::create_dir_all(&cfg.data).unwrap();
    let store = Arc::new(SledStore::open(&cfg.data.join("store"), 8 << 20).unwrap());
    let engine = Engine::open(store.clone(), &cfg.scripts, Arc::new(SystemClock)).unwrap();
    (store, Arc::new(engine))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_held_up_by_a_checkpoint_does_not_stall_the_async_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    // Cases written by an earlier run, so that none is in the store's memory now.
    let ids: Vec<u64> = {
        let (_, e) = open(&cfg);
        (0..4)
            .map(|_| {
                let sub: Submission = serde_json::from_value(power_case(100.0)).unwrap();
                let c = e.submit(&Actor::Public, sub).unwrap();
                e.durable(c.ticket).unwrap();
                c.case().id
            })
            .collect()
    };
    let (store, engine) = open(&cfg);
    let (_, token, _) = engine
        .issue_token("admin", "zhou.qiang", "t", None)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let engine = engine.clone();
        async move {
            guichet::server::serve(listener, engine, &cfg, async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
        }
    });
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    // The token's first use is behind us (it is looked up in the store once).
    let me = client
        .get(format!("{base}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // A checkpoint holds the store for three seconds (reopening it, here).
    let (in_checkpoint, holding) = mpsc::channel();
    let once = std::sync::atomic::AtomicBool::new(true);
    store.set_fault(Some(Arc::new(move |at| {
        if at == FaultPoint::Reopen && once.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = in_checkpoint.send(());
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(())
    })));
    let checkpoint = {
        let store = store.clone();
        std::thread::spawn(move || store.checkpoint(0, Duration::ZERO))
    };
    tokio::task::spawn_blocking(move || holding.recv().unwrap())
        .await
        .unwrap();
    // Case pages need the store: more of them than there are async threads.
    let sent = Instant::now();
    let pages: Vec<_> = ids
        .iter()
        .map(|id| {
            let (client, url, token) = (
                client.clone(),
                format!("{base}/api/cases/{id}"),
                token.clone(),
            );
            tokio::spawn(async move {
                client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // Measured on the wall clock: tokio's own timers need a free async thread too.
    std::thread::sleep(Duration::from_millis(200));
    // What needs no store is answered meanwhile, not after the checkpoint.
    let other = client
        .get(format!("{base}/api/procedures"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert!(
        sent.elapsed() < Duration::from_millis(2500),
        "answered only after the store was free: {:?}",
        sent.elapsed()
    );
    checkpoint.join().unwrap().unwrap();
    for p in pages {
        assert_eq!(p.await.unwrap(), StatusCode::OK);
    }
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_promptly_with_its_loops_done_and_the_engine_released() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp);
    let engine = guichet::server::open(&cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let (engine, cfg) = (engine.clone(), cfg.clone());
        async move {
            guichet::server::serve(listener, engine, &cfg, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let client = reqwest::Client::new();
    wait_up(&client, &base).await;
    let r = client
        .post(format!("{base}/api/cases"))
        .json(&power_case(100.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let started = Instant::now();
    let _ = stop.send(());
    server.await.unwrap().expect("a clean shutdown");
    // No waiting for references to go: every loop, thread and connection of the server
    // has let go of the engine when `serve` returns, and this test holds the last one.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(Arc::strong_count(&engine), 1);
}
