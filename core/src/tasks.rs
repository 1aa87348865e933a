//! Tasks: the worklist with warning levels, who may act on a task (members of its group
//! or their deputies; nobody learns of a task of a case they may not see), and the task
//! actions: claim, release, complete, return, transfer.

use std::collections::HashMap;

use crate::case::{Case, Data, HistoryEvent, Task, TaskState};
use crate::engine::{task_case_id, Actor, Committed, Engine, WorkFilter, WorkItem};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::form::{check_data, Filler};
use crate::office::RuleSet;
use crate::procedure::Procedure;
use crate::supervision::CardItem;

/// A supervisor's board: see [`Engine::board`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Board {
    /// The groups supervised.
    pub groups: Vec<String>,
    pub tasks: Vec<WorkItem>,
    /// Open cards addressed to the supervisor's groups.
    pub cards: Vec<CardItem>,
}

impl Engine {
    /// Tasks of the caller's groups (every group for an administrator).
    pub fn worklist(&self, actor: &Actor, f: &WorkFilter) -> Result<Vec<WorkItem>> {
        let rules = self.rules();
        let (groups, principals): (Vec<String>, Vec<String>) = match actor {
            Actor::Admin => (rules.groups.keys().cloned().collect(), Vec::new()),
            Actor::Staff(s) => {
                let principals = self.principals_of(s);
                let mut g = rules.groups_of(s);
                for p in &principals {
                    g.extend(rules.groups_of(p));
                }
                g.sort();
                g.dedup();
                (g, principals)
            }
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        self.open_work(&rules, actor, &groups, &principals, f, false)
    }

    /// What a supervisor watches: the open tasks of the groups they supervise (as named
    /// supervisor or head of the department), worst level first and, within a level, the
    /// earliest due first; and the open cards addressed to their groups.
    pub fn board(&self, actor: &Actor) -> Result<Board> {
        let rules = self.rules();
        let groups = match actor {
            Actor::Admin => rules.groups.keys().cloned().collect(),
            Actor::Staff(s) => rules.supervised_by(s),
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let mut tasks =
            self.open_work(&rules, actor, &groups, &[], &WorkFilter::default(), true)?;
        tasks.sort_by(|a, b| {
            (std::cmp::Reverse(a.level), a.task.due, &a.task.id).cmp(&(
                std::cmp::Reverse(b.level),
                b.task.due,
                &b.task.id,
            ))
        });
        let cards = self.cards(actor, Some(false))?;
        Ok(Board {
            groups,
            tasks,
            cards,
        })
    }

    /// The open tasks of `groups` that `f` keeps, with their levels. Supervising, every
    /// task of a group counts; otherwise only those the caller (or a principal) may take.
    fn open_work(
        &self,
        rules: &RuleSet,
        actor: &Actor,
        groups: &[String],
        principals: &[String],
        f: &WorkFilter,
        supervising: bool,
    ) -> Result<Vec<WorkItem>> {
        let me = actor.name();
        // Whom the caller may act as in a group: themselves if a member, or a principal.
        let acts_as = |group: &str| -> Vec<String> {
            std::iter::once(me.clone())
                .chain(principals.iter().cloned())
                .filter(|p| *actor == Actor::Admin || rules.is_member(p, group))
                .collect()
        };
        let mut items = Vec::new();
        let mut cache: HashMap<u64, Option<Case>> = HashMap::new();
        for g in groups
            .iter()
            .filter(|g| f.group.as_ref().is_none_or(|x| x == *g))
        {
            for (case_id, task_id) in self.store.open_tasks_of_group(g)? {
                let case = match cache.entry(case_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.store.case(case_id)?)
                    }
                };
                let Some(case) = case.as_ref() else { continue };
                // The index and the case are written together, but a reader may see one
                // before the other: trust the case.
                let Some(task) = case.task(&task_id).filter(|t| t.is_open()) else {
                    continue;
                };
                let who = acts_as(g);
                let for_me = supervising
                    || *actor == Actor::Admin
                    || task
                        .assignee
                        .as_ref()
                        .is_none_or(|a| who.iter().any(|w| w == a));
                let keep = for_me
                    && f.procedure.as_ref().is_none_or(|p| *p == case.procedure)
                    && f.department.as_ref().is_none_or(|d| *d == case.department)
                    && f.state.is_none_or(|s| s == task.state)
                    && f.bundle
                        .as_ref()
                        .is_none_or(|b| case.bundle.as_ref() == Some(b))
                    && (!f.mine
                        || task.claimed_by.as_ref().is_some_and(|c| who.contains(c))
                        || task.assignee.as_ref().is_some_and(|a| who.contains(a)));
                if !keep {
                    continue;
                }
                let proc = self.procedure_of(case).ok();
                let outcomes = proc
                    .as_ref()
                    .map(|p| p.task_outcomes(&task.step))
                    .unwrap_or_default();
                let level = proc
                    .as_ref()
                    .map(|p| self.task_level(rules, p, case, task))
                    .unwrap_or(crate::limits::Level::Green);
                if f.level.is_some_and(|l| l != level) {
                    continue;
                }
                items.push(WorkItem {
                    task: task.clone(),
                    case_id,
                    case_number: case.number.clone(),
                    procedure: case.procedure.clone(),
                    procedure_name: case.procedure_name.clone(),
                    department: case.department.clone(),
                    applicant: case.applicant.name.clone(),
                    bundle: case.bundle.clone(),
                    outcomes,
                    level,
                });
            }
        }
        items.sort_by(|a, b| (a.task.created_at, &a.task.id).cmp(&(b.task.created_at, &b.task.id)));
        Ok(items)
    }

