//! Timers against the commits that set them: a timer is written just before its case
//! record, so the scheduler can find it while the transition is still being committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use guichet_core::case::{Applicant, CardKind, Case, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::store::{CaseTable, FaultPoint, SledStore, Store};
use guichet_core::{Actor, Engine};

/// An immediate item: a 0-day promised limit, its 50 % card due halfway through the rest
/// of the working day it is accepted on.
const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 0, statutory_days: 5, intake: "g",
    start: "s",
    steps: [ #{ id: "s", name: "S", group: "g", next: "@approved" } ],
    warnings: #{ at_shares: [0.5] },
});
"#;

/// A Monday, 10:00 in the office (UTC+8).
fn monday_morning() -> DateTime<Utc> {
    "2026-11-30T02:00:00Z".parse().unwrap()
}

fn engine() -> (Engine, Arc<SledStore>, Arc<ManualClock>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("p.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new(monday_morning()));
    let e = Engine::open(store.clone(), &scripts, clock.clone()).unwrap();
    (e, store, clock, tmp)
}

fn submit(e: &Engine) -> Case {
    let sub = Submission {
        procedure: "p".into(),
        applicant: Applicant {
            id: "X1".into(),
            name: "X".into(),
            ..Default::default()
        },
        data: Data::new(),
        materials: vec![],
    };
    e.submit(&Actor::Staff("a".into()), sub)
        .unwrap()
        .cases
        .remove(0)
}

fn intake_task(c: &Case) -> String {
    c.open_tasks().next().unwrap().id.clone()
}

/// Accepts a new case while the scheduler fires timers between the acceptance's timers
/// and its case record; returns the case after one more pass, and the cards that pass
/// issued.
fn accept_while_the_scheduler_runs(at: DateTime<Utc>) -> (Case, usize) {
    let (e, store, clock, _tmp) = engine();
    clock.advance(at - monday_morning());
    let e = Arc::new(e);
    let c = submit(&e);
    let (at_point, reached) = mpsc::channel();
    let (go, wait) = mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let armed = AtomicBool::new(true);
    store.set_fault(Some(Arc::new(move |stage| {
        if stage == FaultPoint::BeforeRecord && armed.swap(false, Ordering::SeqCst) {
            at_point.send(()).unwrap();
            wait.lock().unwrap().recv().unwrap();
        }
        Ok(())
    })));
    let accepting = {
        let (e, task) = (e.clone(), intake_task(&c));
        std::thread::spawn(move || {
            e.complete(
                &Actor::Staff("a".into()),
                &task,
                "accept",
                None,
                Data::new(),
            )
            .unwrap()
        })
    };
    reached.recv().unwrap();
    // The scheduler runs four hours on, while the acceptance is still being committed.
    clock.advance(chrono::Duration::hours(4));
    // The timers are due and on disk, the case is not yet accepted: they must wait, not
    // be dropped as timers of a limit that moved.
    assert_eq!(e.fire_due_timers(100).unwrap().cards, 0);
    go.send(()).unwrap();
    accepting.join().unwrap();
    let report = e.fire_due_timers(100).unwrap();
    // Once: a later pass finds nothing more to do.
    assert_eq!(e.fire_due_timers(100).unwrap().cards, 0);
    (store_case(&store, c.id), report.cards)
}

#[test]
fn a_card_due_while_its_transition_is_being_committed_is_issued_once_it_is() {
    let (case, cards) = accept_while_the_scheduler_runs(monday_morning());
    assert_eq!(cards, 1);
    assert_eq!(case.cards.len(), 1, "{:?}", case.cards);
    assert_eq!(case.cards[0].kind, CardKind::Supervision);
}

#[test]
fn an_overdue_card_due_when_its_limit_is_set_is_issued() {
    // Accepted at 18:00, after closing: the 0-day limit ended at 17:30 the same day.
    let evening = monday_morning() + chrono::Duration::hours(8);
    let (case, _) = accept_while_the_scheduler_runs(evening);
    assert!(
        case.cards.iter().any(|c| c.kind == CardKind::Overdue),
        "{:?}",
        case.cards
    );
}

#[test]
fn timers_of_a_transition_that_failed_before_its_case_record_are_removed() {
    let (e, store, clock, _tmp) = engine();
    let c = submit(&e);
    // The acceptance fails between its timers and its case record, as in a crash.
    store.set_fault(Some(Arc::new(|stage| {
        if stage == FaultPoint::BeforeRecord {
            Err(guichet_core::Error::Store("injected crash".into()))
        } else {
            Ok(())
        }
    })));
    let a = Actor::Staff("a".into());
    assert!(e
        .complete(&a, &intake_task(&c), "accept", None, Data::new())
        .is_err());
    store.set_fault(None);
    assert!(e.next_timer().unwrap().is_some());
    // 14:00: the failed acceptance's 50 % timer (13:45) is due, and goes without a card.
    clock.advance(chrono::Duration::hours(4));
    assert_eq!(e.fire_due_timers(100).unwrap().cards, 0);
    assert_eq!(e.next_timer().unwrap(), None);
    // The case is still at intake, and accepting it now sets its timers anew.
    let accepted = e
        .complete(&a, &intake_task(&c), "accept", None, Data::new())
        .unwrap();
    // Half of what is left of the day (14:00 to 17:30) later: its card.
    clock.advance(chrono::Duration::minutes(110));
    assert_eq!(e.fire_due_timers(100).unwrap().cards, 1);
    assert_eq!(store_case(&store, accepted.case().id).cards.len(), 1);
}

fn store_case(store: &SledStore, id: u64) -> Case {
    store.case(id).unwrap().unwrap()
}
