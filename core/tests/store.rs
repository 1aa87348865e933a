//! The store's conformance suite: what every backend promises (see `store/mod.rs`),
//! checked through the store's traits only, against each backend. A new backend adds one
//! line to `backends()`; what only one backend has (its key layout, its file formats, its
//! checkpoints) is tested beside it.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use guichet_core::case::{
    Card, CardAnswer, CardKind, Case, CaseStatus, HistoryEvent, Limit, Timer,
};
use guichet_core::notice::{Notice, NoticeStatus};
use guichet_core::store::*;
use guichet_core::Error;

struct Backend {
    name: &'static str,
    /// Opens the backend's store kept at `dir` (again, after a drop: a restart).
    open: fn(&Path) -> Arc<dyn Store>,
}

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend {
        name: "embedded",
        open: |dir| Arc::new(SledStore::open(dir, 8 << 20).unwrap()),
    }];
    #[cfg(feature = "postgres")]
    match std::env::var("GUICHET_TEST_POSTGRES") {
        Ok(_) => all.push(Backend {
            name: "postgres",
            open: |dir| Arc::new(postgres_store(dir)),
        }),
        // CI starts a cluster (.ci/postgres): there the suite may not skip a backend.
        Err(_) if std::env::var_os("GUICHET_CI").is_some() => {
            panic!("GUICHET_TEST_POSTGRES is not set (start a cluster with .ci/postgres)")
        }
        Err(_) => eprintln!("GUICHET_TEST_POSTGRES not set: the PostgreSQL store is not checked"),
    }
    all
}

/// The PostgreSQL store of a check: a database of its own on the test cluster, named
/// after the check's folder (so that opening it again is a restart).
#[cfg(feature = "postgres")]
fn postgres_store(dir: &Path) -> guichet_core::store::postgres::PgStore {
    let base = std::env::var("GUICHET_TEST_POSTGRES").unwrap();
    let name = database_name(dir);
    let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls).unwrap();
    if admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_none()
    {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    guichet_core::store::postgres::PgStore::open(&url, 8, None).unwrap()
}

