//! Who handles a step, from the case: a group expression or an `assign` function, checked
//! at load, worked out when a case reaches the step; a group that does not exist is a
//! script error that changes nothing.

use std::sync::Arc;

use guichet_core::case::{Applicant, Case, CaseStatus, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::store::SledStore;
use guichet_core::{Actor, Engine, Error};

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "w", name: "Window" });
staff(#{ id: "e1", name: "East clerk" });
staff(#{ id: "w1", name: "West clerk" });
staff(#{ id: "j", name: "Judge" });
group(#{ id: "win", name: "Window", department: "d", members: ["w"] });
group(#{ id: "east.branch", name: "East branch", department: "d", members: ["e1"] });
group(#{ id: "west.branch", name: "West branch", department: "d", members: ["w1"] });
group(#{ id: "chamber.a", name: "Chamber A", department: "d", members: ["j"] });
group(#{ id: "chamber.b", name: "Chamber B", department: "d", members: ["j"] });
"#;

const PROCS: &str = r#"
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 5, statutory_days: 10, intake: "win",
    fields: [ #{ id: "district", label: "District", type: "string", required: true },
              #{ id: "amount", label: "Amount", type: "number" } ],
    start: "branch",
    steps: [
        #{ id: "branch", name: "Branch review", group: "data.district + \".branch\"", next: "chamber" },
        #{ id: "chamber", name: "Chamber", assign: "chamber_of", next: "@approved" },
    ],
});
// Large claims go to chamber A, small ones to chamber B.
fn chamber_of(c) { if c.data.amount > 100 { "chamber.a" } else { "chamber.b" } }
"#;

fn engine(procs: &str) -> Result<(Engine, tempfile::TempDir), String> {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("office.rhai"), OFFICE).unwrap();
    std::fs::write(scripts.join("p.rhai"), procs).unwrap();
    let store = Arc::new(SledStore::open(&tmp.path().join("store"), 8 << 20).unwrap());
    let clock = Arc::new(ManualClock::new("2026-11-30T02:00:00Z".parse().unwrap()));
    Engine::open(store, &scripts, clock)
        .map(|e| (e, tmp))
        .map_err(|e| e.to_string())
}

fn submit(e: &Engine, district: &str) -> Case {
    let mut data = Data::new();
    data.insert("district".into(), district.into());
    data.insert("amount".into(), 500.into());
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
    e.submit(&Actor::Public, sub).unwrap().cases.remove(0)
}

fn act(e: &Engine, c: &Case, who: &str, outcome: &str) -> Result<Case, Error> {
    let t = c.open_tasks().next().unwrap().id.clone();
    let a = Actor::Staff(who.into());
    e.claim(&a, &t)?;
    Ok(e.complete(&a, &t, outcome, None, Data::new())?
        .cases
        .remove(0))
}

#[test]
fn a_step_goes_to_the_group_the_case_names() {
    let (e, _tmp) = engine(PROCS).unwrap();
    let east = submit(&e, "east");
    let c = act(&e, &east, "w", "accept").unwrap();
    let t = c.open_tasks().next().unwrap();
    assert_eq!(
        (t.step.as_str(), t.group.as_str()),
        ("branch", "east.branch")
    );
    // The west clerk does not see it; the east clerk does, and acts.
    assert!(!e.can_see(&Actor::Staff("w1".into()), &c));
    let c = act(&e, &c, "e1", "approve").unwrap();
    let t = c.open_tasks().next().unwrap();
    assert_eq!(
        (t.step.as_str(), t.group.as_str()),
        ("chamber", "chamber.a")
    );
    let c = act(&e, &c, "j", "approve").unwrap();
    assert_eq!(c.status, CaseStatus::Approved);

    // A district with no branch: the acceptance is refused and changes nothing.
    let north = submit(&e, "north");
    let err = act(&e, &north, "w", "accept").unwrap_err();
    assert!(
        matches!(&err, Error::Script { message, .. } if message.contains("group 'north.branch', worked out for this case, does not exist")),
        "{err:?}"
    );
    let still = e.case(north.id).unwrap();
    assert_eq!(still.status, CaseStatus::Submitted);
    assert_eq!(still.history_len, north.history_len + 1, "only the claim");
}

#[test]
fn group_expressions_and_assign_functions_are_checked_at_load() {
    let typo = PROCS.replace("data.district + ", "data.distrct + ");
    let err = engine(&typo).err().unwrap();
    assert!(err.contains("reads data.distrct"), "{err}");
    let missing = PROCS.replace("fn chamber_of(c)", "fn chamber(c)");
    let err = engine(&missing).err().unwrap();
    assert!(
        err.contains("assign: function `chamber_of(c)` is not defined"),
        "{err}"
    );
}
