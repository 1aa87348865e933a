//! Explicit migration of open cases from one procedure version to another, with a map of
//! old step ids to new ones. Everything is checked for every case before anything is
//! written; then each case is rewritten in one commit with a `migrated` history event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::case::{HistoryEvent, Limit, Timer};
use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::procedure::{Procedure, Step, StepKind, INTAKE_STEP};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MigrationPlan {
    pub procedure: String,
    /// The version the cases run on now.
    pub from: String,
    /// The version to move them to; default: the live one.
    #[serde(default)]
    pub to: Option<String>,
    /// Old step id → new step id, for steps renamed or replaced. Steps absent here keep
    /// their id, which must exist in the new version.
    #[serde(default)]
    pub steps: BTreeMap<String, String>,
    /// Report what would happen and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseMigration {
    pub id: u64,
    pub number: String,
    /// Active steps moved, e.g. `review → check`.
    pub changes: Vec<String>,
    /// Why this case cannot move; any problem refuses the whole migration.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MigrationReport {
    pub procedure: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// Whether the cases were moved (false for a dry run or when any case has problems).
    pub applied: bool,
    pub cases: Vec<CaseMigration>,
    #[serde(skip)]
    pub ticket: u64,
}

fn same_handling(old: &Step, new: &Step) -> Vec<String> {
    let mut p = Vec::new();
    if old.kind != new.kind {
        p.push(
            format!(
                "step '{}' is a {:?} step but '{}' is a {:?} step",
                old.id, old.kind, new.id, new.kind
            )
            .to_lowercase(),
        );
    }
    if old.kind == StepKind::Task {
        if old.group != new.group {
            p.push(format!(
                "step '{}' is handled by group '{}' but '{}' by '{}'; open tasks cannot change group in a migration",
                old.id,
                old.group.as_deref().unwrap_or_default(),
                new.id,
                new.group.as_deref().unwrap_or_default()
            ));
        }
        if old.mode != new.mode {
            p.push(
                format!(
                    "step '{}' changes mode from {:?} to {:?}",
                    old.id, old.mode, new.mode
                )
                .to_lowercase(),
            );
        }
    }
    if old.kind == StepKind::Parallel && old.branches.len() != new.branches.len() {
        p.push(format!(
            "parallel step '{}' changes its number of branches",
            old.id
        ));
    }
    p
}