/// The database of a check's PostgreSQL store.
#[cfg(feature = "postgres")]
fn database_name(dir: &Path) -> String {
    format!(
        "guichet_{}",
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// Runs `check` on a fresh store of every backend (with the folder, for restarts).
fn each(check: impl Fn(&Backend, &Path)) {
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        eprintln!("backend: {}", b.name);
        check(&b, dir.path());
    }
}

fn event(action: &str) -> HistoryEvent {
    HistoryEvent::new(Utc::now(), "t", action)
}

fn new_write(id: u64) -> CaseWrite {
    CaseWrite {
        before: None,
        after: Case::blank(id),
        event: event("submitted"),
        number_scope: Some("P-2026".into()),
        timers: vec![],
        work: vec![],
        figures: None,
    }
}

fn try_submit(s: &dyn Store, id: u64) -> Result<Case, Error> {
    let mut w = [new_write(id)];
    s.commit(&mut w, &no_notices)?;
    Ok(w[0].after.clone())
}

fn submit(s: &dyn Store, id: u64) -> Case {
    try_submit(s, id).unwrap()
}

/// The write of `before` → `after` with `timers`.
fn change_write(before: &Case, after: Case, timers: Vec<Timer>) -> CaseWrite {
    CaseWrite {
        before: Some(before.clone()),
        after,
        event: event("changed"),
        number_scope: None,
        timers,
        work: vec![],
        figures: None,
    }
}

/// Commits `before` → `after` with `timers`; returns the case as written.
fn change(s: &dyn Store, before: Case, after: Case, timers: Vec<Timer>) -> Case {
    let mut w = [change_write(&before, after, timers)];
    s.commit(&mut w, &no_notices).unwrap();
    w[0].after.clone()
}

/// Commits each of `writes` from a thread of its own, all at once (which a backend may
/// make together); each one's case and answer, in order.
fn commit_at_once(s: &Arc<dyn Store>, writes: Vec<CaseWrite>) -> Vec<(u64, Result<(), Error>)> {
    let start = std::sync::Barrier::new(writes.len());
    std::thread::scope(|scope| {
        let running: Vec<_> = writes
            .into_iter()
            .map(|w| {
                let (s, start) = (s.clone(), &start);
                scope.spawn(move || {
                    let id = w.after.id;
                    let mut w = [w];
                    start.wait();
                    (id, s.commit(&mut w, &no_notices).map(drop))
                })
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn fail_at(point: FaultPoint) -> Fault {
    Arc::new(move |at| {
        if at == point {
            Err(Error::Store("injected write failure".into()))
        } else {
            Ok(())
        }
    })
}

fn timer(case: u64, at: DateTime<Utc>, threshold: &str) -> Timer {
    Timer {
        at,
        case,
        limit: Limit::Promised,
        token: None,
        threshold: threshold.into(),
        limit_due: at,
    }
}

fn record(i: usize) -> guichet_core::audit::Record {
    guichet_core::audit::Record::new(Utc::now(), "t", "token.issued", format!("t:{i}"))
}

/// A notice for every commit: the receipt, to the applicant.
fn receipt(_: Option<&Case>, after: &Case, event: &HistoryEvent) -> Vec<Notice> {
    let now = event.at;
    vec![Notice {
        id: String::new(),
        case: after.id,
        case_number: after.number.clone(),
        seq: 0,
        n: 0,
        event: "case.received".into(),
        channel: "email".into(),
        recipient: "applicant".into(),
        address: "a@example.org".into(),
        language: Some("en".into()),
        subject: "Received".into(),
        body: "We received your application.".into(),
        payload: None,
        status: NoticeStatus::Queued,
        attempts: 0,
        created_at: now,
        next_attempt: Some(now),
        done_at: None,
        error: None,
        read_at: None,
    }]
}

#[test]
fn numbers_are_gap_free_and_a_stale_revision_is_a_conflict_that_writes_nothing() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let c = submit(s.as_ref(), 1);
        assert_eq!(c.number, "P-2026-000001");
        assert_eq!(submit(s.as_ref(), 2).number, "P-2026-000002");
        let mut stale = c.clone();
        stale.rev -= 1;
        let mut w = [CaseWrite {
            before: Some(stale),
            after: c.clone(),
            event: event("changed"),
            number_scope: None,
            timers: vec![],
            work: vec![],
            figures: None,
        }];
        assert!(matches!(
            s.commit(&mut w, &no_notices),
            Err(Error::Conflict(_))
        ));
        assert_eq!(s.history(1).unwrap().len(), 1);
        assert_eq!(s.case(1).unwrap().unwrap().rev, c.rev);
        assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), Some(2));
    });
}

/// Submits `per_thread` cases from each of four threads at once, the threads taking
/// `stores` in turn, with ids from `first`; the places of the numbers taken, in order.
fn submit_at_once(stores: &[Arc<dyn Store>], first: u64, per_thread: u64) -> Vec<u64> {
    let numbers: Vec<String> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..4u64)
            .map(|t| {
                let s = stores[t as usize % stores.len()].clone();
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| submit(s.as_ref(), first + t * per_thread + i).number)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect()
    });
    let mut places: Vec<u64> = numbers
        .iter()
        .map(|n| n.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    places.sort_unstable();
    places
}

#[test]
fn concurrent_submissions_take_every_number_once() {
    each(|b, dir| {
        let s = (b.open)(dir);
        assert_eq!(submit_at_once(&[s], 1, 50), (1..=200).collect::<Vec<_>>());
    });
}

#[test]
fn two_nodes_take_numbers_in_turn_without_gaps() {
    // Two handles on one database (a backend that allows it): each knows the last number
    // it took, and the other node takes numbers meanwhile.
    each(|b, dir| {
        if b.name != "postgres" {
            return;
        }
        let (one, two) = ((b.open)(dir), (b.open)(dir));
        assert_eq!(submit(one.as_ref(), 1).number, "P-2026-000001");
        assert_eq!(submit(two.as_ref(), 2).number, "P-2026-000002");
        assert_eq!(submit(one.as_ref(), 3).number, "P-2026-000003");
        assert_eq!(submit(two.as_ref(), 4).number, "P-2026-000004");
        assert_eq!(
            submit_at_once(&[one.clone(), two], 5, 25),
            (5..=104).collect::<Vec<_>>()
        );
        for id in 1..=104 {
            assert_eq!(one.history(id).unwrap().len(), 1, "case {id}");
        }
    });
}