    /// The warning level of a task: its step's budget if it has one, else the case's
    /// promised limit.
    fn task_level(
        &self,
        rules: &RuleSet,
        p: &Procedure,
        case: &Case,
        task: &Task,
    ) -> crate::limits::Level {
        let now = Self::clock_time(case, self.clock.now());
        let step_days = p.step(&task.step).map(|s| s.days).unwrap_or(0);
        match task.due {
            Some(due) if step_days > 0 => {
                let start = case
                    .tokens
                    .iter()
                    .find(|t| t.id == task.token)
                    .map_or(task.created_at, |t| t.entered_at);
                p.warnings
                    .level(&rules.calendar, start, step_days, due, now)
            }
            _ => self.case_level(rules, p, case),
        }
    }

    /// The time a case's limits are measured at: frozen while its clock is stopped.
    fn clock_time(
        case: &Case,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        case.clock_stop.as_ref().map_or(now, |s| s.since)
    }

    /// The warning level of a case's promised limit (green before acceptance).
    pub fn case_level(&self, rules: &RuleSet, p: &Procedure, case: &Case) -> crate::limits::Level {
        match (case.accepted_at, case.promised_due) {
            (Some(start), Some(due)) if case.status.is_open() => p.warnings.level(
                &rules.calendar,
                start,
                p.promised_days,
                due,
                Self::clock_time(case, self.clock.now()),
            ),
            _ => crate::limits::Level::Green,
        }
    }

    /// Loads a task's case and checks that `actor` may act on the task.
    fn for_task(&self, actor: &Actor, task_id: &str) -> Result<(Case, Task, Option<String>)> {
        let case = self
            .store
            .case(task_case_id(task_id)?)?
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        // Whoever may not see the case learns nothing of its tasks, not even why not.
        // Checked on refusal only: those who may act on a task see its case.
        match self.task_of(actor, &case, task_id) {
            Ok((task, on_behalf)) => Ok((case, task, on_behalf)),
            Err(e) => Err(self.hide(actor, &case, e, || format!("task {task_id} not found"))),
        }
    }

