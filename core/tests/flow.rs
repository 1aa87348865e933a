//! Routing at run time, through the engine on a real store: returns across parallel
//! branches, nested parallels, rejection inside a branch.

use std::sync::Arc;

use guichet_core::case::{Applicant, Case, CaseStatus, Data};
use guichet_core::clock::SystemClock;
use guichet_core::engine::Submission;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 5, statutory_days: 10, intake: "g",
    start: "prep",
    steps: [
        #{ id: "prep", name: "Prep", group: "g", next: "fork" },
        #{ id: "fork", name: "Fork", kind: "parallel", branches: ["left", "right"], next: "final" },
        #{ id: "left", name: "Left", group: "g", next: "left2" },
        #{ id: "left2", name: "Left 2", group: "g", next: "@join" },
        #{ id: "right", name: "Right", kind: "parallel", branches: ["r1", "r2"], next: "@join" },
        #{ id: "r1", name: "R1", group: "g", next: "@join" },
        #{ id: "r2", name: "R2", group: "g", next: "@join" },
        #{ id: "final", name: "Final", group: "g", next: "@approved" },
    ],
});
"#;

fn engine() -> (Engine, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("p.rhai"), OFFICE).unwrap();
    let store = SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap();
    let e = Engine::open(Arc::new(store), &scripts, Arc::new(SystemClock)).unwrap();
    (e, tmp)
}

fn open(c: &Case) -> Vec<String> {
    let mut v: Vec<String> = c.open_tasks().map(|t| t.step.clone()).collect();
    v.sort();
    v
}

fn task(c: &Case, step: &str) -> String {
    c.open_tasks()
        .find(|t| t.step == step)
        .unwrap_or_else(|| panic!("no {step} in {:?}", open(c)))
        .id
        .clone()
}

fn start(e: &Engine) -> Case {
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
    let a = Actor::Staff("a".into());
    let c = e.submit(&a, sub).unwrap().cases.remove(0);
    let c = e
        .complete(&a, &task(&c, "intake"), "accept", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    e.complete(&a, &task(&c, "prep"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0)
}

#[test]
fn nested_parallel_joins_wait_for_every_branch() {
    let (e, _tmp) = engine();
    let a = Actor::Staff("a".into());
    let mut c = start(&e);
    assert_eq!(open(&c), ["left", "r1", "r2"]);
    for step in ["r1", "left", "left2"] {
        c = e
            .complete(&a, &task(&c, step), "approve", None, Data::new())
            .unwrap()
            .cases
            .remove(0);
    }
    assert_eq!(open(&c), ["r2"]);
    c = e
        .complete(&a, &task(&c, "r2"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(open(&c), ["final"]);
    assert!(c.tokens.iter().all(|t| t.step == "final"), "{:?}", c.tokens);
    c = e
        .complete(&a, &task(&c, "final"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(c.status, CaseStatus::Approved);
    assert!(c.tokens.is_empty());
}

#[test]
fn returning_before_the_parallel_step_cancels_every_branch() {
    let (e, _tmp) = engine();
    let a = Actor::Staff("a".into());
    let mut c = start(&e);
    c = e
        .complete(&a, &task(&c, "left"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    c = e
        .return_to(&a, &task(&c, "r1"), "prep", Some("start over".into()))
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(open(&c), ["prep"]);
    assert_eq!(c.tokens.len(), 1, "{:?}", c.tokens);
    // Within a branch a return stays in the branch.
    c = e
        .complete(&a, &task(&c, "prep"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    c = e
        .complete(&a, &task(&c, "left"), "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    c = e
        .return_to(&a, &task(&c, "left2"), "left", None)
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(open(&c), ["left", "r1", "r2"]);
    // A step of a sibling branch is not a return target.
    let err = e.return_to(&a, &task(&c, "r1"), "left", None).unwrap_err();
    assert_eq!(err.code(), "invalid_transition", "{err}");
}

#[test]
fn rejection_in_a_branch_rejects_the_case_and_cancels_the_rest() {
    let (e, _tmp) = engine();
    let a = Actor::Staff("a".into());
    let c = start(&e);
    let c = e
        .complete(
            &a,
            &task(&c, "r2"),
            "reject",
            Some("unsafe".into()),
            Data::new(),
        )
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(c.status, CaseStatus::Rejected);
    assert!(open(&c).is_empty());
    assert!(c.tokens.is_empty());
    let h = e.history(c.id).unwrap();
    assert_eq!(h.last().unwrap().comment.as_deref(), Some("unsafe"));
    assert_eq!(
        h.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..h.len() as u64).collect::<Vec<_>>()
    );
}