#[test]
fn a_number_the_other_node_took_fails_none_of_the_changes_made_with_it() {
    // New cases from two nodes at once, while one of them commits changes of other cases
    // (which it makes together): a new case whose number the other node took is written
    // with the next number free, and every change is written.
    each(|b, dir| {
        if b.name != "postgres" {
            return;
        }
        let (one, two) = ((b.open)(dir), (b.open)(dir));
        let mut cases: Vec<Case> = (1..=8).map(|id| submit(one.as_ref(), id)).collect();
        std::thread::scope(|scope| {
            let changer = scope.spawn(|| {
                for round in 0..20 {
                    let writes = cases.iter().map(|before| {
                        let mut after = before.clone();
                        after.data.insert("round".into(), serde_json::json!(round));
                        change_write(before, after, vec![])
                    });
                    for (id, answer) in commit_at_once(&one, writes.collect()) {
                        assert!(answer.is_ok(), "case {id}, round {round}: {answer:?}");
                    }
                    for c in &mut cases {
                        *c = one.case(c.id).unwrap().unwrap();
                        assert_eq!(c.rev, round + 2);
                    }
                }
            });
            assert_eq!(
                submit_at_once(&[one.clone(), two.clone()], 9, 25),
                (9..=108).collect::<Vec<_>>()
            );
            changer.join().unwrap();
        });
        for id in 1..=108 {
            let history = two.history(id).unwrap();
            assert_eq!(history.len(), if id <= 8 { 21 } else { 1 }, "case {id}");
        }
    });
}

#[cfg(feature = "postgres")]
#[test]
fn after_the_database_cuts_every_connection_one_call_fails_at_most() {
    // A restart of PostgreSQL or a failover cuts every connection of the pool, each given
    // back a moment ago (so none would be checked before use): the call that meets the
    // first cut one fails, and the pool checks the others before the next call.
    each(|b, dir| {
        if b.name != "postgres" {
            return;
        }
        let s = (b.open)(dir);
        let case = submit(s.as_ref(), 1);
        // Several connections in use at once, then given back.
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        s.case(case.id).unwrap().unwrap();
                    }
                });
            }
        });
        let name = database_name(dir);
        let mut admin = ::postgres::Client::connect(
            &std::env::var("GUICHET_TEST_POSTGRES").unwrap(),
            ::postgres::NoTls,
        )
        .unwrap();
        let cut: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert!(cut >= 2, "{cut} connections cut");
        // Until every one of them has gone (termination is asynchronous).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{left} connections left"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let failed = (0..8).filter(|_| s.case(case.id).is_err()).count();
        assert!(failed <= 1, "{failed} calls failed after the cut");
        assert_eq!(s.case(case.id).unwrap().unwrap().rev, case.rev);
    });
}

#[test]
fn concurrent_changes_are_each_answered_for_their_own_case() {
    // Commits made at once (which a backend may make together): two from the same
    // revision of a case, of which one is written and the other is a conflict, next to
    // changes of other cases, each written.
    each(|b, dir| {
        let s = (b.open)(dir);
        let mut cases: Vec<Case> = (1..=16).map(|id| submit(s.as_ref(), id)).collect();
        for round in 0..10 {
            let writes = (0..24usize).map(|t| {
                let before = &cases[if t < 16 { t / 2 } else { t - 8 }];
                let mut after = before.clone();
                after.data.insert("by".into(), serde_json::json!(t));
                change_write(before, after, vec![timer(before.id, Utc::now(), "due")])
            });
            let answers: Vec<(u64, bool)> = commit_at_once(&s, writes.collect())
                .into_iter()
                .map(|(id, answer)| match answer {
                    Ok(()) => (id, true),
                    Err(Error::Conflict(_)) => (id, false),
                    Err(e) => panic!("{e}"),
                })
                .collect();
            for c in &mut cases {
                let written = answers.iter().filter(|(id, ok)| *id == c.id && *ok).count();
                let refused = answers
                    .iter()
                    .filter(|(id, ok)| *id == c.id && !*ok)
                    .count();
                let pair = c.id <= 8;
                assert_eq!(written, 1, "round {round}, case {}", c.id);
                assert_eq!(refused, usize::from(pair), "round {round}, case {}", c.id);
                *c = s.case(c.id).unwrap().unwrap();
                assert_eq!(c.rev as usize, round + 2);
                assert_eq!(s.history(c.id).unwrap().len(), round + 2);
            }
        }
    });
}

