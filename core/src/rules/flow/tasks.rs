//! The tasks a step opens, with their limits and timers; a task reopened as it was (a
//! take-back, a return) with its step's timers set again; the group that holds a step's
//! tasks (fixed, or worked out from the case).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::case::{Effect, Limit, Task, TaskState};
use crate::error::Result;
use crate::limits::Budget;

use super::Flow;

impl Flow<'_> {
    pub(super) fn create_task(
        &mut self,
        token: u32,
        step: &str,
        step_name: &str,
        group: &str,
        assignee: Option<String>,
    ) {
        self.case.next_task += 1;
        let id = format!("{}-{}", self.case.id, self.case.next_task);
        self.effects.push(Effect::TaskCreated {
            task: id.clone(),
            group: group.to_string(),
            assignee: assignee.clone(),
        });
        self.case.tasks.push(Task {
            id,
            step: step.to_string(),
            step_name: step_name.to_string(),
            group: group.to_string(),
            assignee,
            claimed_by: None,
            state: TaskState::Open,
            created_at: self.now,
            completed_at: None,
            completed_by: None,
            outcome: None,
            comment: None,
            token,
            due: self
                .case
                .tokens
                .iter()
                .find(|t| t.id == token)
                .and_then(|t| t.due),
            external: None,
        });
    }

    /// A task like `like` again, as a new task of the same token, claimed by `claimed`
    /// (what a take-back gives back).
    pub(crate) fn reopen_task(&mut self, like: &Task, claimed: Option<String>) {
        self.create_task(
            like.token,
            &like.step,
            &like.step_name,
            &like.group,
            like.assignee.clone(),
        );
        if let Some(t) = self.case.tasks.last_mut() {
            t.state = if claimed.is_some() {
                TaskState::Claimed
            } else {
                TaskState::Open
            };
            t.claimed_by = claimed;
            t.external = like.external.clone().map(|mut x| {
                x.worker = None;
                x
            });
        }
    }

    /// Timers again for the budgets of the case's steps (after a take-back restored
    /// tokens whose timers may have fired while they were gone); a card already issued
    /// is not issued twice.
    pub(crate) fn rearm_step_timers(&mut self) {
        let budgets: Vec<(u32, DateTime<Utc>, Budget, DateTime<Utc>)> = self
            .case
            .tokens
            .iter()
            .filter_map(|t| {
                let budget = self.proc.step(&t.step).and_then(|s| s.budget())?;
                Some((t.id, t.entered_at, budget, t.due?))
            })
            .collect();
        for (token, start, budget, due) in budgets {
            self.set_timers(Limit::Step, Some(token), start, budget, due);
        }
    }

    /// The group that handles `step` for this case: its id, or what its expression or
    /// `assign` function gives. One that does not exist is a script error that changes
    /// nothing: never a task no one can see.
    pub(super) fn group_of(&mut self, step: &crate::procedure::Step) -> Result<String> {
        if !step.dynamic_group() {
            return Ok(step.group.clone().unwrap_or_default());
        }
        let script = self.script()?;
        let group = match (&step.assign, &step.group) {
            (Some(f), _) => match script.call(f, &self.case_view()) {
                Ok(Value::String(g)) => g,
                Ok(other) => {
                    return Err(self.script_error(format!(
                        "step '{}': {f} must return a group id, not {other}",
                        step.id
                    )))
                }
                Err(m) => return Err(self.script_error(m)),
            },
            (None, Some(expr)) => {
                let applicant = serde_json::to_value(&self.case.applicant).unwrap_or(Value::Null);
                let data = Value::Object(self.case.data.clone());
                script
                    .group_of(expr, &data, &applicant)
                    .map_err(|m| self.script_error(m))?
            }
            (None, None) => String::new(),
        };
        match self.rules.groups.get(&group) {
            Some(g) if !g.members.is_empty() => Ok(group),
            Some(_) => Err(self.script_error(format!(
                "step '{}': group '{group}', worked out for this case, has no members",
                step.id
            ))),
            None => Err(self.script_error(format!(
                "step '{}': group '{group}', worked out for this case, does not exist",
                step.id
            ))),
        }
    }
}
