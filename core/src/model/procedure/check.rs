//! The static checks that turn a declaration into something the engine may run: every
//! reference resolves (groups, fields, materials, hooks, steps), every step is reachable
//! and can reach an end, parallel branches join, and each step's parallel scope.

use std::collections::{BTreeMap, BTreeSet};

use crate::office::RuleSet;

use super::*;

impl Procedure {
    /// Checks that make a procedure safe to run; each message names the step at fault.
    pub fn validate(&mut self, rules: &RuleSet) -> Vec<String> {
        let mut errs = Vec::new();
        let p = &*self;
        if !valid_id(&p.id) {
            errs.push(format!(
                "procedure id '{}' must be lower-case letters, digits, '.', '_' or '-'",
                p.id
            ));
        }
        if !rules.departments.contains_key(&p.department) {
            errs.push(format!("department '{}' does not exist", p.department));
        }
        if let Some(g) = &p.rating.group {
            if !rules.groups.contains_key(g) {
                errs.push(format!("rating: group '{g}' does not exist"));
            }
        }
        if p.rating.threshold > 5 {
            errs.push("rating: threshold is 0 (never follow up) to 5".to_string());
        }
        match p.promised_hours {
            Some(0) => errs.push("promised_hours must be at least 1".into()),
            Some(_) if p.promised_days != 0 => errs.push(
                "promised_hours is the promise of an immediate item: give promised_days: 0 with it"
                    .into(),
            ),
            _ => {}
        }
        if p.promised_days > p.statutory_days {
            errs.push(format!(
                "promised_days ({}) exceeds statutory_days ({})",
                p.promised_days, p.statutory_days
            ));
        }
        check_group(rules, &p.intake, "intake", &mut errs);
        errs.extend(p.warnings.validate());
        for n in &p.notices {
            n.validate(rules, &mut errs);
        }
        if let Some(x) = &p.extension {
            if !rules.groups.contains_key(&x.approver) {
                errs.push(format!("extension: group '{}' does not exist", x.approver));
            }
            if x.days == 0 {
                errs.push("extension: days must be at least 1".into());
            }
        }
        for s in &p.steps {
            match (s.days, s.hours) {
                (Some(_), Some(_)) => errs.push(format!(
                    "step '{}': give its budget in days or in hours, not both",
                    s.id
                )),
                (None, Some(0)) => errs.push(format!(
                    "step '{}': hours must be at least 1 (a same-day step is days: 0)",
                    s.id
                )),
                _ => {}
            }
        }
        let step_policies = p.steps.iter().filter_map(|s| {
            s.warnings
                .as_ref()
                .map(|w| (format!("step '{}': warnings", s.id), w))
        });
        for (ctx, w) in std::iter::once(("warnings".to_string(), &p.warnings)).chain(step_policies)
        {
            for g in w.supervisor.iter().chain(&w.escalate_to) {
                if !rules.groups.contains_key(g) {
                    errs.push(format!("{ctx}: group '{g}' does not exist"));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for m in &p.materials {
            if !seen.insert(format!("m:{}", m.id)) {
                errs.push(format!("material '{}' is declared twice", m.id));
            }
        }
        for f in &p.fields {
            if !seen.insert(format!("f:{}", f.id)) {
                errs.push(format!("field '{}' is declared twice", f.id));
            }
            if f.kind == FieldType::Enum && f.values.is_empty() {
                errs.push(format!("field '{}' is an enum without values", f.id));
            }
        }
        let ids: BTreeSet<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        if ids.len() != p.steps.len() {
            errs.push("two steps have the same id".into());
        }
        let check_route = |route: &Route, ctx: &str, errs: &mut Vec<String>| {
            if let Route::Rules(rules) = route {
                if rules.is_empty() {
                    errs.push(format!("{ctx}: a route needs at least one rule"));
                }
                if rules.last().is_some_and(|r| r.when.is_some()) {
                    errs.push(format!(
                        "{ctx}: the last rule of a route must have no `when`, so that some rule always matches"
                    ));
                }
            }
            for t in route.targets() {
                if let Target::Step(s) = Target::parse(t) {
                    if !ids.contains(s.as_str()) {
                        errs.push(format!("{ctx}: route to unknown step '{s}'"));
                    }
                }
            }
        };
        check_route(&p.start, "start", &mut errs);
        for s in &p.steps {
            let ctx = format!("step '{}'", s.id);
            if !valid_id(&s.id)
                || s.id == INTAKE_STEP
                || s.id == crate::rating::FOLLOW_UP_STEP
                || s.id.starts_with('@')
            {
                errs.push(format!(
                    "{ctx}: invalid step id (reserved or not lower-case)"
                ));
            }
            match s.kind {
                StepKind::Task if s.dynamic_group() => {
                    // Which group is known only when a case reaches the step (the loader
                    // compiles the expression and checks the function exists).
                    if !s.signers.is_empty() {
                        errs.push(format!(
                            "{ctx}: signers need a fixed group, not one worked out per case"
                        ));
                    }
                    if s.group.is_some() && s.assign.is_some() {
                        errs.push(format!("{ctx}: give `group` or `assign`, not both"));
                    }
                }
                StepKind::Task => match &s.group {
                    None => errs.push(format!("{ctx}: a task step needs a group (or `assign`)")),
                    Some(g) => {
                        check_group(rules, g, &ctx, &mut errs);
                        for who in &s.signers {
                            if !rules.is_member(who, g) {
                                errs.push(format!(
                                    "{ctx}: signer '{who}' is not a member of group '{g}'"
                                ));
                            }
                        }
                        if s.mode == Mode::Single && !s.signers.is_empty() {
                            errs.push(format!("{ctx}: signers need mode all, any or sequential"));
                        }
                    }
                },
                StepKind::Auto => match (&s.run, &s.topic) {
                    (Some(_), None) => {}
                    (None, Some(t)) => {
                        if !valid_id(t) {
                            errs.push(format!(
                                "{ctx}: topic '{t}' must be lower-case letters, digits, '.', '_' or '-'"
                            ));
                        }
                        // An empty group is fine here: a plugin's step handler may be
                        // the only worker.
                        match &s.group {
                            Some(g) if !rules.groups.contains_key(g) => {
                                errs.push(format!("{ctx}: group '{g}' does not exist"))
                            }
                            Some(_) => {}
                            None => errs.push(format!(
                                "{ctx}: an external task (topic) needs the group of its workers"
                            )),
                        }
                    }
                    _ => errs.push(format!(
                        "{ctx}: an automatic step needs either `run` (a function) or `topic` (an external task)"
                    )),
                },
                StepKind::Parallel => {
                    if s.branches.len() < 2 {
                        errs.push(format!(
                            "{ctx}: a parallel step needs at least two branches"
                        ));
                    }
                    for b in &s.branches {
                        if !ids.contains(b.as_str()) {
                            errs.push(format!("{ctx}: branch starts at unknown step '{b}'"));
                        }
                    }
                    if let Some(l) = &s.lead {
                        if !s.branches.contains(l) {
                            errs.push(format!("{ctx}: lead '{l}' is not one of the branches"));
                        }
                    }
                }
            }
            match &s.next {
                Some(r) => check_route(r, &ctx, &mut errs),
                None => errs.push(format!(
                    "{ctx}: `next` is missing (use \"@approved\" to end the case)"
                )),
            }
            for (name, r) in &s.outcomes {
                if name == "approve" {
                    errs.push(format!(
                        "{ctx}: `approve` is routed by `next`, not `outcomes`"
                    ));
                }
                if !valid_id(name) {
                    errs.push(format!("{ctx}: invalid outcome name '{name}'"));
                }
                check_route(r, &format!("{ctx}, outcome '{name}'"), &mut errs);
            }
            for r in s.return_to.iter().flatten() {
                if !ids.contains(r.as_str()) {
                    errs.push(format!("{ctx}: return_to names unknown step '{r}'"));
                }
            }
        }
        if errs.is_empty() {
            errs.extend(check_graph(p));
        }
        if errs.is_empty() {
            self.scopes = compute_scopes(self).unwrap_or_default();
        }
        errs.extend(self.compile_templates());
        for f in &mut self.fields {
            if let Some(pat) = &f.pattern {
                match regex::Regex::new(&format!("^(?:{pat})$")) {
                    Ok(re) => f.regex = Some(re),
                    Err(e) => errs.push(format!("field '{}': bad pattern: {e}", f.id)),
                }
            }
        }
        errs
    }
}

fn check_group(rules: &RuleSet, g: &str, ctx: &str, errs: &mut Vec<String>) {
    match rules.groups.get(g) {
        None => errs.push(format!("{ctx}: group '{g}' does not exist")),
        Some(group) if group.members.is_empty() => errs.push(format!(
            "{ctx}: group '{g}' has no members, so no one could handle it"
        )),
        Some(group) => {
            for m in &group.members {
                if !rules.staff.contains_key(m) {
                    errs.push(format!("{ctx}: group '{g}' lists unknown staff '{m}'"));
                }
            }
        }
    }
}

pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Scopes, reachability and termination. A step's scope is the parallel step whose branch
/// contains it (or the top level); `@join` is only valid inside a branch.
fn check_graph(p: &Procedure) -> Vec<String> {
    let mut errs = Vec::new();
    let scope = match compute_scopes(p) {
        Ok(s) => s,
        Err(e) => return e,
    };
    for s in &p.steps {
        if !scope.contains_key(&s.id) {
            errs.push(format!("step '{}' can never be reached from `start`", s.id));
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    // Fixpoint: which steps can reach an end of their scope.
    fixpoint_ends(p)
}

fn explicit_targets(s: &Step) -> Vec<String> {
    let mut t: Vec<String> = s
        .next
        .iter()
        .flat_map(|r| r.targets())
        .map(String::from)
        .collect();
    for r in s.outcomes.values() {
        t.extend(r.targets().into_iter().map(String::from));
    }
    t
}

/// Assigns each reachable step its scope by walking from `start`.
pub fn compute_scopes(p: &Procedure) -> Result<BTreeMap<String, Option<String>>, Vec<String>> {
    let by_id: BTreeMap<&str, &Step> = p.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut errs = Vec::new();
    let mut scope: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stack: Vec<(String, Option<String>)> = p
        .start
        .targets()
        .into_iter()
        .map(|t| (t.to_string(), None))
        .collect();
    while let Some((t, sc)) = stack.pop() {
        match Target::parse(&t) {
            Target::Join if sc.is_none() => {
                errs.push("`@join` is used outside a parallel branch".to_string())
            }
            Target::Step(id) => {
                if let Some(prev) = scope.get(&id) {
                    if *prev != sc {
                        errs.push(format!(
                            "step '{id}' is reached from two places: {} and {} (a step belongs to one parallel branch, or to none)",
                            prev.as_deref().unwrap_or("top level"),
                            sc.as_deref().unwrap_or("top level")
                        ));
                    }
                    continue;
                }
                scope.insert(id.clone(), sc.clone());
                let Some(s) = by_id.get(id.as_str()) else {
                    continue;
                };
                for n in explicit_targets(s) {
                    stack.push((n, sc.clone()));
                }
                for b in &s.branches {
                    stack.push((b.clone(), Some(format!("{id}/{b}"))));
                }
            }
            _ => {}
        }
    }
    if errs.is_empty() {
        Ok(scope)
    } else {
        Err(errs)
    }
}

/// Fixpoint: which steps can reach an end of their scope through declared routes.
fn fixpoint_ends(p: &Procedure) -> Vec<String> {
    let mut errs = Vec::new();
    let mut ends: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = ends.len();
        for s in &p.steps {
            if ends.contains(s.id.as_str()) {
                continue;
            }
            let branches_ok = s.branches.iter().all(|b| ends.contains(b.as_str()));
            let reaches = explicit_targets(s).iter().any(|t| match Target::parse(t) {
                Target::Approved | Target::Rejected | Target::Join => true,
                Target::Step(id) => ends.contains(id.as_str()),
            });
            if branches_ok && reaches {
                ends.insert(s.id.as_str());
            }
        }
        if ends.len() == before {
            break;
        }
    }
    for s in &p.steps {
        if !ends.contains(s.id.as_str()) {
            errs.push(format!(
                "step '{}': routing can never reach an end (@approved, @rejected or @join)",
                s.id
            ));
        }
    }
    let start_ok = p.start.targets().iter().any(|t| match Target::parse(t) {
        Target::Approved | Target::Rejected => true,
        Target::Step(id) => ends.contains(id.as_str()),
        Target::Join => false,
    });
    if errs.is_empty() && !start_ok {
        errs.push("`start` can never reach an end".into());
    }
    errs
}