#[test]
fn a_commit_the_database_refuses_fails_alone() {
    // Among commits made at once, one with text PostgreSQL cannot hold (a NUL in a task's
    // group): it fails (or, on a store that holds any text, is written), and the others
    // are written whatever call they went in.
    each(|b, dir| {
        let s = (b.open)(dir);
        let mut cases: Vec<Case> = (1..=12).map(|id| submit(s.as_ref(), id)).collect();
        for round in 0..5 {
            let writes = cases.iter().map(|before| {
                let mut after = before.clone();
                let group = if before.id == 1 { "bad\0group" } else { "good" };
                after.tasks = vec![open_task(&format!("{}-{round}", before.id), group)];
                change_write(before, after, vec![])
            });
            let answers = commit_at_once(&s, writes.collect());
            for (c, (_, answer)) in cases.iter_mut().zip(answers) {
                let stored = s.case(c.id).unwrap().unwrap();
                match answer {
                    Ok(()) => assert_eq!(stored.rev, c.rev + 1, "case {}", c.id),
                    Err(Error::Validation(_)) if c.id == 1 => assert_eq!(stored.rev, c.rev),
                    Err(e) => panic!("case {}: {e}", c.id),
                }
                if c.id != 1 {
                    assert_eq!(stored.rev as usize, round + 2, "case {}", c.id);
                }
                *c = stored;
            }
        }
    });
}

#[test]
fn a_new_case_the_database_refuses_leaves_no_gap_in_the_numbers() {
    // New cases of one scope submitted at once (which a backend may number in a row and
    // write in one call), one of each dozen with text PostgreSQL cannot hold: it fails (or,
    // on a store that holds any text, is written) and takes no number; every other one is
    // written, and the numbers written are every number once.
    each(|b, dir| {
        let s = (b.open)(dir);
        submit(s.as_ref(), 1);
        let mut written = vec![1];
        for round in 0..4u64 {
            let writes = (0..12u64).map(|i| {
                let mut w = new_write(2 + round * 12 + i);
                if i == 5 {
                    let id = w.after.id;
                    w.after.tasks = vec![open_task(&format!("{id}-1"), "bad\0group")];
                }
                w
            });
            for (id, answer) in commit_at_once(&s, writes.collect()) {
                match answer {
                    Ok(()) => written.push(id),
                    Err(Error::Validation(_)) if (id - 2) % 12 == 5 => {
                        assert!(s.case(id).unwrap().is_none(), "case {id}");
                    }
                    Err(e) => panic!("case {id}: {e}"),
                }
            }
        }
        let mut places: Vec<usize> = written
            .iter()
            .map(|id| {
                let number = s.case(*id).unwrap().unwrap().number;
                number.rsplit('-').next().unwrap().parse().unwrap()
            })
            .collect();
        places.sort_unstable();
        assert_eq!(places, (1..=written.len()).collect::<Vec<_>>());
        if b.name == "postgres" {
            assert_eq!(written.len(), 1 + 4 * 11);
        }
    });
}

#[test]
fn a_write_that_fails_before_the_commit_point_leaves_no_trace() {
    each(|b, dir| {
        let s = (b.open)(dir);
        assert_eq!(submit(s.as_ref(), 1).number, "P-2026-000001");
        let before_versions = s.open_cases_by_version().unwrap();
        s.set_fault(Some(fail_at(FaultPoint::BeforeRecord)));
        let mut w = [new_write(2)];
        w[0].timers = vec![timer(2, Utc::now() - Duration::hours(1), "breach")];
        assert!(s.commit(&mut w, &receipt).is_err());
        s.set_fault(None);
        // No case, number, history, timer, notice, index entry or audit entry.
        assert!(s.case(2).unwrap().is_none());
        assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), None);
        assert!(s.history(2).unwrap().is_empty());
        // An index may name what the failed commit wrote before its record; the case it
        // names is not there, and readers go by the case.
        let listed: Vec<u64> = s
            .cases_of_applicant("A1")
            .unwrap()
            .into_iter()
            .filter(|id| s.case(*id).unwrap().is_some())
            .collect();
        assert_eq!(listed, [1]);
        assert!(s.due_timers(Utc::now(), 10).unwrap().is_empty());
        // A notice of it may be queued, but it belongs to no committed event: readers
        // (the engine's outbox) deliver only notices below their case's history length.
        for n in s.due_notices(Utc::now() + Duration::hours(1), 10).unwrap() {
            let committed = s
                .case(n.case)
                .unwrap()
                .is_some_and(|c| n.seq < c.history_len);
            assert!(!committed, "{n:?}");
        }
        assert_eq!(s.audit_raw(0, 10).unwrap().len(), 1);
        assert_eq!(s.open_cases_by_version().unwrap(), before_versions);
        // The number was not taken.
        assert_eq!(submit(s.as_ref(), 3).number, "P-2026-000002");
    });
}

