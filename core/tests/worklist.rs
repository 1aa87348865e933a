//! The worklist read from the work index: levels as the limits say at the moment of
//! reading (frozen while a case's clock is stopped), counts over the whole list, worst
//! first, a page at a time, and the same answers after a restart.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use guichet_core::case::Data;
use guichet_core::clock::ManualClock;
use guichet_core::engine::{Submission, WorkFilter};
use guichet_core::limits::Level;
use guichet_core::store::SledStore;
use guichet_core::tasks::{LevelCounts, WorkOrder};
use guichet_core::{Actor, Engine};

/// A review of 5 working days, a warning at 60 % (the third working day).
const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 10, statutory_days: 20, intake: "g",
    warnings: #{ at_shares: [0.6] },
    start: "review",
    steps: [ #{ id: "review", name: "Review", group: "g", days: 5, next: "@approved" } ],
});
"#;

/// Monday 10:00 in the office (UTC+8).
fn monday() -> DateTime<Utc> {
    "2026-11-30T02:00:00Z".parse().unwrap()
}

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Engine {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("p.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&dir.join("store"), 8 << 20).unwrap());
    Engine::open(store, &scripts, clock).unwrap()
}

/// A case accepted now: its review task open.
fn accepted(e: &Engine) -> u64 {
    let sub: Submission = serde_json::from_value(serde_json::json!({
        "procedure": "p", "applicant": { "id": "A1", "name": "Applicant" },
    }))
    .unwrap();
    let c = e.submit(&Actor::Public, sub).unwrap().cases.remove(0);
    e.complete(
        &Actor::Staff("a".into()),
        &c.tasks[0].id,
        "accept",
        None,
        Data::new(),
    )
    .unwrap();
    c.id
}

fn page(e: &Engine, f: &WorkFilter, offset: usize, size: usize) -> guichet_core::tasks::WorkPage {
    e.worklist_page(
        &Actor::Staff("a".into()),
        f,
        WorkOrder::WorstOldest,
        offset,
        size,
    )
    .unwrap()
}

#[test]
fn levels_counts_order_and_pages_come_from_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(monday()));
    let e = open(tmp.path(), clock.clone());
    // Three accepted on Monday, two on Wednesday, one on Friday, one still at intake.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(accepted(&e));
    }
    clock.advance(Duration::days(2));
    for _ in 0..2 {
        ids.push(accepted(&e));
    }
    clock.advance(Duration::days(2));
    ids.push(accepted(&e));
    let sub: Submission = serde_json::from_value(serde_json::json!({
        "procedure": "p", "applicant": { "id": "A2", "name": "Waiting" },
    }))
    .unwrap();
    e.submit(&Actor::Public, sub).unwrap();
    // Next Monday, 18:00: Monday's reviews (due Monday 17:30, the fifth working day) are
    // overdue; Wednesday's passed their third day (Friday): warning; Friday's not yet.
    clock.advance(Duration::days(3) + Duration::hours(8));
    let all = page(&e, &WorkFilter::default(), 0, 100);
    assert_eq!(
        all.counts,
        LevelCounts {
            green: 2,
            yellow: 2,
            red: 3
        }
    );
    assert_eq!(all.total, 7);
    let levels: Vec<Level> = all.items.iter().map(|i| i.level).collect();
    assert_eq!(
        levels,
        [
            Level::Red,
            Level::Red,
            Level::Red,
            Level::Yellow,
            Level::Yellow,
            Level::Green,
            Level::Green
        ]
    );
    // The level of each item is the one the case page shows for its limit.
    for i in &all.items {
        let case = e.case(i.case_id).unwrap();
        if case.accepted_at.is_none() {
            assert_eq!(i.level, Level::Green, "green before acceptance");
        }
    }
    // Pages: three at a time, in the same order; the counts are the whole list's.
    let second = page(&e, &WorkFilter::default(), 3, 3);
    assert_eq!(
        second
            .items
            .iter()
            .map(|i| i.task.id.clone())
            .collect::<Vec<_>>(),
        all.items[3..6]
            .iter()
            .map(|i| i.task.id.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(second.total, 7);
    assert_eq!(second.counts, all.counts);
    // A level filter keeps the counts of every level (they say what else there is).
    let red = page(
        &e,
        &WorkFilter {
            level: Some(Level::Red),
            ..WorkFilter::default()
        },
        0,
        100,
    );
    assert_eq!(red.total, 3);
    assert_eq!(red.counts, all.counts);
    // A claim shows at once; "mine" keeps it alone.
    e.claim(&Actor::Staff("a".into()), &all.items[4].task.id)
        .unwrap();
    let mine = page(
        &e,
        &WorkFilter {
            mine: true,
            ..WorkFilter::default()
        },
        0,
        100,
    );
    assert_eq!(mine.total, 1);
    assert_eq!(mine.items[0].task.claimed_by.as_deref(), Some("a"));
    // Completed work leaves the list.
    e.complete(
        &Actor::Staff("a".into()),
        &all.items[0].task.id,
        "approve",
        None,
        Data::new(),
    )
    .unwrap();
    let after = page(&e, &WorkFilter::default(), 0, 100);
    assert_eq!(after.total, 6);
    assert_eq!(after.counts.red, 2);
    // A restart reads the same list.
    drop(e);
    let e = open(tmp.path(), clock.clone());
    let again = page(&e, &WorkFilter::default(), 0, 100);
    assert_eq!(again.counts, after.counts);
    assert_eq!(
        again.items.iter().map(|i| &i.task).collect::<Vec<_>>(),
        after.items.iter().map(|i| &i.task).collect::<Vec<_>>()
    );
    let _ = ids;
}

#[test]
fn a_stopped_clock_freezes_the_level_and_its_resumption_moves_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(monday()));
    let e = open(tmp.path(), clock.clone());
    let id = accepted(&e);
    let a = Actor::Staff("a".into());
    e.suspend(&a, id, "site inspection").unwrap();
    // Two weeks later the review would be overdue; its clock is stopped on day one.
    clock.advance(Duration::days(14));
    let p = page(&e, &WorkFilter::default(), 0, 10);
    assert_eq!(p.items[0].level, Level::Green);
    // Resumed: the limit moved by the time stopped, still green.
    e.resume(&a, id, None).unwrap();
    let p = page(&e, &WorkFilter::default(), 0, 10);
    assert_eq!(p.items[0].level, Level::Green);
    // Due ten working days later than it was (the two weeks stopped): warned on its
    // third day as moved, overdue after its fifth.
    clock.advance(Duration::days(7));
    let p = page(&e, &WorkFilter::default(), 0, 10);
    assert_eq!(p.items[0].level, Level::Yellow);
    clock.advance(Duration::days(1));
    let p = page(&e, &WorkFilter::default(), 0, 10);
    assert_eq!(p.items[0].level, Level::Red);
}