    /// `e` for a caller who may see `case`; otherwise the `NotFound` a missing case gets.
    pub(crate) fn hide(
        &self,
        actor: &Actor,
        case: &Case,
        e: Error,
        missing: impl FnOnce() -> String,
    ) -> Error {
        if matches!(e, Error::NotFound(_)) || self.can_see(actor, case) {
            e
        } else {
            Error::NotFound(missing())
        }
    }

    pub(crate) fn task_of(
        &self,
        actor: &Actor,
        case: &Case,
        task_id: &str,
    ) -> Result<(Task, Option<String>)> {
        let task = match case.task(task_id) {
            Some(t) => t.clone(),
            None => {
                return Err(match self.store.closed_task(case.id, task_id)? {
                    Some(t) => Error::Conflict(
                        format!("task {task_id} is already {:?}", t.state).to_lowercase(),
                    ),
                    None => Error::NotFound(format!("task {task_id} not found")),
                })
            }
        };
        if task.external.is_some() {
            return Err(Error::InvalidTransition(format!(
                "task {task_id} is an external task: its worker fetches and completes it through /api/external-tasks"
            )));
        }
        let staff = match actor {
            Actor::Staff(s) => s,
            Actor::Admin => {
                return Err(Error::Forbidden(
                    "tasks are handled by staff of their group, not by the administrator".into(),
                ))
            }
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let rules = self.rules();
        // The caller acts for themselves, or as deputy for someone whose task this is.
        let candidates: Vec<String> = std::iter::once(staff.clone())
            .chain(self.principals_of(staff))
            .filter(|p| rules.is_member(p, &task.group))
            .collect();
        if candidates.is_empty() {
            return Err(Error::Forbidden(format!(
                "only members of group '{}' (or their deputies) may act on this task",
                task.group
            )));
        }
        let Some(principal) = candidates
            .into_iter()
            .find(|p| task.assignee.as_ref().is_none_or(|a| a == p))
        else {
            return Err(Error::Forbidden(format!(
                "this task is for {}",
                task.assignee.as_deref().unwrap_or_default()
            )));
        };
        if !task.is_open() {
            return Err(Error::Conflict(
                format!("task {task_id} is already {:?}", task.state).to_lowercase(),
            ));
        }
        if task
            .claimed_by
            .as_ref()
            .is_some_and(|c| c != staff && *c != principal)
        {
            return Err(Error::Conflict(format!(
                "task {task_id} is claimed by {}",
                task.claimed_by.as_deref().unwrap_or_default()
            )));
        }
        let on_behalf = (principal != *staff).then_some(principal);
        Ok((task, on_behalf))
    }

    /// Runs `f` on a flow over the task's case and commits the result with one event.
    pub(crate) fn act(
        &self,
        actor: &Actor,
        task_id: &str,
        action: &str,
        comment: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        let (case, task, on_behalf) = self.for_task(actor, task_id)?;
        let case_id = case.id;
        self.act_full(actor, case, task, action, comment, on_behalf, f)
            .inspect_err(|e| self.incident(e, actor, action, Some(case_id), Some(task_id)))
    }

    pub(crate) fn act_inner(
        &self,
        actor: &Actor,
        case: Case,
        task: Task,
        action: &str,
        comment: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        self.act_full(actor, case, task, action, comment, None, f)
    }

    /// As `act_inner`, recording a deputy's principal in the event.
    #[allow(clippy::too_many_arguments)]
    fn act_full(
        &self,
        actor: &Actor,
        case: Case,
        task: Task,
        action: &str,
        comment: Option<String>,
        on_behalf_of: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = Flow::new(&proc, &rules, case.clone(), self.clock.now());
        let outcome = f(&mut flow, &task)?;
        let event = HistoryEvent {
            task: Some(task.id.clone()),
            step: Some(task.step.clone()),
            outcome,
            comment,
            data_changed: flow.data_changed,
            effects: flow.effects,
            on_behalf_of,
            ..HistoryEvent::new(flow.now, actor.name(), action)
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }

    pub fn claim(&self, actor: &Actor, task_id: &str) -> Result<Committed> {
        let me = actor.name();
        self.act(actor, task_id, "claimed", None, |flow, task| {
            if task.claimed_by.is_some() {
                return Err(Error::Conflict(format!(
                    "task {} is already claimed by you",
                    task.id
                )));
            }
            set_task(flow, &task.id, |t| {
                t.claimed_by = Some(me);
                t.state = TaskState::Claimed;
            });
            Ok(None)
        })
    }

    pub fn release(&self, actor: &Actor, task_id: &str) -> Result<Committed> {
        self.act(actor, task_id, "released", None, |flow, task| {
            if task.claimed_by.is_none() {
                return Err(Error::InvalidTransition(format!(
                    "task {} is not claimed",
                    task.id
                )));
            }
            set_task(flow, &task.id, |t| {
                t.claimed_by = None;
                t.state = TaskState::Open;
            });
            Ok(None)
        })
    }

    /// Completes a task with an outcome, a comment and data merged into the case.
    pub fn complete(
        &self,
        actor: &Actor,
        task_id: &str,
        outcome: &str,
        comment: Option<String>,
        data: Data,
    ) -> Result<Committed> {
        let me = actor.name();
        let c = comment.clone();
        self.act(actor, task_id, "completed", comment, |flow, task| {
            let mut merged = flow.case.data.clone();
            merged.extend(data.clone());
            let errs = check_data(flow.proc, &data, &merged, Filler::Staff, false);
            if !errs.is_empty() {
                return Err(Error::Invalid(errs));
            }
            flow.merge(data);
            flow.complete_task(&task.id, &me, outcome, c)?;
            Ok(Some(outcome.to_string()))
        })
    }

    /// Returns the case to an earlier step (退回).
    pub fn return_to(
        &self,
        actor: &Actor,
        task_id: &str,
        to: &str,
        comment: Option<String>,
    ) -> Result<Committed> {
        let me = actor.name();
        let c = comment.clone();
        self.act(actor, task_id, "returned", comment, |flow, task| {
            set_task(flow, &task.id, |t| {
                t.completed_by = Some(me);
                t.outcome = Some(format!("return:{to}"));
                t.comment = c;
            });
            flow.return_to(&task.id, to)?;
            Ok(Some(format!("return:{to}")))
        })
    }

    /// Transfers a task to another group, or to a named member of its group (转办).
    pub fn transfer(
        &self,
        actor: &Actor,
        task_id: &str,
        group: Option<String>,
        staff: Option<String>,
        comment: Option<String>,
    ) -> Result<Committed> {
        if group.is_none() && staff.is_none() {
            return Err(Error::Validation(
                "name a group or a staff member to transfer to".into(),
            ));
        }
        self.act(actor, task_id, "transferred", comment, |flow, task| {
            move_task(flow, task, group, staff)
        })
    }
}

/// Moves a task to `group` (default: its own) and, if named, to one of its members,
/// unclaimed: what a transfer and a supervisor's reassignment do.
pub(crate) fn move_task(
    flow: &mut Flow,
    task: &Task,
    group: Option<String>,
    staff: Option<String>,
) -> Result<Option<String>> {
    let target = group.unwrap_or_else(|| task.group.clone());
    if !flow.rules.groups.contains_key(&target) {
        return Err(Error::Validation(format!(
            "group '{target}' does not exist"
        )));
    }
    if let Some(s) = &staff {
        if !flow.rules.is_member(s, &target) {
            return Err(Error::Validation(format!(
                "'{s}' is not a member of group '{target}'"
            )));
        }
    }
    set_task(flow, &task.id, |t| {
        t.group = target;
        t.claimed_by = None;
        t.state = TaskState::Open;
        t.assignee = staff;
    });
    Ok(None)
}

pub(crate) fn set_task(flow: &mut Flow, id: &str, f: impl FnOnce(&mut Task)) {
    if let Some(t) = flow.case.tasks.iter_mut().find(|t| t.id == id) {
        f(t);
    }
}