#[test]
fn a_failure_reported_after_the_commit_point_is_a_commit() {
    each(|b, dir| {
        let s = (b.open)(dir);
        s.set_fault(Some(fail_at(FaultPoint::AfterRecord)));
        let first = try_submit(s.as_ref(), 1).expect("the commit happened: so says the answer");
        assert_eq!(first.number, "P-2026-000001");
        s.set_fault(None);
        assert_eq!(submit(s.as_ref(), 2).number, "P-2026-000002");
        assert_eq!(s.audit_raw(0, 10).unwrap().len(), 2);
    });
}

#[test]
fn several_cases_commit_all_or_nothing() {
    each(|b, dir| {
        let s = (b.open)(dir);
        s.set_fault(Some(fail_at(FaultPoint::BeforeRecord)));
        let mut bundle = [new_write(1), new_write(2), new_write(3)];
        assert!(s.commit(&mut bundle, &no_notices).is_err());
        s.set_fault(None);
        for id in 1..=3 {
            assert!(s.case(id).unwrap().is_none());
        }
        let mut bundle = [new_write(1), new_write(2), new_write(3)];
        s.commit(&mut bundle, &no_notices).unwrap();
        let numbers: Vec<&str> = bundle.iter().map(|w| w.after.number.as_str()).collect();
        assert_eq!(numbers, ["P-2026-000001", "P-2026-000002", "P-2026-000003"]);
        assert_eq!(s.audit_raw(0, 10).unwrap().len(), 3);
    });
}

#[test]
fn acknowledged_commits_survive_a_restart() {
    each(|b, dir| {
        let receipt = {
            let s = (b.open)(dir);
            let c = submit(s.as_ref(), 1);
            let mut after = c.clone();
            after.status = CaseStatus::InProgress;
            change(s.as_ref(), c, after, vec![]);
            let r = s.append_audit(vec![record(0)]).unwrap();
            let covered = s.flush().unwrap();
            assert!(covered >= r && s.flushed() >= r);
            r
        };
        assert!(receipt > 0);
        let s = (b.open)(dir);
        let c = s.case(1).unwrap().expect("the case");
        assert_eq!(c.status, CaseStatus::InProgress);
        assert_eq!(s.history(1).unwrap().len(), 2);
        let verdict = guichet_core::audit::verify(s.as_ref()).unwrap();
        assert!(verdict.ok(), "{verdict:?}");
        assert_eq!(verdict.entries, 3);
        assert_eq!(submit(s.as_ref(), 2).number, "P-2026-000002");
    });
}

#[test]
fn timers_fall_due_in_order_and_settle_into_their_next_one() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |h: i64| t0 + Duration::hours(h);
        let (one, two) = (submit(s.as_ref(), 1), submit(s.as_ref(), 2));
        let mut a = one.clone();
        a.status = CaseStatus::InProgress;
        change(
            s.as_ref(),
            one,
            a,
            vec![timer(1, at(30), "breach"), timer(1, at(10), "75%")],
        );
        let mut b2 = two.clone();
        b2.status = CaseStatus::InProgress;
        change(s.as_ref(), two, b2, vec![timer(2, at(20), "breach")]);
        assert_eq!(s.next_timer().unwrap(), Some(at(10)));
        assert!(s.due_timers(at(9), 10).unwrap().is_empty());
        let due = s.due_timers(at(25), 10).unwrap();
        let firsts: Vec<DateTime<Utc>> = due.iter().map(|g| g.timers[0].at).collect();
        assert_eq!(firsts, [at(10), at(20)], "oldest first");
        // A group holds its later timers too, oldest first.
        assert_eq!(due[0].timers.len(), 2);
        assert!(due[0].timers[0].at < due[0].timers[1].at);
        assert_eq!(
            s.due_timers(at(25), 1).unwrap().len(),
            1,
            "at most the limit"
        );
        // Case 1's 75 % fired: its breach waits; case 2's fired: its group goes.
        s.settle_timers(&due[0], &due[0].timers[1..]).unwrap();
        s.settle_timers(&due[1], &[]).unwrap();
        assert_eq!(s.next_timer().unwrap(), Some(at(30)));
        let left = s.due_timers(at(40), 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].timers.len(), 1);
        assert_eq!(left[0].timers[0].threshold, "breach");
    });
}

