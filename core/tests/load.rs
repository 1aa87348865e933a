//! Loader and routing validation: one `check(procedure, expected)` per boundary, many cases.

use std::path::Path;

use guichet_core::script::load_sources;

const OFFICE: &str = r#"
department(#{ id: "d", name: "Dept" });
staff(#{ id: "a", name: "A" });
staff(#{ id: "b", name: "B" });
group(#{ id: "g", name: "G", department: "d", members: ["a", "b"] });
group(#{ id: "empty", name: "Empty", department: "d", members: [] });
"#;

fn procedure(steps: &str, start: &str, extra: &str) -> String {
    format!(
        r#"procedure(#{{
    id: "p", name: "P", department: "d", promised_days: 5, statutory_days: 10, intake: "g",
    fields: [ #{{ id: "x", label: "X", type: "number" }}, #{{ id: "name", label: "Name", type: "string" }},
              #{{ id: "tags", label: "Tags", type: "string" }} ],
    start: {start},
    steps: [{steps}],
    {extra}
}});
fn hook(c) {{ () }}
fn spin(c) {{ loop {{}} }}
"#
    )
}

/// Loads the office plus `proc_src` as `p.rhai`; returns the problems as text.
fn load(proc_src: &str) -> Result<(), String> {
    let files = vec![
        ("office.rhai".to_string(), OFFICE.to_string()),
        ("p.rhai".to_string(), proc_src.to_string()),
    ];
    load_sources(Path::new("."), &files)
        .map(|_| ())
        .map_err(|ps| {
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
}

#[track_caller]
fn check_ok(src: &str) {
    if let Err(e) = load(src) {
        panic!("expected to load, got:\n{e}");
    }
}

#[track_caller]
fn check_err(src: &str, expected: &str) {
    match load(src) {
        Ok(()) => panic!("expected an error containing {expected:?}"),
        Err(e) => assert!(e.contains(expected), "expected {expected:?} in:\n{e}"),
    }
}

const ONE: &str = r#"#{ id: "s1", name: "S1", group: "g", next: "@approved" }"#;

#[test]
fn a_minimal_procedure_loads() {
    check_ok(&procedure(ONE, r#""s1""#, ""));
}

#[test]
fn errors_name_file_line_and_column() {
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "nope", next: "@approved" }"#,
            r#""s1""#,
            "",
        ),
        // The step's own line, not the procedure's.
        "p.rhai:6:5: procedure 'p': step 's1': group 'nope' does not exist",
    );
    check_err("let x = ;", "p.rhai:1:9");
    check_err("\n\nprocedure(#{ id: 5 });", "p.rhai:3:1");
}

#[test]
fn references_must_resolve() {
    check_err(
        &procedure(ONE, r#""ghost""#, ""),
        "start: route to unknown step 'ghost'",
    );
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "g", next: "s9" }"#,
            r#""s1""#,
            "",
        ),
        "route to unknown step 's9'",
    );
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "empty", next: "@approved" }"#,
            r#""s1""#,
            "",
        ),
        "has no members",
    );
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "g", mode: "all", signers: ["zed"], next: "@approved" }"#,
            r#""s1""#,
            "",
        ),
        "signer 'zed' is not a member",
    );
    check_err(
        &procedure(ONE, r#""s1""#, r#"hooks: #{ on_decide: "missing_fn" },"#),
        "function `missing_fn(c)` is not defined in p.rhai",
    );
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "g", next: "@approved", return_to: ["zz"] }"#,
            r#""s1""#,
            "",
        ),
        "return_to names unknown step 'zz'",
    );
    check_err(
        &procedure(ONE, r#""s1""#, r#"typo_field: 1,"#),
        "unknown field `typo_field`",
    );
}

