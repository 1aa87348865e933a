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

#[test]
fn a_low_rating_opens_a_follow_up_whose_answer_reaches_the_case_and_the_figures() {
    use guichet_core::rating::RatingRequest;
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(monday()));
    let e = open(tmp.path(), clock.clone());
    let (a, b, open_case, w) = (submit(&e), submit(&e), submit(&e), submit(&e));
    for id in [a.id, b.id] {
        act(&e, id, "intake", "accept");
        act(&e, id, "review", "approve");
    }
    e.withdraw(&staff(), w.id, None, None).unwrap();
    let score = |s: u8| RatingRequest {
        score: s,
        tags: vec![],
        comment: Some("  ".into()),
    };
    // Only a decided case, once, with a score from 1 to 5.
    assert!(matches!(
        e.rate(&Actor::Public, open_case.id, score(4)),
        Err(Error::InvalidTransition(_))
    ));
    assert!(matches!(
        e.rate(&Actor::Public, w.id, score(4)),
        Err(Error::InvalidTransition(_))
    ));
    assert!(matches!(
        e.rate(&Actor::Public, a.id, score(6)),
        Err(Error::Validation(_))
    ));
    let rated = e
        .rate(&Actor::Public, a.id, score(5))
        .unwrap()
        .cases
        .remove(0);
    let r = rated.rating.as_ref().unwrap();
    assert_eq!(
        (r.score, r.channel.as_str(), r.comment.as_ref()),
        (5, "online", None)
    );
    assert!(r.follow_up.is_none(), "a good score opens nothing");
    assert!(matches!(
        e.rate(&Actor::Public, a.id, score(1)),
        Err(Error::Conflict(_))
    ));

    // Told at the window: very dissatisfied. The window's group gets a follow-up.
    clock.advance(Duration::hours(1));
    let low = e.rate(&staff(), b.id, score(1)).unwrap().cases.remove(0);
    let r = low.rating.clone().unwrap();
    assert_eq!(
        (r.channel.as_str(), r.recorded_by.as_deref()),
        ("window", Some("a"))
    );
    let task = low
        .open_tasks()
        .find(|t| Some(&t.id) == r.follow_up.as_ref())
        .unwrap()
        .clone();
    assert_eq!(
        (task.step.as_str(), task.group.as_str()),
        ("follow_up", "g")
    );
    assert!(task.due.is_some(), "its own limit");
    assert_eq!(low.status, guichet_core::case::CaseStatus::Approved);
    // Its answer needs a reply, and one of the follow-up's outcomes.
    e.claim(&staff(), &task.id).unwrap();
    assert!(matches!(
        e.complete(&staff(), &task.id, "resolved", None, Data::new()),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.complete(
            &staff(),
            &task.id,
            "approve",
            Some("ok".into()),
            Data::new()
        ),
        Err(Error::Validation(_))
    ));
    let answered = e
        .complete(
            &staff(),
            &task.id,
            "resolved",
            Some("We now answer the phone.".into()),
            Data::new(),
        )
        .unwrap()
        .cases
        .remove(0);
    let r = answered.rating.clone().unwrap();
    assert_eq!(r.outcome.as_deref(), Some("resolved"));
    assert_eq!(r.reply.as_deref(), Some("We now answer the phone."));
    assert_eq!(answered.status, guichet_core::case::CaseStatus::Approved);
    assert_eq!(answered.open_tasks().count(), 0);

    // The figures: two ratings, mean 3, one satisfied in two; counted for the group.
    let rep = figures(&e, Grouping::Procedure);
    let p = &rep.rows[0];
    assert_eq!(p.ratings, [1, 0, 0, 0, 1]);
    assert_eq!((p.rating_mean, p.satisfied), (Some(3.0), Some(0.5)));
    let g = rep.groups.iter().find(|g| g.group == "g").unwrap();
    assert_eq!((g.ratings, g.rating_mean), (2, Some(3.0)));
    let before = serde_json::to_value(figures(&e, Grouping::Day)).unwrap();
    e.rebuild_statistics().unwrap();
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        before
    );
}

#[test]
fn a_commit_that_fails_before_its_record_leaves_the_figures_as_they_were() {
    use guichet_core::store::{CaseTable, FaultPoint, Store};
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(monday()));
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("p.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let e = Engine::open(store.clone(), &scripts, clock.clone()).unwrap();
    let a = submit(&e);
    act(&e, a.id, "intake", "accept");
    let task = e
        .case(a.id)
        .unwrap()
        .open_tasks()
        .next()
        .unwrap()
        .id
        .clone();
    e.claim(&staff(), &task).unwrap();
    clock.advance(Duration::days(1));
    let before = serde_json::to_value(figures(&e, Grouping::Day)).unwrap();
    // The decision fails after its index entries and figures were written, before the
    // case record: nothing happened, in the figures too.
    store.set_fault(Some(Arc::new(|at| {
        if at == FaultPoint::BeforeRecord {
            Err(Error::Store("injected write failure".into()))
        } else {
            Ok(())
        }
    })));
    e.complete(&staff(), &task, "approve", None, Data::new())
        .unwrap_err();
    store.set_fault(None);
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        before
    );
    // Commits that change no figure come next, then a restart: still what happened.
    e.release(&staff(), &task).unwrap();
    e.claim(&staff(), &task).unwrap();
    drop(e);
    store.flush().unwrap();
    let e = Engine::open(store.clone(), &scripts, clock.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        before
    );
    // The next commits count from what really happened.
    e.complete(&staff(), &task, "approve", None, Data::new())
        .unwrap();
    let decided = serde_json::to_value(figures(&e, Grouping::Day)).unwrap();
    assert_eq!(figures(&e, Grouping::Procedure).rows[0].approved, 1);
    assert_eq!(
        figures(&e, Grouping::Procedure).rows[0].mean_days,
        Some(1.0)
    );
    // A failure again, then a restart: the stale contribution is worked out again.
    let b = submit(&e);
    store.set_fault(Some(Arc::new(|at| {
        if at == FaultPoint::BeforeRecord {
            Err(Error::Store("injected write failure".into()))
        } else {
            Ok(())
        }
    })));
    let task = b.open_tasks().next().unwrap().id.clone();
    e.claim(&staff(), &task).unwrap_err();
    store.set_fault(None);
    let with_b = serde_json::to_value(figures(&e, Grouping::Day)).unwrap();
    assert_ne!(with_b, decided, "B was received");
    drop(e);
    store.flush().unwrap();
    let e = Engine::open(store, &scripts, clock).unwrap();
    assert_eq!(
        serde_json::to_value(figures(&e, Grouping::Day)).unwrap(),
        with_b
    );
}