#[test]
fn notices_are_due_once_their_commit_is_and_move_through_the_queue() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let mut w = [new_write(1)];
        s.commit(&mut w, &receipt).unwrap();
        let due = s
            .due_notices(Utc::now() + Duration::seconds(1), 10)
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].case_number, "P-2026-000001");
        assert_eq!(s.notices_of_case(1).unwrap().len(), 1);
        let mut sent = due[0].clone();
        sent.status = NoticeStatus::Sent;
        sent.next_attempt = None;
        s.put_notice(&sent).unwrap();
        assert!(s
            .due_notices(Utc::now() + Duration::days(1), 10)
            .unwrap()
            .is_empty());
        assert_eq!(s.next_notice().unwrap(), None);
        let stored = s.notice(1, sent.seq, sent.n).unwrap().unwrap();
        assert_eq!(stored.status, NoticeStatus::Sent);
    });
}

#[test]
fn failed_notices_are_listed_latest_first_until_queued_again() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let mut w = [new_write(1), new_write(2), new_write(3)];
        s.commit(&mut w, &receipt).unwrap();
        let due = s
            .due_notices(Utc::now() + Duration::seconds(1), 10)
            .unwrap();
        assert_eq!(due.len(), 3);
        // Cases 3 and 1 fail, in that order; case 2's notice is sent.
        let fail = |n: &Notice, secs: i64| {
            let mut n = n.clone();
            n.status = NoticeStatus::Failed;
            n.next_attempt = None;
            n.done_at = Some(Utc::now() + Duration::seconds(secs));
            n.error = Some("refused".into());
            n
        };
        let by_case = |c: u64| due.iter().find(|n| n.case == c).unwrap();
        s.put_notice(&fail(by_case(3), 1)).unwrap();
        s.put_notice(&fail(by_case(1), 2)).unwrap();
        let mut sent = by_case(2).clone();
        sent.status = NoticeStatus::Sent;
        s.put_notice(&sent).unwrap();
        let cases = |v: Vec<Notice>| v.iter().map(|n| n.case).collect::<Vec<_>>();
        assert_eq!(cases(s.failed_notices(10).unwrap()), [1, 3]);
        assert_eq!(cases(s.failed_notices(1).unwrap()), [1]);

        // Queued again, it leaves the list; removed, too.
        let mut again = fail(by_case(1), 2);
        again.status = NoticeStatus::Queued;
        again.next_attempt = Some(Utc::now());
        s.put_notice(&again).unwrap();
        assert_eq!(cases(s.failed_notices(10).unwrap()), [3]);
        s.remove_notice(&fail(by_case(3), 1)).unwrap();
        assert!(s.failed_notices(10).unwrap().is_empty());
    });
}

#[test]
fn the_audit_chain_is_one_chain_read_in_pages() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let n = 2 * guichet_core::audit::EXPORT_PAGE + 17;
        s.append_audit((0..n).map(record).collect()).unwrap();
        let page: Vec<u64> = s.audit_raw(5, 3).unwrap().iter().map(|(q, _)| *q).collect();
        assert_eq!(page, [5, 6, 7]);
        let (mut from, mut pages, mut seqs) = (Some(0), 0, Vec::new());
        while let Some(at) = from {
            let (lines, next) = guichet_core::audit::export_page(s.as_ref(), at).unwrap();
            for line in lines.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let e: guichet_core::audit::Entry = serde_json::from_slice(line).unwrap();
                seqs.push(e.seq);
            }
            pages += 1;
            from = next;
        }
        assert_eq!(pages, 3);
        assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>());
        assert!(guichet_core::audit::verify(s.as_ref()).unwrap().ok());
    });
}

