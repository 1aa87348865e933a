//! Procedure tests (`guichet test`): the example office's scenarios pass and cover every
//! example procedure; a failing scenario is reported at its file and line; broken or empty
//! scenario files are problems, not silent passes; the loader does not take scenarios for
//! rules.

use std::path::{Path, PathBuf};

use guichet_core::script::scenario::run_dir;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

#[test]
fn the_example_scenarios_pass_and_cover_every_procedure() {
    let dir = examples();
    let report = run_dir(&dir, Default::default(), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for o in &report.outcomes {
        assert!(
            o.failure.is_none(),
            "{} {}: {:?}",
            o.file,
            o.name,
            o.failure
        );
    }
    let rules = guichet_core::script::load_dir(&dir).expect("the example office loads");
    let mut sources = String::new();
    for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
        sources.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for id in rules.procedures.keys() {
        assert!(
            sources.contains(&format!("submit(\"{id}\"")),
            "no scenario submits {id}"
        );
    }
    assert!(report.outcomes.len() >= rules.procedures.len());
}

const OFFICE: &str = r#"
calendar(#{ time_zone: "Asia/Shanghai", office_hours: ["09:00", "17:00"] });
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
staff(#{ id: "b", name: "B" });
group(#{ id: "g", name: "G", department: "d", members: ["a", "b"] });
group(#{ id: "boss", name: "Boss", department: "d", members: ["b"] });
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 3, statutory_days: 5, intake: "g",
    warnings: #{ at_shares: [0.5], supervisor: "boss" },
    fields: [ #{ id: "amount", label: "Amount", type: "number", required: true } ],
    start: "check",
    steps: [
        #{ id: "check", name: "Check", group: "g", days: 2, next: [
            #{ when: "data.amount > 100", to: "sign" },
            #{ to: "@approved" },
        ] },
        #{ id: "sign", name: "Sign", group: "boss", days: 1, next: "@approved" },
    ],
});
"#;

fn office(tests: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("office.rhai"), OFFICE).unwrap();
    std::fs::create_dir(tmp.path().join("tests")).unwrap();
    for (name, src) in tests {
        std::fs::write(tmp.path().join("tests").join(name), src).unwrap();
    }
    tmp
}

#[test]
fn a_failed_expectation_names_its_file_and_line() {
    let tmp = office(&[(
        "p.rhai",
        r#"
fn test_small_amounts_need_no_signature() {
    let c = submit("p", #{ amount: 50 });
    complete(c, "intake");
    complete(c, "check");
    expect_status(c, "approved");
}

fn test_large_amounts_are_signed() {
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    complete(c, "check");
    expect_steps(c, ["check"]);
}

fn test_the_boss_is_warned() {
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    advance_days(2);
    expect_card(c, "nobody");
}
"#,
    )]);
    // The scripts folder itself still loads: scenarios are not rules.
    guichet_core::script::load_dir(tmp.path()).expect("the office loads beside its tests");
    let report = run_dir(tmp.path(), Default::default(), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let names: Vec<&str> = report.outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "test_small_amounts_need_no_signature",
            "test_large_amounts_are_signed",
            "test_the_boss_is_warned"
        ],
        "in the order of the file"
    );
    assert_eq!(report.outcomes[0].line, 2);
    assert!(report.outcomes[0].failure.is_none());
    let f = report.outcomes[1].failure.as_ref().expect("fails");
    assert_eq!(
        (f.location.file.as_str(), f.location.line, f.location.column),
        ("tests/p.rhai", 13, 5)
    );
    assert_eq!(f.message, "expected open steps check, they are sign");
    let f = report.outcomes[2].failure.as_ref().expect("fails");
    assert_eq!(f.location.line, 20);
    assert!(
        f.message.contains("expected a card {\"to\":\"nobody\"}")
            && f.message.contains("to g, boss"),
        "{}",
        f.message
    );
    assert_eq!(
        (report.passed(), report.failed(), report.ok()),
        (1, 2, false)
    );

    let only = run_dir(tmp.path(), Default::default(), Some("small"));
    assert_eq!(only.outcomes.len(), 1);
    assert!(only.ok());
}

#[test]
fn refusals_and_the_clock_can_be_expected() {
    let tmp = office(&[(
        "p.rhai",
        r#"
fn test_refusals() {
    expect_error("validation_failed", || submit("p", #{ amount: "many" }));
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    expect_error("invalid_transition", || return_to(c, "check", "sign"));
    expect_due(c, "2026-03-05");
}

fn test_time_passes_in_working_hours() {
    at("2026-03-06 16:00");
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    advance_hours(2);
    expect(now() == "2026-03-09 10:00", "two working hours from Friday 16:00 end on Monday at 10:00");
    expect_error("only moves forward", || at("2026-03-01 09:00"));
}

fn test_an_expected_refusal_that_does_not_come_fails() {
    let c = submit("p", #{ amount: 50 });
    expect_error("forbidden", || complete(c, "intake"));
}
"#,
    )]);
    let report = run_dir(tmp.path(), Default::default(), None);
    let fails: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| {
            o.failure
                .as_ref()
                .map(|f| (f.location.line, f.message.clone()))
        })
        .collect();
    assert_eq!(fails[0], None);
    assert_eq!(fails[1], None);
    assert_eq!(
        fails[2],
        Some((
            21,
            "expected a refusal (forbidden), it was done".to_string()
        ))
    );
}

#[test]
fn broken_or_empty_scenario_files_are_problems() {
    let tmp = office(&[
        (
            "broken.rhai",
            "fn test_x() {\n    let c = submit(\"p\", #{ amount: 1 );\n}\n",
        ),
        ("empty.rhai", "fn helper() { 1 }\n"),
    ]);
    let report = run_dir(tmp.path(), Default::default(), None);
    assert!(!report.ok());
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        problems[0].starts_with("tests/broken.rhai:2:")
            && problems[0].contains("a map `#{ ... }` is not closed"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("tests/empty.rhai:0:0: no scenario"),
        "{problems:?}"
    );
}

#[test]
fn step_budgets_in_working_hours() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("office.rhai"),
        OFFICE.replace(
            r#"#{ id: "sign", name: "Sign", group: "boss", days: 1, next: "@approved" },"#,
            r#"#{ id: "sign", name: "Sign", group: "boss", hours: 4, next: "@approved" },"#,
        ),
    )
    .unwrap();
    std::fs::create_dir(tmp.path().join("tests")).unwrap();
    std::fs::write(
        tmp.path().join("tests/hours.rhai"),
        r#"
fn signed(at) {
    at(at);
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    complete(c, "check");
    c
}

fn test_four_working_hours_run_over_the_weekend() {
    // Friday 15:00 + 4 working hours (office 09:00-17:00) = Monday 11:00.
    let c = signed("2026-03-06 15:00");
    expect_due(c, "sign", "2026-03-09 11:00");
    // Half of it (the procedure warns at 50 %), two working hours, at Friday's close.
    at("2026-03-06 16:59");
    expect_level(c, "green");
    at("2026-03-06 17:00");
    expect_level(c, "yellow");
    expect_card(c, #{ step: "sign", threshold: "50%", to: "boss" });
    at("2026-03-09 11:01");
    expect_level(c, "red");
    expect_card(c, #{ step: "sign", kind: "overdue", to: "boss" });
}

fn test_a_stopped_clock_moves_an_hour_budget_by_its_working_minutes() {
    let c = signed("2026-03-09 09:00");
    expect_due(c, "sign", "2026-03-09 13:00");
    at("2026-03-09 10:00");
    request_supplement(c, "sign", ["The signed plan"]);
    // Stopped from 10:00 to 16:30: six and a half working hours.
    at("2026-03-09 16:30");
    supply(c, #{ data: #{ amount: 450 } });
    expect_due(c, "sign", "2026-03-10 11:30");
    // Its half (11:00 on Monday) moves as far: to 09:30 on Tuesday.
    at("2026-03-10 09:29");
    expect_level(c, "green");
    expect_no_card(c, #{ step: "sign", threshold: "50%" });
    at("2026-03-10 09:30");
    expect_level(c, "yellow");
    expect_card(c, #{ step: "sign", threshold: "50%" });
    at("2026-03-10 11:31");
    expect_level(c, "red");
}
"#,
    )
    .unwrap();
    let report = run_dir(tmp.path(), Default::default(), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for o in &report.outcomes {
        assert!(o.failure.is_none(), "{}: {:?}", o.name, o.failure);
    }
    assert_eq!(report.outcomes.len(), 2);

    // Days and hours together, or zero hours, do not load.
    let both = OFFICE.replace(
        r#"days: 1, next: "@approved""#,
        r#"days: 1, hours: 2, next: "@approved""#,
    );
    let problems = guichet_core::script::load_sources(Path::new("."), &[("o.rhai".into(), both)])
        .map(|_| ())
        .expect_err("refused");
    assert!(
        problems[0]
            .message
            .contains("step 'sign': give its budget in days or in hours, not both"),
        "{problems:?}"
    );
    let zero = OFFICE.replace(
        r#"days: 1, next: "@approved""#,
        r#"hours: 0, next: "@approved""#,
    );
    let problems = guichet_core::script::load_sources(Path::new("."), &[("o.rhai".into(), zero)])
        .map(|_| ())
        .expect_err("refused");
    assert!(
        problems[0].message.contains("hours must be at least 1"),
        "{problems:?}"
    );
}

/// The test office with `from` replaced by `to` in its procedure, and one scenario file.
fn variant(from: &str, to: &str, tests: &str) -> tempfile::TempDir {
    assert!(OFFICE.contains(from));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("office.rhai"), OFFICE.replace(from, to)).unwrap();
    std::fs::create_dir(tmp.path().join("tests")).unwrap();
    std::fs::write(tmp.path().join("tests/t.rhai"), tests).unwrap();
    tmp
}

#[track_caller]
fn all_pass(tmp: &tempfile::TempDir, n: usize) {
    let report = run_dir(tmp.path(), Default::default(), None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    for o in &report.outcomes {
        assert!(o.failure.is_none(), "{}: {:?}", o.name, o.failure);
    }
    assert_eq!(report.outcomes.len(), n);
}

#[test]
fn the_intake_limit_lapses_into_an_acceptance_from_the_receipt() {
    let tmp = variant(
        r#"intake: "g","#,
        r#"intake: "g", intake_limit: #{ days: 5, lapse: "accept" },"#,
        r#"
fn test_the_window_that_does_not_decide_has_accepted() {
    let c = submit("p", #{ amount: 500 });
    expect_due(c, "intake", "2026-03-09");
    // Half of five days (the procedure warns at 50 %): the window and its supervisor are
    // told at the close of the third.
    advance_days(3);
    expect_level(c, "green");
    advance_days(1);
    expect_level(c, "yellow");
    expect_card(c, #{ step: "intake", threshold: "50%", to: "g" });
    expect_status(c, "submitted");
    at("2026-03-09 17:00");
    // Five working days passed: accepted by law, its limits counted from the receipt, so
    // its three promised days are already past.
    expect_status(c, "in_progress");
    expect_steps(c, ["check"]);
    expect_card(c, #{ step: "intake", kind: "overdue", to: "g" });
    expect(read_case(c).accepted_at == "2026-03-02T01:00:00Z", "accepted from the receipt");
    expect_due(c, "2026-03-05");
    expect_level(c, "red");
}

fn test_a_decision_in_time_stops_the_intake_limit() {
    let c = submit("p", #{ amount: 500 });
    advance_days(2);
    complete(c, "intake");
    expect_due(c, "2026-03-09");
    advance_days(4);
    expect_no_card(c, #{ step: "intake" });
}

fn test_a_supplement_at_intake_restarts_it_from_the_answer() {
    let c = submit("p", #{ amount: 500 });
    advance_days(3);
    request_supplement(c, "intake", ["The amount in words"]);
    advance_days(3);
    supply(c, #{ data: #{ amount: 400 } });
    // Answered on Tuesday 10 March: five working days from then.
    expect_due(c, "intake", "2026-03-17");
    at("2026-03-16 17:00");
    expect_status(c, "submitted");
    expect_no_card(c, #{ kind: "overdue" });
}
"#,
    );
    all_pass(&tmp, 3);
}

#[test]
fn the_intake_limit_by_default_only_warns() {
    let tmp = variant(
        r#"intake: "g","#,
        r#"intake: "g", intake_limit: #{ days: 5 },"#,
        r#"
fn test_the_window_is_told_and_still_decides() {
    let c = submit("p", #{ amount: 500 });
    advance_days(6);
    expect_status(c, "submitted");
    expect_card(c, #{ step: "intake", kind: "overdue", to: "g" });
    expect_level(c, "red");
    complete(c, "intake");
    // Accepted now: its limits run from the acceptance.
    expect_due(c, "2026-03-13");
}
"#,
    );
    all_pass(&tmp, 1);
}

#[test]
fn a_handler_takes_back_his_step_while_the_next_has_not_acted() {
    let tmp = variant(
        r#"fields: [ #{ id: "amount", label: "Amount", type: "number", required: true } ],"#,
        r#"fields: [ #{ id: "amount", label: "Amount", type: "number", required: true },
                 #{ id: "opinion", label: "Opinion", type: "string", internal: true } ],"#,
        r#"
fn at_sign() {
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    complete(c, "check", #{ by: "a", data: #{ opinion: "fine" } });
    expect_steps(c, ["sign"]);
    c
}

fn test_taken_back_before_the_next_handler_acts() {
    let c = at_sign();
    take_back(c);
    // The step is his again, claimed; the opinion he gave is gone; nothing waits at sign.
    expect_steps(c, ["check"]);
    let task = read_case(c).tasks[0];
    expect(task.claimed_by == "a" && task.state == "claimed", "claimed by a");
    expect(read_case(c).data.opinion == (), "the opinion is withdrawn");
    // He completes it again, now with another opinion.
    complete(c, "check", #{ data: #{ opinion: "needs a signature" } });
    expect_steps(c, ["sign"]);
    expect_data(c, "opinion", "needs a signature");
}

fn test_not_once_the_next_handler_has_claimed_it() {
    let c = at_sign();
    claim(c, "sign");
    expect_error("the next handler acted", || take_back(c));
}

fn test_only_by_who_completed_it() {
    let c = at_sign();
    expect_error("forbidden", || take_back(c, "b"));
}

fn test_not_once_the_case_is_decided() {
    let c = submit("p", #{ amount: 50 });
    complete(c, "intake");
    complete(c, "check");
    expect_status(c, "approved");
    expect_error("invalid_transition", || take_back(c, "a"));
}

fn test_not_once_anything_else_happened() {
    let c = at_sign();
    advance_days(2);
    // A card was issued meanwhile: the case moved on.
    expect_card(c, #{ step: "sign" });
    expect_error("the case moved on since", || take_back(c));
}
"#,
    );
    all_pass(&tmp, 5);
}

#[test]
fn a_promise_in_working_hours() {
    let tmp = variant(
        r#"promised_days: 3, statutory_days: 5,"#,
        r#"promised_days: 0, promised_hours: 2, statutory_days: 5,"#,
        r#"
fn test_two_working_hours_from_friday_afternoon() {
    at("2026-03-06 16:00");
    let c = submit("p", #{ amount: 50 });
    complete(c, "intake");
    // Accepted at 16:00 on Friday; two working hours (office 09:00-17:00): Monday 10:00.
    expect(read_case(c).promised_due == "2026-03-09T02:00:00Z", "due Monday 10:00 Beijing");
    expect_due(c, "2026-03-09");
}

fn test_warned_at_half_the_hours_and_late_after_them() {
    at("2026-03-09 09:00");
    let c = submit("p", #{ amount: 500 });
    complete(c, "intake");
    at("2026-03-09 09:59");
    expect_no_card(c, #{ limit: "promised" });
    at("2026-03-09 10:00");
    expect_card(c, #{ limit: "promised", threshold: "50%", to: "boss" });
    at("2026-03-09 11:01");
    expect_card(c, #{ limit: "promised", kind: "overdue" });
    expect_level(c, "red");
}
"#,
    );
    all_pass(&tmp, 2);
    // Hours promised with days too do not load.
    let both = OFFICE.replace(
        "promised_days: 3, statutory_days: 5,",
        "promised_days: 3, promised_hours: 2, statutory_days: 5,",
    );
    let problems = guichet_core::script::load_sources(Path::new("."), &[("o.rhai".into(), both)])
        .map(|_| ())
        .expect_err("refused");
    assert!(
        problems[0]
            .message
            .contains("give promised_days: 0 with it"),
        "{problems:?}"
    );
}