#[test]
fn routing_must_be_able_to_end() {
    let cycle = r#"#{ id: "s1", name: "S1", group: "g", next: "s2" }, #{ id: "s2", name: "S2", group: "g", next: "s1" }"#;
    check_err(
        &procedure(cycle, r#""s1""#, ""),
        "routing can never reach an end",
    );
    let cycle_with_exit = r#"#{ id: "s1", name: "S1", group: "g", next: "s2" }, #{ id: "s2", name: "S2", group: "g", next: "s1", outcomes: #{ done: "@approved" } }"#;
    check_ok(&procedure(cycle_with_exit, r#""s1""#, ""));
    let orphan = r#"#{ id: "s1", name: "S1", group: "g", next: "@approved" }, #{ id: "s2", name: "S2", group: "g", next: "@approved" }"#;
    check_err(
        &procedure(orphan, r#""s1""#, ""),
        "step 's2' can never be reached",
    );
    check_err(
        &procedure(
            r#"#{ id: "s1", name: "S1", group: "g", next: "@join" }"#,
            r#""s1""#,
            "",
        ),
        "`@join` is used outside a parallel branch",
    );
    let no_default = r#"#{ id: "s1", name: "S1", group: "g", next: [ #{ when: "data.x > 1", to: "@approved" } ] }"#;
    check_err(
        &procedure(no_default, r#""s1""#, ""),
        "the last rule of a route must have no `when`",
    );
    let bad_cond = r#"#{ id: "s1", name: "S1", group: "g", next: [ #{ when: "data.x >", to: "@approved" }, #{ to: "@rejected" } ] }"#;
    check_err(&procedure(bad_cond, r#""s1""#, ""), "condition `data.x >`");
}

#[test]
fn conditions_may_call_only_functions_that_exist() {
    let route = |cond: &str| {
        format!(
            r#"#{{ id: "s1", name: "S1", group: "g", next: [ #{{ when: "{cond}", to: "@approved" }}, #{{ to: "@rejected" }} ] }}"#
        )
    };
    check_err(
        &procedure(&route("no_such_fn(data.x)"), r#""s1""#, ""),
        "condition `no_such_fn(data.x)` calls no_such_fn/1, which does not exist",
    );
    check_err(
        &procedure(&route("data.name.no_such_method() > 3"), r#""s1""#, ""),
        "calls no_such_method/1",
    );
    // Wrong arity of a real function is as wrong as a missing one.
    check_err(
        &procedure(&route("len(data.x, 2) > 1"), r#""s1""#, ""),
        "len/2",
    );
    // Standard functions, methods and the script's own functions are fine.
    check_ok(&procedure(
        &route("data.name.len() > 3 && abs(data.x) > 1"),
        r#""s1""#,
        "",
    ));
    check_ok(
        &procedure(
            &route("data.tags.contains(1) || 2 in data.tags || big(data)"),
            r#""s1""#,
            "",
        )
        .replace("fn hook(c)", "fn big(d) { d.x > 100 }\nfn hook(c)"),
    );
}

#[test]
fn problems_point_at_the_step_field_or_key_at_fault() {
    let src = r#"
procedure(#{
    id: "p", name: "P", department: "d", promised_days: 5, statutory_days: 10, intake: "g",
    fields: [
        #{ id: "x", label: "X", type: "number" },
        #{ id: "y", label: "Y", type: "enum" },
    ],
    start: "s1",
    steps: [
        #{ id: "s1", name: "S1", group: "g", next: "s2" },
        #{ id: "s2", name: "S2", group: "g", next: "@nowhere" },
    ],
});
"#;
    check_err(src, "p.rhai:11:9: procedure 'p': step 's2'");
    check_err(src, "p.rhai:6:9: procedure 'p': field 'y'");
    let typo = src.replace(r#"next: "s2" }"#, r#"nxt: "s2" }"#);
    check_err(&typo, "p.rhai:10:9: procedure: unknown field `nxt`");
}

#[test]
fn parser_messages_are_plain() {
    check_err(
        "procedure(#{ id: \"p\", name: \"P\"\n",
        "a map `#{ ... }` is not closed",
    );
    check_err(
        "procedure(#{ id: \"p\" name: \"P\" });",
        "a ',' is missing between two entries of a map",
    );
    check_err(
        "let x = [1, 2;",
        "a ',' is missing between two items of a list",
    );
    check_err("let x = \"open;", "a text is not closed");
}

#[test]
fn conditions_may_read_only_declared_fields() {
    let route = |cond: &str| {
        format!(
            r#"#{{ id: "s1", name: "S1", group: "g", next: [ #{{ when: "{cond}", to: "@approved" }}, #{{ to: "@rejected" }} ] }}"#
        )
    };
    // `amount` when the field is `x`: every case would go the default way, silently.
    check_err(
        &procedure(&route("data.amount > 100"), r#""s1""#, ""),
        "condition `data.amount > 100` reads data.amount, which is not a field of the procedure (its fields: x, name, tags)",
    );
    check_err(
        &procedure(&route(r#"data[\"amount\"] == 3"#), r#""s1""#, ""),
        "reads data.amount",
    );
    check_err(
        &procedure(&route("data.amount.len() > 1"), r#""s1""#, ""),
        "reads data.amount",
    );
    check_err(
        &procedure(&route(r#"applicant.district == \"east\""#), r#""s1""#, ""),
        "reads applicant.district; an applicant has id, name, phone, email, language",
    );
    check_ok(&procedure(
        &route(r#"data.x > 1 && data[\"name\"] != \"\" && applicant.name.len() > 0"#),
        r#""s1""#,
        "",
    ));
}

#[test]
fn parallel_branches_join() {
    let par = r#"
        #{ id: "fork", name: "Fork", kind: "parallel", branches: ["b1", "b2"], next: "@approved" },
        #{ id: "b1", name: "B1", group: "g", next: "@join" },
        #{ id: "b2", name: "B2", group: "g", next: "b3" },
        #{ id: "b3", name: "B3", group: "g", next: "@join" }"#;
    check_ok(&procedure(par, r#""fork""#, ""));
    let shared = r#"
        #{ id: "fork", name: "Fork", kind: "parallel", branches: ["b1", "b2"], next: "b1" },
        #{ id: "b1", name: "B1", group: "g", next: "@join" },
        #{ id: "b2", name: "B2", group: "g", next: "@join" }"#;
    check_err(
        &procedure(shared, r#""fork""#, ""),
        "is reached from two places",
    );
    let one = r#"#{ id: "fork", name: "Fork", kind: "parallel", branches: ["b1"], next: "@approved" }, #{ id: "b1", name: "B1", group: "g", next: "@join" }"#;
    check_err(&procedure(one, r#""fork""#, ""), "at least two branches");
}

#[test]
fn limits_and_office_checks() {
    check_err(
        &procedure(ONE, r#""s1""#, "").replace("promised_days: 5", "promised_days: 50"),
        "exceeds statutory_days",
    );
    check_err(
        r#"import "../../etc/passwd" as x;"#,
        "imports must stay inside the scripts folder",
    );
    check_err("let s = \"x\"; loop { s += s; }", "p.rhai");
    check_err("fn f(n) { f(n + 1) } f(0);", "p.rhai");
    check_err("loop { }", "p.rhai");
    check_err(
        r#"department(#{ id: "d", name: "Again" });"#,
        "department 'd' is declared twice",
    );
}

#[test]
fn the_example_office_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    let rules = guichet_core::script::load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(rules.procedures.len(), 10);
    assert!(rules.bundles.contains_key("tax.new_business"));
}

#[test]
fn a_bundles_shared_fields_are_fields_of_its_procedures() {
    let second = procedure(ONE, r#""s1""#, "")
        .replace(r#"id: "p","#, r#"id: "q","#)
        .replace(
            r#"#{ id: "x", label: "X", type: "number" }"#,
            r#"#{ id: "x", label: "X", type: "string" }"#,
        );
    // Its functions are the first one's.
    let second = &second[..second.find("fn hook").unwrap()];
    let with = |fields: &str| {
        format!(
            "{}\n{second}\nbundle(#{{ id: \"b\", name: \"B\", procedures: [\"p\", \"q\"], fields: {fields} }});",
            procedure(ONE, r#""s1""#, "")
        )
    };
    check_ok(&with(r#"["name"]"#));
    check_err(
        &with(r#"["nope"]"#),
        "bundle 'b': field 'nope' is not a field of any of its procedures",
    );
    check_err(
        &with(r#"["x"]"#),
        "bundle 'b': field 'x' has another type in procedure 'q'",
    );
}