#[test]
fn open_cases_per_version_follow_every_commit() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let v = ("p".to_string(), "v".to_string());
        let open = |s: &dyn Store| s.open_cases_by_version().unwrap().get(&v).copied();
        let a = submit(s.as_ref(), 1);
        submit(s.as_ref(), 2);
        assert_eq!(open(s.as_ref()), Some(2));
        submit(s.as_ref(), 4);
        let mut closed = a.clone();
        closed.status = CaseStatus::Approved;
        change(s.as_ref(), a, closed, vec![]);
        assert_eq!(open(s.as_ref()), Some(2));
        assert_eq!(s.open_cases_of_version("p", "v").unwrap(), [2, 4]);
    });
}

#[test]
fn a_closed_case_leaves_the_card_list_once_its_cards_are_answered() {
    let card = |answered: bool| Card {
        id: "75%".into(),
        kind: CardKind::Supervision,
        limit: Limit::Promised,
        step: None,
        threshold: "75%".into(),
        due: Utc::now(),
        issued_at: Utc::now(),
        holders: vec!["review".into()],
        assignees: vec![],
        supervisor: Some("chief".into()),
        answer: answered.then(|| CardAnswer {
            by: "a".into(),
            at: Utc::now(),
            reason: "done".into(),
        }),
    };
    each(|b, dir| {
        let s = (b.open)(dir);
        let mut cases = Vec::new();
        for id in 1..=3 {
            let before = submit(s.as_ref(), id);
            let mut after = before.clone();
            after.cards.push(card(id != 2));
            cases.push(change(s.as_ref(), before, after, vec![]));
        }
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [1, 2, 3]);
        assert_eq!(s.cases_with_cards_for("chief").unwrap(), [1, 2, 3]);
        for c in cases.drain(..2) {
            let mut after = c.clone();
            after.status = CaseStatus::Approved;
            change(s.as_ref(), c, after, vec![]);
        }
        // Case 2's card is still to be answered.
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [2, 3]);
        assert!(s.cases_with_cards_for("nobody").unwrap().is_empty());
    });
}

