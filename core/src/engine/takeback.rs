//! 撤回: a handler takes back the step he just completed, while the next handler has not
//! acted. A staff member's completion keeps what it changed ([`TakeBack`], on the case
//! until its next commit); taking back cancels the tasks the completion opened (none of
//! them claimed), restores the tokens, the steps passed and the data as they were, and
//! gives the step back to him as a new task, claimed. Only simple moves: not one that
//! decided the case, stopped or started its clock, or opened work someone took.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::case::{Case, HistoryEvent, Task, TaskState, Token};
use crate::engine::{task_case_id, Actor, Committed, Engine};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// What a staff member's completion changed, kept so that he can take it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TakeBack {
    /// The completed task, as it was before.
    pub task: Task,
    pub by: String,
    /// The revision the completion wrote: any later write ends the chance.
    pub rev: u64,
    pub tokens: Vec<Token>,
    pub visited: Vec<String>,
    /// Ids of the tasks open before the completion.
    pub open: Vec<String>,
    /// The tasks the completion closed besides its own (the other signers of an any-of
    /// step), as they were: only these are kept whole.
    #[serde(default)]
    pub closed: Vec<Task>,
    /// The data fields the completion changed, as they were (`null`: absent).
    #[serde(default)]
    pub data: BTreeMap<String, Option<Value>>,
    pub clock_stopped: bool,
    pub clock_stops: usize,
    pub promised_due: Option<DateTime<Utc>>,
}

impl TakeBack {
    /// What `before` was, as `task` of it is completed by `by`; finished by [`TakeBack::after`].
    pub(crate) fn before(before: &Case, task: &Task, by: &str) -> TakeBack {
        TakeBack {
            task: task.clone(),
            by: by.to_string(),
            rev: before.rev + 1,
            tokens: before.tokens.clone(),
            visited: before.visited.clone(),
            open: before.tasks.iter().map(|t| t.id.clone()).collect(),
            // Every open task for now; `after` keeps those the completion closed.
            closed: before
                .tasks
                .iter()
                .filter(|t| t.id != task.id)
                .cloned()
                .collect(),
            // The whole data for now; `after` keeps only what changed.
            data: before
                .data
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            clock_stopped: before.clock_stop.is_some(),
            clock_stops: before.clock_stops.len(),
            promised_due: before.promised_due,
        }
    }

    /// Keeps, of the data before, the fields `after` changed; `None` if the completion
    /// closed the case (nothing left to take back).
    pub(crate) fn after(mut self, after: &Case) -> Option<TakeBack> {
        if !after.status.is_open() {
            return None;
        }
        self.closed
            .retain(|t| !after.tasks.iter().any(|a| a.id == t.id && a.is_open()));
        let old = std::mem::take(&mut self.data);
        let keys: BTreeSet<&String> = old.keys().chain(after.data.keys()).collect();
        self.data = keys
            .into_iter()
            .filter_map(|k| {
                let was = old.get(k).cloned().flatten();
                (was.as_ref() != after.data.get(k)).then(|| (k.clone(), was))
            })
            .collect();
        Some(self)
    }
}

impl Engine {
    /// 撤回: the staff member who completed `task_id` takes the step back while the case
    /// has not moved since and no one took the work it opened.
    pub fn take_back(
        &self,
        actor: &Actor,
        task_id: &str,
        comment: Option<String>,
    ) -> Result<Committed> {
        if !matches!(actor, Actor::Staff(_)) {
            return Err(Error::Forbidden(
                "a step is taken back by the staff member who completed it".into(),
            ));
        }
        let case = self
            .store()
            .case(task_case_id(task_id)?)?
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        if !self.can_see(actor, &case) {
            return Err(Error::NotFound(format!("task {task_id} not found")));
        }
        let tb = taken_back(actor, &case, task_id)?.clone();
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = Flow::new(&proc, &rules, case.clone(), self.now());
        let before: BTreeSet<&str> = tb.open.iter().map(String::as_str).collect();
        let now = flow.now;
        for t in flow.case.tasks.iter_mut() {
            if !before.contains(t.id.as_str()) {
                t.state = TaskState::Cancelled;
                t.completed_at = Some(now);
                t.completed_by = Some(tb.by.clone());
                t.outcome = Some("taken_back".into());
            }
        }
        flow.case.tokens = tb.tokens.clone();
        flow.case.visited = tb.visited.clone();
        for (k, v) in &tb.data {
            match v {
                Some(v) => flow.case.data.insert(k.clone(), v.clone()),
                None => flow.case.data.remove(k),
            };
            // Recorded in the history as any change of data is (null: removed).
            flow.data_changed
                .insert(k.clone(), v.clone().unwrap_or(Value::Null));
        }
        // The step comes back to its handler, claimed, and the tasks the completion closed
        // (other signers of an any-of step) come back as they were: as new tasks, so that
        // the completed ones stay in the history as they happened.
        flow.reopen_task(&tb.task, Some(tb.by.clone()));
        for t in &tb.closed {
            flow.reopen_task(t, t.claimed_by.clone());
        }
        flow.rearm_step_timers();
        let event = HistoryEvent {
            task: Some(task_id.to_string()),
            step: Some(tb.task.step.clone()),
            comment,
            data_changed: flow.data_changed,
            effects: flow.effects,
            ..HistoryEvent::new(flow.now, actor.name(), "taken_back")
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }

    /// The completed task this staff member may take back on `case` now, if any.
    pub fn may_take_back(&self, actor: &Actor, case: &Case) -> Option<String> {
        let tb = case.take_back.as_ref()?;
        taken_back(actor, case, &tb.task.id)
            .ok()
            .map(|t| t.task.id.clone())
    }
}

/// The take-back of `task_id` on `case` if `actor` may do it now, else why not.
fn taken_back<'a>(actor: &Actor, case: &'a Case, task_id: &str) -> Result<&'a TakeBack> {
    let refuse = |why: &str| {
        Err(Error::InvalidTransition(format!(
            "{task_id} cannot be taken back: {why}"
        )))
    };
    let Some(tb) = case.take_back.as_ref().filter(|t| t.task.id == task_id) else {
        return refuse(
            "the case moved on since it was completed (the next handler acted, or it changed otherwise)",
        );
    };
    if case.rev != tb.rev {
        return refuse("the case moved on since");
    }
    if *actor != Actor::Staff(tb.by.clone()) {
        return Err(Error::Forbidden(format!(
            "only {} who completed it may take it back",
            tb.by
        )));
    }
    if !case.status.is_open() {
        return refuse("the case is decided");
    }
    if case.clock_stop.is_some() != tb.clock_stopped
        || case.clock_stops.len() != tb.clock_stops
        || case.promised_due != tb.promised_due
    {
        return refuse("the move stopped or started the case's clock");
    }
    let before: BTreeSet<&str> = tb.open.iter().map(String::as_str).collect();
    let taken = case
        .tasks
        .iter()
        .filter(|t| !before.contains(t.id.as_str()))
        .any(|t| {
            t.state != TaskState::Open
                || t.claimed_by.is_some()
                || t.external.as_ref().is_some_and(|x| x.worker.is_some())
        });
    if taken {
        return refuse("the next handler has taken the work");
    }
    Ok(tb)
}
