//! Internal procedures (staff requests): no window step, accepted as they are received.

use std::sync::Arc;

use guichet_core::case::{Applicant, CaseStatus, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine, Error};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
staff(#{ id: "h", name: "Head" });
group(#{ id: "staff", name: "Staff", department: "d", members: ["a"] });
group(#{ id: "heads", name: "Heads", department: "d", members: ["h"] });
procedure(#{
    id: "leave", name: "Leave request", department: "d", promised_days: 2, statutory_days: 3,
    intake: "heads", window: false,
    start: "approve",
    steps: [ #{ id: "approve", name: "Head's approval", group: "heads", days: 1, next: "@approved" } ],
});
"#;

#[test]
fn a_staff_request_starts_at_its_first_step_and_the_public_cannot_file_one() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    let e = Engine::open(store, &scripts, clock).unwrap();
    let sub = || Submission {
        procedure: "leave".into(),
        applicant: Applicant {
            id: "A".into(),
            name: "A".into(),
            ..Default::default()
        },
        data: Data::new(),
        materials: vec![],
    };
    assert!(matches!(
        e.submit(&Actor::Public, sub()),
        Err(Error::Forbidden(_))
    ));
    let c = e
        .submit(&Actor::Staff("a".into()), sub())
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(c.status, CaseStatus::InProgress);
    assert_eq!(c.accepted_at, Some(c.submitted_at));
    assert!(c.promised_due.is_some());
    let steps: Vec<&str> = c.open_tasks().map(|t| t.step.as_str()).collect();
    assert_eq!(steps, ["approve"], "no window step");
    let t = c.open_tasks().next().unwrap().id.clone();
    let h = Actor::Staff("h".into());
    e.claim(&h, &t).unwrap();
    let done = e
        .complete(&h, &t, "approve", None, Data::new())
        .unwrap()
        .cases
        .remove(0);
    assert_eq!(done.status, CaseStatus::Approved);
}
