//! Statistics kept as cases move: each figure checked against cases driven through real
//! transitions on a simulated clock, then the same figures after a restart (loaded from
//! what the store kept) and after a rebuild from the history.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use guichet_core::case::{Applicant, Case, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::stats::{Grouping, Report, StatsQuery};
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine, Error};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "Reviewers", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "Permit", department: "d", promised_days: 2, statutory_days: 5, intake: "g",
    start: "review",
    steps: [ #{ id: "review", name: "Review", group: "g", next: "@approved" } ],
});
"#;

/// Monday 2026-11-30, 10:00 in the office (UTC+8).
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

fn staff() -> Actor {
    Actor::Staff("a".into())
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
    e.submit(&staff(), sub).unwrap().cases.remove(0)
}

/// Completes the open task of `step` with `outcome`.
fn act(e: &Engine, id: u64, step: &str, outcome: &str) -> Case {
    let c = e.case(id).unwrap();
    let task = c.open_tasks().find(|t| t.step == step).unwrap().id.clone();
    e.claim(&staff(), &task).unwrap();
    e.complete(&staff(), &task, outcome, None, Data::new())
        .unwrap()
        .cases
        .remove(0)
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn query(by: Grouping) -> StatsQuery {
    StatsQuery {
        from: d("2026-11-30"),
        to: d("2026-12-31"),
        by,
        procedure: None,
        department: None,
    }
}

fn figures(e: &Engine, by: Grouping) -> Report {
    e.statistics(&staff(), &query(by)).unwrap()
}

#[test]
fn figures_follow_the_cases_and_survive_a_restart_and_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(monday()));
    let e = open(tmp.path(), clock.clone());
    // Five applications on Monday: three accepted, one refused at the window.
    let a = submit(&e);
    let b = submit(&e);
    let c = submit(&e);
    let w = submit(&e);
    let s = submit(&e);
    for id in [a.id, b.id, s.id] {
        act(&e, id, "intake", "accept");
    }
    act(&e, c.id, "intake", "reject");
    act(&e, w.id, "intake", "accept");
    // Tuesday 10:00: A decided after one working day; W withdrawn; S asked for more.
    clock.advance(Duration::days(1));
    act(&e, a.id, "review", "approve");
    e.withdraw(&staff(), w.id, None, Some("asked by phone".into()))
        .unwrap();
    let task = e
        .case(s.id)
        .unwrap()
        .open_tasks()
        .next()
        .unwrap()
        .id
        .clone();
    e.claim(&staff(), &task).unwrap();
    e.request_supplement(&staff(), &task, vec!["signed form".into()], None)
        .unwrap();
    // The next Monday, 11:00: B decided after five working days, past the promised two.
    clock.advance(Duration::days(6) + Duration::hours(1));
    act(&e, b.id, "review", "approve");

    let r = figures(&e, Grouping::Procedure);
    assert_eq!(r.rows.len(), 1);
    let p = &r.rows[0];
    assert_eq!((p.key.as_str(), p.name.as_str()), ("p", "Permit"));
    assert_eq!(
        (
            p.received,
            p.accepted,
            p.not_accepted,
            p.withdrawn,
            p.approved,
            p.decided
        ),
        (5, 4, 1, 1, 2, 2)
    );
    assert_eq!(p.mean_days, Some(3.0));
    assert_eq!(p.median_days, Some(3.0));
    assert_eq!(p.p90_days, Some(5));
    assert_eq!(p.promised_mean_days, Some(2.0));
    assert_eq!(p.statutory_mean_days, Some(5.0));
    assert_eq!(p.on_time_promised, Some(0.5));
    assert_eq!(p.on_time_statutory, Some(1.0));
    assert_eq!(p.speed_up, Some(0.4));
    assert_eq!(p.supplements, 1);
    assert_eq!((p.open_now, p.overdue_now), (Some(1), Some(0)));
    assert_eq!(r.total.received, 5);

    // Where the time went: intake took no time, the review 510 and 2,610 working minutes.
    let review = r.steps.iter().find(|s| s.step == "review").unwrap();
    assert_eq!(review.tasks, 2);
    assert_eq!(review.mean_hours, 26.0);
    assert!(review.bottleneck);
    assert_eq!(review.group_name, "Reviewers");
    let intake = r.steps.iter().find(|s| s.step == "intake").unwrap();
    assert_eq!((intake.tasks, intake.bottleneck), (5, false));

    // By day: each figure on the day it happened.
    let days = figures(&e, Grouping::Day);
    let on = |day: &str| days.rows.iter().find(|r| r.key == day).unwrap().clone();
    assert_eq!(
        (on("2026-11-30").received, on("2026-11-30").accepted),
        (5, 4)
    );
    assert_eq!(
        (
            on("2026-12-01").approved,
            on("2026-12-01").withdrawn,
            on("2026-12-01").supplements
        ),
        (1, 1, 1)
    );
    assert_eq!(on("2026-12-07").approved, 1);
    assert_eq!(days.rows.len(), 3);
    // A period that holds none of it.
    let mut q = query(Grouping::Procedure);
    q.from = d("2027-01-01");
    q.to = d("2027-01-31");
    let empty = e.statistics(&staff(), &q).unwrap();
    assert_eq!(empty.total.received, 0);
    assert_eq!(empty.total.mean_days, None);

    // The public reads no statistics; a period the wrong way round is refused.
    assert!(matches!(
        e.statistics(&Actor::Public, &query(Grouping::Procedure)),
        Err(Error::Forbidden(_))
    ));
    let mut q = query(Grouping::Procedure);
    q.to = d("2026-11-01");
    assert!(matches!(
        e.statistics(&staff(), &q),
        Err(Error::Validation(_))
    ));

    // After a restart, the same figures, from what the store kept.
    let before = serde_json::to_value(figures(&e, Grouping::Day)).unwrap();
    drop(e);
    let e = open(tmp.path(), clock.clone());
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        before
    );
    // Worked out again from the history, the same figures.
    assert_eq!(e.rebuild_statistics().unwrap(), 5);
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        before
    );
}
