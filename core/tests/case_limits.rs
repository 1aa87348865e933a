//! Limits that depend on the case: a procedure's `limits` hook sets them at acceptance.

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
group(#{ id: "win", name: "Window", department: "d", members: ["w"] });
group(#{ id: "g", name: "G", department: "d", members: ["a"] });
procedure(#{
    id: "p", name: "Refund", department: "d", promised_days: 5, statutory_days: 10, intake: "win",
    fields: [ #{ id: "amount", label: "Amount", type: "number", required: true } ],
    start: "review",
    steps: [ #{ id: "review", name: "Review", group: "g", next: "@approved" } ],
    hooks: #{ limits: "limits" },
});
// Small refunds are immediate items; large ones keep the procedure's days; a negative
// amount makes the hook give nonsense, which is refused.
fn limits(c) {
    if c.data.amount < 0 { return #{ promised_days: 9, statutory_days: 1 }; }
    if c.data.amount <= 1000 { #{ promised_days: 0, statutory_days: 5 } }
    else { #{ promised_days: 5, statutory_days: 10 } }
}
"#;

fn accept(e: &Engine, amount: f64) -> Result<Case, Error> {
    let mut data = Data::new();
    data.insert("amount".into(), amount.into());
    let sub = Submission {
        procedure: "p".into(),
        applicant: Applicant {
            id: "X1".into(),
            name: "X".into(),
            ..Default::default()
        },
        data,
        materials: vec![],
    };
    let c = e.submit(&Actor::Public, sub)?.cases.remove(0);
    let t = c.open_tasks().next().unwrap().id.clone();
    let w = Actor::Staff("w".into());
    e.claim(&w, &t)?;
    Ok(e.complete(&w, &t, "accept", None, Data::new())?
        .cases
        .remove(0))
}

#[test]
fn a_small_request_is_an_immediate_item_a_large_one_has_days() {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    // Monday 2026-11-30, 10:00 in the office.
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    let e = Engine::open(store, &scripts, clock).unwrap();
    let small = accept(&e, 300.0).unwrap();
    assert_eq!(
        small.limits.map(|l| (l.promised_days, l.statutory_days)),
        Some((0, 5))
    );
    // Due at the close of the same day.
    assert_eq!(
        small.promised_due,
        Some("2026-11-30T09:30:00Z".parse().unwrap())
    );
    let large = accept(&e, 5000.0).unwrap();
    assert_eq!(
        large.promised_due,
        Some("2026-12-07T09:30:00Z".parse().unwrap())
    );
    // A hook that gives a promised limit above the statutory one is a script error.
    assert!(matches!(accept(&e, -1.0), Err(Error::Script { .. })));
}
