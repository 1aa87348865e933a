//! The engine threads (`guichet::pool`) on the example office and a real store: a commit
//! is answered only once it is on disk, a long call does not hold back other commits'
//! answers, a caller that gave up is not run, a panicking call answers its caller and
//! the threads go on, and shutdown runs what was queued before it refuses new calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guichet::config::Config;
use guichet::pool::{Pool, PoolError, Weight};
use guichet_core::engine::{Committed, Submission};
use guichet_core::{Actor, Engine};

mod common;

fn open() -> (tempfile::TempDir, Arc<Engine>) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        scripts: common::example_scripts(),
        data: tmp.path().join("data"),
        ..Config::default()
    };
    let engine = guichet::server::open(&cfg).unwrap();
    (tmp, engine)
}

fn submission() -> Submission {
    serde_json::from_value(common::power_case(400.0)).unwrap()
}

/// Submits a power case through the pool, answered once durable.
async fn submit(pool: &Pool) -> Result<Committed, PoolError> {
    pool.commit(|e| e.submit(&Actor::Public, submission()), |c| c.ticket)
        .await
}

/// A call that holds its engine thread until `release` is sent; returns once it runs.
async fn occupy(pool: &Arc<Pool>) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    occupy_as(pool, Weight::Light).await
}

/// As `occupy`, with a call of the given weight (`Heavy`: one that may run scripts).
async fn occupy_as(
    pool: &Arc<Pool>,
    weight: Weight,
) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let p = pool.clone();
    let handle = tokio::spawn(async move {
        let hold = move |_: &Engine| {
            let _ = started.send(());
            let _ = held.recv();
            Ok(())
        };
        match weight {
            Weight::Light => p.call(hold).await,
            Weight::Heavy => p.call_heavy(hold).await,
        }
        .unwrap();
    });
    running.await.unwrap();
    (release, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_is_answered_only_once_it_is_on_disk() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine.clone(), 4);
    let mut clients = Vec::new();
    for _ in 0..200 {
        let (pool, engine) = (pool.clone(), engine.clone());
        clients.push(tokio::spawn(async move {
            let c = submit(&pool).await.unwrap();
            // Read when the answer arrives: the flush that covers it is already done.
            assert!(engine.flushed() >= c.ticket, "answered before its flush");
            c.ticket
        }));
    }
    let mut tickets = Vec::new();
    for c in clients {
        tickets.push(c.await.unwrap());
    }
    tickets.sort();
    tickets.dedup();
    assert_eq!(tickets.len(), 200);
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_does_not_hold_back_other_commits() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine.clone(), 2);
    let (release, slow) = occupy(&pool).await;
    // The other thread commits; nothing is queued, but a call is still running, so only
    // the commit's age can start its flush.
    let c = tokio::time::timeout(Duration::from_secs(5), submit(&pool))
        .await
        .expect("answered while the long call still runs")
        .unwrap();
    assert!(engine.flushed() >= c.ticket);
    release.send(()).unwrap();
    slow.await.unwrap();
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_caller_gave_up_before_it_started_is_not_run() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine, 1);
    let (release, slow) = occupy(&pool).await;
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        pool.commit(
            move |e| {
                r.store(true, Ordering::SeqCst);
                e.submit(&Actor::Public, submission())
            },
            |c| c.ticket,
        ),
    )
    .await;
    assert!(gave_up.is_err(), "the only thread is busy");
    release.send(()).unwrap();
    slow.await.unwrap();
    // The queue is worked in order: once this call ran, the abandoned one was passed.
    pool.call(|_| Ok(())).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_call_answers_its_caller_and_the_threads_go_on() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine, 1);
    let r = pool
        .call(|_| -> guichet_core::Result<()> { panic!("a bug in an engine call") })
        .await;
    assert!(matches!(r, Err(PoolError::Panicked)), "{r:?}");
    let c = submit(&pool).await.unwrap();
    assert_eq!(c.cases.len(), 1);
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_runs_what_was_queued_then_refuses_calls() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine.clone(), 1);
    let (release, slow) = occupy(&pool).await;
    let mut queued = Vec::new();
    for _ in 0..5 {
        let p = pool.clone();
        queued.push(tokio::spawn(async move { submit(&p).await }));
    }
    while pool.queued() < 5 {
        tokio::task::yield_now().await;
    }
    pool.close();
    assert!(matches!(
        pool.call(|_| Ok(())).await,
        Err(PoolError::Closed)
    ));
    release.send(()).unwrap();
    slow.await.unwrap();
    let p = pool.clone();
    tokio::task::spawn_blocking(move || p.shutdown())
        .await
        .unwrap();
    for q in queued {
        let c = q.await.unwrap().expect("queued before the shutdown");
        assert!(engine.flushed() >= c.ticket);
    }
    // The threads let go of the engine.
    assert_eq!(Arc::strong_count(&engine), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_while_slow_scripts_hold_every_other_thread() {
    let (_tmp, engine) = open();
    let pool = Pool::start(engine, 3);
    let (r1, h1) = occupy_as(&pool, Weight::Heavy).await;
    let (r2, h2) = occupy_as(&pool, Weight::Heavy).await;
    // A third call that may run scripts waits: the last thread is kept for reads.
    let third = {
        let p = pool.clone();
        tokio::spawn(async move { p.call_heavy(|_| Ok(())).await })
    };
    while pool.queued() < 1 {
        tokio::task::yield_now().await;
    }
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        pool.call(|e| Ok(e.rules().procedures.len())),
    )
    .await
    .expect("a read is answered while scripts hold the other threads")
    .unwrap();
    assert!(read > 0);
    assert!(!third.is_finished());
    r1.send(()).unwrap();
    r2.send(()).unwrap();
    h1.await.unwrap();
    h2.await.unwrap();
    third.await.unwrap().unwrap();
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_gives_up_before_its_write_starts_changes_nothing() {
    use guichet::pool::{within, Gate};
    let (_tmp, engine) = open();
    let pool = Pool::start(engine.clone(), 1);
    let (release, slow) = occupy(&pool).await;
    let ran = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Gate::default());
    let request = {
        let (p, r, g) = (pool.clone(), ran.clone(), gate.clone());
        tokio::spawn(within(g, async move {
            p.commit(
                move |e| {
                    r.store(true, Ordering::SeqCst);
                    e.submit(&Actor::Public, submission())
                },
                |c| c.ticket,
            )
            .await
        }))
    };
    while pool.queued() < 1 {
        tokio::task::yield_now().await;
    }
    // Its time runs out while the write still waits for a thread: 408 is the truth.
    assert!(gate.abandon());
    release.send(()).unwrap();
    slow.await.unwrap();
    pool.call(|_| Ok(())).await.unwrap();
    assert!(
        !ran.load(Ordering::SeqCst),
        "a write ran after its request gave up"
    );
    request.abort();
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_started_is_answered_even_past_the_deadline() {
    use guichet::pool::{within, Gate};
    let (_tmp, engine) = open();
    let pool = Pool::start(engine.clone(), 2);
    let gate = Arc::new(Gate::default());
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let request = {
        let (p, g) = (pool.clone(), gate.clone());
        tokio::spawn(within(g, async move {
            p.commit(
                move |e| {
                    let _ = started.send(());
                    let _ = held.recv();
                    e.submit(&Actor::Public, submission())
                },
                |c| c.ticket,
            )
            .await
        }))
    };
    running.await.unwrap();
    // The write is under way: the request may not be answered 408 any more...
    assert!(!gate.abandon());
    release.send(()).unwrap();
    // ...and is answered with what happened.
    let c = request.await.unwrap().unwrap();
    assert!(engine.case(c.case().id).is_ok());
    pool.shutdown();
}