#[test]
fn the_office_tables_keep_versions_tokens_incidents_and_settings() {
    each(|b, dir| {
        let s = (b.open)(dir);
        let rec = VersionRecord {
            procedure: "p".into(),
            version: "v1".into(),
            file: "p.rhai".into(),
            source: "procedure(#{})".into(),
            first_loaded: Utc::now(),
        };
        assert!(s.put_version(&rec).unwrap());
        assert!(!s.put_version(&rec).unwrap(), "a version is recorded once");
        assert_eq!(s.version("p", "v1").unwrap().unwrap().source, rec.source);
        assert_eq!(s.versions().unwrap().len(), 1);
        let token = TokenRecord {
            id: "abc".into(),
            subject: "li.wei".into(),
            admin: false,
            label: "t".into(),
            created_at: Utc::now(),
            revoked_at: None,
            expires_at: None,
        };
        s.put_token("hash", &token).unwrap();
        assert_eq!(s.token_by_hash("hash").unwrap().unwrap().subject, "li.wei");
        assert_eq!(s.tokens().unwrap().len(), 1);
        for i in 0..3 {
            s.record_incident(Incident {
                id: 0,
                at: Utc::now(),
                code: "script_error".into(),
                message: format!("incident {i}"),
                actor: "t".into(),
                action: "submit".into(),
                procedure: None,
                case: None,
                task: None,
            })
            .unwrap();
        }
        let newest: Vec<String> = s
            .incidents(2)
            .unwrap()
            .into_iter()
            .map(|i| i.message)
            .collect();
        assert_eq!(newest, ["incident 2", "incident 1"]);
        s.put_meta("k", b"v").unwrap();
        assert_eq!(s.meta("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(s.available());
    });
}

#[test]
fn files_are_kept_once_by_their_content_and_survive_a_restart() {
    each(|b, dir| {
        let sha = {
            let s = (b.open)(dir);
            let sha = s.put_file(b"%PDF-1.7 a plan").unwrap();
            assert_eq!(sha.len(), 64);
            assert_eq!(
                s.put_file(b"%PDF-1.7 a plan").unwrap(),
                sha,
                "same content, same name"
            );
            assert_ne!(s.put_file(b"%PDF-1.7 another").unwrap(), sha);
            sha
        };
        let s = (b.open)(dir);
        assert_eq!(
            s.file(&sha).unwrap().as_deref(),
            Some(&b"%PDF-1.7 a plan"[..])
        );
        assert_eq!(s.file(&"0".repeat(64)).unwrap(), None);
        for hostile in ["../../etc/passwd", "ab", "", &"Z".repeat(64)] {
            assert_eq!(s.file(hostile).unwrap(), None, "{hostile}");
        }
    });
}

fn open_task(id: &str, group: &str) -> guichet_core::case::Task {
    serde_json::from_value(serde_json::json!({
        "id": id, "step": "review", "step_name": "Review", "group": group,
        "state": "open", "created_at": "2026-11-30T02:00:00Z", "token": 1,
    }))
    .unwrap()
}

fn entry(case: &Case, task: &guichet_core::case::Task) -> WorkEntry {
    WorkEntry {
        case_id: case.id,
        rev: 0,
        case_number: String::new(),
        procedure: case.procedure.clone(),
        version: case.version.clone(),
        procedure_name: "P".into(),
        department: "d".into(),
        applicant: "A".into(),
        bundle: None,
        task: task.clone(),
        clock: Default::default(),
    }
}

fn work_of(s: &dyn Store, group: &str) -> Vec<WorkEntry> {
    let mut out = Vec::new();
    s.visit_work(group, &mut |e| out.push((**e).clone()))
        .unwrap();
    out.sort_by(|a, b| a.task.id.cmp(&b.task.id));
    out
}

#[test]
fn the_worklist_index_follows_every_commit_and_survives_a_restart() {
    each(|b, dir| {
        let s = (b.open)(dir);
        // A case with two open tasks in two groups, each with its entry.
        let mut w = new_write(1);
        w.after.tasks = vec![open_task("1-1", "g"), open_task("1-2", "h")];
        w.work = w.after.tasks.iter().map(|t| entry(&w.after, t)).collect();
        let mut ws = [w];
        s.commit(&mut ws, &no_notices).unwrap();
        let case = ws[0].after.clone();
        // Asked for once (loaded), then kept current by commits.
        let g = work_of(s.as_ref(), "g");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].case_number, case.number, "the store numbers the entry");
        assert_eq!(g[0].rev, case.rev);
        // A claim changes the entry; closing a task removes it.
        let mut after = case.clone();
        after.tasks[0].claimed_by = Some("li.wei".into());
        after.tasks.retain(|t| t.id != "1-2");
        let mut ws = [CaseWrite {
            before: Some(case.clone()),
            work: vec![entry(&after, &after.tasks[0])],
            figures: None,
            after,
            event: event("claimed"),
            number_scope: None,
            timers: vec![],
        }];
        s.commit(&mut ws, &no_notices).unwrap();
        let case = ws[0].after.clone();
        let g = work_of(s.as_ref(), "g");
        assert_eq!(g[0].task.claimed_by.as_deref(), Some("li.wei"));
        assert!(work_of(s.as_ref(), "h").is_empty());
        // A restart reads the same from the store.
        drop(s);
        let s = (b.open)(dir);
        assert_eq!(work_of(s.as_ref(), "g"), g);
        assert!(s.cases_without_work().unwrap().is_empty());
        // A commit without entries (an older writer) leaves the task listed for the
        // engine, which writes its entry.
        let mut after = case.clone();
        after.tasks.push(open_task("1-3", "g"));
        let mut ws = [CaseWrite {
            before: Some(case.clone()),
            after,
            event: event("changed"),
            number_scope: None,
            timers: vec![],
            work: vec![],
            figures: None,
        }];
        s.commit(&mut ws, &no_notices).unwrap();
        let case = ws[0].after.clone();
        assert_eq!(s.cases_without_work().unwrap(), [case.id]);
        let all: Vec<WorkEntry> = case.tasks.iter().map(|t| entry(&case, t)).collect();
        s.put_work(&case, all).unwrap();
        assert!(s.cases_without_work().unwrap().is_empty());
        assert_eq!(work_of(s.as_ref(), "g").len(), 2);
        // An entry for a revision the case is no longer at is refused.
        let mut stale = case.clone();
        stale.rev -= 1;
        assert!(matches!(
            s.put_work(&stale, vec![]),
            Err(Error::Conflict(_))
        ));
    });
}
