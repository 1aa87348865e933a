//! Warning thresholds and escalation per step, besides the procedure's.

use std::sync::Arc;

use chrono::Duration;
use guichet_core::case::{Applicant, Case, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::limits::Level;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "w", name: "Window" });
staff(#{ id: "a", name: "A" });
staff(#{ id: "s1", name: "S1" });
staff(#{ id: "s2", name: "S2" });
group(#{ id: "win", name: "Window", department: "d", members: ["w"] });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
group(#{ id: "sup.office", name: "Office supervisors", department: "d", members: ["s1"] });
group(#{ id: "sup.visits", name: "Site visit desk", department: "d", members: ["s2"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 20, statutory_days: 30, intake: "win",
    warnings: #{ at_shares: [0.75], supervisor: "sup.office" },
    start: "visit",
    steps: [
        #{ id: "visit", name: "On-site visit", group: "g", days: 2, next: "@approved",
           warnings: #{ at_shares: [0.5], supervisor: "sup.visits", escalate_to: "sup.office" } },
    ],
});
"#;

/// The office of `office`, with one case accepted at the window on Monday 2026-11-30 at
/// 10:00 in the office.
fn accepted(office: &str) -> (Engine, Arc<ManualClock>, Case, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), office).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    let e = Engine::open(store, &scripts, clock.clone()).unwrap();
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
    let c = e.submit(&Actor::Public, sub).unwrap().cases.remove(0);
    let t = c.open_tasks().next().unwrap().id.clone();
    let w = Actor::Staff("w".into());
    e.claim(&w, &t).unwrap();
    let c = e
        .complete(&w, &t, "accept", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    (e, clock, c, tmp)
}

#[test]
fn a_step_warns_and_escalates_by_its_own_policy() {
    let (e, clock, c, _tmp) = accepted(OFFICE);
    // Half of the visit's two days (the procedure's 75 % of 20 days is far off).
    clock.advance(Duration::days(1) + Duration::hours(9));
    e.fire_due_timers(100).unwrap();
    let c = e.case(c.id).unwrap();
    let cards: Vec<_> = c
        .cards
        .iter()
        .map(|k| (k.threshold.clone(), k.supervisor.clone()))
        .collect();
    assert_eq!(cards, [("50%".to_string(), Some("sup.visits".to_string()))]);
    // The case shows the worst of its limits and its open step's budget: yellow already,
    // though its own 20 days have barely begun.
    let level = |c: &guichet_core::case::Case| {
        let p = e.procedure_of(c).unwrap();
        e.case_level(&e.rules(), &p, c)
    };
    assert_eq!(level(&c), Level::Yellow);
    // Past the visit's end: escalated where the step says.
    clock.advance(Duration::days(1) + Duration::hours(2));
    e.fire_due_timers(100).unwrap();
    let c = e.case(c.id).unwrap();
    let overdue = c.cards.iter().find(|k| k.threshold == "breach").unwrap();
    assert_eq!(overdue.supervisor.as_deref(), Some("sup.office"));
    assert_eq!(level(&c), Level::Red);
}

#[test]
fn a_step_of_zero_days_is_due_the_same_working_day_with_its_timers() {
    let office = OFFICE.replace(
        r#"days: 2, next: "@approved",
           warnings: #{ at_shares: [0.5], supervisor: "sup.visits", escalate_to: "sup.office" } },"#,
        r#"days: 0, next: "@approved" },"#,
    );
    assert!(office.contains("days: 0"));
    let (e, clock, c, _tmp) = accepted(&office);
    // Accepted Monday 10:00: the visit is due at 17:30 the same day.
    let visit = c.open_tasks().next().unwrap();
    assert_eq!(visit.due, Some("2026-11-30T09:30:00Z".parse().unwrap()));
    // Its 75 % warning in the afternoon, then its breach.
    clock.advance(Duration::hours(6));
    e.fire_due_timers(100).unwrap();
    let c = e.case(c.id).unwrap();
    assert_eq!(c.cards.len(), 1, "{:?}", c.cards);
    assert_eq!(c.cards[0].threshold, "75%");
    clock.advance(Duration::hours(2));
    e.fire_due_timers(100).unwrap();
    assert!(e
        .case(c.id)
        .unwrap()
        .cards
        .iter()
        .any(|k| k.threshold == "breach"));
}
