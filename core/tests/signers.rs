//! 加签: a signer of a countersign step adds another signer while the step is open.

use std::sync::Arc;

use guichet_core::case::{Applicant, Case, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine, Error};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "w", name: "Window" });
staff(#{ id: "a", name: "A" });
staff(#{ id: "b", name: "B" });
staff(#{ id: "c", name: "C" });
staff(#{ id: "x", name: "Outsider" });
group(#{ id: "win", name: "Window", department: "d", members: ["w"] });
group(#{ id: "g", name: "Panel", department: "d", members: ["a", "b", "c"] });
group(#{ id: "other", name: "Other", department: "d", members: ["x"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 5, statutory_days: 10, intake: "win",
    start: "sign",
    steps: [
        #{ id: "sign", name: "Countersign", group: "g", mode: "all", signers: ["a", "b"], next: "turns" },
        #{ id: "turns", name: "In turn", group: "g", mode: "sequential", signers: ["a", "b"], next: "one" },
        #{ id: "one", name: "One", group: "g", next: "@approved" },
    ],
});
"#;

fn engine() -> (Engine, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    (Engine::open(store, &scripts, clock).unwrap(), tmp)
}

fn staff(s: &str) -> Actor {
    Actor::Staff(s.into())
}

fn task_of(c: &Case, who: &str) -> String {
    c.open_tasks()
        .find(|t| t.assignee.as_deref() == Some(who))
        .unwrap_or_else(|| panic!("no task for {who}: {:?}", c.tasks))
        .id
        .clone()
}

fn approve(e: &Engine, c: &Case, who: &str) -> Case {
    let t = task_of(c, who);
    e.claim(&staff(who), &t).unwrap();
    e.complete(&staff(who), &t, "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0)
}

#[test]
fn a_signer_adds_a_signer_and_the_step_waits_for_them_too() {
    let (e, _tmp) = engine();
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
    let intake = c.open_tasks().next().unwrap().id.clone();
    e.claim(&staff("w"), &intake).unwrap();
    let c = e
        .complete(&staff("w"), &intake, "accept", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    let a_task = task_of(&c, "a");
    // Only a member of the group, not one already signing; only by a signer.
    assert!(matches!(
        e.add_signer(&staff("a"), &a_task, "x", None),
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        e.add_signer(&staff("a"), &a_task, "b", None),
        Err(Error::Conflict(_))
    ));
    assert!(e.add_signer(&staff("x"), &a_task, "c", None).is_err());
    let c = e
        .add_signer(&staff("a"), &a_task, "c", Some("C knows the site".into()))
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(c.open_tasks().filter(|t| t.step == "sign").count(), 3);
    let added = e.history(c.id).unwrap();
    let last = added.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_deref()),
        ("signer_added", Some("signer:c"))
    );
    // A and B approve: the step still waits for C.
    let c = approve(&e, &c, "a");
    let c = approve(&e, &c, "b");
    assert!(c.open_tasks().all(|t| t.step == "sign"), "{:?}", c.tasks);
    let c = approve(&e, &c, "c");
    // In turn: A, then B, then the one A adds.
    assert_eq!(c.open_tasks().next().unwrap().step, "turns");
    let a_turn = task_of(&c, "a");
    e.add_signer(&staff("a"), &a_turn, "c", None).unwrap();
    let c = approve(&e, &e.case(c.id).unwrap(), "a");
    let c = approve(&e, &c, "b");
    let c = approve(&e, &c, "c");
    // A single-handler step takes no signer.
    let one = c.open_tasks().next().unwrap().clone();
    assert_eq!(one.step, "one");
    e.claim(&staff("a"), &one.id).unwrap();
    assert!(matches!(
        e.add_signer(&staff("a"), &one.id, "b", None),
        Err(Error::Validation(_))
    ));
}