impl Engine {
    /// Moves the open cases of `plan.from` to `plan.to`, or reports why not.
    pub fn migrate(&self, actor: &Actor, plan: MigrationPlan) -> Result<MigrationReport> {
        if *actor != Actor::Admin {
            return Err(Error::Forbidden(
                "migrations are for the administrator".into(),
            ));
        }
        let old = self.procedure_version(&plan.procedure, &plan.from)?;
        let to = match &plan.to {
            Some(v) => v.clone(),
            None => self
                .rules()
                .procedures
                .get(&plan.procedure)
                .map(|p| p.version.clone())
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "procedure '{}' is not live; name the target version",
                        plan.procedure
                    ))
                })?,
        };
        if to == plan.from {
            return Err(Error::Validation(
                "`from` and `to` are the same version".into(),
            ));
        }
        let new = self.procedure_version(&plan.procedure, &to)?;
        let mut plan_errors = Vec::new();
        for (o, n) in &plan.steps {
            if old.step(o).is_none() {
                plan_errors.push(format!(
                    "mapping names step '{o}', which version {} does not have",
                    plan.from
                ));
            }
            if new.step(n).is_none() {
                plan_errors.push(format!(
                    "mapping targets step '{n}', which version {to} does not have"
                ));
            }
        }
        if !plan_errors.is_empty() {
            return Err(Error::Validation(plan_errors.join("; ")));
        }
        let mut report = MigrationReport {
            procedure: plan.procedure.clone(),
            from: plan.from.clone(),
            to: to.clone(),
            dry_run: plan.dry_run,
            applied: false,
            cases: Vec::new(),
            ticket: 0,
        };
        let mut writes = Vec::new();
        for id in self
            .store()
            .open_cases_of_version(&plan.procedure, &plan.from)?
        {
            let case = self.case(id)?;
            let (entry, after) = self.migrate_case(&case, &old, &new, &plan, actor);
            if entry.problems.is_empty() {
                writes.push((case, after));
            }
            report.cases.push(entry);
        }
        if plan.dry_run || report.cases.iter().any(|c| !c.problems.is_empty()) {
            return Ok(report);
        }
        for (before, (after, event, timers)) in writes {
            let done = self.commit_change(before, after, event, timers)?;
            report.ticket = report.ticket.max(done.ticket);
        }
        report.applied = true;
        report.ticket = report.ticket.max(self.store().append_audit(vec![
            crate::audit::Record::new(
                self.now(),
                actor.name(),
                "migration.applied",
                format!("procedure:{}", plan.procedure),
            )
            .with_detail(format!(
                "{} case(s) from version {} to {to}",
                report.cases.len(),
                plan.from
            )),
        ])?);
        tracing::info!(message = "cases migrated", procedure = %plan.procedure, from = %plan.from, to = %to, cases = report.cases.len());
        Ok(report)
    }

    fn migrate_case(
        &self,
        case: &crate::case::Case,
        old: &Procedure,
        new: &Procedure,
        plan: &MigrationPlan,
        actor: &Actor,
    ) -> (CaseMigration, (crate::case::Case, HistoryEvent, Vec<Timer>)) {
        let mut after = case.clone();
        let mut entry = CaseMigration {
            id: case.id,
            number: case.number.clone(),
            changes: Vec::new(),
            problems: Vec::new(),
        };
        let target = |s: &str| plan.steps.get(s).cloned().unwrap_or_else(|| s.to_string());
        let mut renamed: BTreeMap<u32, String> = BTreeMap::new();
        for tok in &case.tokens {
            if tok.step == INTAKE_STEP {
                continue;
            }
            let t = target(&tok.step);
            let Some(new_step) = new.step(&t) else {
                entry.problems.push(format!(
                    "active step '{}' does not exist in version {}; map it to a new step",
                    tok.step, new.version
                ));
                continue;
            };
            if let Some(old_step) = old.step(&tok.step) {
                entry.problems.extend(same_handling(old_step, new_step));
            }
            renamed.insert(tok.id, t.clone());
            if t != tok.step {
                entry.changes.push(format!("{} → {}", tok.step, t));
            }
        }
        // A step inside a branch must land inside the matching branch of the new version.
        for tok in case.tokens.iter().filter(|t| t.step != INTAKE_STEP) {
            let Some(t) = renamed.get(&tok.id) else {
                continue;
            };
            let parent_new = tok.parent.and_then(|p| renamed.get(&p));
            let scope = new.scopes.get(t).cloned().flatten();
            let fits = match (parent_new, &scope) {
                (None, None) => true,
                (Some(p), Some(sc)) => sc.starts_with(&format!("{p}/")),
                _ => false,
            };
            if !fits {
                entry.problems.push(format!(
                    "step '{t}' is not in the same parallel branch structure in version {}",
                    new.version
                ));
            }
        }
        // A step's budget may differ in the new version: its deadline is recomputed from
        // when the step started, with new timers; the old timers no longer match the
        // limit's end and do nothing, so each threshold fires once.
        let rules = self.rules();
        let mut timers = Vec::new();
        for tok in after.tokens.iter_mut() {
            if let Some(t) = renamed.get(&tok.id) {
                tok.step = t.clone();
                let budget = new.step(t).and_then(|s| s.budget());
                tok.due = budget.map(|b| b.due(&rules.calendar, tok.entered_at));
                if let (Some(due), Some(budget)) = (tok.due, budget) {
                    let thresholds = new.warnings_for(Some(t.as_str())).thresholds(
                        &rules.calendar,
                        tok.entered_at,
                        budget,
                    );
                    for (threshold, at) in
                        thresholds.into_iter().chain([("breach".to_string(), due)])
                    {
                        timers.push(Timer {
                            at,
                            case: case.id,
                            limit: Limit::Step,
                            token: Some(tok.id),
                            threshold,
                            limit_due: due,
                        });
                    }
                }
            }
        }
        for task in after.tasks.iter_mut() {
            if let Some(t) = renamed.get(&task.token) {
                task.step = t.clone();
                task.due = after
                    .tokens
                    .iter()
                    .find(|k| k.id == task.token)
                    .and_then(|k| k.due);
                if let Some(s) = new.step(t) {
                    task.step_name = s.name.clone();
                }
            }
        }
        after.visited = case
            .visited
            .iter()
            .map(|v| target(v))
            .filter(|v| new.step(v).is_some())
            .collect();
        after.version = new.version.clone();
        let mapping: Vec<String> = plan.steps.iter().map(|(o, n)| format!("{o}→{n}")).collect();
        let event = HistoryEvent {
            comment: Some(format!(
                "procedure version {} → {}{}",
                old.version,
                new.version,
                if mapping.is_empty() {
                    String::new()
                } else {
                    format!("; steps {}", mapping.join(", "))
                }
            )),
            ..HistoryEvent::new(self.now(), actor.name(), "migrated")
        };
        (entry, (after, event, timers))
    }
}
